/**
 * ops/perf (`pnet perf NODE`): like iperf3 across the pnet network, from the daemon to any node:
 * round trips on an echo stream (percentiles), then bytes sent to the far node's ops/sink
 * (upload) and bytes it sends back (download), on the route the daemon uses (direct or relayed).
 * ops/sink is the far end: it discards and counts, or sends what is asked, bounded.
 */
import { PnetError } from '../../index.js';
import type { NodeId, PnetNode, PnetStream } from '../../index.js';
import { percentile } from '../output.js';
import { intField, parseObject, targetOf } from './context.js';
import type { OpsContext, OpsHandler } from './context.js';
import { probe } from './probe.js';
import { OPS_CHANNELS } from './wire.js';
import type { PerfDirection, PerfReply } from './wire.js';

/** Bytes one sink stream takes or sends at most. */
export const MAX_PERF_BYTES = 256 * 1024 * 1024;
/** Sink streams served at once (more are reset): perf is for an operator, not a load generator. */
const MAX_SINKS = 4;
const SINK_LIFETIME_MS = 60_000;
const CHUNK = 64 * 1024;

/** The far end of perf: `mode: discard` counts what comes and answers the count (8 bytes); `mode: source` sends `bytes` bytes. */
export function serveSink(node: PnetNode, authorise: (info: { remoteNodeId: NodeId }) => boolean): void {
  let active = 0;
  node.handle(
    OPS_CHANNELS.sink,
    (stream, info) => {
      if (active >= MAX_SINKS) return stream.reset(1);
      active++;
      const timer = setTimeout(() => stream.destroy(), SINK_LIFETIME_MS);
      timer.unref();
      stream.on('close', () => {
        active--;
        clearTimeout(timer);
      });
      stream.on('error', () => undefined);
      const bytes = Math.min(MAX_PERF_BYTES, Math.max(0, Number.parseInt(info.metadata['bytes'] ?? '0', 10) || 0));
      if (info.metadata['mode'] === 'source') void send(stream, bytes);
      else discard(stream);
    },
    { authorise },
  );
}

function discard(stream: PnetStream): void {
  let total = 0;
  stream.on('data', (chunk: Buffer) => {
    total += chunk.length;
    if (total > MAX_PERF_BYTES) stream.reset(1);
  });
  stream.on('end', () => {
    const count = Buffer.alloc(8);
    count.writeBigUInt64BE(BigInt(total));
    stream.end(count);
  });
}

async function send(stream: PnetStream, bytes: number): Promise<void> {
  await sendAll(stream, bytes);
  stream.resume(); // the opener sends nothing; let its end arrive
}

/** ops/perf: RTT percentiles and throughput both ways between this node and `target`. */
export function perfHandler({ node }: OpsContext): OpsHandler {
  return async (request): Promise<PerfReply> => {
    const body = parseObject(request);
    const target = targetOf(body['target']);
    const bytes = intField(body, 'bytes', 8 * 1024 * 1024, 1, MAX_PERF_BYTES);
    const count = intField(body, 'count', 50, 1, 1000);
    const timeoutMs = intField(body, 'timeoutMs', 30_000, 1, 600_000);
    if (target === node.id) throw new PnetError('ERR_BAD_OPTION', 'perf to the node itself measures nothing: name another node');
    const path = node.path(target);
    const { tries } = await probe(node, target, count, 0, Math.min(timeoutMs, 5000));
    const times = tries.flatMap((t) => (t.ms === undefined ? [] : [t.ms]));
    if (times.length === 0) throw new PnetError('UNREACHABLE', `no echo from ${target}: ${tries[0]?.error?.message ?? 'no answer'}`);
    const up = await transfer(node, target, 'discard', bytes, timeoutMs);
    const down = await transfer(node, target, 'source', bytes, timeoutMs);
    const peer = node.peers().find((p) => p.nodeId === target);
    return {
      from: node.id,
      target,
      path: path ?? [node.id, target],
      way: peer === undefined ? 'relayed' : peer.transport === 'relay' ? 'relayed' : 'direct',
      transport: peer?.transport ?? 'relay',
      rtt: { samples: times.length, lost: tries.length - times.length, minMs: Math.min(...times), p50Ms: percentile(times, 50)!, p90Ms: percentile(times, 90)!, p99Ms: percentile(times, 99)!, maxMs: Math.max(...times) },
      up,
      down,
    };
  };
}

/** One stream to the sink: bytes up (discard) or down (source), timed from the first byte sent or asked to the last byte confirmed. */
async function transfer(node: PnetNode, target: NodeId, mode: 'discard' | 'source', bytes: number, timeoutMs: number): Promise<PerfDirection> {
  const started = performance.now();
  const stream = await node.openStream(target, OPS_CHANNELS.sink, { metadata: { mode, bytes: String(bytes) }, timeoutMs });
  const timer = setTimeout(() => stream.destroy(new PnetError('ERR_REQUEST_TIMEOUT', `perf ${mode} to ${target} did not finish within ${timeoutMs} ms`)), timeoutMs);
  try {
    const received = await new Promise<Buffer[]>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let total = 0;
      stream.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (mode === 'discard') chunks.push(chunk);
        else if (total > bytes) stream.destroy(new PnetError('BAD_FRAME', 'the sink sent more than asked'));
      });
      stream.on('end', () => resolve(mode === 'discard' ? chunks : [Buffer.alloc(0), Buffer.from(String(total))]));
      stream.on('error', reject);
      stream.on('close', () => reject(new PnetError('ERR_STREAM_RESET', `perf ${mode} stream to ${target} closed early`)));
      if (mode === 'discard') void sendAll(stream, bytes);
      else stream.end();
    });
    const ms = performance.now() - started;
    const moved = mode === 'discard' ? Number(Buffer.concat(received).readBigUInt64BE(0)) : Number(received[1]!.toString());
    if (moved !== bytes) throw new PnetError('BAD_FRAME', `perf ${mode}: ${moved} of ${bytes} bytes arrived`);
    return { bytes, ms: Math.round(ms * 10) / 10, mbitPerS: Math.round(((bytes * 8) / (ms / 1000) / 1e6) * 10) / 10 };
  } finally {
    clearTimeout(timer);
    stream.destroy();
  }
}

async function sendAll(stream: PnetStream, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(CHUNK);
  let left = bytes;
  while (left > 0 && !stream.destroyed) {
    const piece = left >= CHUNK ? chunk : chunk.subarray(0, left);
    left -= piece.length;
    if (!stream.write(piece)) await new Promise((resolve) => stream.once('drain', resolve).once('close', resolve));
  }
  stream.end();
}
