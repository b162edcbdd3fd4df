/**
 * The peer table: at most one connection per peer node (the duplicate rule), spares serving out
 * their grace, the addresses peers were dialed at, and what peers() reports.
 */
import type { NodeId } from '../identity/index.js';
import type { PnetError } from '../errors.js';
import { formatAddress, ROTATE_AFTER_STREAMS } from '../transport/index.js';
import type { Connection, SocketAddress } from '../transport/index.js';
import type { PeerInfo, RotationStats } from './types.js';

/** How long a connection that lost the duplicate-connection rule keeps serving before it drains. */
const DUPLICATE_GRACE_MS = 500;
/** How long a replaced connection's open streams get to finish. */
const ROTATE_DRAIN_MS = 5 * 60_000;
/** Dial addresses remembered, at most: the least recently dialed is forgotten first (counted). */
export const MAX_KNOWN_ADDRESSES = 65_536;
/** Streams by which a connection carried fewer than the other makes both ends keep it: far above the streams in flight either end has not seen yet. */
const FRESH_MARGIN = 1024;
/** Streams carried by all of a node's open QUIC connections before the most worn are retired (~20 B of quiche's memory each). */
export const MAX_STREAM_IDS_HELD = 2_097_152;

/** What the table tells its owner: a peer came (its first connection) or went (its last one), or a connection it dialed is worn. */
export interface PeerEvents {
  up(connection: Connection): void;
  down(nodeId: NodeId, error: PnetError | undefined): void;
  /** Dial the peer of `connection` again: the fresh connection replaces it (the duplicate rule prefers the less worn). */
  rotate(connection: Connection): Promise<unknown>;
}

export class PeerTable {
  private readonly connections = new Map<NodeId, Connection>();
  /** Connections that lost the duplicate rule, serving out their grace; one takes over if the survivor dies meanwhile. */
  private readonly spares = new Map<Connection, NodeJS.Timeout>();
  /** Where each peer this node dialed was reached, least recently dialed first. */
  private readonly addresses = new Map<NodeId, SocketAddress>();
  /** Addresses forgotten at `maxAddresses`. */
  addressesEvicted = 0;
  /** End-to-end connections to far nodes (relay v2): listed by peers(), never routing neighbours. */
  private readonly relayed = new Set<Connection>();
  readonly rotation: RotationStats = { rotated: 0, replaced: 0, overBudgetClosed: 0, nodeBudgetRetired: 0 };
  /** A worn connection's stream count at which its redial may be tried (again). */
  private readonly nextRotation = new WeakMap<Connection, number>();
  /** Connections retired for the node-wide budget: no longer counted in it while they go. */
  private readonly retiring = new WeakSet<Connection>();
  /** Lookups for a new stream (live(), which other services call too) and streams accepted since the node-wide count was last taken, and how many between counts. */
  private streamsSinceCount = 0;
  private readonly countEvery: number;

  constructor(
    private readonly self: NodeId,
    private readonly events: PeerEvents,
    private readonly rotateAfter = ROTATE_AFTER_STREAMS,
    private readonly maxAddresses = MAX_KNOWN_ADDRESSES,
    private readonly maxStreamIds = MAX_STREAM_IDS_HELD,
  ) {
    // Often enough that the budget is overrun by at most ~1/64 of it between counts.
    this.countEvery = Math.max(1, Math.min(1024, Math.floor(maxStreamIds / 64)));
  }

  /** Remember where `nodeId` was reached (a dial of ours), forgetting the least recently dialed at the bound. */
  rememberAddress(nodeId: NodeId, address: SocketAddress): void {
    this.addresses.delete(nodeId);
    this.addresses.set(nodeId, address);
    if (this.addresses.size <= this.maxAddresses) return;
    const oldest = this.addresses.keys().next().value as NodeId;
    this.addresses.delete(oldest);
    this.addressesEvicted++;
  }

  /** Where `nodeId` was last reached by a dial of ours, if still remembered. */
  addressOf(nodeId: NodeId): SocketAddress | undefined {
    return this.addresses.get(nodeId);
  }

  /** The connection kept for `nodeId`, closing or not. */
  get(nodeId: NodeId): Connection | undefined {
    return this.connections.get(nodeId);
  }

  /** The connection kept for `nodeId` if it still takes new streams (asked for each new stream: a worn one's replacement starts here). */
  live(nodeId: NodeId): Connection | undefined {
    const connection = this.connections.get(nodeId);
    if (connection === undefined || connection.closing) return undefined;
    if (connection.streamsUsed >= this.rotateAfter) this.worn(connection);
    this.countStream();
    return connection;
  }

  /** A stream the peer opened on `connection`: a worn connection is replaced (ours) or, far past its budget, closed (theirs). */
  streamAccepted(connection: Connection): void {
    if (connection.streamsUsed >= this.rotateAfter && !connection.closing) this.worn(connection);
    this.countStream();
  }

  /** Every `countEvery` lookups or accepted streams, the streams all open QUIC connections carried are summed against the node's budget (O(connections), so at most once per 1,024 calls). */
  private countStream(): void {
    if (++this.streamsSinceCount < this.countEvery) return;
    this.streamsSinceCount = 0;
    const counted = [...this.connections.values(), ...this.relayed].filter((c) => c.transport === 'quic' && !c.closing && !this.retiring.has(c));
    let total = 0;
    for (const connection of counted) total += connection.streamsUsed;
    if (total <= this.maxStreamIds) return;
    // Fair eviction: the connections that carried the most go first, down to 3/4 of the budget so
    // the next count does not trip again at once.
    counted.sort((a, b) => b.streamsUsed - a.streamsUsed);
    for (const connection of counted) {
      if (total <= (this.maxStreamIds * 3) / 4) break;
      total -= connection.streamsUsed;
      this.retire(connection);
    }
  }

  /**
   * Over the node's budget. A kept connection is replaced by a fresh one this node dials, whichever
   * end dialed it (both ends prefer the fresh one by FRESH_MARGIN), so the peer never goes down;
   * a relayed one, one too fresh for that rule, or one whose peer cannot be dialed back closes,
   * its open streams given 5 s to finish.
   */
  private retire(connection: Connection): void {
    this.retiring.add(connection);
    this.rotation.nodeBudgetRetired++;
    // As the inbound close at twice the budget: 5 s for open streams (a routing or link stream never ends by itself).
    const drain = (): void => void connection.close({ reason: 'node stream budget spent' });
    if (this.connections.get(connection.remoteNodeId) !== connection || connection.streamsUsed < FRESH_MARGIN) return drain();
    this.events.rotate(connection).catch(drain);
  }

  /**
   * `connection` carried its budget of streams. Its dialer dials again (retried every eighth of
   * the budget while it stays kept); the acceptor waits for that, and closes it at twice the budget.
   */
  private worn(connection: Connection): void {
    if (connection.transport !== 'quic') return;
    const used = connection.streamsUsed;
    if (connection.direction === 'inbound') {
      if (used < 2 * this.rotateAfter) return;
      this.rotation.overBudgetClosed++;
      void connection.close({ reason: 'stream budget spent' });
      return;
    }
    if (used < (this.nextRotation.get(connection) ?? 0)) return;
    this.nextRotation.set(connection, used + Math.ceil(this.rotateAfter / 8));
    this.rotation.rotated++;
    this.events.rotate(connection).catch(() => undefined);
  }

  /** Every kept connection, by peer. */
  entries(): IterableIterator<[NodeId, Connection]> {
    return this.connections.entries();
  }

  peers(): PeerInfo[] {
    const relayed = [...this.relayed].map((connection) => peerInfo(connection, 'relay'));
    return [...[...this.connections.values()].map((connection) => peerInfo(connection)), ...relayed];
  }

  /** A relayed connection to a far node: in peers() (transport 'relay') until it closes. */
  addRelayed(connection: Connection): void {
    this.relayed.add(connection);
    connection.once('close', () => this.relayed.delete(connection));
  }

  /**
   * Takes a new connection. A second one to a peer (simultaneous dial, or a dial race's loser
   * that completed at the peer): both ends keep the same one; the other serves a grace period,
   * then drains.
   */
  add(connection: Connection): void {
    const id = connection.remoteNodeId;
    connection.on('close', (error) => this.lost(connection, error));
    const existing = this.connections.get(id);
    if (existing && !existing.closing) {
      const keep = preferred(existing, connection, this.self, this.rotateAfter);
      const drop = keep === existing ? connection : existing;
      this.connections.set(id, keep);
      const replaced = (isWorn(drop, this.rotateAfter) && !isWorn(keep, this.rotateAfter)) || drop.streamsUsed - keep.streamsUsed >= FRESH_MARGIN;
      if (replaced) this.rotation.replaced++;
      const timer = setTimeout(() => {
        this.spares.delete(drop);
        void drop.close(replaced ? { reason: 'replaced by a fresh connection', timeoutMs: ROTATE_DRAIN_MS } : { reason: 'duplicate connection' });
      }, DUPLICATE_GRACE_MS);
      timer.unref();
      this.spares.set(drop, timer);
      return;
    }
    this.connections.set(id, connection);
    this.events.up(connection);
  }

  /** Closes the connection to `nodeId` (open streams get up to `timeoutMs` to finish), its spares, or one would take over, and the relayed ones to it. */
  async disconnect(nodeId: NodeId, timeoutMs: number): Promise<void> {
    const spares = [...this.spares.keys()].filter((spare) => spare.remoteNodeId === nodeId);
    const relayed = [...this.relayed].filter((c) => c.remoteNodeId === nodeId);
    const connection = this.connections.get(nodeId);
    await Promise.all([...spares, ...relayed, ...(connection ? [connection] : [])].map((c) => c.close({ reason: 'disconnect', timeoutMs })));
  }

  /** Stops the grace timers (the node is closing; the transports close every connection). */
  close(): void {
    for (const timer of this.spares.values()) clearTimeout(timer);
    this.spares.clear();
  }

  private lost(connection: Connection, error: PnetError | undefined): void {
    const id = connection.remoteNodeId;
    const graceTimer = this.spares.get(connection);
    if (graceTimer !== undefined) {
      clearTimeout(graceTimer);
      this.spares.delete(connection);
    }
    if (this.connections.get(id) !== connection) return;
    // A duplicate still in its grace period takes over (the peer closed the one both ends kept,
    // e.g. the loser of its dial race): the peer stays up.
    for (const [spare, timer] of this.spares) {
      if (spare.remoteNodeId !== id || spare.closing) continue;
      clearTimeout(timer);
      this.spares.delete(spare);
      this.connections.set(id, spare);
      return;
    }
    this.connections.delete(id);
    this.events.down(id, error);
  }
}

/**
 * Both ends pick the same survivor: QUIC over HTTP/2 (both ends see the same kinds), then the
 * one not worn, then the one that carried FRESH_MARGIN fewer streams, then the connection dialed
 * by the smaller node id, then the smaller key.
 */
function preferred(a: Connection, b: Connection, self: NodeId, rotateAfter: number): Connection {
  if (a.transport !== b.transport) return a.transport === 'quic' ? a : b;
  if (isWorn(a, rotateAfter) !== isWorn(b, rotateAfter)) return isWorn(a, rotateAfter) ? b : a;
  if (Math.abs(a.streamsUsed - b.streamsUsed) >= FRESH_MARGIN) return a.streamsUsed < b.streamsUsed ? a : b;
  const dialerA = a.direction === 'outbound' ? self : a.remoteNodeId;
  const dialerB = b.direction === 'outbound' ? self : b.remoteNodeId;
  if (dialerA !== dialerB) return dialerA < dialerB ? a : b;
  return a.connectionKey <= b.connectionKey ? a : b;
}

/**
 * Worn for the duplicate rule: half the budget, so the acceptor, which has not yet seen the
 * streams in flight when the dialer's fresh connection arrives, agrees with the dialer.
 */
function isWorn(connection: Connection, rotateAfter: number): boolean {
  return connection.transport === 'quic' && connection.streamsUsed >= rotateAfter / 2;
}

export function peerInfo(connection: Connection, transport: PeerInfo['transport'] = connection.transport): PeerInfo {
  return {
    nodeId: connection.remoteNodeId,
    address: formatAddress(connection.remoteAddress),
    transport,
    direction: connection.direction,
    // Plain values (printed and serialised as they are): peers() and peer:up read them once.
    rttMs: connection.rttMs(),
    streams: connection.streamCount,
  };
}
