/** ops/exec: run an allow-listed command (no shell unless allowed, bounded time, output and concurrency). */
import { PnetError } from '../../index.js';
import type { NodeId } from '../../index.js';
import { MAX_TIMEOUT_MS } from '../config.js';
import type { CommandSpec } from '../config.js';
import { startCommand } from '../spawn-helper.js';
import { spawnQueue } from '../spawn-queue.js';
import { intField, parseObject } from './context.js';
import type { OpsContext, OpsHandler } from './context.js';
import type { ExecReply } from './wire.js';

const MAX_ARGS = 256;
const MAX_ARG_CHARS = 8192;

/** The exec handler and the commands it runs. */
export interface ExecService {
  readonly handler: OpsHandler;
  /** Commands running now, or waiting for their turn in the process's spawn queue. */
  readonly running: number;
  /** Kills running commands' process groups and waits for them. */
  close(): Promise<void>;
}

/** A request that passed the allow-list: what to run, for how long. */
interface Approved {
  readonly name: string;
  readonly args: string[];
  readonly spec: CommandSpec;
  readonly timeoutMs: number;
}

export function execService(ctx: OpsContext): ExecService {
  const aborts = new Set<AbortController>();
  const runs = new Set<Promise<unknown>>();
  const handler = async (request: Buffer, operator: NodeId): Promise<ExecReply> => {
    const { name, args, spec, timeoutMs } = approve(ctx, parseObject(request), operator, aborts.size);
    const [file, ...fixed] = spec.script !== undefined ? ['/bin/sh', '-c', spec.script, name] : spec.argv;
    ctx.logger?.info({ event: 'exec:start', operator, command: name, args, timeoutMs });
    const abort = new AbortController();
    aborts.add(abort);
    // In the process's spawn queue (a few at a time per process), forked by the process's spawn helper (never this event loop).
    const run = spawnQueue.run(() => startCommand({ file: file!, args: [...fixed, ...args], timeoutMs, maxOutputBytes: spec.maxOutputBytes, ...(spec.cwd !== undefined ? { cwd: spec.cwd } : {}) }, abort.signal), abort.signal);
    runs.add(run);
    try {
      const result = await run;
      ctx.logger?.info({
        event: 'exec:done',
        operator,
        command: name,
        exitCode: result.exitCode,
        signal: result.signal,
        timedOut: result.timedOut,
        truncated: result.truncated,
        ms: result.ms,
        ...(result.spawnError !== undefined ? { spawnError: result.spawnError } : {}),
      });
      return result;
    } finally {
      aborts.delete(abort);
      runs.delete(run);
    }
  };
  return {
    handler,
    get running() {
      return aborts.size;
    },
    async close() {
      for (const abort of aborts) abort.abort();
      await Promise.allSettled([...runs]);
    },
  };
}

/** Checks a request against the allow-list and the host's limits; throws ERR_COMMAND_REFUSED, OVERLOADED or ERR_BAD_OPTION. */
function approve({ node, config, logger }: OpsContext, body: Record<string, unknown>, operator: NodeId, running: number): Approved {
  const name = body['command'];
  if (typeof name !== 'string' || name === '') throw new PnetError('ERR_BAD_OPTION', 'exec request needs "command": the allow-listed name');
  const args = argsOf(body['args']);
  const spec: CommandSpec | undefined = Object.hasOwn(config.commands, name) ? config.commands[name] : undefined;
  if (spec === undefined) {
    logger?.warn({ event: 'exec:refused', operator, command: name, args }, 'command not allow-listed');
    const known = Object.keys(config.commands).sort();
    throw new PnetError('ERR_COMMAND_REFUSED', `command "${name}" is not allow-listed on ${node.id}${known.length > 0 ? ` (allowed: ${known.join(', ')})` : ' (no commands allowed)'}`);
  }
  if (args.length > 0 && !spec.allowArgs) {
    logger?.warn({ event: 'exec:refused', operator, command: name, args }, 'arguments not allowed');
    throw new PnetError('ERR_COMMAND_REFUSED', `command "${name}" takes no arguments on ${node.id} (allowArgs is off)`);
  }
  if (spec.script !== undefined && !config.allowShell) throw new PnetError('ERR_COMMAND_REFUSED', `shell commands are off on ${node.id}`);
  if (running >= config.maxConcurrentExec) throw new PnetError('OVERLOADED', `${node.id} is running ${running} commands already`);
  // The operator may ask for less time than the host allows, never more.
  const timeoutMs = Math.min(spec.timeoutMs, intField(body, 'timeoutMs', spec.timeoutMs, 1, MAX_TIMEOUT_MS));
  return { name, args, spec, timeoutMs };
}

function argsOf(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > MAX_ARGS || !value.every((arg) => typeof arg === 'string' && arg.length <= MAX_ARG_CHARS && !arg.includes('\0'))) {
    throw new PnetError('ERR_BAD_OPTION', `"args" must be at most ${MAX_ARGS} strings of at most ${MAX_ARG_CHARS} characters, without NUL`);
  }
  return value as string[];
}
