/**
 * The `pnet` command line: argument parsing (commander), exit codes, and the operator commands,
 * which talk to a running daemon over pnet itself (see client.ts).
 *
 * Exit codes: 0 ok, 1 a target or operation failed, 2 usage or config error, 3 could not reach the node.
 */
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { Identity, PnetError, parseNodeId, saveIdentity } from '../index.js';
import type { FanoutResult, NodeId } from '../index.js';
import { ConnectError, OperatorSession, decodeReply } from './client.js';
import { DEFAULT_PORT, commandFromFlag, defaultKeyFile, expandHome, loadConfig, validateConfig } from './config.js';
import type { DaemonConfigFile } from './config.js';
import { createLogger, runDaemon } from './daemon.js';
import type { LogLevel } from './daemon.js';
import type { ExecResult } from './exec.js';
import { OPS_CHANNELS } from './ops.js';
import type { ExecRequest, InfoReply, PeerReply, PingReply, PingTry, RouteReply, TopologyReply, TraceReply } from './ops.js';
import { ExecProgress, formatNumber, percentile, table, toDot } from './output.js';
import type { ExecStatus, Out } from './output.js';
import { readVersion } from './version.js';

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Where the CLI reads and writes; process's own by default, collectors in tests. */
export interface CliIO {
  readonly stdout: Out;
  readonly stderr: Out;
  readonly env: NodeJS.ProcessEnv;
  /** Resolves with a signal name when the daemon should stop (default: first SIGINT/SIGTERM). */
  readonly stopSignal?: () => Promise<string>;
}

/** A usage error found after parsing (bad targets file, conflicting flags): exit 2. */
class UsageError extends Error {}

/** Codes that mean the command line or a local file is wrong, not the network. */
const USAGE_CODES = new Set<string>(['ERR_CONFIG', 'ERR_BAD_OPTION', 'ERR_BAD_ADDRESS', 'ERR_BAD_NODE_ID', 'ERR_KEY_FILE']);

/** Bytes a target may answer an exec with (fan-out's ceiling; hosts cap their output well below). */
const MAX_EXEC_REPLY = 16 * 1024 * 1024;

interface CommonOptions {
  json?: boolean;
}

interface OperatorCliOptions extends CommonOptions {
  node: string;
  nodeId?: string;
  key: string;
  connectTimeout: number;
  timeout: number;
}

/** Runs the CLI with `argv` (without node and script) and resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIO = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const json = argv.includes('--json');
  let exitCode: number = EXIT.ok;
  const program = buildProgram(io, (code) => (exitCode = code));
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    const code = exitCodeOf(error);
    const pnetCode = error instanceof PnetError || error instanceof ConnectError ? error.code : error instanceof UsageError ? 'ERR_BAD_OPTION' : undefined;
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`pnet: ${message}${pnetCode && !(error instanceof UsageError) ? ` [${pnetCode}]` : ''}\n`);
    if (json) io.stdout.write(JSON.stringify({ error: { code: pnetCode ?? 'ERR_CLI', message } }) + '\n');
    return code;
  }
}

function exitCodeOf(error: unknown): number {
  if (error instanceof ConnectError) return error.code === 'ERR_BAD_ADDRESS' ? EXIT.usage : EXIT.unreachable;
  if (error instanceof UsageError || error instanceof InvalidArgumentError) return EXIT.usage;
  if (error instanceof PnetError && USAGE_CODES.has(error.code)) return EXIT.usage;
  return EXIT.failed;
}

// ---- option parsers --------------------------------------------------------------

function intArg(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in ${min}..${max}`);
    return n;
  };
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, ...value.split(',').map((part) => part.trim()).filter((part) => part !== '')];
const collectRaw = (value: string, previous: string[] = []): string[] => [...previous, value];

function nodeIdArg(value: string): NodeId {
  try {
    return parseNodeId(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

// ---- the program -----------------------------------------------------------------

function buildProgram(io: CliIO, setExit: (code: number) => void): Command {
  const print = (text: string): void => void io.stdout.write(text);
  const printJson = (value: unknown): void => print(JSON.stringify(value, null, 2) + '\n');
  const note = (text: string): void => void io.stderr.write(text);

  const program = new Command('pnet')
    .description('pnet: QUIC-first peer-to-peer networking. Run a node daemon, or command one as an operator.')
    .version(readVersion(), '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: print, writeErr: note })
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions();

  program
    .command('keygen')
    .description('create a new node identity (Ed25519 key, mode 0600) and print its node id')
    .option('--out <file>', 'where to write the key', defaultKeyFile('node.key'))
    .option('--force', 'replace an existing key file (its identity is lost)')
    .option('--json', 'machine-readable output')
    .action(async (options: CommonOptions & { out: string; force?: boolean }) => {
      const file = resolve(expandHome(options.out));
      const existing = await stat(file).catch(() => undefined);
      if (existing && !options.force) throw new UsageError(`${file} exists; pass --force to replace it (the identity it holds is lost)`);
      const identity = await Identity.generate();
      await saveIdentity(identity, file);
      if (options.json) printJson({ nodeId: identity.nodeId, keyFile: file });
      else {
        print(identity.nodeId + '\n');
        note(`key written to ${file} (mode 0600)\n`);
      }
    });

  program
    .command('id')
    .description('print the node id of an existing key file')
    .option('--key <file>', 'key file', defaultKeyFile('operator.key'))
    .option('--json', 'machine-readable output')
    .action(async (options: CommonOptions & { key: string }) => {
      const file = resolve(expandHome(options.key));
      let pem: string;
      try {
        pem = await readFile(file, 'utf8');
      } catch (error) {
        throw new PnetError('ERR_KEY_FILE', `cannot read key file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
      const identity = await Identity.fromPrivateKeyPem(pem);
      if (options.json) printJson({ nodeId: identity.nodeId, keyFile: file });
      else print(identity.nodeId + '\n');
    });

  program
    .command('node')
    .description('run a node daemon: join the network, serve the ops channels to the configured operators, log one JSON line per event')
    .option('-c, --config <file>', 'config file (JSON; see docs/CLI.md)')
    .option('--listen <address>', 'listen address host:port (overrides the config)')
    .option('--key <file>', 'key file (overrides the config; created when missing)')
    .option('--bootstrap <address>', 'a node to join through (repeatable, or comma-separated)', collect)
    .option('--operator <nodeId>', 'an operator node id allowed to command this node (repeatable)', collect)
    .option('--allow <command>', 'allow-list a command: NAME or "NAME=program arg ..." (repeatable; no shell, no extra args)', collectRaw)
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'))
    .option('--json', 'accepted for symmetry: the daemon always logs JSON lines')
    .action(async (options: { config?: string; listen?: string; key?: string; bootstrap?: string[]; operator?: string[]; allow?: string[]; logLevel: LogLevel }) => {
      const base = options.config !== undefined ? await loadConfig(options.config) : validateConfig({}, 'flags');
      // Flags override (listen, key) or extend (bootstrap, operators, commands) the file; the result is validated as a whole.
      const merged: DaemonConfigFile = {
        listen: options.listen ?? base.listen,
        keyFile: options.key !== undefined ? resolve(expandHome(options.key)) : base.keyFile,
        bootstrap: [...base.bootstrap, ...(options.bootstrap ?? [])],
        operators: [...base.operators, ...(options.operator ?? [])],
        allowShell: base.allowShell,
        maxConcurrentExec: base.maxConcurrentExec,
        commands: { ...base.commands, ...Object.fromEntries((options.allow ?? []).map(commandFromFlag)) } as DaemonConfigFile['commands'],
      };
      const config = validateConfig(merged, options.config ?? 'flags');
      const logger = createLogger(options.logLevel);
      const stop = (io.stopSignal ?? firstSignal)();
      await runDaemon(config, logger, stop);
    });

  const operatorCommand = (name: string, description: string): Command =>
    program
      .command(name)
      .description(description)
      .option('--node <address>', 'the daemon to ask (env PNET_NODE)', io.env['PNET_NODE'] || `127.0.0.1:${DEFAULT_PORT}`)
      .option('--node-id <id>', "pin the daemon's node id (env PNET_NODE_ID)", io.env['PNET_NODE_ID'] || undefined)
      .option('--key <file>', 'operator key file, created when missing (env PNET_KEY)', io.env['PNET_KEY'] || defaultKeyFile('operator.key'))
      .option('--connect-timeout <ms>', 'QUIC handshake deadline', intArg(1, 600_000), 5000)
      .option('--timeout <ms>', 'deadline for the answer', intArg(1, 3_600_000), 10_000)
      .option('--json', 'machine-readable output');

  /** Connects as the operator, runs `fn`, always closes the short-lived node. */
  const withSession = async <T>(options: OperatorCliOptions, fn: (session: OperatorSession) => Promise<T>): Promise<T> => {
    const nodeId = options.nodeId !== undefined && options.nodeId !== '' ? nodeIdArg(options.nodeId) : undefined;
    const session = await OperatorSession.connect({
      node: options.node,
      ...(nodeId !== undefined ? { nodeId } : {}),
      keyFile: resolve(expandHome(options.key)),
      connectTimeoutMs: options.connectTimeout,
      onKeyCreated: (path, id) => note(`created operator key ${path}; its node id (add it to the daemon's "operators"):\n${id}\n`),
    });
    try {
      return await fn(session);
    } finally {
      await session.close().catch(() => undefined);
    }
  };

  operatorCommand('info', 'show what the node is: id, address, version, peers, nodes it routes to, allowed commands').action(async (options: OperatorCliOptions) => {
    const info = await withSession(options, (s) => s.call<InfoReply>(OPS_CHANNELS.info, {}, options.timeout));
    if (options.json) return printJson(info);
    print(
      table(
        ['field', 'value'],
        [
          ['node id', info.nodeId],
          ['address', info.address],
          ['version', info.version],
          ['uptime s', Math.round(info.uptimeMs / 1000)],
          ['peers', info.peers],
          ['nodes', info.nodes],
          ['commands', info.commands.join(', ') || '(none)'],
          ['shell', info.allowShell ? 'allowed' : 'off'],
        ],
      ),
    );
  });

  operatorCommand('peers', "list the node's direct connections (this CLI's own connection is left out)").action(async (options: OperatorCliOptions) => {
    const list = await withSession(options, (s) => s.call<PeerReply[]>(OPS_CHANNELS.peers, {}, options.timeout));
    if (options.json) return printJson(list);
    print(table(['node id', 'address', 'direction', 'rtt ms', 'streams'], list.map((p) => [p.nodeId, p.address, p.direction, p.rttMs, p.streams])));
  });

  operatorCommand('routes', "show the node's routing table: every node it reaches, through which neighbour, at what cost").action(async (options: OperatorCliOptions) => {
    const routes = await withSession(options, (s) => s.call<RouteReply[]>(OPS_CHANNELS.routes, {}, options.timeout));
    if (options.json) return printJson(routes);
    print(table(['node id', 'next hop', 'hops', 'cost'], routes.map((r) => [r.nodeId, r.nextHop, r.hops, r.cost])));
  });

  operatorCommand('ping', 'measure round trips from the node to NODE (over its route; one stream, COUNT tries)')
    .argument('<nodeId>', 'the node to ping', nodeIdArg)
    .option('--count <n>', 'tries', intArg(1, 100), 3)
    .option('--interval <ms>', 'pause between tries', intArg(0, 10_000), 200)
    .option('--probe-timeout <ms>', 'wait for each answer (and for opening the stream)', intArg(1, 60_000), 2000)
    .action(async (target: NodeId, options: OperatorCliOptions & { count: number; interval: number; probeTimeout: number }) => {
      // Opening the stream, then every try and pause, then slack for the reply itself.
      const budget = options.probeTimeout + options.count * (options.interval + options.probeTimeout) + options.timeout;
      const reply = await withSession(options, (s) =>
        s.call<PingReply>(OPS_CHANNELS.ping, { target, count: options.count, intervalMs: options.interval, timeoutMs: options.probeTimeout }, budget),
      );
      const times = reply.tries.flatMap((t) => (t.ms !== undefined ? [t.ms] : []));
      const summary = {
        sent: reply.tries.length,
        received: times.length,
        lossPct: reply.tries.length === 0 ? 100 : Math.round((1 - times.length / reply.tries.length) * 1000) / 10,
        ...(times.length > 0 ? { minMs: Math.min(...times), avgMs: times.reduce((a, b) => a + b, 0) / times.length, maxMs: Math.max(...times) } : {}),
      };
      if (options.json) printJson({ ...reply, summary });
      else {
        print(`PING ${reply.target} from ${reply.from}${reply.setupMs !== undefined ? ` (stream opened in ${formatNumber(reply.setupMs)} ms)` : ''}\n`);
        for (const t of reply.tries) print(tryLine(t) + '\n');
        print(
          `${summary.sent} sent, ${summary.received} received, ${summary.lossPct}% loss` +
            (times.length > 0 ? `, rtt min/avg/max = ${formatNumber(summary.minMs!)}/${formatNumber(summary.avgMs!)}/${formatNumber(summary.maxMs!)} ms` : '') +
            '\n',
        );
      }
      // Like ping(8): success when at least one answer came back.
      if (times.length === 0) setExit(EXIT.failed);
    });

  operatorCommand('trace', 'show the hop path from the node to NODE with the round trip to each hop')
    .argument('<nodeId>', 'the node to trace', nodeIdArg)
    .option('--count <n>', 'tries per hop', intArg(1, 10), 1)
    .option('--probe-timeout <ms>', 'wait for each answer (and for opening each stream)', intArg(1, 60_000), 2000)
    .action(async (target: NodeId, options: OperatorCliOptions & { count: number; probeTimeout: number }) => {
      // Hops are probed in parallel: one stream opening plus COUNT tries, then slack for the reply.
      const budget = (options.count + 1) * options.probeTimeout + options.timeout;
      const reply = await withSession(options, (s) => s.call<TraceReply>(OPS_CHANNELS.trace, { target, count: options.count, timeoutMs: options.probeTimeout }, budget));
      if (options.json) printJson(reply);
      else {
        print(`trace ${reply.target} from ${reply.from}: ${reply.hops.length - 1} hop(s)\n`);
        print(table(['hop', 'node id', 'cost', 'rtt ms'], reply.hops.map((h) => [h.hop, h.nodeId, h.cost, h.ms ?? (h.tries[0]?.error?.code ?? '-')])));
      }
      if (reply.hops.at(-1)?.ms === undefined) setExit(EXIT.failed);
    });

  operatorCommand('topology', 'print the network map as the node knows it (JSON, or Graphviz DOT)')
    .addOption(new Option('--format <format>', 'output format').choices(['json', 'dot']).default('json'))
    .action(async (options: OperatorCliOptions & { format: 'json' | 'dot' }) => {
      const topology = await withSession(options, (s) => s.call<TopologyReply>(OPS_CHANNELS.topology, {}, options.timeout));
      if (options.format === 'dot') print(toDot(topology));
      else printJson(topology);
    });

  operatorCommand('exec', 'run an allow-listed command on many nodes through fan-out: `pnet exec --targets all -- NAME ARGS...`')
    .requiredOption('--targets <targets>', "'all', a comma-separated list of node ids, or @FILE (one id per line, # comments)")
    .option('--command-timeout <ms>', "ask hosts to stop the command sooner than their configured limit", intArg(1, 86_400_000))
    .option('--deadline <ms>', 'per-target deadline for an answer (default: command timeout + 5 s, or 60 s)', intArg(1, 3_600_000))
    .option('--concurrency <n>', 'targets in flight at once (explicit target lists)', intArg(1, 1_000_000))
    .option('--output', 'print every host\'s stdout and stderr')
    .option('--no-progress', 'no progress bar or per-target lines')
    .argument('<command>', 'the allow-list name of the command')
    .argument('[args...]', 'arguments (only for commands the hosts allow arguments for)')
    .passThroughOptions()
    .action(async (command: string, args: string[], options: OperatorCliOptions & { targets: string; commandTimeout?: number; deadline?: number; concurrency?: number; output?: boolean; progress: boolean }) => {
      const targets = await parseTargets(options.targets);
      const request: ExecRequest = { command, ...(args.length > 0 ? { args } : {}), ...(options.commandTimeout !== undefined ? { timeoutMs: options.commandTimeout } : {}) };
      const deadlineMs = options.deadline ?? (options.commandTimeout !== undefined ? options.commandTimeout + 5000 : 60_000);
      const outcomes = await withSession(options, async (session) => {
        let estimate: number | undefined = targets === 'all' ? undefined : targets.length;
        if (targets === 'all') {
          // Only for the progress bar's total: `all` is expanded by the daemon itself.
          estimate = await session.call<InfoReply>(OPS_CHANNELS.info, {}, Math.min(options.timeout, 5000)).then((info) => info.nodes, () => undefined);
        }
        const mode = options.json || !options.progress ? 'none' : io.stderr.isTTY ? 'bar' : 'lines';
        const progress = new ExecProgress(io.stderr, mode, estimate);
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
      });
      const summary = summarise(outcomes);
      if (options.json) printJson({ command: request, ...summary, results: outcomes });
      else {
        print(table(['targets', 'ok', 'failed', 'timed out', 'p50 ms', 'p99 ms'], [[summary.targets, summary.ok, summary.failed, summary.timedOut, summary.p50Ms ?? NaN, summary.p99Ms ?? NaN]]));
        const bad = outcomes.filter((o) => o.status !== 'ok');
        if (bad.length > 0) {
          print(`not ok (${bad.length}):\n`);
          for (const o of bad) print(`  ${o.nodeId}  ${o.reason}\n`);
        }
        if (options.output) {
          for (const o of [...outcomes].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))) print(hostOutput(o));
        }
      }
      if (outcomes.length === 0 || summary.ok !== outcomes.length) setExit(EXIT.failed);
    });

  return program;
}

function tryLine(t: PingTry): string {
  return t.ms !== undefined ? `seq=${t.seq} time=${formatNumber(t.ms)} ms` : `seq=${t.seq} failed: ${t.error?.code ?? 'error'} ${t.error?.message ?? ''}`.trimEnd();
}

function firstSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
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

// ---- exec results ------------------------------------------------------------------

/** One target's exec outcome as the CLI reports it. */
export interface ExecOutcome {
  readonly nodeId: NodeId;
  readonly status: ExecStatus;
  /** One line: "exit 0", "exit 2", "timed out after 1000 ms (killed)", "UNAUTHORIZED: ...". */
  readonly reason: string;
  readonly ms: number;
  readonly hops: number;
  readonly result?: ExecResult;
  readonly error?: { readonly code: string; readonly message: string };
}

export function classify(result: FanoutResult): ExecOutcome {
  const base = { nodeId: result.nodeId, ms: Math.round(result.ms * 10) / 10, hops: result.hops };
  if (!result.ok) {
    const error = { code: result.error.code, message: result.error.message };
    const status: ExecStatus = result.error.code === 'ERR_REQUEST_TIMEOUT' ? 'timeout' : 'failed';
    return { ...base, status, reason: `${error.code}: ${error.message}`, error };
  }
  let reply: ExecResult;
  try {
    reply = decodeReply<ExecResult>(result.data);
  } catch (error) {
    const failure = error instanceof PnetError ? error : new PnetError('BAD_FRAME', String(error));
    return { ...base, status: 'failed', reason: `${failure.code}: ${failure.message}`, error: { code: failure.code, message: failure.message } };
  }
  if (reply.timedOut) return { ...base, status: 'timeout', reason: `timed out after ${formatNumber(reply.ms)} ms (process group killed)`, result: reply };
  if (reply.spawnError !== undefined) return { ...base, status: 'failed', reason: `could not start: ${reply.spawnError}`, result: reply };
  if (reply.exitCode === 0) return { ...base, status: 'ok', reason: `exit 0 in ${formatNumber(reply.ms)} ms`, result: reply };
  return { ...base, status: 'failed', reason: reply.exitCode !== null ? `exit ${reply.exitCode}` : `killed by ${reply.signal ?? 'a signal'}`, result: reply };
}

export interface ExecSummary {
  readonly targets: number;
  readonly ok: number;
  readonly failed: number;
  readonly timedOut: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
}

export function summarise(outcomes: readonly ExecOutcome[]): ExecSummary {
  const times = outcomes.map((o) => o.ms);
  const p50 = percentile(times, 50);
  const p99 = percentile(times, 99);
  return {
    targets: outcomes.length,
    ok: outcomes.filter((o) => o.status === 'ok').length,
    failed: outcomes.filter((o) => o.status === 'failed').length,
    timedOut: outcomes.filter((o) => o.status === 'timeout').length,
    ...(p50 !== undefined ? { p50Ms: p50 } : {}),
    ...(p99 !== undefined ? { p99Ms: p99 } : {}),
  };
}

function hostOutput(o: ExecOutcome): string {
  const lines = [`== ${o.nodeId} (${o.reason}${o.result?.truncated ? ', output truncated' : ''})`];
  if (o.result) {
    if (o.result.stdout !== '') lines.push(o.result.stdout.replace(/\n$/, ''));
    if (o.result.stderr !== '') lines.push('-- stderr', o.result.stderr.replace(/\n$/, ''));
  } else if (o.error) {
    lines.push(`${o.error.code}: ${o.error.message}`);
  }
  return lines.join('\n') + '\n';
}
