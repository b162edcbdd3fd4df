import { PnetError } from '../../errors.js';
import type { NodeId } from '../../identity/index.js';
import { numberOption } from '../../options.js';
import { heaviestOther } from '../../shares.js';
import { KEY_BYTES, keyBytesOf, nodeIdAt } from '../../routing/index.js';
import type { SocketAddress } from '../../transport/index.js';
import { KeyTable } from './key-table.js';
import { WAY_BACK_MS } from './forwarder.js';
import { Flow, RelayPath, pathAddress, type PacketSource, type RelayFlow } from './flow.js';
import {
  DEFAULT_HOP_LIMIT,
  DST_OFFSET,
  ERROR_CODES,
  ERROR_CODE_OFFSET,
  ERROR_DST_OFFSET,
  ERROR_QUOTE_OFFSET,
  HEADER_BYTES,
  HOP_LIMIT_OFFSET,
  INNER_DATAGRAM_SIZE,
  KIND_DATA,
  MAX_INNER_DATAGRAM_SIZE,
  MAX_RELAYED_BYTES,
  MIN_INNER_DATAGRAM_SIZE,
  SRC_OFFSET,
  headerProblem,
  sameKey,
} from './header.js';

export interface EndpointOptions {
  /** Relayed flows (far nodes with a path) at once (default 1,024). */
  maxFlows?: number;
  /**
   * Flows opened by a far node whose QUIC handshake has not been confirmed yet (default 64). Their
   * source key is not proven yet, so they are held per previous hop (the neighbour that delivered
   * the Initial, which is authenticated): at the cap, the oldest pending flow of the hop holding
   * the most is evicted for a hop holding fewer.
   */
  maxPendingFlows?: number;
  /** Pending flows one previous hop may hold (default 32, at most maxPendingFlows). */
  maxPendingFlowsPerHop?: number;
  /** A flow with no datagram either way for this long is evicted (default 30 s; keep-alives keep a live one). */
  idleTimeoutMs?: number;
  /** An inbound flow not confirmed within this long is evicted (default 10 s). */
  pendingTimeoutMs?: number;
  /** Hop limit put on every datagram sent (default 16). */
  hopLimit?: number;
  /** Largest inner QUIC packet (default 1244: fits a 1350-byte link; raise only if every link is larger). */
  innerDatagramSize?: number;
}

/** What the endpoint needs from the node: its key, its routes, its links. */
export interface EndpointHost<N> {
  readonly selfKey: Uint8Array;
  nextHop(bytes: Uint8Array, offset: number): N | undefined;
  room(neighbour: N): number;
  /** Sends a relayed datagram on the link to `neighbour` now; the buffer is reused once this returns. */
  sendTo(neighbour: N, datagram: Uint8Array): boolean;
}

export type EndpointDropReason = 'malformed' | 'unknownFlow' | 'flowLimit' | 'staleError' | 'pendingHopLimit';

/** What a datagram delivered to this node means for its flows. */
export type EndpointEvent =
  /**
   * An inner QUIC packet from `flow`'s far node: for the connection on `path` (the one whose
   * connection id it carries), or, when `path` is undefined, for none yet (a QUIC host accepts a
   * connection if it is an Initial: `created` says a far node's first Initial made the flow).
   */
  | {
      readonly kind: 'packet';
      readonly flow: RelayFlow;
      readonly path: RelayPath | undefined;
      readonly packet: Buffer;
      readonly created: boolean;
      /** A pending flow of another previous hop evicted to make room for this one: close its paths' connections. */
      readonly evicted?: RelayFlow;
    }
  /** A hop reported that `flow`'s datagrams cannot get through (the quote matched a packet we sent). */
  | {
      readonly kind: 'error';
      readonly flow: RelayFlow;
      readonly error: PnetError;
      /** UNKNOWN_CONNECTION: the paths whose connection the far node no longer has (the report quotes their packet). */
      readonly forgotten?: readonly RelayPath[];
    }
  | { readonly kind: 'drop'; readonly reason: EndpointDropReason };

export interface EndpointStats extends Record<EndpointDropReason, number> {
  sent: number;
  sentBytes: number;
  received: number;
  receivedBytes: number;
  /** Packets `send` refused: no route, link too small, too large, flow closed. */
  sendNoRoute: number;
  /** Packets sent with no route to the far node, to the neighbour its packets came from lately (WAY_BACK_MS). */
  sentBack: number;
  sendTooBig: number;
  sendFailed: number;
  errorsReported: number;
  evicted: number;
  /** Pending flows evicted at maxPendingFlows for a previous hop holding fewer. */
  pendingEvicted: number;
}

type Resolved = Required<EndpointOptions>;

function resolveOptions(options: EndpointOptions): Resolved {
  const where = 'relay endpoint option';
  const maxFlows = numberOption(where, 'maxFlows', options.maxFlows, 1024, { min: 1, integer: true });
  const maxPendingFlows = numberOption(where, 'maxPendingFlows', options.maxPendingFlows, 64, { min: 1, max: maxFlows, integer: true });
  return {
    maxFlows,
    maxPendingFlows,
    maxPendingFlowsPerHop: numberOption(where, 'maxPendingFlowsPerHop', options.maxPendingFlowsPerHop, Math.min(32, maxPendingFlows), { min: 1, max: maxPendingFlows, integer: true }),
    idleTimeoutMs: numberOption(where, 'idleTimeoutMs', options.idleTimeoutMs, 30_000, { min: 0, above: true }),
    pendingTimeoutMs: numberOption(where, 'pendingTimeoutMs', options.pendingTimeoutMs, 10_000, { min: 0, above: true }),
    hopLimit: numberOption(where, 'hopLimit', options.hopLimit, DEFAULT_HOP_LIMIT, { min: 1, max: 255, integer: true }),
    innerDatagramSize: numberOption(where, 'innerDatagramSize', options.innerDatagramSize, INNER_DATAGRAM_SIZE, {
      min: MIN_INNER_DATAGRAM_SIZE,
      max: MAX_INNER_DATAGRAM_SIZE,
      integer: true,
    }),
  };
}

/**
 * Both ends of relay v2, sans-IO: maps far node keys to flows (a RelayPath per connection), wraps what
 * a flow sends in the relay header for the current next hop, and hands what the forwarder
 * delivered to the right flow. Bounded: maxFlows flows, of which at most maxPendingFlows were
 * opened by far nodes and not yet confirmed; idle flows are evicted by handleTimeout.
 */
export class RelayEndpoint<N> {
  readonly stats: EndpointStats = {
    sent: 0,
    sentBytes: 0,
    received: 0,
    receivedBytes: 0,
    sendNoRoute: 0,
    sentBack: 0,
    sendTooBig: 0,
    sendFailed: 0,
    malformed: 0,
    unknownFlow: 0,
    flowLimit: 0,
    staleError: 0,
    pendingHopLimit: 0,
    errorsReported: 0,
    evicted: 0,
    pendingEvicted: 0,
  };
  readonly options: Resolved;
  private readonly host: EndpointHost<N>;
  private readonly flows = new KeyTable<Flow<N>>();
  private pendingCount = 0;
  /** Pending flows by the previous hop that delivered their Initial, oldest first. */
  private readonly pendingByHop = new Map<N | undefined, Set<Flow<N>>>();
  private readonly hopOf = new Map<Flow<N>, N | undefined>();
  /** The datagram being sent: header fields rewritten per packet, our own key written once. */
  private readonly out = Buffer.alloc(MAX_RELAYED_BYTES);
  /** Where a machine writes its packet: right after the header in `out` (no copy). */
  private readonly packetRoom: Buffer;
  /** This node as quiche's local address on relayed paths. */
  readonly localAddress: SocketAddress;
  private nextSweep: number;
  /** The clock as last fed (receive, handleTimeout): how fresh a flow's way in is. */
  private clock: number;

  constructor(host: EndpointHost<N>, options: EndpointOptions = {}, now = 0) {
    if (host.selfKey.length !== KEY_BYTES) throw new RangeError('selfKey must be 32 bytes');
    this.host = host;
    this.options = resolveOptions(options);
    this.out.set(host.selfKey, SRC_OFFSET);
    this.packetRoom = this.out.subarray(HEADER_BYTES, HEADER_BYTES + this.options.innerDatagramSize);
    this.clock = now;
    this.localAddress = pathAddress(host.selfKey);
    this.nextSweep = now + this.sweepInterval();
  }

  get flowCount(): number {
    return this.flows.size;
  }

  /** The flow to `far`, if any. */
  flow(far: NodeId): RelayFlow | undefined {
    return this.flows.get(keyBytesOf(far), 0);
  }

  /**
   * The path to `far` for a connection this node opens. Fails before anything is sent when the
   * opener's own routes say it cannot work: UNREACHABLE (no route), HOP_LIMIT (`routeHops`, the
   * route's length if known, over the hop limit), ERR_CONNECTION_LIMIT (maxFlows).
   */
  open(far: NodeId, now: number, routeHops?: number): RelayFlow {
    const key = keyBytesOf(far);
    if (sameKey(key, 0, this.host.selfKey, 0)) throw new PnetError('UNREACHABLE', 'a relayed path to this node itself');
    if (this.host.nextHop(key, 0) === undefined) throw new PnetError('UNREACHABLE', `no route to ${far}`);
    if (routeHops !== undefined && routeHops > this.options.hopLimit) {
      throw new PnetError('HOP_LIMIT', `${far} is ${routeHops} hops away, over the hop limit of ${this.options.hopLimit}`);
    }
    const existing = this.flows.get(key, 0);
    if (existing !== undefined) {
      this.confirm(existing);
      return existing;
    }
    if (this.flows.size >= this.options.maxFlows) throw new PnetError('ERR_CONNECTION_LIMIT', `relayed flow limit (${this.options.maxFlows}) reached`);
    const flow = new Flow<N>(this.transmit, key, false, now, this.options.innerDatagramSize);
    this.flows.set(key, flow);
    return flow;
  }

  /** The far node's handshake finished and its certificate proved `flow.remoteNodeId`: no longer pending. */
  confirm(relayFlow: RelayFlow): void {
    const flow = this.own(relayFlow);
    if (flow === undefined || !flow.pending || flow.closed) return;
    flow.pending = false;
    this.pendingCount--;
    this.leaveHop(flow);
  }

  /** Forgets a flow (its connections are gone). */
  close(relayFlow: RelayFlow): void {
    const flow = this.own(relayFlow);
    if (flow === undefined || flow.closed) return;
    flow.closed = true;
    if (flow.pending) this.pendingCount--;
    this.leaveHop(flow);
    if (this.flows.get(flow.key, 0) === flow) this.flows.delete(flow.key);
  }

  /**
   * A path on `flow` for one QUIC connection (the transport's DatagramPath): `ids` are the
   * connection ids this end issued for it (for an accepted connection also the client's initial
   * destination id), by which packets from the far node are told apart when several connections
   * share the flow.
   */
  path(relayFlow: RelayFlow, ids: readonly Uint8Array[]): RelayPath {
    const flow = this.own(relayFlow);
    if (flow === undefined || flow.closed) throw new PnetError('ERR_CONNECTION_CLOSED', `the relayed flow to ${relayFlow.remoteNodeId} is closed`);
    const path = new RelayPath(flow, this.localAddress, ids, this.drain, this.releasePath);
    flow.paths.push(path);
    return path;
  }

  /** The flow's own object if it is one of ours. */
  private own(flow: RelayFlow): Flow<N> | undefined {
    return flow instanceof Flow && this.flows.get(flow.key, 0) === flow ? (flow as Flow<N>) : undefined;
  }

  /** What a flow's send() does: the packet after the header in `out`, then out. */
  private readonly transmit = (flow: Flow<N>, packet: Uint8Array): boolean => {
    if (flow.closed || packet.length === 0 || packet.length > flow.maxDatagramSize) {
      this.stats.sendFailed++;
      return false;
    }
    this.out.set(packet, HEADER_BYTES);
    return this.sendOut(flow, packet.length);
  };

  /** What a path's transmit() does: drains the machine into `out` after the header, packet by packet. */
  private readonly drain = (path: RelayPath, source: PacketSource): void => {
    const flow = path.flow as Flow<N>;
    for (;;) {
      const length = source.pollTransmit(this.packetRoom);
      if (length === null) return;
      // A packet for a closed flow is dropped; the machine must still be drained.
      if (flow.closed || length === 0) this.stats.sendFailed++;
      else if (this.sendOut(flow, length)) path.noteSent(flow.lastSentId);
    }
  };

  /** A connection ended: off its flow, and the flow forgotten with its last connection. */
  private readonly releasePath = (path: RelayPath): void => {
    const flow = path.flow as Flow<N>;
    const at = flow.paths.indexOf(path);
    if (at >= 0) flow.paths.splice(at, 1);
    if (flow.paths.length === 0) this.close(flow);
  };

  /** Sends `out[66..66+length]` (an inner packet) to the flow's far node: header, next hop, room. */
  private sendOut(flow: Flow<N>, length: number): boolean {
    const stats = this.stats;
    const next = this.host.nextHop(flow.key, 0) ?? this.wayBack(flow);
    if (next === undefined) {
      stats.sendNoRoute++;
      return false;
    }
    const total = HEADER_BYTES + length;
    if (total > this.host.room(next)) {
      stats.sendTooBig++;
      return false;
    }
    const out = this.out;
    out[0] = KIND_DATA;
    out[HOP_LIMIT_OFFSET] = this.options.hopLimit;
    flow.key.copy(out, DST_OFFSET);
    flow.noteSent(out, HEADER_BYTES, total);
    stats.sent++;
    stats.sentBytes += total;
    return this.host.sendTo(next, out.subarray(0, total));
  }

  /**
   * No route to the far node (its links' records not out yet, forwarder.ts WAY_BACK_MS): the
   * neighbour its packets came from lately, if that link is up. The neighbour is the endpoint's
   * own hop type: `receive` was given it as `prevHop`.
   */
  private wayBack(flow: Flow<N>): N | undefined {
    const hop = flow.wayIn;
    if (hop === undefined || this.clock - flow.wayInAt > WAY_BACK_MS || this.host.room(hop) === 0) return undefined;
    this.stats.sentBack++;
    return hop;
  }

  /** A datagram the forwarder delivered here (destination = this node), from the neighbour `prevHop`. */
  receive(datagram: Uint8Array, now: number, prevHop?: N): EndpointEvent {
    this.stats.received++;
    this.stats.receivedBytes += datagram.length;
    if (headerProblem(datagram) !== undefined || !sameKey(datagram, DST_OFFSET, this.host.selfKey, 0)) return this.drop('malformed');
    if (datagram[0] !== KIND_DATA) return this.receiveError(datagram);
    let flow = this.flows.get(datagram, SRC_OFFSET);
    let created = false;
    let evicted: Flow<N> | undefined;
    if (flow === undefined) {
      const refused = this.refuseNewFlow(datagram, prevHop);
      if (typeof refused === 'string') return this.drop(refused);
      evicted = refused;
      flow = new Flow<N>(this.transmit, datagram.subarray(SRC_OFFSET, SRC_OFFSET + KEY_BYTES), true, now, this.options.innerDatagramSize);
      this.flows.set(flow.key, flow);
      this.pendingCount++;
      this.joinHop(flow, prevHop);
      created = true;
    }
    flow.lastActivity = now;
    this.clock = now;
    if (prevHop !== undefined) {
      flow.wayIn = prevHop;
      flow.wayInAt = now;
    }
    const packet = Buffer.from(datagram.buffer, datagram.byteOffset + HEADER_BYTES, datagram.byteLength - HEADER_BYTES);
    return { kind: 'packet', flow, path: flow.pathFor(datagram, HEADER_BYTES, datagram.length), packet, created, ...(evicted ? { evicted } : {}) };
  }

  private joinHop(flow: Flow<N>, hop: N | undefined): void {
    let set = this.pendingByHop.get(hop);
    if (set === undefined) this.pendingByHop.set(hop, (set = new Set()));
    set.add(flow);
    this.hopOf.set(flow, hop);
  }

  private leaveHop(flow: Flow<N>): void {
    if (!this.hopOf.has(flow)) return;
    const hop = this.hopOf.get(flow);
    this.hopOf.delete(flow);
    const set = this.pendingByHop.get(hop);
    if (set === undefined) return;
    set.delete(flow);
    if (set.size === 0) this.pendingByHop.delete(hop);
  }

  /**
   * Evicts unconfirmed flows past pendingTimeoutMs and idle flows with no connection on them (a
   * connection's own idle timeout governs the rest); returns them: close their paths' connections.
   */
  handleTimeout(now: number): RelayFlow[] {
    this.clock = now;
    if (now < this.nextSweep) return [];
    this.nextSweep = now + this.sweepInterval();
    const { idleTimeoutMs, pendingTimeoutMs } = this.options;
    const evicted: Flow<N>[] = [];
    for (const [, flow] of this.flows.entries()) {
      if (flow.sentSinceSweep) {
        flow.sentSinceSweep = false;
        flow.lastActivity = Math.max(flow.lastActivity, now);
      }
      const idle = flow.paths.length === 0 && now - flow.lastActivity >= idleTimeoutMs;
      if (idle || (flow.pending && now - flow.createdAt >= pendingTimeoutMs)) evicted.push(flow);
    }
    for (const flow of evicted) this.close(flow);
    this.stats.evicted += evicted.length;
    return evicted;
  }

  /** When handleTimeout next has work (absolute, the caller's clock). */
  pollTimeout(): number {
    return this.nextSweep;
  }

  private sweepInterval(): number {
    return Math.max(1, Math.min(this.options.idleTimeoutMs, this.options.pendingTimeoutMs) / 4);
  }

  /**
   * Why a datagram from an unknown far node may not open a flow; undefined if it may; a Flow if it
   * may once that pending flow (of the previous hop holding the most) was evicted, which this did.
   */
  private refuseNewFlow(datagram: Uint8Array, hop: N | undefined): EndpointDropReason | Flow<N> | undefined {
    // Only a QUIC v1 Initial (long header, type 0) of full size opens a flow: stray packets of a
    // forgotten connection must not make new ones.
    const first = datagram[HEADER_BYTES]!;
    if ((first & 0xf0) !== 0xc0 || datagram.length - HEADER_BYTES < MIN_INNER_DATAGRAM_SIZE) return 'unknownFlow';
    if (this.flows.size >= this.options.maxFlows) return 'flowLimit';
    const holds = this.pendingByHop.get(hop)?.size ?? 0;
    if (this.pendingCount < this.options.maxPendingFlows) return holds >= this.options.maxPendingFlowsPerHop ? 'pendingHopLimit' : undefined;
    if (holds >= this.options.maxPendingFlowsPerHop) return 'flowLimit';
    const heaviest = heaviestOther(this.pendingByHop, hop, (set) => set.size);
    if (heaviest === undefined || heaviest.weight <= holds + 1) return 'flowLimit';
    const victim = heaviest.group.values().next().value as Flow<N>;
    this.close(victim);
    this.stats.pendingEvicted++;
    return victim;
  }

  private receiveError(datagram: Uint8Array): EndpointEvent {
    const code = ERROR_CODES[datagram[ERROR_CODE_OFFSET]! - 1];
    if (code === undefined) return this.drop('malformed');
    const flow = this.flows.get(datagram, ERROR_DST_OFFSET);
    if (flow === undefined) return this.drop('unknownFlow');
    const reporter = nodeIdAt(Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength), SRC_OFFSET);
    if (code === 'UNKNOWN_CONNECTION') {
      // Only the far node itself may say it has no connection for our packet (it restarted or closed
      // it: a Stateless Reset's job), and only about the id a connection of ours sends to now.
      const forgotten = reporter === flow.remoteNodeId ? flow.paths.filter((path) => path.sentTo(datagram, ERROR_QUOTE_OFFSET, datagram.length)) : [];
      if (forgotten.length === 0) return this.drop('staleError');
      this.stats.errorsReported++;
      return { kind: 'error', flow, error: new PnetError('ERR_CONNECTION_CLOSED', `${reporter} has no such connection (it restarted or closed it)`), forgotten };
    }
    if (!flow.quotes(datagram, ERROR_QUOTE_OFFSET, datagram.length)) return this.drop('staleError');
    this.stats.errorsReported++;
    const what = code === 'UNREACHABLE' ? 'has no route to' : code === 'HOP_LIMIT' ? 'ran out of hops towards' : 'refuses to relay to';
    return { kind: 'error', flow, error: new PnetError(code, `relay hop ${reporter} ${what} ${flow.remoteNodeId}`) };
  }

  private drop(reason: EndpointDropReason): EndpointEvent {
    this.stats[reason]++;
    return { kind: 'drop', reason };
  }
}
