/**
 * The router's view of shortest paths: a small interface, and a pure
 * TypeScript implementation (Dijkstra over interned integer ids).
 *
 * The native table (src/routing/table, same semantics) is meant to slot in
 * behind PathComputer. Its API speaks 32-byte ids; an adapter converts at this
 * boundary: NodeId -> bytes with nodeIdToBytes (cached, see codec.keyBytesOf)
 * in setLinks/removeNode, bytes -> NodeId with nodeIdFromPublicKey (cached,
 * codec.nodeIdAt) for nextHop/path/routes results. The router only ever calls
 * the setters in a batch right before it reads routes(), so an adapter can
 * queue the setters and push them across Node-API in one call.
 */
import type { NodeId } from '../../identity/index.js';
import { idOrderKey } from './codec.js';

/** A directed link out of a node, with its cost (integer >= 1). */
export interface Link {
  readonly to: NodeId;
  readonly cost: number;
}

/** A destination reachable from the local node. */
export interface Route {
  readonly dest: NodeId;
  /** The neighbour to hand traffic for `dest` to. */
  readonly nextHop: NodeId;
  /** Sum of link costs along the path. */
  readonly cost: number;
  /** Number of links along path(dest). */
  readonly hops: number;
}

/**
 * Shortest paths from one fixed source (the local node) over a directed graph
 * given as each node's outgoing links.
 *
 * Semantics every implementation must share:
 * - setLinks replaces all outgoing links of `origin`; a link's target exists
 *   as a node (maybe without links of its own). removeNode drops a node's
 *   outgoing links. What happens to links other nodes have towards it is left
 *   to the implementation (TsPathComputer keeps them until their origin is
 *   set again, the native table drops them): the router never relies on
 *   either, because the two-way check removes those links in the same batch.
 *   An implementation may keep the `links` array: callers never mutate it
 *   afterwards (the router passes the immutable arrays of decoded records).
 * - Costs are integers >= 1; distances are exact sums.
 * - Ties: among equal-cost paths, the next hop is the smallest node id,
 *   comparing the ids' 32 key bytes (idOrderKey; the native table's order,
 *   not the order of the base32 text); path(dest) is an equal-cost path
 *   through that next hop whose predecessor at each step is, among the
 *   predecessors giving that next hop, the smallest id.
 * - nextHop/path/routes never include unreachable nodes; the source itself is
 *   not a route; path(source) is [source].
 */
export interface PathComputer {
  setLinks(origin: NodeId, links: readonly Link[]): void;
  removeNode(id: NodeId): void;
  nextHop(dest: NodeId): NodeId | undefined;
  /** Node ids from the source to `dest`, both included; undefined when unreachable. */
  path(dest: NodeId): NodeId[] | undefined;
  routes(): Route[];
}

export type PathComputerFactory = (self: NodeId) => PathComputer;

const NONE = -1;

/** Pure-TypeScript PathComputer: lazy full Dijkstra after any change. */
export class TsPathComputer implements PathComputer {
  readonly #self: NodeId;
  readonly #src: number;
  readonly #index = new Map<NodeId, number>();
  #ids: (NodeId | undefined)[] = [];
  /** idOrderKey of each id: ties compare these. */
  #order: string[] = [];
  #free: number[] = [];
  /** Links pointing at a node, +1 while it has links of its own, +1 for the source. */
  #refs: number[] = [];
  /**
   * Outgoing links as given (kept by reference: in a simulation the arrays are
   * shared by every router holding the same record, which saves most memory).
   */
  #out: (readonly Link[] | undefined)[] = [];
  #dirty = true;
  #dist = new Float64Array(0);
  #nh = new Int32Array(0);
  #parent = new Int32Array(0);
  #hops = new Int32Array(0);
  #done = new Uint8Array(0);
  #heapKey = new Float64Array(16);
  #heapVal = new Int32Array(16);

  constructor(self: NodeId) {
    this.#self = self;
    this.#src = this.#intern(self);
    this.#refs[this.#src]!++;
  }

  #intern(id: NodeId): number {
    let i = this.#index.get(id);
    if (i === undefined) {
      i = this.#free.pop() ?? this.#ids.length;
      this.#ids[i] = id;
      this.#order[i] = idOrderKey(id);
      this.#refs[i] = 0;
      this.#out[i] = undefined;
      this.#index.set(id, i);
    }
    return i;
  }

  #unref(i: number): void {
    const r = --this.#refs[i]!;
    if (r === 0) {
      this.#index.delete(this.#ids[i]!);
      this.#ids[i] = undefined;
      this.#free.push(i);
    }
  }

  #dropLinks(o: number): void {
    const links = this.#out[o];
    if (links === undefined) return;
    this.#out[o] = undefined;
    for (const l of links) this.#unref(this.#index.get(l.to)!);
    this.#unref(o);
  }

  setLinks(origin: NodeId, links: readonly Link[]): void {
    let valid = links;
    if (links.some((l) => l.to === origin || !(l.cost >= 1) || !Number.isFinite(l.cost))) {
      valid = links.filter((l) => l.to !== origin && l.cost >= 1 && Number.isFinite(l.cost));
    }
    const o = this.#intern(origin);
    for (const l of valid) this.#refs[this.#intern(l.to)]!++;
    this.#refs[o]!++;
    this.#dropLinks(o);
    this.#out[o] = valid;
    this.#dirty = true;
  }

  removeNode(id: NodeId): void {
    const o = this.#index.get(id);
    if (o === undefined) return;
    this.#dropLinks(o);
    this.#dirty = true;
  }

  #less(a: number, b: number): boolean {
    return this.#order[a]! < this.#order[b]!;
  }

  #push(size: number, key: number, val: number): number {
    if (size === this.#heapKey.length) {
      const k = new Float64Array(size * 2);
      k.set(this.#heapKey);
      const v = new Int32Array(size * 2);
      v.set(this.#heapVal);
      this.#heapKey = k;
      this.#heapVal = v;
    }
    const hk = this.#heapKey;
    const hv = this.#heapVal;
    let i = size;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (hk[p]! <= key) break;
      hk[i] = hk[p]!;
      hv[i] = hv[p]!;
      i = p;
    }
    hk[i] = key;
    hv[i] = val;
    return size + 1;
  }

  /** Removes the root; returns the new size. The root's value must be read before. */
  #pop(size: number): number {
    const hk = this.#heapKey;
    const hv = this.#heapVal;
    const last = size - 1;
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
    return last;
  }

  #compute(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    const n = this.#ids.length;
    if (this.#dist.length < n) {
      const cap = Math.max(16, n * 2);
      this.#dist = new Float64Array(cap);
      this.#nh = new Int32Array(cap);
      this.#parent = new Int32Array(cap);
      this.#hops = new Int32Array(cap);
      this.#done = new Uint8Array(cap);
    }
    const dist = this.#dist;
    const nh = this.#nh;
    const parent = this.#parent;
    const hops = this.#hops;
    const done = this.#done;
    dist.fill(Infinity, 0, n);
    nh.fill(NONE, 0, n);
    parent.fill(NONE, 0, n);
    hops.fill(0, 0, n);
    done.fill(0, 0, n);
    const src = this.#src;
    const index = this.#index;
    dist[src] = 0;
    let size = this.#push(0, 0, src);
    while (size > 0) {
      const u = this.#heapVal[0]!;
      size = this.#pop(size);
      if (done[u] === 1) continue;
      done[u] = 1;
      const links = this.#out[u];
      if (links === undefined) continue;
      const du = dist[u]!;
      for (let k = 0; k < links.length; k++) {
        const l = links[k]!;
        const v = index.get(l.to)!;
        if (done[v] === 1) continue;
        const nd = du + l.cost;
        const cand = u === src ? v : nh[u]!;
        const dv = dist[v]!;
        if (nd < dv) {
          dist[v] = nd;
          nh[v] = cand;
          parent[v] = u;
          hops[v] = hops[u]! + 1;
          size = this.#push(size, nd, v);
        } else if (nd === dv) {
          // Equal cost: smaller next hop wins, then smaller predecessor. All
          // predecessors of v on shortest paths are settled before v (costs
          // >= 1), so v ends with the minimum over all of them.
          const cur = nh[v]!;
          if (cand !== cur ? this.#less(cand, cur) : this.#less(u, parent[v]!)) {
            nh[v] = cand;
            parent[v] = u;
            hops[v] = hops[u]! + 1;
          }
        }
      }
    }
  }

  nextHop(dest: NodeId): NodeId | undefined {
    const i = this.#index.get(dest);
    if (i === undefined || i === this.#src) return undefined;
    this.#compute();
    const h = this.#nh[i]!;
    return h === NONE ? undefined : this.#ids[h];
  }

  path(dest: NodeId): NodeId[] | undefined {
    if (dest === this.#self) return [this.#self];
    const i = this.#index.get(dest);
    if (i === undefined) return undefined;
    this.#compute();
    if (this.#dist[i] === Infinity) return undefined;
    const out: NodeId[] = [];
    for (let v = i; v !== NONE; v = this.#parent[v]!) out.push(this.#ids[v]!);
    return out.reverse();
  }

  routes(): Route[] {
    this.#compute();
    const out: Route[] = [];
    const ids = this.#ids;
    for (let i = 0; i < ids.length; i++) {
      const dest = ids[i];
      if (dest === undefined || i === this.#src || this.#dist[i] === Infinity) continue;
      out.push({ dest, nextHop: ids[this.#nh[i]!]!, cost: this.#dist[i]!, hops: this.#hops[i]! });
    }
    return out;
  }
}

export const tsPathComputer: PathComputerFactory = (self) => new TsPathComputer(self);
