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

/**
 * The destination connection id of a QUIC packet at `bytes[offset..end]` copied into
 * `out[at..at+20]`: its length, or -1 if it cannot be read.
 */
function copyDcid(bytes: Uint8Array, offset: number, end: number, out: Uint8Array, at: number): number {
  if (offset >= end) return -1;
  let start = offset + 1;
  let length = PNET_CID;
  if ((bytes[offset]! & 0x80) !== 0) {
    if (offset + 6 > end) return -1;
    length = bytes[offset + 5]!;
    start = offset + 6;
    if (length > MAX_CID) return -1;
  }
  if (start + length > end) return -1;
  out.set(bytes.subarray(start, start + length), at);
  return length;
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
export class Flow implements RelayFlow {
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
  readonly createdAt: number;
  /** The connections on this flow (usually one; two while a restarted far node's new one starts). */
  readonly paths: RelayPath[] = [];
  private readonly transmit: (flow: Flow, packet: Uint8Array) => boolean;
  private readonly dcids = Buffer.alloc(2 * MAX_CID);
  private readonly dcidLengths = [-1, -1];
  private readonly scratch = Buffer.alloc(MAX_CID);

  constructor(transmit: (flow: Flow, packet: Uint8Array) => boolean, key: Uint8Array, pending: boolean, now: number, maxDatagramSize: number) {
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

  /** Records the packet's destination connection id if it is new. */
  noteSent(bytes: Uint8Array, offset: number, end: number): void {
    this.sentSinceSweep = true;
    const length = copyDcid(bytes, offset, end, this.scratch, 0);
    if (length < 0 || this.matches(this.scratch, length)) return;
    this.dcids.copy(this.dcids, MAX_CID, 0, MAX_CID);
    this.dcidLengths[1] = this.dcidLengths[0]!;
    this.scratch.copy(this.dcids, 0, 0, length);
    this.dcidLengths[0] = length;
  }

  /** The path whose connection the packet at `bytes[offset..end]` is addressed to, if any. */
  pathFor(bytes: Uint8Array, offset: number, end: number): RelayPath | undefined {
    const paths = this.paths;
    if (paths.length === 0) return undefined;
    const length = copyDcid(bytes, offset, end, this.scratch, 0);
    if (length < 0) return undefined;
    for (const path of paths) if (path.owns(this.scratch, length)) return path;
    return undefined;
  }

  /** Does the quoted packet start (an error report's quote) carry a connection id we sent? */
  quotes(quote: Uint8Array, offset: number, end: number): boolean {
    const length = copyDcid(quote, offset, end, this.scratch, 0);
    return length >= 0 && this.matches(this.scratch, length);
  }

  private matches(dcid: Uint8Array, length: number): boolean {
    for (let slot = 0; slot < 2; slot++) {
      if (this.dcidLengths[slot] !== length) continue;
      if (this.dcids.compare(dcid, 0, length, slot * MAX_CID, slot * MAX_CID + length) === 0) return true;
    }
    return false;
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
  /** The destination connection id of this connection's last packet out (an UNKNOWN_CONNECTION report quotes it). */
  private readonly sentDcid = Buffer.alloc(MAX_CID);
  private sentDcidLength = -1;
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

  /** Records the destination connection id of the packet at `bytes[offset..end]` that this connection sent. */
  noteSent(bytes: Uint8Array, offset: number, end: number): void {
    this.sentDcidLength = copyDcid(bytes, offset, end, this.sentDcid, 0);
  }

  /** Does the quoted packet start (an error report's quote) carry the connection id this connection sends to? */
  sentTo(quote: Uint8Array, offset: number, end: number): boolean {
    const length = this.sentDcidLength;
    if (length < 0) return false;
    const scratch = Buffer.alloc(MAX_CID);
    return copyDcid(quote, offset, end, scratch, 0) === length && this.sentDcid.compare(scratch, 0, length, 0, length) === 0;
  }

  /** Is `id[0..length]` one of this connection's ids? */
  owns(id: Uint8Array, length: number): boolean {
    for (const own of this.ids) if (own.length === length && own.compare(id, 0, length) === 0) return true;
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
