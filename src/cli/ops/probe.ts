/** Round trips over an echo stream: what ping and trace measure. */
import { PnetError } from '../../index.js';
import type { NodeId, PnetNode, PnetStream } from '../../index.js';
import { OPS_CHANNELS } from './wire.js';
import type { PingTry } from './wire.js';

const PROBE_BYTES = 8;

/** Opens one echo stream to `target` and times `count` round trips over it. */
export async function probe(node: PnetNode, target: NodeId, count: number, intervalMs: number, timeoutMs: number): Promise<{ setupMs?: number; tries: PingTry[] }> {
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
