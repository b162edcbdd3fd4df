/**
 * Ed25519 for fan-out answers off the event loop's thread: the origin's checks of every answer
 * (targets sign their one answer on the event loop since session 9, so that it leaves in the turn
 * that carries its leg's ACK; signOffThread stays for callers with many). A turn with few uses node:crypto's callback form (libuv's
 * thread pool, a job each); a turn with many, as at an origin checking thousands of answers or
 * in one process playing thousands of targets, sends them all in a few messages to one worker
 * thread per process: one wake-up per batch instead of a pool job, its wake-ups and its lock
 * traffic per signature, and one busy thread beside the event loop instead of four
 * (docs/FANOUT.md, "10,000 nodes").
 */
import { sign, type KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** Jobs in one turn from which the worker is worth starting (it costs a thread and ~40 ms once). */
const WORKER_MIN_JOBS = 32;
/** Jobs per message: the first answers come back while later ones are signed. */
const BATCH_JOBS = 256;
const SIGN = 0;
const VERIFY = 1;
const SIGNATURE_BYTES = 64;
/** Keys the worker keeps imported, per kind: a 10,000-node process signs with 10,000 keys and checks as many. */
const KEY_CACHE_LIMIT = 16_384;

// The worker: decodes a batch (kind, key length, key: the private key's 32 bytes and its public
// key's, or a raw public key; data length, data, and for a check the signature), answers 64 bytes
// per job (a signature, or byte 0 = 1 if valid).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createPrivateKey, createPublicKey, sign, verify } = require('node:crypto');
// Keys imported as JWK (DER goes through OpenSSL's decoders: ~10x slower), one cache per kind.
const caches = [new Map(), new Map()];
function keyOf(kind, bytes) {
  const cache = caches[kind];
  const id = bytes.toString('latin1');
  let key = cache.get(id);
  if (key === undefined) {
    key = kind === ${SIGN}
      ? createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: bytes.toString('base64url', 0, 32), x: bytes.toString('base64url', 32, 64) }, format: 'jwk' })
      : createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: bytes.toString('base64url') }, format: 'jwk' });
    if (cache.size >= ${KEY_CACHE_LIMIT}) cache.delete(cache.keys().next().value);
    cache.set(id, key);
  }
  return key;
}
parentPort.on('message', ({ id, count, buffer }) => {
  const input = Buffer.from(buffer);
  const out = Buffer.alloc(count * ${SIGNATURE_BYTES});
  let o = 0;
  for (let i = 0; i < count; i++) {
    const kind = input[o];
    const keyLength = input[o + 1];
    const keyBytes = input.subarray(o + 2, o + 2 + keyLength);
    o += 2 + keyLength;
    const dataLength = input.readUInt32BE(o);
    const data = input.subarray(o + 4, o + 4 + dataLength);
    o += 4 + dataLength;
    const signature = kind === ${SIGN} ? undefined : input.subarray(o, o + ${SIGNATURE_BYTES});
    if (signature !== undefined) o += ${SIGNATURE_BYTES};
    try {
      if (signature === undefined) sign(null, data, keyOf(kind, keyBytes)).copy(out, i * ${SIGNATURE_BYTES});
      else out[i * ${SIGNATURE_BYTES}] = verify(null, data, keyOf(kind, keyBytes), signature) ? 1 : 0;
    } catch {
      out[i * ${SIGNATURE_BYTES}] = 0;
      out[i * ${SIGNATURE_BYTES} + 1] = 0xff;
    }
  }
  parentPort.postMessage({ id, out: out.buffer }, [out.buffer]);
});
`;

interface Job {
  readonly kind: typeof SIGN | typeof VERIFY;
  /** A private key's 32 bytes then its public key's (sign), or a raw 32-byte public key (verify): read only for the worker. */
  readonly key: () => Uint8Array;
  readonly data: Uint8Array;
  readonly signature: Uint8Array | undefined;
  /** The same job on libuv's thread pool (few jobs, or no worker). */
  readonly pool: () => void;
  /** 64 result bytes from the worker. */
  readonly done: (result: Buffer) => void;
}

/** Private keys' raw bytes (private then public), exported once per key and only for the worker. */
const rawOf = new WeakMap<KeyObject, Buffer>();

function rawKey(key: KeyObject): Buffer {
  let raw = rawOf.get(key);
  if (raw === undefined) {
    const jwk = key.export({ format: 'jwk' });
    raw = Buffer.concat([Buffer.from(jwk.d ?? '', 'base64url'), Buffer.from(jwk.x ?? '', 'base64url')]);
    rawOf.set(key, raw);
  }
  return raw;
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
      // A timer, not an immediate: it runs before the next turn's I/O, so the answers come back in
      // that turn's poll phase and are written before the driver's ACK-only transmits of that turn
      // (scheduler.ts): the target's answer carries its ACK, as on the thread pool.
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
    const keys = jobs.map((job) => job.key());
    let size = 0;
    for (const [i, job] of jobs.entries()) size += 2 + keys[i]!.length + 4 + job.data.length + (job.kind === VERIFY ? SIGNATURE_BYTES : 0);
    const buffer = Buffer.allocUnsafeSlow(size);
    let o = 0;
    for (const [i, job] of jobs.entries()) {
      const key = keys[i]!;
      buffer[o] = job.kind;
      buffer[o + 1] = key.length;
      buffer.set(key, o + 2);
      o = buffer.writeUInt32BE(job.data.length, o + 2 + key.length);
      buffer.set(job.data, o);
      o += job.data.length;
      if (job.signature !== undefined) {
        buffer.set(job.signature, o);
        o += SIGNATURE_BYTES;
      }
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
    for (let i = 0; i < jobs.length; i++) jobs[i]!.done(out.subarray(i * SIGNATURE_BYTES, (i + 1) * SIGNATURE_BYTES));
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

/** Signs `data` with an Ed25519 private key, off the event loop's thread. */
export function signOffThread(key: KeyObject, data: Uint8Array): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const pool = (): void => sign(null, data, key, (error, signature) => (error ? reject(error) : resolve(signature)));
    const done = (result: Buffer): void => {
      // A failed signature in the worker (byte 1 = 0xff with byte 0 = 0 is also a valid signature's start): redone on the pool.
      if (result[0] === 0 && result[1] === 0xff) pool();
      else resolve(result);
    };
    signer.add({ kind: SIGN, key: () => rawKey(key), data, signature: undefined, pool, done });
  });
}

/**
 * Checks an Ed25519 signature by a raw 32-byte public key, off the event loop's thread; `pool`
 * is the same check on libuv's thread pool (few checks this turn, or no worker). Never rejects.
 */
export function verifyOffThread(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array, pool: () => Promise<boolean>): Promise<boolean> {
  if (publicKey.length !== 32 || signature.length !== SIGNATURE_BYTES) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const onPool = (): void => void pool().then(resolve, () => resolve(false));
    signer.add({ kind: VERIFY, key: () => publicKey, data, signature, pool: onPool, done: (result) => resolve(result[0] === 1) });
  });
}
