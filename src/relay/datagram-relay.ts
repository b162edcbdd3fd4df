/**
 * Relay v2's IO glue for one node: the hop (Forwarder), the ends (RelayEndpoint) and the
 * end-to-end QUIC connections to far nodes (ForeignQuic over RelayPaths). Fed the neighbours'
 * link packets (raw-link.ts), QUIC DATAGRAM frames and link streams, and the router's route
 * changes; sends on the neighbours' links.
 */
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import { numberOption } from '../options.js';
import type { Identity, NodeId } from '../identity/index.js';
import { keyBytesOf } from '../routing/index.js';
import type { RouteChange } from '../routing/index.js';
import { ForeignQuic, ROTATE_AFTER_STREAMS } from '../transport/index.js';
import type { QuicConnection, TransportOptions } from '../transport/index.js';
import { Forwarder, HEADER_BYTES, NextHopTable, RelayEndpoint } from './v2/index.js';
import type { EndpointOptions, EndpointStats, ForwarderOptions, ForwarderStats, RelayFlow } from './v2/index.js';
import { StreamLinks } from './stream-link.js';
import type { DatagramLink, StreamLinkStats } from './stream-link.js';
import { RawLinks, emptyRawLinkStats } from './raw-link.js';
import type { RawLinkHost, RawLinkStats } from './raw-link.js';

export type { DatagramLink };

/** What the datagram relay needs from its node. */
export interface DatagramRelayHost {
  readonly identity: Identity;
  /** The neighbour's link if it is up: its QUIC connection, or `streamLink(nodeId)` for a connection without DATAGRAM frames (HTTP/2). */
  link(nodeId: NodeId): DatagramLink | undefined;
  /** Opens the datagram stream of the link to neighbour `nodeId` (channel DATAGRAM_LINK_CHANNEL, optimistic). */
  openLinkStream(nodeId: NodeId): Promise<Duplex>;
  /** A relayed connection to `far` is established (either direction): serve its streams, list it. */
  adopt(connection: QuicConnection, far: NodeId): void;
  report(error: Error): void;
  /** QUIC links' own UDP datagrams (raw-link.ts); undefined: every QUIC link uses DATAGRAM frames. */
  readonly raw?: RawLinkHost;
}

export interface DatagramRelayOptions {
  /** A relayed connection with no stream for this long is closed (default 30 s). */
  idleTimeoutMs?: number;
  /**
   * A relayed connection this node uses is replaced by a fresh one after this many streams, and
   * one kept past twice this (a far node that never replaces its own) is closed: the node's
   * `rotateAfterStreams` (default 65,536; quiche keeps every finished stream's id until close).
   */
  rotateAfterStreams?: number;
  /** Hop limit put on every datagram this node sends (the relay's maxHops; default 16). */
  hopLimit?: number;
  /** Per-neighbour forwarding budgets and error reports (docs/RELAY.md). */
  forwarder?: Omit<ForwarderOptions, 'hopLimit'>;
  /** Flows at the ends (docs/RELAY.md). */
  endpoint?: Omit<EndpointOptions, 'hopLimit'>;
  /** Sees every datagram this node forwards for others. */
  onForward?: (datagram: Buffer) => void;
  /** The relayed connections' QUIC limits (idle timeout, windows, stream limits): the node's QUIC options. */
  quic?: Omit<TransportOptions, 'identity' | 'host' | 'port'> & { mallocTrimPeriodMs?: number };
}

export interface DatagramRelayStats {
  /** Relayed connections up now (both directions). */
  connections: number;
  /** Relayed connections whose close was cut at CLOSING_PACKETS (quiche 0.18's endless close, src/transport/quic/machine.ts). */
  closingSendsCut: number;
  forwarder: ForwarderStats;
  endpoint: EndpointStats;
  /** Datagrams on HTTP/2 links' streams. */
  streamLinks: StreamLinkStats;
  /** Datagrams on QUIC links' own UDP datagrams (link packets). */
  rawLinks: RawLinkStats;
  /** Forwards the next hop's link did not take (its DATAGRAM queue full, or the link gone): dropped. */
  forwardsDropped: number;
  /** Relayed connections replaced by a fresh one after `rotateAfterStreams` streams (the old ones' open streams finish). */
  rotated: number;
  /** Relayed connections closed past twice `rotateAfterStreams` (their far node kept using them). */
  overBudgetClosed: number;
}

interface Relayed {
  readonly connection: QuicConnection;
  lastUsed: number;
  /** PINGs after a path change are scheduled. */
  poking?: boolean;
}

/** The relayed connections' QUIC limits: the node's, with an idle timeout LINK_IDLE_FACTOR times the links'. */
function relayedLimits(quic: DatagramRelayOptions['quic'] = {}): DatagramRelayOptions['quic'] {
  const linkIdleMs = typeof quic.idleTimeoutMs === 'number' && quic.idleTimeoutMs > 0 ? quic.idleTimeoutMs : DEFAULT_LINK_IDLE_MS;
  // keep-alives at the links' rate: the far end's idle timer never nears its end on a live path
  const keepAliveIntervalMs = quic.keepAliveIntervalMs ?? Math.max(100, Math.floor(linkIdleMs / 3));
  return { ...quic, idleTimeoutMs: linkIdleMs * LINK_IDLE_FACTOR, keepAliveIntervalMs };
}

const SWEEP_MS = 1000;
/** Every relay of the process swept from one timer (10,000 nodes' own intervals cost ~2 % of a busy loop). */
const sweeping = new Set<() => void>();
let sweepTimer: NodeJS.Timeout | undefined;
function sweepAll(): void {
  for (const sweep of sweeping) sweep();
}
/**
 * A relayed connection's QUIC idle timeout is this many times its links': it must outlive a dead
 * hop's detection (a link's idle timeout) and the reroute, so a killed relay costs a pause.
 */
const LINK_IDLE_FACTOR = 3;
/** The links' QUIC idle timeout when the node's options do not say (the transport's default). */
const DEFAULT_LINK_IDLE_MS = 5000;
/** After the next hop towards a far node changes, its connection sends a PING at these delays (ms). */
const POKE_DELAYS_MS = [0, 250, 1000];
/** How long a far node that a hop refused datagrams for is served by the stream relay. */
const REFUSED_MS = 60_000;
/** How long a rotated relayed connection's open streams get to finish (as a direct one's). */
const ROTATED_DRAIN_MS = 5 * 60_000;
/** Refusals remembered at once (a bound; forgetting one costs one more failed handshake). */
const MAX_REFUSED = 4096;

export class DatagramRelay {
  readonly nextHops = new NextHopTable();
  readonly forwarder: Forwarder<NodeId>;
  readonly endpoint: RelayEndpoint<NodeId>;
  private readonly quic: ForeignQuic;
  /** Links without DATAGRAM frames (HTTP/2): datagrams on one stream per link. */
  private readonly streamLinks: StreamLinks;
  /** QUIC links' link packets (UDP datagrams of their own, outside the links' QUIC). */
  readonly rawLinks: RawLinks | undefined;
  private readonly host: DatagramRelayHost;
  private readonly idleTimeoutMs: number;
  private readonly onForward: ((datagram: Buffer) => void) | undefined;
  /** The connection kept per far node (the newest established one, or the one being opened). */
  private readonly byFar = new Map<NodeId, Relayed>();
  /** Far nodes a hop refused to relay datagrams to (e.g. an HTTP/2 link on the way), until when: the stream relay serves them. */
  private readonly refused = new Map<NodeId, number>();
  /** Why a handshake failed, when a hop's error report said so first. */
  private readonly failures = new WeakMap<QuicConnection, PnetError>();
  private closing: Promise<void> | undefined;
  private forwardsDropped = 0;
  private readonly rotateAfterStreams: number;
  private rotated = 0;
  private overBudgetClosed = 0;

  constructor(host: DatagramRelayHost, options: DatagramRelayOptions = {}) {
    this.host = host;
    this.idleTimeoutMs = numberOption('relay option', 'idleTimeoutMs', options.idleTimeoutMs, 30_000, { min: 0, above: true });
    this.rotateAfterStreams = numberOption('relay option', 'rotateAfterStreams', options.rotateAfterStreams, ROTATE_AFTER_STREAMS, { min: 1, integer: true });
    this.onForward = options.onForward;
    const selfKey = keyBytesOf(host.identity.nodeId);
    const hopLimit = options.hopLimit;
    const room = (neighbour: NodeId): number => host.link(neighbour)?.maxDatagramPayload ?? 0;
    const now = performance.now();
    this.forwarder = new Forwarder({ selfKey, nextHop: this.nextHops.nextHop, room }, { ...options.forwarder, ...(hopLimit === undefined ? {} : { hopLimit }) }, now);
    this.endpoint = new RelayEndpoint(
      { selfKey, nextHop: this.nextHops.nextHop, room, sendTo: (neighbour, datagram) => host.link(neighbour)?.sendDatagram(datagram) ?? false },
      { ...options.endpoint, ...(hopLimit === undefined ? {} : { hopLimit }) },
      now,
    );
    this.streamLinks = new StreamLinks({
      open: (nodeId) => host.openLinkStream(nodeId),
      receive: (from, datagram) => this.receive(from, datagram),
      refused: (nodeId) => this.linkRefused(nodeId),
    });
    this.rawLinks = host.raw === undefined ? undefined : new RawLinks(host.raw);
    this.quic = new ForeignQuic({ ...relayedLimits(options.quic), identity: host.identity, maxDatagramSize: this.endpoint.options.innerDatagramSize });
    sweeping.add(this.sweep);
    if (sweepTimer === undefined) (sweepTimer = setInterval(sweepAll, SWEEP_MS)).unref();
  }

  /** The router's route changes: where datagrams go next. A far node's connection whose next hop moved is poked. */
  routesChanged(changes: readonly RouteChange[]): void {
    this.nextHops.apply(changes);
    for (const change of changes) {
      if (change.nextHop !== undefined && change.nextHop !== change.previousNextHop) this.poke(change.dest);
    }
  }

  /** A leaf's default route: where datagrams with no route of their own go. */
  defaultRoute(hop: NodeId | undefined): void {
    const moved = hop !== undefined && hop !== this.nextHops.defaultHop;
    this.nextHops.defaultHop = hop;
    if (moved) for (const far of this.byFar.keys()) this.poke(far);
  }

  /**
   * The path to `far` changed: its connection sends PINGs on the new path now and a little later
   * (the far end may converge after us), so the ACKs end QUIC's backed-off PTO wait and the data
   * lost in the dead hop is resent at once instead of at the next (exponentially later) probe.
   */
  private poke(far: NodeId): void {
    const kept = this.byFar.get(far);
    if (kept === undefined || kept.poking) return;
    kept.poking = true;
    for (const [i, delay] of POKE_DELAYS_MS.entries()) {
      const timer = setTimeout(() => {
        if (i === POKE_DELAYS_MS.length - 1) kept.poking = false;
        if (!kept.connection.closing && kept.connection.established) kept.connection.keepAlive();
      }, delay);
      timer.unref();
    }
  }

  /** A neighbour went away: its forwarding budget and link stream go. */
  neighbourDown(neighbour: NodeId): void {
    this.forwarder.neighbourDown(neighbour);
    this.rawLinks?.linkDown(neighbour);
    this.streamLinks.neighbourDown(neighbour);
  }

  /** The datagram link to a neighbour whose connection has no DATAGRAM frames (HTTP/2): a length-prefixed stream. */
  streamLink(neighbour: NodeId): DatagramLink {
    return this.streamLinks.link(neighbour);
  }

  /** A neighbour opened its link's datagram stream (channel DATAGRAM_LINK_CHANNEL). */
  acceptLinkStream(neighbour: NodeId, stream: Duplex): void {
    this.streamLinks.accept(neighbour, stream);
  }

  /**
   * Whether the first hop towards `far` carries relayed datagrams: a QUIC link with room for a
   * full inner packet, or an HTTP/2 link (its datagram stream) whose neighbour has not refused it.
   */
  carries(far: NodeId): boolean {
    if (this.live(far) !== undefined) return true;
    const until = this.refused.get(far);
    if (until !== undefined) {
      if (performance.now() < until) return false;
      this.refused.delete(far);
    }
    const hop = this.nextHops.nextHop(keyBytesOf(far), 0);
    const link = hop === undefined ? undefined : this.host.link(hop);
    return link !== undefined && link.maxDatagramPayload >= HEADER_BYTES + this.endpoint.options.innerDatagramSize;
  }

  /**
   * Neighbour `neighbour` refused our HTTP/2 link stream (no relay v2 there): handshakes whose
   * first hop it is fail with RELAY_REFUSED at once (the opener takes the stream relay) instead
   * of waiting out the handshake timeout.
   */
  private linkRefused(neighbour: NodeId): void {
    for (const [far, kept] of this.byFar) {
      const connection = kept.connection;
      if (connection.established || connection.closing || this.nextHops.nextHop(keyBytesOf(far), 0) !== neighbour) continue;
      this.refuse(far);
      this.failures.set(connection, new PnetError('RELAY_REFUSED', `neighbour ${neighbour} takes no relayed datagrams`));
      void connection.close({ graceful: false, reason: 'first hop takes no relayed datagrams' });
    }
  }

  /** The established relayed connection to `far` that takes new streams, if any. */
  live(far: NodeId): QuicConnection | undefined {
    const kept = this.byFar.get(far)?.connection;
    return kept !== undefined && kept.established && !kept.closing ? kept : undefined;
  }

  /** The relayed connection to `far`: the kept one, else a new one (UNREACHABLE / HOP_LIMIT at once from our routes). */
  async connect(far: NodeId): Promise<QuicConnection> {
    if (this.closing) throw new PnetError('ERR_NODE_CLOSED', 'node is closed');
    const kept = this.byFar.get(far);
    if (kept !== undefined && !kept.connection.closing) {
      if (kept.connection.streamsUsed < this.rotateAfterStreams) {
        kept.lastUsed = performance.now();
        return this.ready(kept.connection);
      }
      // Worn: a fresh connection takes the next streams; the old one's open streams finish first.
      this.rotated++;
      void kept.connection.close({ reason: 'relayed connection rotated', timeoutMs: ROTATED_DRAIN_MS });
    }
    const flow = this.endpoint.open(far, performance.now(), this.nextHops.hopsTo(far));
    const scid = this.quic.newConnectionId();
    const path = this.endpoint.path(flow, [scid]);
    const connection = this.quic.connect(path, scid, far);
    path.owner = connection;
    this.keep(connection, far);
    await this.ready(connection);
    this.host.adopt(connection, far);
    return connection;
  }

  private async ready(connection: QuicConnection): Promise<QuicConnection> {
    try {
      await connection.ready;
    } catch (error) {
      throw this.failures.get(connection) ?? error;
    }
    return connection;
  }

  private keep(connection: QuicConnection, far: NodeId): void {
    this.byFar.set(far, { connection, lastUsed: performance.now() });
    connection.once('close', () => {
      if (this.byFar.get(far)?.connection === connection) this.byFar.delete(far);
    });
  }

  /** A QUIC DATAGRAM frame from neighbour `from`: forward it, answer it, or take it. */
  receive(from: NodeId, datagram: Buffer): void {
    const action = this.forwarder.handleDatagram(from, datagram, performance.now());
    if (action.kind === 'forward') {
      if (this.host.link(action.to)?.sendDatagram(action.datagram) !== true) this.forwardsDropped++;
      this.onForward?.(Buffer.from(action.datagram.buffer, action.datagram.byteOffset, action.datagram.byteLength));
    } else if (action.kind === 'deliver') {
      this.deliver(action.datagram, from);
    } else if (action.reply !== undefined && action.replyTo !== undefined) {
      this.host.link(action.replyTo)?.sendDatagram(action.reply);
    }
  }

  private deliver(datagram: Uint8Array, from: NodeId): void {
    const now = performance.now();
    const event = this.endpoint.receive(datagram, now, from);
    if (event.kind === 'packet') {
      for (const path of event.evicted?.paths ?? []) void (path.owner as QuicConnection | undefined)?.close({ graceful: false, reason: 'relayed handshake evicted for another neighbour' });
      const owner = event.path?.owner as QuicConnection | undefined;
      if (owner !== undefined) owner.receive(event.packet);
      else if (!this.closing && (event.packet[0]! & 0xf0) === 0xc0) this.accept(event.flow, event.packet);
      else {
        if (event.created) this.endpoint.close(event.flow);
        this.reportUnknown(datagram, from, now);
      }
    } else if (event.kind === 'drop') {
      if (event.reason === 'unknownFlow' && (datagram[HEADER_BYTES]! & 0x80) === 0) this.reportUnknown(datagram, from, now);
    } else if (event.kind === 'error') {
      if (event.forgotten !== undefined) {
        // The far node forgot these connections (it restarted): they close now, not at their idle timeout; its new ones carry on.
        for (const path of event.forgotten) void (path.owner as QuicConnection | undefined)?.close({ graceful: false, reason: event.error.message });
        return;
      }
      // A hop cannot get our datagrams through: a handshake fails with its reason, an established connection carries on.
      if (event.error.code === 'RELAY_REFUSED') this.refuse(event.flow.remoteNodeId);
      for (const path of event.flow.paths) {
        const connection = path.owner as QuicConnection | undefined;
        if (connection === undefined || connection.established) continue;
        this.failures.set(connection, event.error);
        void connection.close({ graceful: false, reason: event.error.message });
      }
    }
  }

  /** A short-header packet for a connection this node does not have (it restarted, or closed it): the far node hears so (UNKNOWN_CONNECTION). */
  private reportUnknown(datagram: Uint8Array, from: NodeId, now: number): void {
    const report = this.forwarder.report('UNKNOWN_CONNECTION', datagram, now);
    if (report !== undefined) this.host.link(from)?.sendDatagram(report);
  }

  private refuse(far: NodeId): void {
    if (this.refused.size >= MAX_REFUSED) this.refused.clear();
    this.refused.set(far, performance.now() + REFUSED_MS);
  }

  /** A far node's Initial: a new inbound relayed connection, kept once its certificate proves the flow's source. */
  private accept(flow: RelayFlow, initial: Buffer): void {
    const dcid = initial.subarray(6, 6 + initial[5]!);
    const scid = this.quic.newConnectionId();
    let connection: QuicConnection;
    try {
      const path = this.endpoint.path(flow, [dcid, scid]);
      connection = this.quic.accept(path, scid, initial);
      path.owner = connection;
    } catch (error) {
      this.endpoint.close(flow);
      this.host.report(error as Error);
      return;
    }
    connection.ready.then(
      () => {
        const far = flow.remoteNodeId;
        if (connection.remoteNodeId !== far) {
          void connection.close({ graceful: false, reason: 'relayed source does not match the certificate' });
          return;
        }
        this.endpoint.confirm(flow);
        this.keep(connection, far);
        this.host.adopt(connection, far);
      },
      () => undefined,
    );
  }

  /** Evicts idle flows and closes relayed connections that carried no stream for idleTimeoutMs. */
  private readonly sweep = (): void => {
    const now = performance.now();
    for (const flow of this.endpoint.handleTimeout(now)) {
      for (const path of flow.paths) void (path.owner as QuicConnection | undefined)?.close({ graceful: false, reason: 'relayed flow evicted' });
    }
    for (const kept of this.byFar.values()) {
      if (kept.connection.streamsUsed >= 2 * this.rotateAfterStreams && !kept.connection.closing) {
        this.overBudgetClosed++;
        void kept.connection.close({ reason: 'relayed connection over its stream budget' });
      } else if (kept.connection.streamCount > 0) kept.lastUsed = now;
      else if (now - kept.lastUsed >= this.idleTimeoutMs) void kept.connection.close({ reason: 'relayed connection idle' });
    }
  };

  stats(): DatagramRelayStats {
    return { connections: this.quic.connectionCount, closingSendsCut: this.quic.closingSendsCut, forwarder: { ...this.forwarder.stats }, endpoint: { ...this.endpoint.stats }, streamLinks: { ...this.streamLinks.stats }, rawLinks: { ...(this.rawLinks?.stats ?? emptyRawLinkStats()) }, forwardsDropped: this.forwardsDropped, rotated: this.rotated, overBudgetClosed: this.overBudgetClosed };
  }

  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= (async () => {
      sweeping.delete(this.sweep);
      if (sweeping.size === 0) {
        clearInterval(sweepTimer);
        sweepTimer = undefined;
      }
      this.streamLinks.close();
      await this.quic.close(options);
    })();
    return this.closing;
  }
}
