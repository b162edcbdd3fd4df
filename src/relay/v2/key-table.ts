import { randomBytes } from 'node:crypto';
import { KEY_BYTES } from '../../routing/index.js';
import { sameKey } from './header.js';

const MIN_CAPACITY = 16;

/**
 * A map from 32-byte node keys to values that looks a key up where it lies in a datagram, with no
 * allocation (a Map would need a string made from the bytes first). Open addressing with linear
 * probing in one key buffer; the hash is seeded at random per table, so a node that grinds its
 * own key cannot aim for collisions it could use to slow lookups.
 */
export class KeyTable<V> {
  private keys: Buffer;
  private values: (V | undefined)[];
  private used: Uint8Array;
  private mask: number;
  private count = 0;
  private readonly seed: number;

  constructor(capacity = MIN_CAPACITY) {
    let size = MIN_CAPACITY;
    while (size < capacity * 2) size *= 2;
    this.mask = size - 1;
    this.keys = Buffer.alloc(size * KEY_BYTES);
    this.values = new Array<V | undefined>(size).fill(undefined);
    this.used = new Uint8Array(size);
    this.seed = randomBytes(4).readUInt32LE(0);
  }

  get size(): number {
    return this.count;
  }

  /** The value for the key at `bytes[offset..offset+32]`, or undefined. */
  get(bytes: Uint8Array, offset: number): V | undefined {
    const slot = this.find(bytes, offset);
    return slot < 0 ? undefined : this.values[slot];
  }

  has(bytes: Uint8Array, offset = 0): boolean {
    return this.find(bytes, offset) >= 0;
  }

  set(key: Uint8Array, value: V): void {
    if (key.length < KEY_BYTES) throw new RangeError(`a key is ${KEY_BYTES} bytes`);
    const found = this.find(key, 0);
    if (found >= 0) {
      this.values[found] = value;
      return;
    }
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    let slot = this.hash(key, 0) & this.mask;
    while (this.used[slot] === 1) slot = (slot + 1) & this.mask;
    this.keys.set(key.subarray(0, KEY_BYTES), slot * KEY_BYTES);
    this.values[slot] = value;
    this.used[slot] = 1;
    this.count++;
  }

  delete(key: Uint8Array, offset = 0): boolean {
    let slot = this.find(key, offset);
    if (slot < 0) return false;
    // Backward-shift deletion: later keys of the same probe run move up, so no tombstones pile up.
    let next = (slot + 1) & this.mask;
    while (this.used[next] === 1) {
      const home = this.hash(this.keys, next * KEY_BYTES) & this.mask;
      if (((next - home) & this.mask) >= ((next - slot) & this.mask)) {
        this.keys.copy(this.keys, slot * KEY_BYTES, next * KEY_BYTES, next * KEY_BYTES + KEY_BYTES);
        this.values[slot] = this.values[next];
        slot = next;
      }
      next = (next + 1) & this.mask;
    }
    this.used[slot] = 0;
    this.values[slot] = undefined;
    this.count--;
    return true;
  }

  clear(): void {
    this.used.fill(0);
    this.values.fill(undefined);
    this.count = 0;
  }

  /** Every [key, value], keys copied. */
  *entries(): IterableIterator<[Buffer, V]> {
    for (let slot = 0; slot <= this.mask; slot++) {
      if (this.used[slot] === 1) yield [Buffer.from(this.keys.subarray(slot * KEY_BYTES, (slot + 1) * KEY_BYTES)), this.values[slot] as V];
    }
  }

  private find(bytes: Uint8Array, offset: number): number {
    if (offset < 0 || offset + KEY_BYTES > bytes.length) return -1;
    let slot = this.hash(bytes, offset) & this.mask;
    while (this.used[slot] === 1) {
      if (sameKey(this.keys, slot * KEY_BYTES, bytes, offset)) return slot;
      slot = (slot + 1) & this.mask;
    }
    return -1;
  }

  private hash(bytes: Uint8Array, offset: number): number {
    let h = this.seed;
    for (let i = offset; i < offset + KEY_BYTES; i += 4) {
      const word = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
      h = Math.imul(h ^ word, 0x9e3779b1);
      h ^= h >>> 15;
    }
    return h >>> 0;
  }

  private grow(): void {
    const old = [...this.entries()];
    const size = (this.mask + 1) * 2;
    this.mask = size - 1;
    this.keys = Buffer.alloc(size * KEY_BYTES);
    this.values = new Array<V | undefined>(size).fill(undefined);
    this.used = new Uint8Array(size);
    this.count = 0;
    for (const [key, value] of old) this.set(key, value);
  }
}
