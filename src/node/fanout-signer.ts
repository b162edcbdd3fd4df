/**
 * Ed25519 checks of fan-out answers (the origin checks each answer) off the event loop's thread.
 * Targets sign their one answer on the event loop, so that it leaves in the turn that carries its
 * leg's ACK (docs/FANOUT.md). A turn with few checks uses node:crypto's callback form (libuv's
 * thread pool, a job each); a turn with many, as at an origin checking thousands of answers,
 * sends them all in a few messages to one worker thread per process: one wake-up per batch
 * instead of a pool job, its wake-ups and its lock traffic per check, and one busy thread beside
 * the event loop instead of four (docs/FANOUT.md, "10,000 nodes").
 */
import { Worker } from 'node:worker_threads';

/** Jobs in one turn from which the worker is worth starting (it costs a thread and ~40 ms once). */
const WORKER_MIN_JOBS = 32;
/** Jobs per message: the first answers come back while later ones are checked. */
const BATCH_JOBS = 256;
const KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;
/** Public keys the worker keeps imported: a 10,000-node origin checks as many. */
const KEY_CACHE_LIMIT = 16_384;

// The worker: decodes a batch (per job: a raw 32-byte public key, data length, data, the
// signature) and answers one byte per job (1 if valid).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createPublicKey, verify } = require('node:crypto');
// Keys imported as JWK (DER goes through OpenSSL's decoders: ~10x slower).
const cache = new Map();
function keyOf(bytes) {
  const id = bytes.toString('latin1');
  let key = cache.get(id);
  if (key === undefined) {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: bytes.toString('base64url') }, format: 'jwk' });
    if (cache.size >= ${KEY_CACHE_LIMIT}) cache.delete(cache.keys().next().value);
    cache.set(id, key);
  }
  return key;
}
parentPort.on('message', ({ id, count, buffer }) => {
  const input = Buffer.from(buffer);
  const out = Buffer.alloc(count);
  let o = 0;
  for (let i = 0; i < count; i++) {
    const keyBytes = input.subarray(o, o + ${KEY_BYTES});
    const dataLength = input.readUInt32BE(o + ${KEY_BYTES});
    const data = input.subarray(o + ${KEY_BYTES} + 4, o + ${KEY_BYTES} + 4 + dataLength);
    o += ${KEY_BYTES} + 4 + dataLength;
    const signature = input.subarray(o, o + ${SIGNATURE_BYTES});
    o += ${SIGNATURE_BYTES};
    try {
      out[i] = verify(null, data, keyOf(keyBytes), signature) ? 1 : 0;
    } catch {
      out[i] = 0;
    }
  }
  parentPort.postMessage({ id, out: out.buffer }, [out.buffer]);
});
`;

interface Job {
  /** A raw 32-byte public key. */
  readonly key: Uint8Array;
  readonly data: Uint8Array;
  readonly signature: Uint8Array;
  /** The same check on libuv's thread pool (few jobs, or no worker). */
  readonly pool: () => void;
  /** The worker's answer. */
  readonly done: (valid: boolean) => void;
}

class BatchSigner {
  private pending: Job[] = [];
  private scheduled = false;
  private worker: Worker | undefined;
  /** The worker failed or exited: everything goes to the thread pool from then on. */
  private broken = false;
  private readonly inFlight = new Map<number, Job[]>();
  private nextBatch = 0;
  /** Batches sent to the worker, and jobs (counted for tests and the bench). */
  batches = 0;
  workerJobs = 0;

  add(job: Job): void {
    this.pending.push(job);
    if (!this.scheduled) {
      this.scheduled = true;
      // After this turn's answers have all arrived: one batch for them, back before the next turn's I/O.
      setTimeout(this.flush, 0);
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const jobs = this.pending;
    this.pending = [];
    if (this.broken || (this.worker === undefined && jobs.length < WORKER_MIN_JOBS)) {
      for (const job of jobs) job.pool();
      return;
    }
    const worker = this.worker ?? this.start();
    if (worker === undefined) {
      for (const job of jobs) job.pool();
      return;
    }
    for (let i = 0; i < jobs.length; i += BATCH_JOBS) this.send(worker, jobs.slice(i, i + BATCH_JOBS));
    worker.ref();
  };

  private send(worker: Worker, jobs: Job[]): void {
    let size = 0;
    for (const job of jobs) size += KEY_BYTES + 4 + job.data.length + SIGNATURE_BYTES;
    const buffer = Buffer.allocUnsafeSlow(size);
    let o = 0;
    for (const job of jobs) {
      buffer.set(job.key, o);
      o = buffer.writeUInt32BE(job.data.length, o + KEY_BYTES);
      buffer.set(job.data, o);
      buffer.set(job.signature, o + job.data.length);
      o += job.data.length + SIGNATURE_BYTES;
    }
    const id = this.nextBatch++;
    this.inFlight.set(id, jobs);
    this.batches++;
    this.workerJobs += jobs.length;
    worker.postMessage({ id, count: jobs.length, buffer: buffer.buffer }, [buffer.buffer]);
  }

  private start(): Worker | undefined {
    try {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.on('message', (message: { id: number; out: ArrayBuffer }) => this.answered(message.id, Buffer.from(message.out)));
      worker.on('error', () => this.fail());
      worker.on('exit', () => this.fail());
      worker.unref();
      this.worker = worker;
      return worker;
    } catch {
      this.broken = true;
      return undefined;
    }
  }

  private answered(id: number, out: Buffer): void {
    const jobs = this.inFlight.get(id);
    if (jobs === undefined) return;
    this.inFlight.delete(id);
    // Idle: the worker must not keep the process alive.
    if (this.inFlight.size === 0) this.worker?.unref();
    for (let i = 0; i < jobs.length; i++) jobs[i]!.done(out[i] === 1);
  }

  /** The worker is gone: its jobs and all later ones run on the thread pool. */
  private fail(): void {
    if (this.broken) return;
    this.broken = true;
    this.worker = undefined;
    const jobs = [...this.inFlight.values()].flat();
    this.inFlight.clear();
    for (const job of jobs) job.pool();
  }
}

const signer = new BatchSigner();

/** Batches and jobs the worker took so far in this process. */
export function signerCounters(): { batches: number; workerJobs: number } {
  return { batches: signer.batches, workerJobs: signer.workerJobs };
}

/**
 * Checks an Ed25519 signature by a raw 32-byte public key, off the event loop's thread; `pool`
 * is the same check on libuv's thread pool (few checks this turn, or no worker). Never rejects.
 */
export function verifyOffThread(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array, pool: () => Promise<boolean>): Promise<boolean> {
  if (publicKey.length !== KEY_BYTES || signature.length !== SIGNATURE_BYTES) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const onPool = (): void => void pool().then(resolve, () => resolve(false));
    signer.add({ key: publicKey, data, signature, pool: onPool, done: resolve });
  });
}
