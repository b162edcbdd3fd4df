/**
 * Types shared by the routing table's two implementations (native addon and TypeScript twin).
 * Semantics are written down in docs/ROUTING-TABLE.md.
 */

/** Bytes in a node id as the table sees it (pnet: the raw Ed25519 public key). */
export const NODE_ID_BYTES = 32;
/** Largest link cost; costs are integers in [1, MAX_LINK_COST]. */
export const MAX_LINK_COST = 0xffffff;
/** Handle value meaning "no node": unknown id, or no route. */
export const NO_ROUTE = -1;

export type RoutingImplementation = 'native' | 'ts';

/** A directed link out of a node. */
export interface Link {
  /** Target node id, 32 bytes. */
  readonly id: Uint8Array;
  /** Integer in [1, MAX_LINK_COST]. */
  readonly cost: number;
}

/** A destination reachable from the local node. */
export interface Route {
  readonly destination: Buffer;
  /** The neighbour to hand traffic for `destination` to. */
  readonly nextHop: Buffer;
  /** Sum of the link costs along the path. */
  readonly cost: number;
  /** Number of links along path(destination). */
  readonly hops: number;
}

/** A destination whose next hop or cost changed in the last recompute. */
export interface RouteChange {
  readonly destination: Buffer;
  /** null: no longer reachable. */
  readonly nextHop: Buffer | null;
  /** -1: no longer reachable. */
  readonly cost: number;
}

/** The destinations of one next hop, from groupByNextHop. */
export interface NextHopGroup {
  /** The next hop's id (the local id for destinations equal to it); null for unreachable ones. */
  readonly hop: Buffer | null;
  /** The next hop's handle, or -1. */
  readonly handle: number;
  /** Positions of this group's destinations in the input (ascending). */
  readonly indexes: Uint32Array;
  /** This group's destinations, packed (n * 32 bytes, a view into one buffer for all groups). */
  readonly ids: Buffer;
}

export interface RecomputeResult {
  /** none: nothing had changed; incremental: only the affected part; full: from scratch. */
  readonly mode: 'none' | 'incremental' | 'full';
  /** Destinations whose next hop or cost changed. */
  readonly changed: number;
  /** Handles given back (removed nodes, nodes no link refers to any more). */
  readonly freed: number;
}

/** All routes in packed form: entry i is destination ids[i*32..], hops[i], costs[i], hopCounts[i]. */
export interface PackedRoutes {
  readonly ids: Buffer;
  /** Next-hop handles (map with idOf). */
  readonly nextHops: Int32Array;
  readonly costs: Float64Array;
  readonly hopCounts: Uint32Array;
}

/** Routes as [packed ids, next-hop handles, costs, hop counts]. */
export type RouteArrays = [Uint8Array, Int32Array, Float64Array, Uint32Array];

/**
 * What the front (RoutingTable) needs from an implementation. Ids are already validated
 * (32 bytes, packed lengths multiples of 32, costs integers in range). The native addon's plain
 * functions take the table handle as their first argument and otherwise match these methods.
 * @internal
 */
export interface RoutingBackend {
  readonly implementation: RoutingImplementation;
  setLinks(id: Uint8Array, targets: Uint8Array, costs: Uint32Array): boolean;
  removeNode(id: Uint8Array): boolean;
  /** [mode (0 none, 1 incremental, 2 full), changed, freed] */
  recompute(full: boolean): number[];
  nextHop(id: Uint8Array): number;
  nextHopBatch(ids: Uint8Array, out: Int32Array): void;
  groupByNextHop(ids: Uint8Array, indexes: Uint32Array, outIds: Uint8Array): Int32Array;
  distance(id: Uint8Array): number;
  path(id: Uint8Array): Uint8Array | null;
  routes(): RouteArrays;
  /** Changes of the last recompute: hop counts are not given (zeros). */
  changes(): RouteArrays;
  idOf(handle: number): Uint8Array | null;
  handleOf(id: Uint8Array): number;
  links(id: Uint8Array): [Uint8Array, Uint32Array] | null;
  /** [known nodes including the local one, directed links] */
  size(): number[];
}
