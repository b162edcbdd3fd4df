/**
 * node.stats(): one plain snapshot of every layer's counters, read where they live (transports,
 * dialer, channel registries, relay, router, fan-out) at the moment it is taken. Nothing here
 * runs on its own: no timers, no sampling; the daemon's Prometheus endpoint calls it per scrape.
 */
import type { NegotiationStats } from '../channel/index.js';
import type { DatagramRelayStats, RelayStats } from '../relay/index.js';
import type { RouterStats } from '../routing/index.js';
import { H2Transport, QuicTransport } from '../transport/index.js';
import type { Connection, QuicDropStats, QuicTransportStats, Transport, TransportKind } from '../transport/index.js';
import type { RoutingGateStats } from './routing-gate.js';
import type { RequestLimitStats } from './request-budget.js';
import type { BootstrapStats, DialStats, FanoutStats, HandshakeCounts, LimitTrips, NodeStats, RotationStats, StreamTurnStats } from './types.js';

/** The fan-out service's limit counters (fanout-limits.ts), read by name so either side may grow. */
type FanoutLimitCounter =
  | 'legsRefusedNodeLimit'
  | 'legsRefusedPeerLimit'
  | 'legsRefusedNotNeighbour'
  | 'legReadTimeouts'
  | 'legBytesPeerLimit'
  | 'legBytesEvicted'
  | 'rememberedEvictedOwn'
  | 'rememberedEvictedHeaviest'
  | 'rememberedRefused'
  | 'replayFloorRefused';
type FanoutCounters = Readonly<FanoutStats> & Readonly<Partial<Record<FanoutLimitCounter, number>>>;

/** Where a snapshot reads from: the node's services, as functions so nothing is copied until asked. */
export interface StatsSources {
  readonly transports: readonly Transport[];
  /** The kept connection of every peer. */
  connections(): Iterable<Connection>;
  dials(): Readonly<DialStats>;
  negotiations(): readonly NegotiationStats[];
  relay(): RelayStats;
  /** Relay v2, when the node runs it. */
  datagramRelay(): DatagramRelayStats | undefined;
  router(): RouterStats;
  fanout(): FanoutCounters;
  /** The routing channel's per-peer share (routing-gate.ts). */
  routingGate?(): Readonly<RoutingGateStats>;
  /** Streams that waited for their peer's turn (turns.ts). */
  streamTurnWaits?(): number;
  /** The same, and why each waiting stream was taken up (turns.ts). */
  streamTurns?(): Readonly<StreamTurnStats>;
  /** What the request byte budget refused or cut (requests.ts). */
  requests?(): Readonly<RequestLimitStats>;
  /** Bootstrap redials (bootstrap.ts); absent: none kept. */
  bootstrap?(): Readonly<BootstrapStats> | undefined;
  /** Connection rotation (peers.ts). */
  rotation?(): Readonly<RotationStats>;
  /** Dial addresses forgotten at their bound (peers.ts). */
  addressesEvicted?(): number;
}

/** Counts connections as the node adopts them (the transports count only what they hold now). */
export class HandshakeCounter {
  private readonly counts: Record<TransportKind, HandshakeCounts> = { quic: { inbound: 0, outbound: 0 }, h2: { inbound: 0, outbound: 0 } };

  established(connection: Connection): void {
    this.counts[connection.transport][connection.direction]++;
  }

  snapshot(): Record<TransportKind, HandshakeCounts> {
    return { quic: { ...this.counts.quic }, h2: { ...this.counts.h2 } };
  }
}

/** Takes one snapshot (see NodeStats). */
export function takeStats(sources: StatsSources, handshakes: HandshakeCounter): NodeStats {
  const connections: Record<TransportKind, number> = { quic: 0, h2: 0 };
  let datagramsDropped: QuicDropStats | undefined;
  let quic: QuicTransportStats | undefined;
  let h2AdmissionLimit = 0;
  for (const transport of sources.transports) {
    connections[transport.kind] += transport.connectionCount;
    if (transport instanceof QuicTransport) {
      quic = transport.stats();
      datagramsDropped = quic.droppedDatagrams;
    } else if (transport instanceof H2Transport) {
      h2AdmissionLimit += transport.admissionLimited;
    }
  }
  let peers = 0;
  let streams = 0;
  for (const connection of sources.connections()) {
    peers++;
    streams += connection.streamCount;
  }
  const relay = sources.relay();
  const routing = sources.router();
  const negotiations = sumNegotiations(sources.negotiations());
  const fanout = sources.fanout();
  const datagramRelay = sources.datagramRelay();
  return {
    connections,
    peers,
    streams,
    handshakes: { started: { ...sources.dials() }, completed: handshakes.snapshot(), pending: quic?.pendingHandshakes ?? 0 },
    datagramsDropped,
    relay,
    datagramRelay,
    routing,
    fanout: { ...fanout },
    negotiations,
    limits: {
      ...limitTrips(negotiations, quic, relay, routing, fanout),
      ...datagramRelayTrips(datagramRelay),
      quicClosingSendsCut: (quic?.closingSendsCut ?? 0) + (datagramRelay?.closingSendsCut ?? 0),
      h2AdmissionLimit,
      ...requestTrips(sources.requests?.()),
      routingStreamsPeerLimit: sources.routingGate?.().refusedPeerLimit ?? 0,
      routingStreamsNodeLimit: sources.routingGate?.().refusedNodeLimit ?? 0,
      streamPeerTurn: sources.streamTurnWaits?.() ?? 0,
      connectionStreamBudget: sources.rotation?.().overBudgetClosed ?? 0,
      nodeStreamBudget: sources.rotation?.().nodeBudgetRetired ?? 0,
      knownAddressesEvicted: sources.addressesEvicted?.() ?? 0,
    },
    bootstrap: { addresses: 0, redials: 0, redialFailures: 0, reconnected: 0, ...sources.bootstrap?.() },
    rotation: { rotated: 0, replaced: 0, overBudgetClosed: 0, nodeBudgetRetired: 0, ...sources.rotation?.() },
    streamTurns: sources.streamTurns?.() ?? { waited: 0, released: { others: 0, idle: 0, maxWait: 0, alone: 0 } },
  };
}

/** Registries summed key by key; the peak is the larger one (their peaks need not coincide). */
function sumNegotiations(all: readonly NegotiationStats[]): NegotiationStats {
  const sum: Record<string, number> = {};
  for (const stats of all) {
    for (const [key, value] of Object.entries(stats) as Array<[string, number]>) {
      sum[key] = key === 'peakPending' ? Math.max(sum[key] ?? 0, value) : (sum[key] ?? 0) + value;
    }
  }
  return sum as unknown as NegotiationStats;
}

/** Trips the node's own services count (the routing gate, stream turns, connection rotation). */
type NodeServiceTrips = Pick<LimitTrips, 'routingStreamsPeerLimit' | 'routingStreamsNodeLimit' | 'streamPeerTurn' | 'connectionStreamBudget' | 'nodeStreamBudget' | 'knownAddressesEvicted'>;
type DatagramRelayTrips = Pick<
  LimitTrips,
  'datagramRelayOverBudget' | 'datagramRelayHopLimit' | 'datagramRelayErrorBudget' | 'datagramRelayFlowLimit' | 'datagramRelayEvicted' | 'datagramRelayPendingHopLimit' | 'datagramRelayPendingEvicted'
>;
type RequestTrips = Pick<LimitTrips, 'requestBytesPeerLimit' | 'requestBytesNodeLimit' | 'requestBytesEvicted'>;

function requestTrips(stats: Readonly<RequestLimitStats> | undefined): RequestTrips {
  return { requestBytesPeerLimit: stats?.bytesPeerLimit ?? 0, requestBytesNodeLimit: stats?.bytesNodeLimit ?? 0, requestBytesEvicted: stats?.bytesEvicted ?? 0 };
}

function datagramRelayTrips(stats: DatagramRelayStats | undefined): DatagramRelayTrips {
  return {
    datagramRelayOverBudget: stats?.forwarder.overBudget ?? 0,
    datagramRelayHopLimit: stats?.forwarder.hopLimit ?? 0,
    datagramRelayErrorBudget: stats?.forwarder.errorsSuppressed ?? 0,
    datagramRelayFlowLimit: stats?.endpoint.flowLimit ?? 0,
    datagramRelayEvicted: stats?.endpoint.evicted ?? 0,
    datagramRelayPendingHopLimit: stats?.endpoint.pendingHopLimit ?? 0,
    datagramRelayPendingEvicted: stats?.endpoint.pendingEvicted ?? 0,
  };
}

function limitTrips(negotiations: NegotiationStats, quic: QuicTransportStats | undefined, relay: RelayStats, routing: RouterStats, fanout: FanoutCounters): Omit<LimitTrips, keyof DatagramRelayTrips | keyof NodeServiceTrips | keyof RequestTrips | 'quicClosingSendsCut' | 'h2AdmissionLimit'> {
  const f = (key: FanoutLimitCounter): number => fanout[key] ?? 0;
  return {
    channelPeerShare: negotiations.rejectedPeerLimit,
    channelNodeCap: negotiations.rejectedNodeLimit,
    channelEvicted: negotiations.evicted,
    channelHeaderDeadline: negotiations.headerTimeouts,
    channelOpenDeadline: negotiations.openTimeouts,
    channelAuthoriseDeadline: negotiations.authoriseTimeouts,
    quicConnectionRefused: quic?.droppedDatagrams.refused ?? 0,
    quicAmplificationLimit: quic?.amplificationLimited ?? 0,
    quicRetryLimit: quic?.droppedDatagrams.retryLimited ?? 0,
    quicAdmissionLimit: quic?.droppedDatagrams.admissionLimited ?? 0,
    quicVersionNegotiationLimit: quic?.droppedDatagrams.versionNegotiationLimited ?? 0,
    quicWindowBudget: quic?.windows.leanGrants ?? 0,
    quicStreamsLeftOpen: quic?.abandonedStreamCloses ?? 0,
    quicHostDistrusted: quic?.hostsDistrusted ?? 0,
    quicHostHandshakeShare: quic?.hostHandshakeShare ?? 0,
    quicHandshakeEvicted: quic?.handshakesEvicted ?? 0,
    relayPeerLimit: relay.refusedPeerLimit,
    relayNodeLimit: relay.refusedNodeLimit,
    relayEvicted: relay.evicted,
    relayLifetime: relay.cutLifetime,
    relayBytes: relay.cutBytes,
    routingTableFull: routing.dropped.tableFull,
    routingOversized: routing.dropped.oversized,
    routingOriginFull: routing.originFull,
    routingEvicted: routing.evicted,
    routingPublishRate: routing.publishRateLimited,
    routingArrivalRate: routing.arrivalRateLimited,
    fanoutLegsNodeLimit: f('legsRefusedNodeLimit'),
    fanoutLegsPeerLimit: f('legsRefusedPeerLimit'),
    fanoutNotNeighbour: f('legsRefusedNotNeighbour'),
    fanoutLegReadDeadline: f('legReadTimeouts'),
    fanoutLegBytesPeer: f('legBytesPeerLimit'),
    fanoutLegBytesEvicted: f('legBytesEvicted'),
    fanoutRememberedEvicted: f('rememberedEvictedOwn') + f('rememberedEvictedHeaviest'),
    fanoutRememberedRefused: f('rememberedRefused'),
    fanoutReplayFloor: f('replayFloorRefused'),
  };
}
