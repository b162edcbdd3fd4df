/**
 * RoutingTable: the one front both implementations share. It validates arguments, decides when
 * to recompute (lazily, before the first query after a change), and turns handles into ids. The
 * work happens in a backend: the native addon (plain functions taking a handle) or the
 * TypeScript twin.
 */
import {
  MAX_LINK_COST,
  NODE_ID_BYTES,
  NO_ROUTE,
  type Link,
  type NextHopGroup,
  type PackedRoutes,
  type RecomputeResult,
  type Route,
  type RouteChange,
  type RoutingBackend,
  type RoutingImplementation,
} from './types.js';

const MODES = ['none', 'incremental', 'full'] as const;
const NOTHING: RecomputeResult = Object.freeze({ mode: 'none', changed: 0, freed: 0 });

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkId(id: unknown, what = 'node id'): Uint8Array {
  if (!(id instanceof Uint8Array)) throw new TypeError(`${what}: expected a Uint8Array of ${NODE_ID_BYTES} bytes`);
  if (id.length !== NODE_ID_BYTES) throw new RangeError(`${what}: expected ${NODE_ID_BYTES} bytes, got ${id.length}`);
  return id;
}

function checkPacked(ids: unknown): Uint8Array {
  if (!(ids instanceof Uint8Array)) throw new TypeError('packed ids: expected a Uint8Array');
  if (ids.length % NODE_ID_BYTES !== 0) throw new RangeError(`packed ids: length ${ids.length} is not a multiple of ${NODE_ID_BYTES}`);
  return ids;
}

function checkCost(cost: unknown): number {
  if (typeof cost !== 'number' || !Number.isInteger(cost) || cost < 1 || cost > MAX_LINK_COST) {
    throw new RangeError(`link cost: expected an integer in [1, ${MAX_LINK_COST}], got ${String(cost)}`);
  }
  return cost;
}

export class RoutingTable {
  readonly implementation: RoutingImplementation;
  /** The local node's id (handle 0). */
  readonly localId: Buffer;
  readonly #b: RoutingBackend;
  #dirty = true;
  /** ids of next hops by handle, valid until a recompute frees handles */
  #hopIds: (Buffer | undefined)[] = [];

  /** @internal use createRoutingTable */
  constructor(backend: RoutingBackend, localId: Uint8Array) {
    this.#b = backend;
    this.implementation = backend.implementation;
    this.localId = Buffer.from(localId);
  }

  /** Known nodes, the local one included. */
  get size(): number {
    return this.#b.size()[0]!;
  }

  /** Directed links in the graph. */
  get linkCount(): number {
    return this.#b.size()[1]!;
  }

  // ---- graph ------------------------------------------------------------------------------------

  /**
   * Replaces all outgoing links of `id`. Self links are ignored; a target listed twice keeps its
   * smallest cost. An empty list drops the node's links; the node stays known while some link
   * points at it. Returns whether the graph changed.
   */
  setLinks(id: Uint8Array, links: readonly Link[]): boolean {
    checkId(id);
    const targets = Buffer.allocUnsafe(links.length * NODE_ID_BYTES);
    const costs = new Uint32Array(links.length);
    for (let i = 0; i < links.length; i++) {
      const link = links[i]!;
      targets.set(checkId(link.id, 'link target'), i * NODE_ID_BYTES);
      costs[i] = checkCost(link.cost);
    }
    this.#dirty = true;
    return this.#b.setLinks(id, targets, costs);
  }

  /** setLinks with targets packed (k * 32 bytes) and their costs. */
  setLinksPacked(id: Uint8Array, targets: Uint8Array, costs: ArrayLike<number>): boolean {
    checkId(id);
    checkPacked(targets);
    const k = targets.length / NODE_ID_BYTES;
    if (costs.length !== k) throw new RangeError(`setLinksPacked: ${k} targets but ${costs.length} costs`);
    let c: Uint32Array;
    if (costs instanceof Uint32Array) {
      for (let i = 0; i < k; i++) checkCost(costs[i]);
      c = costs;
    } else {
      c = new Uint32Array(k);
      for (let i = 0; i < k; i++) c[i] = checkCost(costs[i]);
    }
    this.#dirty = true;
    return this.#b.setLinks(id, targets, c);
  }

  /** Removes a node together with every link to and from it. False if unknown. */
  removeNode(id: Uint8Array): boolean {
    checkId(id);
    if (asBuffer(id).equals(this.localId)) throw new RangeError('removeNode: the local node cannot be removed');
    this.#dirty = true;
    return this.#b.removeNode(id);
  }

  /** Outgoing links of a known node, sorted by target id bytes; null if unknown. */
  links(id: Uint8Array): Link[] | null {
    const r = this.#b.links(checkId(id));
    if (r === null) return null;
    const [targets, costs] = r;
    const t = asBuffer(targets);
    const out: Link[] = [];
    for (let i = 0; i < costs.length; i++) out.push({ id: t.subarray(i * NODE_ID_BYTES, (i + 1) * NODE_ID_BYTES), cost: costs[i]! });
    return out;
  }

  has(id: Uint8Array): boolean {
    return this.#b.handleOf(checkId(id)) >= 0;
  }

  /** The integer a known node is interned to (the local node is 0), or -1. Valid while the node is known. */
  handleOf(id: Uint8Array): number {
    return this.#b.handleOf(checkId(id));
  }

  /** The id of a handle (a copy), or null if the handle is not in use. */
  idOf(handle: number): Buffer | null {
    const id = this.#b.idOf(handle);
    return id === null ? null : asBuffer(id);
  }

  // ---- recompute ----------------------------------------------------------------------------------

  /**
   * Brings shortest paths up to date. Queries do this by themselves; call it right after a batch
   * of changes to learn what changed (lastChanges()). `full` forces a recomputation from scratch.
   */
  recompute(options?: { full?: boolean }): RecomputeResult {
    const full = options?.full === true;
    if (!this.#dirty && !full) return NOTHING;
    this.#dirty = false;
    const [mode, changed, freed] = this.#b.recompute(full);
    if (freed! > 0) this.#hopIds = [];
    return { mode: MODES[mode!]!, changed: changed!, freed: freed! };
  }

  #sync(): void {
    if (this.#dirty) this.recompute();
  }

  /** ids of next-hop handles (neighbours, or the local node); shared, do not modify */
  #hopId(handle: number): Buffer {
    let id = this.#hopIds[handle];
    if (id === undefined) {
      id = asBuffer(this.#b.idOf(handle)!);
      this.#hopIds[handle] = id;
    }
    return id;
  }

  /** Routes whose next hop or cost changed in the last recompute, in handle order. */
  lastChanges(): RouteChange[] {
    const [ids, hops, costs] = this.#b.changes();
    const packed = asBuffer(ids);
    const out: RouteChange[] = [];
    for (let i = 0; i < hops.length; i++) {
      const h = hops[i]!;
      out.push({
        destination: packed.subarray(i * NODE_ID_BYTES, (i + 1) * NODE_ID_BYTES),
        nextHop: h < 0 ? null : this.#hopId(h),
        cost: costs[i]!,
      });
    }
    return out;
  }

  // ---- lookups ------------------------------------------------------------------------------------

  /**
   * The neighbour to send traffic for `id` to; the local id for the local node; null when `id` is
   * unknown or unreachable. The returned Buffer is shared: do not modify it.
   */
  nextHop(id: Uint8Array): Buffer | null {
    checkId(id);
    this.#sync();
    const h = this.#b.nextHop(id);
    return h < 0 ? null : this.#hopId(h);
  }

  /** nextHop as a handle: 0 for the local node, -1 for no route. */
  nextHopHandle(id: Uint8Array): number {
    checkId(id);
    this.#sync();
    return this.#b.nextHop(id);
  }

  /**
   * Next hops of many destinations (packed, n * 32 bytes) in one call: out[i] is the handle of
   * the next hop for destination i (idOf/hopId maps it to an id), 0 for the local node, -1 for
   * no route. Pass `out` to reuse an array (it must hold at least n entries).
   */
  nextHopBatch(ids: Uint8Array, out?: Int32Array): Int32Array {
    checkPacked(ids);
    const n = ids.length / NODE_ID_BYTES;
    if (out === undefined) out = new Int32Array(n);
    else if (!(out instanceof Int32Array) || out.length < n) throw new RangeError(`nextHopBatch: out must be an Int32Array of at least ${n} entries`);
    this.#sync();
    this.#b.nextHopBatch(ids, out);
    return out;
  }

  /**
   * Splits destinations (packed, n * 32 bytes) by next hop in one call. Groups come in the order
   * of their next hop's id bytes, the unreachable group (hop null) last; inside a group,
   * destinations keep their input order.
   */
  groupByNextHop(ids: Uint8Array): NextHopGroup[] {
    checkPacked(ids);
    const n = ids.length / NODE_ID_BYTES;
    const indexes = new Uint32Array(n);
    const grouped = Buffer.allocUnsafe(ids.length);
    this.#sync();
    const g = this.#b.groupByNextHop(ids, indexes, grouped);
    const out: NextHopGroup[] = [];
    let start = 0;
    for (let i = 0; i < g.length; i += 2) {
      const handle = g[i]!;
      const end = g[i + 1]!;
      out.push({
        hop: handle < 0 ? null : this.#hopId(handle),
        handle,
        indexes: indexes.subarray(start, end),
        ids: grouped.subarray(start * NODE_ID_BYTES, end * NODE_ID_BYTES),
      });
      start = end;
    }
    return out;
  }

  /** Ids from the local node to `id`, both included; [local] for the local node; null when unreachable. */
  path(id: Uint8Array): Buffer[] | null {
    checkId(id);
    this.#sync();
    const p = this.#b.path(id);
    if (p === null) return null;
    const b = asBuffer(p);
    const out: Buffer[] = [];
    for (let i = 0; i < b.length; i += NODE_ID_BYTES) out.push(b.subarray(i, i + NODE_ID_BYTES));
    return out;
  }

  /** Cost of the shortest path to `id`; 0 for the local node; -1 when unknown or unreachable. */
  distance(id: Uint8Array): number {
    checkId(id);
    this.#sync();
    return this.#b.distance(id);
  }

  /** Every reachable destination but the local node, in handle order. */
  routes(): Route[] {
    const { ids, nextHops, costs, hopCounts } = this.routesPacked();
    const out: Route[] = new Array(nextHops.length);
    for (let i = 0; i < nextHops.length; i++) {
      out[i] = {
        destination: ids.subarray(i * NODE_ID_BYTES, (i + 1) * NODE_ID_BYTES),
        nextHop: this.#hopId(nextHops[i]!),
        cost: costs[i]!,
        hops: hopCounts[i]!,
      };
    }
    return out;
  }

  /** routes() without an object per route. */
  routesPacked(): PackedRoutes {
    this.#sync();
    const [ids, nextHops, costs, hopCounts] = this.#b.routes();
    return { ids: asBuffer(ids), nextHops, costs, hopCounts };
  }

  /** The id of a next-hop handle from nextHopBatch (shared Buffer: do not modify); null for -1. */
  hopId(handle: number): Buffer | null {
    if (!Number.isInteger(handle) || handle < 0) return null;
    this.#sync();
    const cached = this.#hopIds[handle];
    if (cached !== undefined) return cached;
    const id = this.#b.idOf(handle);
    if (id === null) return null;
    const b = asBuffer(id);
    this.#hopIds[handle] = b;
    return b;
  }
}
