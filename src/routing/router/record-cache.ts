/**
 * Verified-record interning for many routers in one process.
 *
 * A router decodes and verifies every record version it accepts. In a
 * simulation a thousand routers accept the same thousand records, so doing it
 * in each would cost a million Ed25519 verifications (~110 us each) and a
 * million decoded copies. A SharedRecordCache handed to all of them keeps one
 * decoded, verified, immutable record per signature: a router that meets the
 * exact same bytes again gets the shared object. Only records that decoded
 * AND verified are stored, and a hit requires byte-for-byte equality of the
 * whole record, so answers are the same as decoding and verifying afresh.
 *
 * A single real node has no use for it (it sees each version once).
 *
 * Only the newest version of each origin's fragment is kept: a router never takes an older one
 * where it has a newer, and under churn every republication is a new version, so keeping them
 * all filled the cache with dead ones (~3 a second per soak worker, each ~8 KiB: issue 15).
 */
import { Buffer } from 'node:buffer';
import { SIGNATURE_BYTES, type LinkStateRecord } from './codec.js';

export interface RecordCache {
  /** The verified record with exactly these bytes, if known. */
  get(bytes: Buffer): LinkStateRecord | undefined;
  /** Remembers a record that decoded and verified. */
  add(record: LinkStateRecord): void;
}

export class SharedRecordCache implements RecordCache {
  readonly #limit: number;
  readonly #bySignature = new Map<string, LinkStateRecord>();
  /** The signature of the version kept, by origin and fragment. */
  readonly #newest = new Map<string, string>();
  hits = 0;
  misses = 0;

  constructor(limit = 1 << 18) {
    this.#limit = limit;
  }

  get size(): number {
    return this.#bySignature.size;
  }

  get(bytes: Buffer): LinkStateRecord | undefined {
    const rec = this.#bySignature.get(bytes.toString('latin1', bytes.length - SIGNATURE_BYTES));
    if (rec !== undefined && bytes.equals(rec.bytes)) {
      this.hits++;
      return rec;
    }
    this.misses++;
    return undefined;
  }

  add(record: LinkStateRecord): void {
    const b = record.bytes;
    const key = Buffer.from(b.buffer, b.byteOffset + b.length - SIGNATURE_BYTES, SIGNATURE_BYTES).toString('latin1');
    const slot = `${record.origin}/${record.fragment}`;
    const kept = this.#newest.get(slot);
    if (kept !== undefined) {
      if ((this.#bySignature.get(kept)?.seq ?? -1n) > record.seq) return;
      this.#bySignature.delete(kept);
    }
    if (this.#bySignature.size >= this.#limit) {
      const oldest = this.#bySignature.keys().next().value;
      if (oldest !== undefined) this.#forget(oldest);
    }
    this.#bySignature.set(key, Object.freeze(record));
    this.#newest.set(slot, key);
  }

  #forget(key: string): void {
    const record = this.#bySignature.get(key)!;
    this.#bySignature.delete(key);
    const slot = `${record.origin}/${record.fragment}`;
    if (this.#newest.get(slot) === key) this.#newest.delete(slot);
  }
}
