// Shared helpers for the bench children: timing, byte counting on Node
// streams and WHATWG streams, and peer-certificate checks for the baselines.
import { X509Certificate } from 'node:crypto';

export const KiB = 1024;
export const MiB = 1024 * 1024;

export const now = () => performance.now();

/** Percentile (0..100) of an array of numbers, nearest-rank on a sorted copy. */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function median(values) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A payload of `size` bytes with a recognisable pattern (never mutated after creation). */
export function payload(size, seed = 0) {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

/**
 * Counts bytes arriving on a Node Readable and lets a caller wait until a
 * running total is reached or the stream ends. One waiter at a time: the
 * benchmarks are strictly request/response on each stream.
 */
export class ByteCounter {
  constructor(stream, { keep = false } = {}) {
    this.got = 0;
    this.want = 0;
    this.ended = false;
    this.error = null;
    this.chunks = keep ? [] : null;
    this.resolve = null;
    this.reject = null;
    this.waitEnd = false;
    stream.on('data', (chunk) => {
      this.got += chunk.length;
      if (this.chunks) this.chunks.push(chunk);
      if (this.resolve && !this.waitEnd && this.got >= this.want) this.#settle();
    });
    stream.on('end', () => {
      this.ended = true;
      if (!this.resolve) return;
      if (this.waitEnd || this.got >= this.want) this.#settle();
      else this.#fail(new Error(`stream ended after ${this.got} of ${this.want} bytes`));
    });
    stream.on('error', (error) => {
      this.error = error;
      if (this.reject) this.#fail(error);
    });
  }

  #fail(error) {
    const reject = this.reject;
    this.resolve = this.reject = null;
    reject(error);
  }

  #settle() {
    const resolve = this.resolve;
    this.resolve = this.reject = null;
    resolve();
  }

  /** Resolves once `n` more bytes than previously awaited have arrived. */
  wait(n) {
    this.want += n;
    if (this.error) return Promise.reject(this.error);
    if (this.got >= this.want) return Promise.resolve();
    if (this.ended) return Promise.reject(new Error(`stream ended after ${this.got} of ${this.want} bytes`));
    this.waitEnd = false;
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Resolves at the end of the stream with the total byte count. */
  async end() {
    if (this.error) throw this.error;
    if (!this.ended) {
      this.waitEnd = true;
      await new Promise((resolve, reject) => {
        this.resolve = resolve;
        this.reject = reject;
      });
    }
    return this.got;
  }

  bytes() {
    return Buffer.concat(this.chunks ?? []);
  }
}

/** Reads a Node Readable to its end; resolves with the byte count. */
export function drainCount(stream) {
  return new ByteCounter(stream).end();
}

/** Writes `total` bytes of `chunk`-sized pieces to a Node Writable, honouring backpressure, then ends it. */
export async function writeBulk(stream, chunk, total) {
  let sent = 0;
  while (sent < total) {
    const n = Math.min(chunk.length, total - sent);
    const ok = stream.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    sent += n;
    if (!ok) {
      await new Promise((resolve, reject) => {
        const onDrain = () => {
          stream.off('error', onError);
          resolve();
        };
        const onError = (error) => {
          stream.off('drain', onDrain);
          reject(error);
        };
        stream.once('drain', onDrain);
        stream.once('error', onError);
      });
    }
  }
  stream.end();
}

/**
 * The public key of a peer certificate (DER) after checking that it is a
 * well-formed, currently valid, self-signed certificate; throws otherwise.
 * This is what pnet does for its node certificates (plus deriving the node
 * id), so the baselines pay a comparable verification cost.
 */
export function verifySelfSigned(der) {
  const cert = new X509Certificate(der);
  const t = Date.now();
  if (t < Date.parse(cert.validFrom) || t > Date.parse(cert.validTo)) throw new Error('certificate not valid now');
  if (!cert.verify(cert.publicKey)) throw new Error('certificate signature does not verify');
  return cert.publicKey.export({ format: 'der', type: 'spki' });
}

/** SPKI DER of the key in a PEM certificate (what a pinned peer must present). */
export function spkiOfPem(certPem) {
  return new X509Certificate(certPem).publicKey.export({ format: 'der', type: 'spki' });
}

/** Resolves after `ms`, unref'd. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref?.());

/** Rejects with a timeout error if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Runs `count` sequential connection cycles; `cycle(phase)` calls phase() after
 * its connect and after its echo, so each cycle splits into connect, echo and
 * close times.
 */
export async function connectCycles(count, cycle) {
  const total = new Float64Array(count);
  const connect = new Float64Array(count);
  const echo = new Float64Array(count);
  const close = new Float64Array(count);
  const t0 = now();
  for (let i = 0; i < count; i++) {
    const marks = [now()];
    await cycle(() => marks.push(now()));
    const end = now();
    total[i] = end - marks[0];
    connect[i] = marks[1] - marks[0];
    echo[i] = marks[2] - marks[1];
    close[i] = end - marks[2];
  }
  const s = (now() - t0) / 1000;
  return {
    connps: count / s,
    p50ms: percentile(total, 50),
    p50ConnectMs: percentile(connect, 50),
    p50EchoMs: percentile(echo, 50),
    p50CloseMs: percentile(close, 50),
  };
}

/** Runs `op` `count` times in a row; the rate per second and the p50/p99 latency in µs. */
export async function timeSequential(count, op) {
  const lat = new Float64Array(count);
  const t0 = now();
  for (let i = 0; i < count; i++) {
    const t = now();
    await op();
    lat[i] = now() - t;
  }
  return { rate: count / ((now() - t0) / 1000), p50us: percentile(lat, 50) * 1000, p99us: percentile(lat, 99) * 1000 };
}

/**
 * The timed part of the direct-stream figures, the same for every system: each adapter passes
 * how it does the work (`bulk(chunk)` writes params.bytes and ends the stream, `counter` counts
 * the echoed bytes, `echoOnce`, `request` for one new-stream request, `connectEchoClose`).
 * Returns undefined for figures the adapter measures itself (memory).
 */
export async function measureFigure(figure, params, { bulk, counter, echoOnce, request, connectEchoClose }) {
  switch (figure) {
    case 'throughput': {
      const t0 = now();
      const ack = counter.wait(1);
      await bulk(payload(64 * KiB));
      await ack;
      return { mibps: params.bytes / MiB / ((now() - t0) / 1000) };
    }
    case 'echo': {
      const { rate, p50us, p99us } = await timeSequential(params.count, () => echoOnce());
      return { rtps: rate, p50us, p99us };
    }
    case 'stream-per-request': {
      const { rate, p50us, p99us } = await timeSequential(params.count, () => request());
      return { opsps: rate, p50us, p99us };
    }
    case 'parallel': {
      // Untimed bursts first: one burst after a 10-stream warm-up left much of the stream path unoptimised by V8.
      for (let i = 0; i < (params.warmupRounds ?? 0); i++) await Promise.all(Array.from({ length: params.streams }, () => request()));
      const t0 = now();
      await Promise.all(Array.from({ length: params.streams }, () => request()));
      const ms = now() - t0;
      return { totalMs: ms, mibps: (params.streams * params.size) / MiB / (ms / 1000) };
    }
    case 'connect':
      return connectCycles(params.count, connectEchoClose);
    default:
      return undefined;
  }
}
