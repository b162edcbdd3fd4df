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
    if (this.#bySignature.size >= this.#limit) {
      const oldest = this.#bySignature.keys().next().value;
      if (oldest !== undefined) this.#bySignature.delete(oldest);
    }
    this.#bySignature.set(key, Object.freeze(record));
  }
}
