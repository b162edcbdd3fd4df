/**
 * The router's view of shortest paths: a small interface, served by the
 * routing table (src/routing/table: the native addon, or its TypeScript twin).
 * The table speaks 32-byte ids; this adapter converts at the boundary with the
 * codec's cached conversions (keyBytesOf, nodeIdAt).
 */
import type { NodeId } from '../../identity/index.js';
import { createRoutingTable } from '../table/index.js';
import type { RoutingImplementation, RoutingTable } from '../table/index.js';
import { keyBytesOf, nodeIdAt, type Link } from './codec.js';

/** A directed link out of a node (defined with the record codec, which carries it). */
export type { Link };

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
 *   outgoing links; links other nodes have towards it stay until their origin
 *   is set again (the router never relies on them: the two-way check removes
 *   those links in the same batch).
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
  /**
   * Optional: recomputes and gives the destinations whose next hop or cost changed since the
   * last recomputation (nextHop undefined: no longer reachable). Only valid right after a batch
   * of setLinks/removeNode calls, and never for the first computation (the router diffs routes()
   * then).
   */
  changes?(): PathChange[];
  /** Splits destinations (packed 32-byte keys) by next hop in one call; optional (the router falls back to nextHop). */
  groupByNextHop?(packed: Uint8Array): NextHopShare[];
}

/** A destination whose route changed in the last recomputation. */
export interface PathChange {
  readonly dest: NodeId;
  /** undefined: no longer reachable. */
  readonly nextHop: NodeId | undefined;
  /** -1 when no longer reachable. */
  readonly cost: number;
}

/** The destinations that go through one next hop. */
export interface NextHopShare {
  /** The neighbour to hand them to; the local node for its own key; undefined for unreachable ones. */
  readonly hop: NodeId | undefined;
  /** Their keys, packed (n * 32 bytes). */
  readonly ids: Uint8Array;
  /** Their positions in the input. */
  readonly indexes: Uint32Array;
}

export type PathComputerFactory = (self: NodeId) => PathComputer;

/** PathComputer over the routing table; `implementation` as in createRoutingTable (default 'auto'). */
export class TablePathComputer implements PathComputer {
  readonly table: RoutingTable;

  constructor(self: NodeId, implementation?: RoutingImplementation | 'auto') {
    this.table = createRoutingTable(keyBytesOf(self), implementation === undefined ? {} : { implementation });
  }

  setLinks(origin: NodeId, links: readonly Link[]): void {
    this.table.setLinks(
      keyBytesOf(origin),
      links.map((link) => ({ id: keyBytesOf(link.to), cost: link.cost })),
    );
  }

  removeNode(id: NodeId): void {
    // The router's removeNode drops a node's own links only; links towards it stay until replaced.
    this.table.setLinks(keyBytesOf(id), []);
  }

  nextHop(dest: NodeId): NodeId | undefined {
    const hop = this.table.nextHop(keyBytesOf(dest));
    return hop === null ? undefined : nodeIdAt(hop, 0);
  }

  path(dest: NodeId): NodeId[] | undefined {
    return this.table.path(keyBytesOf(dest))?.map((id) => nodeIdAt(id, 0));
  }

  groupByNextHop(packed: Uint8Array): NextHopShare[] {
    return this.table.groupByNextHop(packed).map((group) => ({
      hop: group.hop === null ? undefined : nodeIdAt(group.hop, 0),
      ids: group.ids,
      indexes: group.indexes,
    }));
  }

  changes(): PathChange[] {
    // Not dirty: nothing changed (lastChanges() would still list the previous recomputation's).
    if (this.table.recompute().mode === 'none') return [];
    return this.table.lastChanges().map((c) => ({ dest: nodeIdAt(c.destination, 0), nextHop: c.nextHop === null ? undefined : nodeIdAt(c.nextHop, 0), cost: c.cost }));
  }

  routes(): Route[] {
    return this.table.routes().map((route) => ({ dest: nodeIdAt(route.destination, 0), nextHop: nodeIdAt(route.nextHop, 0), cost: route.cost, hops: route.hops }));
  }
}

/** The default: the native table when it is built, else its twin (see createRoutingTable). */
export const tablePathComputer: PathComputerFactory = (self) => new TablePathComputer(self);
