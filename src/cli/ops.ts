/**
 * The ops service a daemon serves to its operators, on ordinary pnet request channels (no second
 * protocol): info, peers, routes, topology, ping, trace, exec. Every channel but ops/echo admits
 * only the configured operator node ids (the library REJECTs anyone else with UNAUTHORIZED, and a
 * fan-out reports UNAUTHORIZED for that target). Replies are JSON; a refusal is
 * `{ "error": { "code", "message" } }` so its code survives both direct requests and fan-outs.
 */
import { PnetError, parseNodeId } from '../index.js';
import type { NodeId, PnetNode, PnetStream } from '../index.js';
import { MAX_TIMEOUT_MS } from './config.js';
import type { CommandSpec, OpsConfig } from './config.js';
import { runCommand } from './exec.js';
import type { ExecResult } from './exec.js';
import { readVersion } from './version.js';

export const OPS_CHANNELS = {
  info: 'ops/info',
  peers: 'ops/peers',
  routes: 'ops/routes',
  topology: 'ops/topology',
  ping: 'ops/ping',
  trace: 'ops/trace',
  exec: 'ops/exec',
  /** Served to operators and to every node of the map: the target end of ping and trace. */
  echo: 'ops/echo',
} as const;

// ---- wire shapes (JSON) ------------------------------------------------------

export interface ErrorReply {
  readonly error: { readonly code: string; readonly message: string };
}

export interface InfoReply {
  readonly nodeId: NodeId;
  readonly address: string;
  readonly version: string;
  readonly uptimeMs: number;
  readonly peers: number;
  /** Nodes of the map this node routes to, itself included. */
  readonly nodes: number;
  readonly commands: string[];
  readonly allowShell: boolean;
}

export interface PeerReply {
  readonly nodeId: NodeId;
  readonly address: string;
  readonly transport: string;
  readonly direction: 'inbound' | 'outbound';
  readonly rttMs: number;
  readonly streams: number;
}

export interface RouteReply {
  readonly nodeId: NodeId;
  readonly nextHop: NodeId;
  readonly cost: number;
  readonly hops: number;
}

export interface TopologyReply {
  /** The node that answered. */
  readonly self: NodeId;
  readonly nodes: NodeId[];
  /** Links both ends announce (the ones routes use), once per direction. */
  readonly links: Array<{ readonly from: NodeId; readonly to: NodeId; readonly cost: number }>;
}

export interface PingRequest {
  readonly target: string;
  /** Tries (1..100, default 3). */
  readonly count?: number;
  /** Pause between tries (0..10000 ms, default 200). */
  readonly intervalMs?: number;
  /** Per try, and for opening the echo stream (1..60000 ms, default 2000). */
  readonly timeoutMs?: number;
}

export interface PingTry {
  readonly seq: number;
  /** Round trip in ms; absent when the try failed. */
  readonly ms?: number;
  readonly error?: { readonly code: string; readonly message: string };
}

export interface PingReply {
  readonly from: NodeId;
  readonly target: NodeId;
  /** Opening the echo stream (a relayed stream includes its end-to-end TLS handshake). */
  readonly setupMs?: number;
  readonly tries: PingTry[];
}

export interface TraceRequest {
  readonly target: string;
  /** Tries per hop (1..10, default 1). */
  readonly count?: number;
  readonly timeoutMs?: number;
}

export interface TraceHop {
  /** 0 is the answering node itself. */
  readonly hop: number;
  readonly nodeId: NodeId;
  /** Route cost from the answering node. */
  readonly cost: number;
  /** Best round trip to this hop over the path; absent when no try succeeded. */
  readonly ms?: number;
  readonly tries: PingTry[];
}

export interface TraceReply {
  readonly from: NodeId;
  readonly target: NodeId;
  readonly hops: TraceHop[];
}

export interface ExecRequest {
  /** The allow-list name of the command. */
  readonly command: string;
  /** Appended to its argv (or $1.. of its script); only for commands with allowArgs. */
  readonly args?: readonly string[];
  /** Lower the host's limit for this run (the host's configured limit is the ceiling). */
  readonly timeoutMs?: number;
}

export type ExecReply = ExecResult;

/** The event sink: pino's Logger fits; anything with these three methods does. */
export interface OpsLogger {
  info(fields: Record<string, unknown>, message?: string): void;
  warn(fields: Record<string, unknown>, message?: string): void;
  error(fields: Record<string, unknown>, message?: string): void;
}

export interface OpsService {
  /** Commands running now. */
  readonly running: number;
  /** Stops serving the ops channels and kills running commands' process groups. */
  close(): Promise<void>;
}

const MAX_REQUEST_BYTES = 64 * 1024;
const MAX_ARGS = 256;
const MAX_ARG_CHARS = 8192;
const ECHO_MAX_BYTES = 64 * 1024;
const ECHO_LIFETIME_MS = 120_000;
const PROBE_BYTES = 8;

// ---- the service --------------------------------------------------------------

/**
 * Serves the ops channels on `node` for `config.operators`. Use validateOpsConfig to build the
 * config from JSON-shaped input. Events go to `logger` (one call per event).
 */
export function serveOps(node: PnetNode, config: OpsConfig, logger?: OpsLogger): OpsService {
  const operators = new Set<string>(config.operators);
  const started = Date.now();
  const version = readVersion();
  const aborts = new Set<AbortController>();
  const runs = new Set<Promise<unknown>>();
  const authorise = ({ remoteNodeId, channel }: { remoteNodeId: NodeId; channel: string }): boolean => {
    if (operators.has(remoteNodeId)) return true;
    logger?.warn({ event: 'ops:denied', nodeId: remoteNodeId, channel }, 'operator not in config');
    return false;
  };

  /** Registers a JSON request handler that never throws (a thrown error would only reset the stream). */
  const serve = (channel: string, handler: (request: Buffer, from: NodeId) => unknown): void => {
    node.handleRequest(
      channel,
      async (request, info) => {
        try {
          return JSON.stringify(await handler(request, info.remoteNodeId));
        } catch (error) {
          const code = error instanceof PnetError ? error.code : 'ERR_HANDLER_FAILED';
          const message = error instanceof Error ? error.message : String(error);
          // Refused commands already have their own exec:refused line.
          if (code !== 'ERR_COMMAND_REFUSED') logger?.warn({ event: 'ops:error', channel, operator: info.remoteNodeId, code, message });
          return JSON.stringify({ error: { code, message } } satisfies ErrorReply);
        }
      },
      { authorise, maxRequestBytes: MAX_REQUEST_BYTES },
    );
  };

  // The asker's own connection (a short-lived CLI node) is left out of peer lists and counts.
  serve(OPS_CHANNELS.info, (_request, from): InfoReply => ({
    nodeId: node.id,
    address: node.address,
    version,
    uptimeMs: Date.now() - started,
    peers: node.peers().filter((peer) => peer.nodeId !== from).length,
    nodes: node.routes().length + 1,
    commands: Object.keys(config.commands).sort(),
    allowShell: config.allowShell,
  }));

  serve(OPS_CHANNELS.peers, (_request, from): PeerReply[] =>
    node.peers().filter((peer) => peer.nodeId !== from).map((peer) => ({
      nodeId: peer.nodeId,
      address: peer.address,
      transport: peer.transport,
      direction: peer.direction,
      rttMs: peer.rttMs,
      streams: peer.streams,
    })),
  );

  serve(OPS_CHANNELS.routes, (): RouteReply[] => node.routes().map(({ nodeId, nextHop, cost, hops }) => ({ nodeId, nextHop, cost, hops })));

  serve(OPS_CHANNELS.topology, (): TopologyReply => twoWayTopology(node));

  serve(OPS_CHANNELS.ping, async (request): Promise<PingReply> => {
    const body = parseObject(request);
    const target = targetOf(body['target']);
    const count = intField(body, 'count', 3, 1, 100);
    const intervalMs = intField(body, 'intervalMs', 200, 0, 10_000);
    const timeoutMs = intField(body, 'timeoutMs', 2000, 1, 60_000);
    const { setupMs, tries } = await probe(node, target, count, intervalMs, timeoutMs);
    return { from: node.id, target, ...(setupMs !== undefined ? { setupMs } : {}), tries };
  });

  serve(OPS_CHANNELS.trace, async (request): Promise<TraceReply> => {
    const body = parseObject(request);
    const target = targetOf(body['target']);
    const count = intField(body, 'count', 1, 1, 10);
    const timeoutMs = intField(body, 'timeoutMs', 2000, 1, 60_000);
    const path = node.path(target);
    if (path === undefined) throw new PnetError('UNREACHABLE', `${node.id} has no route to ${target}`);
    const costs = new Map(node.routes().map((route) => [route.nodeId, route.cost]));
    // Every hop is probed end to end over the path, like traceroute (RTT grows with distance);
    // all at once, so a trace takes one probe's time whatever the path length.
    const hops = await Promise.all(
      path.map(async (nodeId, hop): Promise<TraceHop> => {
        if (hop === 0) return { hop, nodeId, cost: 0, ms: 0, tries: [] };
        const { tries } = await probe(node, nodeId, count, 0, timeoutMs);
        const times = tries.flatMap((x) => (x.ms !== undefined ? [x.ms] : []));
        return { hop, nodeId, cost: costs.get(nodeId) ?? NaN, ...(times.length > 0 ? { ms: Math.min(...times) } : {}), tries };
      }),
    );
    return { from: node.id, target, hops };
  });

  serve(OPS_CHANNELS.exec, async (request, operator): Promise<ExecReply> => {
    const body = parseObject(request);
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
    if (aborts.size >= config.maxConcurrentExec) throw new PnetError('OVERLOADED', `${node.id} is running ${aborts.size} commands already`);
    // The operator may ask for less time than the host allows, never more.
    const timeoutMs = Math.min(spec.timeoutMs, intField(body, 'timeoutMs', spec.timeoutMs, 1, MAX_TIMEOUT_MS));
    const [file, ...fixed] = spec.script !== undefined ? ['/bin/sh', '-c', spec.script, name] : spec.argv;
    logger?.info({ event: 'exec:start', operator, command: name, args, timeoutMs });
    const abort = new AbortController();
    aborts.add(abort);
    const run = runCommand({ file: file!, args: [...fixed, ...args], timeoutMs, maxOutputBytes: spec.maxOutputBytes, ...(spec.cwd !== undefined ? { cwd: spec.cwd } : {}) }, abort.signal);
    runs.add(run);
    try {
      const result = await run;
      logger?.info({
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
  });

  // Echo for ping/trace: the daemon probing this node is a member of the map, not an operator.
  node.handle(
    OPS_CHANNELS.echo,
    (stream) => echo(stream),
    { authorise: ({ remoteNodeId }) => operators.has(remoteNodeId) || node.path(remoteNodeId) !== undefined },
  );

  return {
    get running() {
      return aborts.size;
    },
    async close() {
      for (const channel of Object.values(OPS_CHANNELS)) node.unhandle(channel);
      for (const abort of aborts) abort.abort();
      await Promise.allSettled([...runs]);
    },
  };
}

/** The map without one-way links: a short-lived operator connection announced by one side only is not part of it. */
function twoWayTopology(node: PnetNode): TopologyReply {
  const { links } = node.topology();
  const announced = new Set(links.map((link) => `${link.from} ${link.to}`));
  const kept = links.filter((link) => announced.has(`${link.to} ${link.from}`));
  const nodes = new Set<NodeId>([node.id]);
  for (const route of node.routes()) nodes.add(route.nodeId);
  for (const link of kept) {
    nodes.add(link.from);
    nodes.add(link.to);
  }
  return { self: node.id, nodes: [...nodes], links: kept };
}

/** Echoes what it gets, bounded in bytes and lifetime. */
function echo(stream: PnetStream): void {
  let total = 0;
  const timer = setTimeout(() => stream.destroy(), ECHO_LIFETIME_MS);
  timer.unref();
  stream.on('data', (chunk: Buffer) => {
    total += chunk.length;
    if (total > ECHO_MAX_BYTES) stream.reset(1);
    else stream.write(chunk);
  });
  stream.on('end', () => stream.end());
  stream.on('error', () => undefined);
  stream.on('close', () => clearTimeout(timer));
}

/** Opens one echo stream to `target` and times `count` round trips over it. */
async function probe(node: PnetNode, target: NodeId, count: number, intervalMs: number, timeoutMs: number): Promise<{ setupMs?: number; tries: PingTry[] }> {
  const tries: PingTry[] = [];
  if (target === node.id) {
    for (let seq = 1; seq <= count; seq++) tries.push({ seq, ms: 0 });
    return { setupMs: 0, tries };
  }
  const openedAt = performance.now();
  let stream: PnetStream;
  try {
    stream = await withTimeout(node.openStream(target, OPS_CHANNELS.echo), timeoutMs, `opening echo to ${target}`);
  } catch (error) {
    const failure = asError(error);
    for (let seq = 1; seq <= count; seq++) tries.push({ seq, error: failure });
    return { tries };
  }
  const setupMs = round(performance.now() - openedAt);
  const reader = new ExactReader(stream);
  try {
    for (let seq = 1; seq <= count; seq++) {
      if (seq > 1 && intervalMs > 0) await new Promise((resolve) => setTimeout(resolve, intervalMs));
      const probeBytes = Buffer.alloc(PROBE_BYTES);
      probeBytes.writeUInt32BE(seq, 0);
      const sentAt = performance.now();
      try {
        stream.write(probeBytes);
        const back = await withTimeout(reader.read(PROBE_BYTES), timeoutMs, `echo ${seq} from ${target}`);
        if (!back.equals(probeBytes)) throw new PnetError('BAD_FRAME', `echo ${seq} from ${target} came back altered`);
        tries.push({ seq, ms: round(performance.now() - sentAt) });
      } catch (error) {
        tries.push({ seq, error: asError(error) });
        if (reader.failed) {
          for (let rest = seq + 1; rest <= count; rest++) tries.push({ seq: rest, error: asError(error) });
          break;
        }
      }
    }
  } finally {
    stream.end();
    stream.destroy();
  }
  return { setupMs, tries };
}

/** Reads exact byte counts from a stream (echoes can arrive split or merged). */
class ExactReader {
  private buffered = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  constructor(stream: PnetStream) {
    stream.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.waiter?.();
    });
    const fail = (error?: Error): void => {
      this.failure ??= error ?? new PnetError('ERR_STREAM_RESET', 'echo stream ended');
      this.waiter?.();
    };
    stream.on('error', fail);
    stream.on('end', () => fail());
    stream.on('close', () => fail());
  }
  get failed(): boolean {
    return this.failure !== undefined;
  }
  async read(bytes: number): Promise<Buffer> {
    while (this.buffered.length < bytes) {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
    const out = this.buffered.subarray(0, bytes);
    this.buffered = this.buffered.subarray(bytes);
    return out;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PnetError('ERR_REQUEST_TIMEOUT', `${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function asError(error: unknown): { code: string; message: string } {
  if (error instanceof PnetError) return { code: error.code, message: error.message };
  const err = error as { code?: unknown; message?: unknown };
  return { code: typeof err?.code === 'string' ? err.code : 'ERR_HANDLER_FAILED', message: typeof err?.message === 'string' ? err.message : String(error) };
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

function parseObject(request: Buffer): Record<string, unknown> {
  let body: unknown;
  try {
    body = request.length === 0 ? {} : JSON.parse(request.toString('utf8'));
  } catch {
    throw new PnetError('BAD_FRAME', 'ops request is not JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new PnetError('BAD_FRAME', 'ops request must be a JSON object');
  return body as Record<string, unknown>;
}

function targetOf(value: unknown): NodeId {
  if (typeof value !== 'string') throw new PnetError('ERR_BAD_OPTION', 'request needs "target": a node id');
  return parseNodeId(value);
}

function intField(body: Record<string, unknown>, key: string, fallback: number, min: number, max: number): number {
  const value = body[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new PnetError('ERR_BAD_OPTION', `"${key}" must be an integer in ${min}..${max}`);
  }
  return value;
}

function argsOf(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > MAX_ARGS || !value.every((arg) => typeof arg === 'string' && arg.length <= MAX_ARG_CHARS && !arg.includes('\0'))) {
    throw new PnetError('ERR_BAD_OPTION', `"args" must be at most ${MAX_ARGS} strings of at most ${MAX_ARG_CHARS} characters, without NUL`);
  }
  return value as string[];
}
