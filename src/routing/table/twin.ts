/**
 * The TypeScript twin of the native routing table: the same answers (property tests hold the two
 * together), no addon needed. Shortest paths are recomputed from scratch after changes (the native
 * table does it incrementally); everything else follows native/src/table.cc step by step where
 * the outcome is observable (handles, orphans, ordering).
 */
import type { RouteArrays, RoutingBackend } from './types.js';

const ID = 32;
const NO_RANK = 0xffffffff;
const MAX_NODES = 0xfffffe; // as the native table: handles fit in 24 bits

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Binary min-heap of (key, node) on typed arrays, lazy deletion by the caller. */
class Heap {
  keys = new Float64Array(256);
  vals = new Int32Array(256);
  size = 0;

  push(key: number, val: number): void {
    if (this.size === this.keys.length) {
      const k = new Float64Array(this.size * 2);
      k.set(this.keys);
      const v = new Int32Array(this.size * 2);
      v.set(this.vals);
      this.keys = k;
      this.vals = v;
    }
    const hk = this.keys;
    const hv = this.vals;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (hk[p]! <= key) break;
      hk[i] = hk[p]!;
      hv[i] = hv[p]!;
      i = p;
    }
    hk[i] = key;
    hv[i] = val;
  }

  /** Removes the root (read keys[0]/vals[0] first). */
  pop(): void {
    const hk = this.keys;
    const hv = this.vals;
    const last = --this.size;
    const key = hk[last]!;
    const val = hv[last]!;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= last) break;
      if (c + 1 < last && hk[c + 1]! < hk[c]!) c++;
      if (hk[c]! >= key) break;
      hk[i] = hk[c]!;
      hv[i] = hv[c]!;
      i = c;
    }
    hk[i] = key;
    hv[i] = val;
  }
}

export class TsBackend implements RoutingBackend {
  readonly implementation = 'ts' as const;

  // interning
  // open addressing, linear probing: slot = handle + 1 (0 empty), with the id's 32-bit hash beside it
  #slots = new Int32Array(1024);
  #tags = new Int32Array(1024);
  #mask = 1023;
  #hashCount = 0;
  readonly #seedA = (Math.random() * 0x100000000) | 0;
  readonly #seedB = (Math.random() * 0x100000000) | 0;
  #keys = new Uint8Array(64 * ID);
  #present = new Uint8Array(64);
  #free: number[] = []; // sorted descending: the last is the smallest free handle
  #count = 0;
  #presentCount = 0;

  // graph
  #outTo: number[][] = [];
  #outCost: number[][] = [];
  #inFrom: number[][] = [];
  #edges = 0;

  // labels
  #dist = new Float64Array(64);
  #hop = new Int32Array(64);
  #parent = new Int32Array(64);
  #rank = new Uint32Array(64).fill(NO_RANK);
  #ranked: number[] = [];
  #runStamp = new Uint32Array(64);
  #run = 0;
  readonly #heap = new Heap();

  // pending since the last flush
  #dirty = false;
  #orphans: number[] = [];
  #orphanStamp = new Uint32Array(64);
  #batch = 1;
  #pendingFree: number[] = [];

  #changes: RouteArrays = [new Uint8Array(0), new Int32Array(0), new Float64Array(0), new Uint32Array(0)];

  constructor(localId: Uint8Array) {
    this.#intern(asBuffer(localId), 0);
    this.#dirty = true;
  }

  // ---- interning ----------------------------------------------------------------------------------

  #grow(need: number): void {
    const cap = this.#present.length;
    if (need <= cap) return;
    const n = Math.max(need, cap * 2);
    const grow = <T extends Uint8Array | Uint32Array | Int32Array | Float64Array>(a: T, make: (n: number) => T, fill?: number): T => {
      const b = make(n);
      if (fill !== undefined) b.fill(fill);
      b.set(a);
      return b;
    };
    const keys = new Uint8Array(n * ID);
    keys.set(this.#keys);
    this.#keys = keys;
    this.#present = grow(this.#present, (k) => new Uint8Array(k));
    this.#dist = grow(this.#dist, (k) => new Float64Array(k), Infinity);
    this.#hop = grow(this.#hop, (k) => new Int32Array(k), -1);
    this.#parent = grow(this.#parent, (k) => new Int32Array(k), -1);
    this.#rank = grow(this.#rank, (k) => new Uint32Array(k), NO_RANK);
    this.#runStamp = grow(this.#runStamp, (k) => new Uint32Array(k));
    this.#orphanStamp = grow(this.#orphanStamp, (k) => new Uint32Array(k));
  }

  #hash(b: Uint8Array, o: number): number {
    let h = Math.imul((b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) ^ this.#seedA, 0x9e3779b1);
    h ^= (b[o + 4]! | (b[o + 5]! << 8) | (b[o + 6]! << 16) | (b[o + 7]! << 24)) ^ this.#seedB;
    h = Math.imul(h ^ (h >>> 15), 0x85ebca77);
    h ^= b[o + 8]! | (b[o + 9]! << 8) | (b[o + 10]! << 16) | (b[o + 11]! << 24);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae3d);
    return h ^ (h >>> 16);
  }

  /** Handle of the id at bytes[off..off+32], present or removed-pending; -1 if none. */
  #findAny(b: Uint8Array, o: number, h: number): number {
    const slots = this.#slots;
    const tags = this.#tags;
    const keys = this.#keys;
    const mask = this.#mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const s = slots[i]!;
      if (s === 0) return -1;
      if (tags[i] === h) {
        const k = (s - 1) * ID;
        let j = 0;
        while (j < ID && keys[k + j] === b[o + j]) j++;
        if (j === ID) return s - 1;
      }
    }
  }

  #find(bytes: Uint8Array, off: number): number {
    const h = this.#findAny(bytes, off, this.#hash(bytes, off));
    return h >= 0 && this.#present[h] === 1 ? h : -1;
  }

  #hashInsert(handle: number, h: number): void {
    if ((this.#hashCount + 1) * 2 > this.#slots.length) {
      const oldSlots = this.#slots;
      const oldTags = this.#tags;
      this.#slots = new Int32Array(oldSlots.length * 2);
      this.#tags = new Int32Array(oldSlots.length * 2);
      this.#mask = this.#slots.length - 1;
      for (let i = 0; i < oldSlots.length; i++) if (oldSlots[i] !== 0) this.#place(oldSlots[i]!, oldTags[i]!);
    }
    this.#hashCount++;
    this.#place(handle + 1, h);
  }

  #place(slot: number, h: number): void {
    let i = h & this.#mask;
    while (this.#slots[i] !== 0) i = (i + 1) & this.#mask;
    this.#slots[i] = slot;
    this.#tags[i] = h;
  }

  #hashErase(handle: number): void {
    const slots = this.#slots;
    const tags = this.#tags;
    const mask = this.#mask;
    let i = this.#hash(this.#keys, handle * ID) & mask;
    while (slots[i] !== handle + 1) i = (i + 1) & mask;
    // backward-shift deletion
    for (let j = (i + 1) & mask; slots[j] !== 0; j = (j + 1) & mask) {
      const home = tags[j]! & mask;
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      slots[i] = slots[j]!;
      tags[i] = tags[j]!;
      i = j;
    }
    slots[i] = 0;
    tags[i] = 0;
    this.#hashCount--;
  }

  #intern(bytes: Uint8Array, off: number): number {
    const hash = this.#hash(bytes, off);
    let h = this.#findAny(bytes, off, hash);
    if (h >= 0) {
      if (this.#present[h] === 0) {
        this.#present[h] = 1;
        this.#presentCount++;
        this.#orphanCandidate(h);
        this.#dirty = true;
      }
      return h;
    }
    if (this.#free.length > 0) {
      h = this.#free.pop()!;
    } else {
      h = this.#count++;
      this.#grow(this.#count);
      this.#outTo.push([]);
      this.#outCost.push([]);
      this.#inFrom.push([]);
    }
    this.#keys.set(bytes.subarray(off, off + ID), h * ID);
    this.#hashInsert(h, hash);
    this.#present[h] = 1;
    this.#presentCount++;
    this.#dist[h] = Infinity;
    this.#hop[h] = -1;
    this.#parent[h] = -1;
    this.#rank[h] = NO_RANK;
    this.#orphanCandidate(h);
    this.#dirty = true;
    return h;
  }

  #keyLess(a: number, b: number): boolean {
    const k = this.#keys;
    const ao = a * ID;
    const bo = b * ID;
    for (let i = 0; i < ID; i++) {
      const x = k[ao + i]!;
      const y = k[bo + i]!;
      if (x !== y) return x < y;
    }
    return false;
  }

  #key(h: number): Uint8Array {
    return this.#keys.subarray(h * ID, (h + 1) * ID);
  }

  // ---- graph edits ----------------------------------------------------------------------------------

  #orphanCandidate(x: number): void {
    if (this.#orphanStamp[x] !== this.#batch) {
      this.#orphanStamp[x] = this.#batch;
      this.#orphans.push(x);
    }
  }

  #removeEdgeAt(u: number, p: number): void {
    const to = this.#outTo[u]!;
    const co = this.#outCost[u]!;
    const v = to[p]!;
    const last = to.length - 1;
    to[p] = to[last]!;
    co[p] = co[last]!;
    to.pop();
    co.pop();
    const inn = this.#inFrom[v]!;
    const q = inn.indexOf(u);
    inn[q] = inn[inn.length - 1]!;
    inn.pop();
    this.#edges--;
    this.#dirty = true;
  }

  setLinks(id: Uint8Array, targets: Uint8Array, costs: Uint32Array): boolean {
    const idb = asBuffer(id);
    const k = costs.length;
    if (this.#free.length + (MAX_NODES - this.#count) < k + 1) throw new RangeError('routing table full: at most 16777214 nodes');
    if (k === 0 && this.#find(idb, 0) < 0) return false;
    const u = this.#intern(idb, 0);
    const tb = asBuffer(targets);
    const want = new Map<number, number>();
    const order: number[] = [];
    for (let i = 0; i < k; i++) {
      const t = this.#intern(tb, i * ID);
      if (t === u) continue;
      const c = costs[i]!;
      const had = want.get(t);
      if (had === undefined) {
        want.set(t, c);
        order.push(t);
      } else if (c < had) {
        want.set(t, c);
      }
    }
    let changed = false;
    const to = this.#outTo[u]!;
    const co = this.#outCost[u]!;
    for (let p = to.length - 1; p >= 0; p--) {
      const v = to[p]!;
      const c = want.get(v);
      if (c !== undefined && c !== 0) {
        want.set(v, 0); // seen
        if (c !== co[p]) {
          co[p] = c;
          changed = true;
        }
      } else {
        this.#removeEdgeAt(u, p);
        this.#orphanCandidate(v);
        this.#orphanCandidate(u);
        changed = true;
      }
    }
    for (const t of order) {
      const c = want.get(t)!;
      if (c === 0) continue;
      to.push(t);
      co.push(c);
      this.#inFrom[t]!.push(u);
      this.#edges++;
      changed = true;
    }
    if (to.length === 0) this.#orphanCandidate(u);
    if (changed) this.#dirty = true;
    return changed;
  }

  removeNode(id: Uint8Array): boolean {
    const x = this.#find(asBuffer(id), 0);
    if (x <= 0) return false;
    const to = this.#outTo[x]!;
    while (to.length > 0) {
      const v = to[to.length - 1]!;
      this.#removeEdgeAt(x, to.length - 1);
      this.#orphanCandidate(v);
    }
    const inn = this.#inFrom[x]!;
    while (inn.length > 0) {
      const u = inn[inn.length - 1]!;
      this.#removeEdgeAt(u, this.#outTo[u]!.indexOf(x));
      this.#orphanCandidate(u);
    }
    this.#present[x] = 0;
    this.#presentCount--;
    this.#pendingFree.push(x);
    this.#dirty = true;
    return true;
  }

  // ---- shortest paths -------------------------------------------------------------------------------

  recompute(full: boolean): number[] {
    if (!this.#dirty && !full) return [0, 0, 0];
    // orphans: known nodes that no link refers to and that have no links
    for (const x of this.#orphans) {
      if (x !== 0 && this.#present[x] === 1 && this.#outTo[x]!.length === 0 && this.#inFrom[x]!.length === 0) {
        this.#present[x] = 0;
        this.#presentCount--;
        this.#pendingFree.push(x);
      }
    }
    this.#updateRanks();
    const changed = this.#computeFull();
    // free removed handles
    const pending = [...new Set(this.#pendingFree)].sort((a, b) => a - b);
    let freed = 0;
    for (const x of pending) {
      if (this.#present[x] === 1) continue; // revived
      this.#hashErase(x);
      this.#dist[x] = Infinity;
      this.#hop[x] = -1;
      this.#parent[x] = -1;
      this.#rank[x] = NO_RANK;
      this.#free.push(x);
      freed++;
    }
    if (freed > 0) this.#free.sort((a, b) => b - a);
    this.#orphans = [];
    this.#pendingFree = [];
    this.#batch++;
    this.#dirty = false;
    return [2, changed, freed];
  }

  #updateRanks(): void {
    for (const h of this.#ranked) this.#rank[h] = NO_RANK;
    this.#ranked = [...this.#outTo[0]!].sort((a, b) => (this.#keyLess(a, b) ? -1 : this.#keyLess(b, a) ? 1 : 0));
    for (let i = 0; i < this.#ranked.length; i++) this.#rank[this.#ranked[i]!] = i;
  }

  #computeFull(): number {
    const n = this.#count;
    const dist = this.#dist;
    const hop = this.#hop;
    const parent = this.#parent;
    const rank = this.#rank;
    const stamp = this.#runStamp;
    const prevDist = dist.slice(0, n);
    const prevHop = hop.slice(0, n);
    dist.fill(Infinity, 0, n);
    hop.fill(-1, 0, n);
    parent.fill(-1, 0, n);
    const run = ++this.#run;
    const heap = this.#heap;
    heap.size = 0;
    dist[0] = 0;
    hop[0] = 0;
    stamp[0] = run;
    heap.push(0, 0);
    const outTo = this.#outTo;
    const outCost = this.#outCost;
    while (heap.size > 0) {
      const d = heap.keys[0]!;
      const x = heap.vals[0]!;
      heap.pop();
      if (d !== dist[x]) continue;
      const to = outTo[x]!;
      const co = outCost[x]!;
      const viaHop = x === 0 ? -1 : hop[x]!;
      for (let i = 0; i < to.length; i++) {
        const v = to[i]!;
        const nd = d + co[i]!;
        const ch = x === 0 ? v : viaHop;
        const dv = dist[v]!;
        if (nd < dv) {
          dist[v] = nd;
          hop[v] = ch;
          parent[v] = x;
          stamp[v] = run;
          heap.push(nd, v);
        } else if (nd === dv) {
          const hv = hop[v]!;
          if (ch !== hv) {
            if (rank[ch]! < rank[hv]!) {
              hop[v] = ch;
              parent[v] = x;
              if (stamp[v] !== run) {
                stamp[v] = run;
                heap.push(nd, v);
              }
            }
          } else if (parent[v] !== x && this.#keyLess(x, parent[v]!)) {
            parent[v] = x;
          }
        }
      }
    }
    const changedIds: number[] = [];
    for (let x = 1; x < n; x++) if (dist[x] !== prevDist[x] || hop[x] !== prevHop[x]) changedIds.push(x);
    const ids = Buffer.allocUnsafe(changedIds.length * ID);
    const hops = new Int32Array(changedIds.length);
    const costs = new Float64Array(changedIds.length);
    changedIds.forEach((x, i) => {
      ids.set(this.#key(x), i * ID);
      hops[i] = hop[x]!;
      costs[i] = dist[x] === Infinity ? -1 : dist[x]!;
    });
    this.#changes = [ids, hops, costs, new Uint32Array(changedIds.length)];
    return changedIds.length;
  }

  // ---- lookups --------------------------------------------------------------------------------------

  nextHop(id: Uint8Array): number {
    const h = this.#find(asBuffer(id), 0);
    return h < 0 ? -1 : this.#hop[h]!;
  }

  nextHopBatch(ids: Uint8Array, out: Int32Array): void {
    const n = ids.length / ID;
    const present = this.#present;
    const hop = this.#hop;
    for (let i = 0; i < n; i++) {
      const o = i * ID;
      const h = this.#findAny(ids, o, this.#hash(ids, o));
      out[i] = h < 0 || present[h] === 0 ? -1 : hop[h]!;
    }
  }

  groupByNextHop(ids: Uint8Array, indexes: Uint32Array, outIds: Uint8Array): Int32Array {
    const b = asBuffer(ids);
    const n = b.length / ID;
    const hops = new Int32Array(n);
    this.nextHopBatch(b, hops);
    const groupOf = new Map<number, number>(); // next-hop handle -> group (few: the neighbours)
    const seen: number[] = [];
    const counts: number[] = [];
    let unreachable = 0;
    for (let i = 0; i < n; i++) {
      const h = hops[i]!;
      if (h < 0) {
        unreachable++;
        continue;
      }
      let g = groupOf.get(h);
      if (g === undefined) {
        g = seen.length;
        groupOf.set(h, g);
        seen.push(h);
        counts.push(0);
      }
      counts[g]!++;
    }
    const order = seen.map((_, g) => g).sort((a, c) => (this.#keyLess(seen[a]!, seen[c]!) ? -1 : this.#keyLess(seen[c]!, seen[a]!) ? 1 : 0));
    const start = new Array<number>(seen.length);
    const result: number[] = [];
    let at = 0;
    for (const g of order) {
      start[g] = at;
      at += counts[g]!;
      result.push(seen[g]!, at);
    }
    let unreachableAt = at;
    if (unreachable > 0) result.push(-1, n);
    for (let i = 0; i < n; i++) {
      const h = hops[i]!;
      const pos = h < 0 ? unreachableAt++ : start[groupOf.get(h)!]!++;
      indexes[pos] = i;
      const from = i * ID;
      const to = pos * ID;
      for (let j = 0; j < ID; j++) outIds[to + j] = b[from + j]!;
    }
    return Int32Array.from(result);
  }

  distance(id: Uint8Array): number {
    const h = this.#find(asBuffer(id), 0);
    if (h < 0 || this.#dist[h] === Infinity) return -1;
    return this.#dist[h]!;
  }

  path(id: Uint8Array): Uint8Array | null {
    let h = this.#find(asBuffer(id), 0);
    if (h < 0 || this.#dist[h] === Infinity) return null;
    const chain: number[] = [];
    while (h !== -1) {
      chain.push(h);
      h = this.#parent[h]!;
    }
    chain.reverse();
    const out = Buffer.allocUnsafe(chain.length * ID);
    chain.forEach((x, i) => out.set(this.#key(x), i * ID));
    return out;
  }

  routes(): RouteArrays {
    const n = this.#count;
    const depth = new Int32Array(n).fill(-1);
    if (n > 0) depth[0] = 0;
    const list: number[] = [];
    const chain: number[] = [];
    for (let x = 1; x < n; x++) {
      if (this.#present[x] === 0 || this.#dist[x] === Infinity) continue;
      let y = x;
      while (depth[y] === -1) {
        chain.push(y);
        y = this.#parent[y]!;
      }
      let d = depth[y]!;
      while (chain.length > 0) depth[chain.pop()!] = ++d;
      list.push(x);
    }
    const ids = Buffer.allocUnsafe(list.length * ID);
    const hops = new Int32Array(list.length);
    const costs = new Float64Array(list.length);
    const counts = new Uint32Array(list.length);
    list.forEach((x, i) => {
      ids.set(this.#key(x), i * ID);
      hops[i] = this.#hop[x]!;
      costs[i] = this.#dist[x]!;
      counts[i] = depth[x]!;
    });
    return [ids, hops, costs, counts];
  }

  changes(): RouteArrays {
    return this.#changes;
  }

  idOf(handle: number): Uint8Array | null {
    if (!Number.isInteger(handle) || handle < 0 || handle >= this.#count || this.#present[handle] === 0) return null;
    return Buffer.from(this.#key(handle));
  }

  handleOf(id: Uint8Array): number {
    return this.#find(asBuffer(id), 0);
  }

  links(id: Uint8Array): [Uint8Array, Uint32Array] | null {
    const x = this.#find(asBuffer(id), 0);
    if (x < 0) return null;
    const to = this.#outTo[x]!;
    const co = this.#outCost[x]!;
    const order = to.map((_, i) => i).sort((a, b) => (this.#keyLess(to[a]!, to[b]!) ? -1 : this.#keyLess(to[b]!, to[a]!) ? 1 : 0));
    const targets = Buffer.allocUnsafe(to.length * ID);
    const costs = new Uint32Array(to.length);
    order.forEach((p, i) => {
      targets.set(this.#key(to[p]!), i * ID);
      costs[i] = co[p]!;
    });
    return [targets, costs];
  }

  size(): number[] {
    return [this.#presentCount, this.#edges];
  }
}
