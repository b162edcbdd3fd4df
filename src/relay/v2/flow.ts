/**
 * A relayed flow (everything between this node and one far node) and the RelayPath of each QUIC
 * connection on it. Only endpoint.ts creates and changes them.
 */
import type { NodeId } from '../../identity/index.js';
import { KEY_BYTES, nodeIdAt } from '../../routing/index.js';
import type { DatagramPath, SocketAddress } from '../../transport/index.js';

/** Longest connection id QUIC v1 allows (RFC 9000 section 17.2). */
const MAX_CID = 20;
/** The connection ids pnet issues; a short header carries exactly this many (it has no length byte). */
const PNET_CID = 16;

/** The length of the destination connection id of the QUIC packet at `bytes[offset..end]`, or -1 if it cannot be read. */
function dcidLength(bytes: Uint8Array, offset: number, end: number): number {
  if (offset >= end) return -1;
  if ((bytes[offset]! & 0x80) === 0) return offset + 1 + PNET_CID <= end ? PNET_CID : -1;
  if (offset + 6 > end) return -1;
  const length = bytes[offset + 5]!;
  return length <= MAX_CID && offset + 6 + length <= end ? length : -1;
}

/** Where that id starts: after the first byte (short header), or after version and length (long header). */
function dcidStart(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! & 0x80) === 0 ? offset + 1 : offset + 6;
}

/** Is `id` (whole) the `length` bytes at `bytes[start..]`? Compared in place: no copy per packet. */
function sameId(id: Uint8Array, bytes: Uint8Array, start: number, length: number): boolean {
  if (id.length !== length) return false;
  for (let i = 0; i < length; i++) if (id[i] !== bytes[start + i]) return false;
  return true;
}

/**
 * A flow: everything between this node and one far node, whatever connections run on it. Each
 * connection gets a RelayPath on it (`endpoint.path(flow, ids)`); `send` is for callers that have
 * a packet in hand rather than a machine to drain.
 */
export interface RelayFlow {
  /** The far node (datagrams are addressed to its key; the end-to-end TLS must prove it). */
  readonly remoteNodeId: NodeId;
  /** A stable stand-in for quiche's peer address: never a socket address (see pathAddress). */
  readonly address: SocketAddress;
  /** Largest inner packet: the connections' maxDatagramSize (1244 by default). */
  readonly maxDatagramSize: number;
  /** The far node's 32 key bytes. */
  readonly key: Buffer;
  /** Opened by the far node and not confirmed yet (its handshake may be a spoof). */
  readonly pending: boolean;
  /** Evicted or closed: sends nothing any more. */
  readonly closed: boolean;
  /** The connections on it, one RelayPath each. */
  readonly paths: readonly RelayPath[];
  /** Sends one QUIC packet (a copy) to the far node via the current next hop; false when dropped here. */
  send(packet: Uint8Array): boolean;
}

/**
 * The path to one far node, from this end; only the endpoint writes its fields. Remembers the
 * last two destination connection ids it sent (a client switches from its random initial id to
 * the server's during the handshake), so an error report is believed only when it quotes one of
 * them: an off-path node cannot guess them.
 */
export class Flow<N = unknown> implements RelayFlow {
  readonly remoteNodeId: NodeId;
  readonly address: SocketAddress;
  readonly maxDatagramSize: number;
  readonly key: Buffer;
  pending: boolean;
  closed = false;
  /** When a datagram last came in (the endpoint's clock), or when a sweep saw one go out. */
  lastActivity: number;
  /** Sent since the last sweep (so send() needs no clock). */
  sentSinceSweep = false;
  /** The neighbour this flow's last datagram came from, and when: the way back while there is no route (endpoint.ts). */
  wayIn: N | undefined = undefined;
  wayInAt = -Infinity;
  readonly createdAt: number;
  /** The connections on this flow (usually one; two while a restarted far node's new one starts). */
  readonly paths: RelayPath[] = [];
  private readonly transmit: (flow: Flow<N>, packet: Uint8Array) => boolean;
  /** The destination id of the last packet out (the kept copy below, which the path that sent it shares). */
  lastSentId: Buffer | undefined;
  /** The last two destination ids sent, newest first: a copy made when an id first goes out, shared with the path that sent it. */
  private readonly sentIds: Buffer[] = [];

  constructor(transmit: (flow: Flow<N>, packet: Uint8Array) => boolean, key: Uint8Array, pending: boolean, now: number, maxDatagramSize: number) {
    this.transmit = transmit;
    this.key = Buffer.from(key.subarray(0, KEY_BYTES));
    this.remoteNodeId = nodeIdAt(this.key, 0);
    this.address = pathAddress(this.key);
    this.maxDatagramSize = maxDatagramSize;
    this.pending = pending;
    this.lastActivity = now;
    this.createdAt = now;
  }

  send(packet: Uint8Array): boolean {
    return this.transmit(this, packet);
  }

  /** Records the packet's destination connection id as `lastSentId` (a copy only when it is new; undefined if unreadable). */
  noteSent(bytes: Uint8Array, offset: number, end: number): void {
    this.sentSinceSweep = true;
    this.lastSentId = this.keptId(bytes, offset, end);
  }

  private keptId(bytes: Uint8Array, offset: number, end: number): Buffer | undefined {
    const length = dcidLength(bytes, offset, end);
    if (length < 0) return undefined;
    const start = dcidStart(bytes, offset);
    const ids = this.sentIds;
    for (const id of ids) if (sameId(id, bytes, start, length)) return id;
    const id = Buffer.from(bytes.subarray(start, start + length));
    ids.unshift(id);
    if (ids.length > 2) ids.pop();
    return id;
  }

  /** The path whose connection the packet at `bytes[offset..end]` is addressed to, if any. */
  pathFor(bytes: Uint8Array, offset: number, end: number): RelayPath | undefined {
    const paths = this.paths;
    if (paths.length === 0) return undefined;
    const length = dcidLength(bytes, offset, end);
    if (length < 0) return undefined;
    const start = dcidStart(bytes, offset);
    for (const path of paths) if (path.owns(bytes, start, length)) return path;
    return undefined;
  }

  /** Does the quoted packet start (an error report's quote) carry a connection id we sent? */
  quotes(quote: Uint8Array, offset: number, end: number): boolean {
    const length = dcidLength(quote, offset, end);
    if (length < 0) return false;
    const start = dcidStart(quote, offset);
    return this.sentIds.some((id) => sameId(id, quote, start, length));
  }
}

/** Anything that writes QUIC packets on demand: a QuicMachine (its pollTransmit). */
export interface PacketSource {
  /** Writes the next packet into `buffer`: its length, or null when none is left. */
  pollTransmit(buffer: Buffer): number | null;
}

/**
 * One QUIC connection's path over a relayed flow: the transport's DatagramPath. `transmit`
 * drains the machine straight into the datagram after the relay header (no copy); `release`
 * takes the connection off the flow (and forgets the flow when it was the last). Incoming
 * packets carrying one of `ids` (the connection ids this end issued, under which the far end
 * addresses it) come out of `endpoint.receive` with this path.
 */
export class RelayPath implements DatagramPath {
  readonly localAddress: SocketAddress;
  readonly remoteAddress: SocketAddress;
  readonly flow: RelayFlow;
  /** Whatever the QUIC host hangs on the path (its connection). */
  owner: unknown;
  private readonly ids: Buffer[];
  /** The destination connection id of this connection's last packet out (an UNKNOWN_CONNECTION report quotes it): the flow's kept copy. */
  private sentId: Buffer | undefined;
  private readonly transmitFrom: (path: RelayPath, source: PacketSource) => void;
  private readonly releaseFrom: (path: RelayPath) => void;

  constructor(
    flow: RelayFlow,
    localAddress: SocketAddress,
    ids: readonly Uint8Array[],
    transmit: (path: RelayPath, source: PacketSource) => void,
    release: (path: RelayPath) => void,
  ) {
    this.flow = flow;
    this.localAddress = localAddress;
    this.remoteAddress = flow.address;
    this.ids = ids.map((id) => Buffer.from(id));
    this.transmitFrom = transmit;
    this.releaseFrom = release;
  }

  transmit(machine: PacketSource): void {
    this.transmitFrom(this, machine);
  }

  release(): void {
    this.releaseFrom(this);
  }

  /** This connection's last packet out went to `id` (the flow's copy, see Flow.noteSent). */
  noteSent(id: Buffer | undefined): void {
    this.sentId = id;
  }

  /** Does the quoted packet start (an error report's quote) carry the connection id this connection sends to? */
  sentTo(quote: Uint8Array, offset: number, end: number): boolean {
    const id = this.sentId;
    if (id === undefined) return false;
    const length = dcidLength(quote, offset, end);
    return length >= 0 && sameId(id, quote, dcidStart(quote, offset), length);
  }

  /** Is `bytes[start..start+length]` one of this connection's ids? */
  owns(bytes: Uint8Array, start: number, length: number): boolean {
    for (const own of this.ids) if (sameId(own, bytes, start, length)) return true;
    return false;
  }
}

/**
 * A stable stand-in address for the path to a far node, for quiche's RecvInfo/SendInfo: inside
 * 100::/64, the IPv6 discard prefix (RFC 6666), so it can never reach a socket by mistake.
 */
export function pathAddress(key: Uint8Array): SocketAddress {
  const hex = Buffer.from(key.subarray(0, 10)).toString('hex');
  const groups = [0, 4, 8, 12].map((i) => hex.slice(i, i + 4).replace(/^0+(?=.)/, ''));
  return { host: `100::${groups.join(':')}`, port: ((key[8]! << 8) | key[9]!) || 1 };
}
