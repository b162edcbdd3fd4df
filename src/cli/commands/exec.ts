/** `pnet exec`: run an allow-listed command on many nodes through fan-out. */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { parseNodeId } from '../../index.js';
import type { NodeId } from '../../index.js';
import type { OperatorSession } from '../client.js';
import { expandHome } from '../config.js';
import { classify, hostOutput, summarise } from '../exec-outcome.js';
import type { ExecOutcome } from '../exec-outcome.js';
import { ExecProgress, table } from '../output.js';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { ExecRequest, InfoReply } from '../ops/wire.js';
import { EXIT, UsageError, intArg, operatorCommand, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

/** Bytes a target may answer an exec with (fan-out's ceiling; hosts cap their output well below). */
const MAX_EXEC_REPLY = 16 * 1024 * 1024;

type ExecOptions = OperatorCliOptions & { targets: string; commandTimeout?: number; deadline?: number; concurrency?: number; output?: boolean; progress: boolean };

export function addExec(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'exec', 'run an allow-listed command on many nodes through fan-out: `pnet exec --targets all -- NAME ARGS...`')
    .requiredOption('--targets <targets>', "'all', a comma-separated list of node ids, or @FILE (one id per line, # comments)")
    .option('--command-timeout <ms>', "ask hosts to stop the command sooner than their configured limit", intArg(1, 86_400_000))
    .option('--deadline <ms>', 'per-target deadline for an answer (default: command timeout + 5 s, or 60 s)', intArg(1, 3_600_000))
    .option('--concurrency <n>', 'targets in flight at once (explicit target lists)', intArg(1, 1_000_000))
    .option('--output', 'print every host\'s stdout and stderr')
    .option('--no-progress', 'no progress bar or per-target lines')
    .argument('<command>', 'the allow-list name of the command')
    .argument('[args...]', 'arguments (only for commands the hosts allow arguments for)')
    .passThroughOptions()
    .action(async (command: string, args: string[], options: ExecOptions) => {
      const targets = await parseTargets(options.targets);
      const request: ExecRequest = { command, ...(args.length > 0 ? { args } : {}), ...(options.commandTimeout !== undefined ? { timeoutMs: options.commandTimeout } : {}) };
      const outcomes = await withSession(ctx, options, (session) => fanOut(ctx, session, targets, request, options));
      report(ctx, request, outcomes, options);
      if (outcomes.length === 0 || summarise(outcomes).ok !== outcomes.length) ctx.setExit(EXIT.failed);
    });
}

/** Sends the request to every target through the daemon and classifies each answer as it comes. */
async function fanOut(ctx: CommandContext, session: OperatorSession, targets: NodeId[] | 'all', request: ExecRequest, options: ExecOptions): Promise<ExecOutcome[]> {
  const deadlineMs = options.deadline ?? (options.commandTimeout !== undefined ? options.commandTimeout + 5000 : 60_000);
  let estimate: number | undefined = targets === 'all' ? undefined : targets.length;
  if (targets === 'all') {
    // Only for the progress bar's total: `all` is expanded by the daemon itself.
    estimate = await session.call<InfoReply>(OPS_CHANNELS.info, {}, Math.min(options.timeout, 5000)).then((info) => info.nodes, () => undefined);
  }
  const mode = options.json || !options.progress ? 'none' : ctx.io.stderr.isTTY ? 'bar' : 'lines';
  const progress = new ExecProgress(ctx.io.stderr, mode, estimate);
  const results: ExecOutcome[] = [];
  try {
    const stream = session.node.fanout(targets, OPS_CHANNELS.exec, JSON.stringify(request), {
      via: session.daemonId,
      deadlineMs,
      maxReplyBytes: MAX_EXEC_REPLY,
      ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    });
    for await (const result of stream) {
      const outcome = classify(result);
      results.push(outcome);
      progress.update(outcome.nodeId, outcome.status, outcome.reason);
    }
  } finally {
    progress.stop();
  }
  return results;
}

function report(ctx: CommandContext, request: ExecRequest, outcomes: ExecOutcome[], options: ExecOptions): void {
  const summary = summarise(outcomes);
  if (options.json) return ctx.printJson({ command: request, ...summary, results: outcomes });
  ctx.print(table(['targets', 'ok', 'failed', 'timed out', 'p50 ms', 'p99 ms'], [[summary.targets, summary.ok, summary.failed, summary.timedOut, summary.p50Ms ?? NaN, summary.p99Ms ?? NaN]]));
  const bad = outcomes.filter((o) => o.status !== 'ok');
  if (bad.length > 0) {
    ctx.print(`not ok (${bad.length}):\n`);
    for (const o of bad) ctx.print(`  ${o.nodeId}  ${o.reason}\n`);
  }
  if (options.output) {
    for (const o of [...outcomes].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))) ctx.print(hostOutput(o));
  }
}

/** `all`, "ID,ID", or "@file" with one id per line ('#' starts a comment). */
export async function parseTargets(spec: string): Promise<NodeId[] | 'all'> {
  const text = spec.trim();
  if (text === 'all') return 'all';
  let items: string[];
  if (text.startsWith('@')) {
    const file = resolve(expandHome(text.slice(1)));
    let content: string;
    try {
      content = await readFile(file, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read targets file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    items = content.split('\n').map((line) => line.replace(/#.*/, '').trim());
  } else {
    items = text.split(',').map((part) => part.trim());
  }
  const ids: NodeId[] = [];
  for (const item of items.filter((part) => part !== '')) {
    try {
      ids.push(parseNodeId(item));
    } catch (error) {
      throw new UsageError(`bad target "${item}": ${(error as Error).message}`);
    }
  }
  if (ids.length === 0) throw new UsageError('no targets: give --targets all, a list of node ids, or @FILE');
  return [...new Set(ids)];
}
