import type { NodeId } from '../../identity/index.js';
import { keyBytesOf, type RouteChange } from '../../routing/index.js';
import { KeyTable } from './key-table.js';

/**
 * The router's next hops by destination key bytes, for the forwarder and the endpoint: kept up to
 * date from the router's 'routes-changed' actions, looked up where the key lies in a datagram
 * (no allocation). A leaf's router lists only its neighbours and sends the rest by its default
 * route; set `defaultHop` to it.
 */
export class NextHopTable {
  /** Where a destination with no route of its own goes (a leaf's default route), if anywhere. */
  defaultHop: NodeId | undefined;
  private readonly hops = new KeyTable<NodeId>();
  private readonly lengths = new Map<NodeId, number>();

  /** Applies a 'routes-changed' action's entries. */
  apply(changes: readonly RouteChange[]): void {
    for (const change of changes) {
      const key = keyBytesOf(change.dest);
      if (change.nextHop === undefined) {
        this.hops.delete(key);
        this.lengths.delete(change.dest);
      } else {
        this.hops.set(key, change.nextHop);
        if (change.hops === undefined) this.lengths.delete(change.dest);
        else this.lengths.set(change.dest, change.hops);
      }
    }
  }

  /** The neighbour for the destination key at `bytes[offset..offset+32]`: its route, else the default. */
  readonly nextHop = (bytes: Uint8Array, offset: number): NodeId | undefined => this.hops.get(bytes, offset) ?? this.defaultHop;

  /** The route's length in hops, when the router said (an opener checks it against its hop limit). */
  hopsTo(dest: NodeId): number | undefined {
    return this.lengths.get(dest);
  }

  /** Destinations with a route of their own. */
  get size(): number {
    return this.hops.size;
  }

  clear(): void {
    this.hops.clear();
    this.lengths.clear();
  }
}
