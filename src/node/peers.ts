/**
 * The peer table: at most one connection per peer node (the duplicate rule), spares serving out
 * their grace, the addresses peers were dialed at, and what peers() reports.
 */
import type { NodeId } from '../identity/index.js';
import type { PnetError } from '../errors.js';
import { formatAddress } from '../transport/index.js';
import type { Connection, SocketAddress } from '../transport/index.js';
import type { PeerInfo } from './types.js';

/** How long a connection that lost the duplicate-connection rule keeps serving before it drains. */
const DUPLICATE_GRACE_MS = 500;

/** What the table tells its owner: a peer came (its first connection) or went (its last one). */
export interface PeerEvents {
  up(connection: Connection): void;
  down(nodeId: NodeId, error: PnetError | undefined): void;
}

export class PeerTable {
  private readonly connections = new Map<NodeId, Connection>();
  /** Connections that lost the duplicate rule, serving out their grace; one takes over if the survivor dies meanwhile. */
  private readonly spares = new Map<Connection, NodeJS.Timeout>();
  /** Where each peer this node dialed was reached. */
  readonly addresses = new Map<NodeId, SocketAddress>();
  /** End-to-end connections to far nodes (relay v2): listed by peers(), never routing neighbours. */
  private readonly relayed = new Set<Connection>();

  constructor(
    private readonly self: NodeId,
    private readonly events: PeerEvents,
  ) {}

  /** The connection kept for `nodeId`, closing or not. */
  get(nodeId: NodeId): Connection | undefined {
    return this.connections.get(nodeId);
  }

  /** The connection kept for `nodeId` if it still takes new streams. */
  live(nodeId: NodeId): Connection | undefined {
    const connection = this.connections.get(nodeId);
    return connection === undefined || connection.closing ? undefined : connection;
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
      const keep = preferred(existing, connection, this.self);
      const drop = keep === existing ? connection : existing;
      this.connections.set(id, keep);
      const timer = setTimeout(() => {
        this.spares.delete(drop);
        void drop.close({ reason: 'duplicate connection' });
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
 * connection dialed by the smaller node id, then the smaller key.
 */
function preferred(a: Connection, b: Connection, self: NodeId): Connection {
  if (a.transport !== b.transport) return a.transport === 'quic' ? a : b;
  const dialerA = a.direction === 'outbound' ? self : a.remoteNodeId;
  const dialerB = b.direction === 'outbound' ? self : b.remoteNodeId;
  if (dialerA !== dialerB) return dialerA < dialerB ? a : b;
  return a.connectionKey <= b.connectionKey ? a : b;
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
