import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import { numberOption } from '../options.js';
import { heaviestOther } from '../shares.js';
import { isNodeId } from '../identity/index.js';
import type { Identity, NodeId } from '../identity/index.js';
import type { ChannelRequestInfo } from '../channel/index.js';
import { resetCodeOf, resetLeg, tunnelClient, tunnelServer } from './tunnel.js';
import type { EndpointOptions, ForwarderOptions } from './v2/index.js';

/** The reserved channel that carries a stream towards a node that is not a neighbour. */
export const RELAY_CHANNEL = 'pnet/relay';

export interface RelayOptions {
  /** Hops a relayed stream may take (default 16). */
  maxHops?: number;
  /** Relayed streams one neighbour may have through this node at once (default 256). */
  maxStreamsPerPeer?: number;
  /**
   * Relayed streams all neighbours together may have through this node at once (default 4,096).
   * At the cap, the oldest stream of the neighbour holding the most is cut for a newcomer holding
   * fewer; else the newcomer is refused RELAY_REFUSED.
   */
  maxStreams?: number;
  /** A relayed stream is cut after this long (default 1 hour). */
  maxLifetimeMs?: number;
  /** A relayed stream is cut after this many bytes, both directions together (default 16 GiB). */
  maxBytes?: number;
  /** Sees every chunk this node forwards for others (accounting, audits): relay v2's whole datagrams. */
  onForward?: (chunk: Buffer) => void;
  /**
   * Relay v2 (docs/RELAY.md): one end-to-end QUIC connection per far node, its packets forwarded
   * hop by hop as QUIC DATAGRAM frames (on an HTTP/2 link, on its datagram stream). The stream
   * relay above stays the fallback where a node on the path has no relay v2. Default true.
   */
  datagrams?: boolean;
  /**
   * Relay v2 over QUIC links: relayed datagrams leave as UDP datagrams of their own on the link's
   * socket (link packets, docs/RELAY.md) rather than inside the link's QUIC. False: this node
   * neither sends nor takes them, and its neighbours use DATAGRAM frames towards it. Default true.
   */
  linkPackets?: boolean;
  /** Relay v2: a relayed connection with no stream for this long is closed (default 30 s). */
  idleTimeoutMs?: number;
  /** Relay v2: per-neighbour forwarding budgets and error reports. */
  forwarder?: Omit<ForwarderOptions, 'hopLimit'>;
  /** Relay v2: flows at the ends. */
  endpoint?: Omit<EndpointOptions, 'hopLimit'>;
}

/** What the relay needs from the node around it. */
export interface RelayHost {
  readonly identity: Identity;
  /** The neighbour to send traffic for `destination` through, or null when there is no route. */
  nextHop(destination: NodeId): NodeId | null;
  /** Opens a stream to a neighbour on a channel; resolves after ACCEPT, rejects with the REJECT's code. */
  openToNeighbour(peer: NodeId, channel: string, metadata: Record<string, string>): Promise<Duplex>;
  /** Serves a stream that came out of a tunnel: channel negotiation, as on a direct stream. */
  acceptTunnelled(stream: Duplex, origin: NodeId): void;
}

/** Counters of the streams this node relays for others (monotonic, except `active`). */
export interface RelayStats {
  /** Relayed streams spliced now. */
  active: number;
  /** Relayed streams spliced since start. */
  flows: number;
  /** Bytes forwarded for others, both directions together. */
  bytes: number;
  /** Requests refused: the upstream neighbour already had maxStreamsPerPeer through this node. */
  refusedPeerLimit: number;
  /** Requests refused: maxStreams through this node and no neighbour holding more than the newcomer would. */
  refusedNodeLimit: number;
  /** Relayed streams cut at maxStreams for a neighbour holding fewer (the heaviest neighbour's oldest). */
  evicted: number;
  /** Streams cut at maxLifetimeMs. */
  cutLifetime: number;
  /** Streams cut at maxBytes. */
  cutBytes: number;
}

const WHERE = 'relay option';

type Resolved = Required<Pick<RelayOptions, 'maxHops' | 'maxStreamsPerPeer' | 'maxStreams' | 'maxLifetimeMs' | 'maxBytes'>> & Pick<RelayOptions, 'onForward'>;

/** One relayed stream's place in the limits, from its authorise hook to its close; `cut` ends it for eviction. */
interface Slot {
  readonly peer: NodeId;
  cut(): void;
}

/**
 * Hop-by-hop relay. A hop asks its routing table for the next hop, opens the
 * next leg before it accepts (so UNREACHABLE, HOP_LIMIT or RELAY_REFUSED from
 * further down reach the opener as the REJECT code), then splices the two
 * legs. The two ends run TLS 1.3 inside, so hops see only ciphertext.
 */
export class RelayService {
  private readonly host: RelayHost;
  private readonly options: Resolved;
  /** Each upstream neighbour's relayed streams, oldest first (pending ones included). */
  private readonly perPeer = new Map<NodeId, Set<Slot>>();
  private slots = 0;
  /** Next legs opened while authorising, waiting for their handler call; null: evicted meanwhile. */
  private readonly pending = new WeakMap<ChannelRequestInfo, { leg: Duplex; slot: Slot } | null>();
  private readonly counters: RelayStats = { active: 0, flows: 0, bytes: 0, refusedPeerLimit: 0, refusedNodeLimit: 0, evicted: 0, cutLifetime: 0, cutBytes: 0 };

  constructor(host: RelayHost, options: RelayOptions = {}) {
    this.host = host;
    this.options = {
      maxHops: numberOption(WHERE, 'maxHops', options.maxHops, 16, { integer: true }),
      maxStreamsPerPeer: numberOption(WHERE, 'maxStreamsPerPeer', options.maxStreamsPerPeer, 256, { integer: true }),
      maxStreams: numberOption(WHERE, 'maxStreams', options.maxStreams, 4096, { integer: true }),
      // A Node timer fires at once past 2^31 - 1 ms.
      maxLifetimeMs: numberOption(WHERE, 'maxLifetimeMs', options.maxLifetimeMs, 3_600_000, { above: true, max: 2 ** 31 - 1 }),
      maxBytes: numberOption(WHERE, 'maxBytes', options.maxBytes, 16 * 1024 ** 3),
      onForward: options.onForward,
    };
  }

  /** Opens a tunnel to `destination` through `firstHop`; resolves with the end-to-end TLS stream. */
  async open(destination: NodeId, signal?: AbortSignal): Promise<Duplex> {
    const firstHop = this.host.nextHop(destination);
    if (firstHop === null) throw new PnetError('UNREACHABLE', `no route to ${destination}`);
    const leg = await this.host.openToNeighbour(firstHop, RELAY_CHANNEL, {
      dst: destination,
      src: this.host.identity.nodeId,
      hops: String(this.options.maxHops),
    });
    return tunnelClient(leg, this.host.identity, destination, signal);
  }

  /** Authorise hook of the relay channel: decide, and open the next leg before accepting. */
  readonly authorise = async (info: ChannelRequestInfo): Promise<boolean> => {
    const { dst, src, hops } = info.metadata;
    const hopsLeft = Number(hops);
    if (dst === undefined || src === undefined || !isNodeId(dst) || !isNodeId(src) || !Number.isInteger(hopsLeft) || hopsLeft < 1) {
      throw new PnetError('RELAY_REFUSED', 'relay request needs dst, src and hops');
    }
    if (dst === this.host.identity.nodeId) return true; // we are the destination
    if (hopsLeft <= 1) throw new PnetError('HOP_LIMIT', `hop limit reached before ${dst}`);
    const upstream = info.remoteNodeId;
    const next = this.host.nextHop(dst);
    if (next === null) throw new PnetError('UNREACHABLE', `no route to ${dst}`);
    if (next === upstream || next === src) throw new PnetError('RELAY_REFUSED', `routing loop towards ${dst}`);
    let cancelled = false;
    const slot = this.take(upstream, () => {
      cancelled = true;
    });
    try {
      const leg = await this.host.openToNeighbour(next, RELAY_CHANNEL, { dst, src, hops: String(hopsLeft - 1) });
      if (cancelled) {
        leg.destroy();
        throw new PnetError('RELAY_REFUSED', 'relayed stream evicted for another neighbour while its next leg opened');
      }
      this.hold(info, leg, slot);
      return true;
    } catch (error) {
      this.release(slot);
      throw error;
    }
  };

  /** Keeps the next leg for the handler call; if the handler never runs (the upstream vanished in between), the leg must not linger. */
  private hold(info: ChannelRequestInfo, leg: Duplex, slot: Slot): void {
    const held = { leg, slot };
    this.pending.set(info, held);
    slot.cut = () => {
      this.pending.set(info, null);
      leg.destroy();
      this.release(slot);
    };
    setTimeout(() => {
      if (this.pending.get(info) === held) {
        this.pending.delete(info);
        leg.destroy();
        this.release(slot);
      }
    }, 10_000).unref();
  }

  /** Handler of the relay channel: end of the line (TLS server), or splice with the next leg. */
  readonly handle = (stream: Duplex, info: ChannelRequestInfo): void => {
    const held = this.pending.get(info);
    if (held === null) {
      this.pending.delete(info);
      stream.destroy(new PnetError('RELAY_REFUSED', 'relayed stream evicted for another neighbour'));
      return;
    }
    if (held === undefined) {
      tunnelServer(stream, this.host.identity, 10_000).then(
        ({ socket, origin }) => this.host.acceptTunnelled(socket, origin),
        () => undefined, // a failed tunnel handshake concerns only that stream
      );
      return;
    }
    this.pending.delete(info);
    this.splice(stream, held.leg, held.slot);
  };

  /** A snapshot of the relay's counters. */
  stats(): RelayStats {
    return { ...this.counters };
  }

  private splice(upstream: Duplex, downstream: Duplex, slot: Slot): void {
    const { maxBytes, maxLifetimeMs, onForward } = this.options;
    const counters = this.counters;
    let bytes = 0;
    let done = false;
    counters.flows++;
    counters.active++;
    const finish = (): void => {
      if (done) return;
      done = true;
      counters.active--;
      clearTimeout(lifetime);
      this.release(slot);
    };
    const cut = (reason: PnetError): void => {
      upstream.destroy(reason);
      downstream.destroy(reason);
      finish();
    };
    slot.cut = () => cut(new PnetError('RELAY_REFUSED', 'relayed stream evicted for another neighbour'));
    const lifetime = setTimeout(() => {
      if (!done) counters.cutLifetime++;
      cut(new PnetError('RELAY_REFUSED', 'relayed stream outlived its lifetime'));
    }, maxLifetimeMs);
    lifetime.unref();
    const meter = (chunk: Buffer): void => {
      bytes += chunk.length;
      counters.bytes += chunk.length;
      onForward?.(chunk);
      if (bytes > maxBytes && !done) counters.cutBytes++;
      if (bytes > maxBytes) cut(new PnetError('RELAY_REFUSED', 'relayed stream exceeded its byte limit'));
    };
    upstream.on('data', meter);
    downstream.on('data', meter);
    upstream.pipe(downstream);
    downstream.pipe(upstream);
    // A reset on either leg resets the other with the same code (the far end's request error code); ends travel through the pipes.
    upstream.on('error', (error: unknown) => resetLeg(downstream, resetCodeOf(error)));
    downstream.on('error', (error: unknown) => resetLeg(upstream, resetCodeOf(error)));
    upstream.on('close', finish);
    downstream.on('close', finish);
  }

  /**
   * A slot for one more relayed stream from `peer`, or RELAY_REFUSED (counted): over its share, or
   * at the node cap with no neighbour holding more than `peer` would (else that one's oldest is cut).
   */
  private take(peer: NodeId, cut: () => void): Slot {
    const own = this.perPeer.get(peer);
    if ((own?.size ?? 0) >= this.options.maxStreamsPerPeer) {
      this.counters.refusedPeerLimit++;
      throw new PnetError('RELAY_REFUSED', `too many relayed streams from ${peer}`);
    }
    if (this.slots >= this.options.maxStreams) {
      const victim = this.heaviestOther(peer, (own?.size ?? 0) + 1);
      if (victim === undefined) {
        this.counters.refusedNodeLimit++;
        throw new PnetError('RELAY_REFUSED', `this node relays ${this.slots} streams, its limit`);
      }
      this.counters.evicted++;
      victim.cut();
      this.release(victim); // cut() released it already where it could; a second release is a no-op
    }
    const slot: Slot = { peer, cut };
    let set = own;
    if (set === undefined) this.perPeer.set(peer, (set = new Set()));
    set.add(slot);
    this.slots++;
    return slot;
  }

  private release(slot: Slot): void {
    const set = this.perPeer.get(slot.peer);
    if (set === undefined || !set.delete(slot)) return;
    this.slots--;
    if (set.size === 0) this.perPeer.delete(slot.peer);
  }

  /** The oldest slot of the neighbour holding the most, if it holds more than `holds`. */
  private heaviestOther(peer: NodeId, holds: number): Slot | undefined {
    const heaviest = heaviestOther(this.perPeer, peer, (set) => set.size);
    if (heaviest === undefined || heaviest.weight <= holds) return undefined;
    return heaviest.group.values().next().value;
  }
}
