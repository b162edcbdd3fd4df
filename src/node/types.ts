/**
 * The node's public types: what createNode takes, what a PnetNode returns and emits. Re-exported
 * unchanged through src/node/index.ts and src/index.ts; nothing here imports another node file.
 */
import type { Duplex } from 'node:stream';
import type { PnetError } from '../errors.js';
import type { Identity, NodeId } from '../identity/index.js';
import type { H2TransportOptions, QuicDropStats, QuicTransportOptions, SocketAddress, TransportKind } from '../transport/index.js';
import type { AuthoriseHook, ChannelRequestInfo, Metadata, NegotiationStats } from '../channel/index.js';
import type { RouterOptions, RouterStats } from '../routing/index.js';
import type { RequestLimits } from './request-budget.js';
import type { DatagramRelayStats, RelayOptions, RelayStats } from '../relay/index.js';

export interface NodeOptions {
  /**
   * Where to listen: "host:port" or { host, port }, default "127.0.0.1:0". QUIC binds this UDP
   * port and HTTP/2 the TCP port of the same number (with port 0, the number QUIC got).
   */
  listen?: string | SocketAddress;
  /** The node's identity; if absent, `keyFile` is loaded (or created), else a fresh key is made. */
  identity?: Identity;
  /** Path of the node's private key (PEM, created with mode 0600 when missing). */
  keyFile?: string;
  /**
   * Nodes to connect to at start; createNode waits until each has connected or failed. A failure
   * does not fail createNode: `node.bootstrapResults` says how each went.
   */
  bootstrap?: ReadonlyArray<string | SocketAddress>;
  /**
   * Bootstrap peers are kept connected: one that failed at start or dropped later is redialed on
   * a jittered backoff until the node closes (`'bootstrap'` events, `stats().bootstrap`).
   * `true` (default), its tuning, or `false`: dial once at start only.
   */
  bootstrapRedial?: boolean | BootstrapRedialOptions;
  /**
   * QUIC (UDP), the preferred transport: `true` (default) or its tuning (datagram size, idle
   * timeout, flow-control windows, stream limits); `false`: no QUIC at all (HTTP/2 only).
   */
  quic?: boolean | Omit<QuicTransportOptions, 'identity' | 'host' | 'port'>;
  /**
   * HTTP/2 over TLS (TCP), the fallback where UDP is blocked: `true` (default) or its tuning
   * (the QUIC names, plus `reversePool`, `maxFrameSize`); `false`: no HTTP/2 (QUIC only).
   */
  h2?: boolean | Omit<H2TransportOptions, 'identity' | 'host' | 'port'>;
  /** A dial starts HTTP/2 beside QUIC when no QUIC handshake completed within this (default 300 ms). */
  fallbackDelayMs?: number;
  /** How long a peer address reached over HTTP/2 is dialed over HTTP/2 straight away (default 600000 ms; 0: never). */
  transportMemoryMs?: number;
  /** Deadline for channel negotiation (OPEN to ACCEPT), both directions (default 10000 ms). */
  negotiationTimeoutMs?: number;
  /**
   * A direct QUIC connection this node dialed is replaced by a fresh one after this many streams
   * (default 65536), its open streams left to finish; an inbound one whose peer never does is
   * closed at twice this. Relayed connections alike (the end that uses one replaces it). quiche
   * keeps every finished stream's id until its connection closes.
   */
  rotateAfterStreams?: number;
  /**
   * All open QUIC connections together (direct and relayed) may carry this many streams (default
   * 2,097,152, ~40 MiB of quiche's finished-stream ids); past it the most worn are retired until
   * the sum is under 3/4 of it: replaced by a fresh connection this node dials (whichever end
   * dialed the old one; its peer stays up), or, when that cannot be (relayed, under 1,024 streams,
   * the peer not dialable), closed with 5 s for its open streams. Bounds a node that many peers
   * each keep near their own `rotateAfterStreams`.
   */
  maxStreamIdsHeld?: number;
  /** Link-state router tuning (record lifetime, refresh, costs) and how often RTT is sampled. */
  routing?: Omit<RouterOptions, 'signer' | 'verify' | 'recordCache' | 'random' | 'pathComputer'> & {
    /** Neighbour RTT is sampled this often (default 1000 ms). */
    rttSampleMs?: number;
    /** A new connection becomes a routing neighbour once it has lived this long (default 200 ms). */
    neighbourHoldDownMs?: number;
  };
  /** The relay: v2 datagrams (default) or the stream relay, its limits (docs/RELAY.md). */
  relay?: RelayOptions;
  /** Limits of the fan-outs this node serves for others. */
  fanout?: FanoutLimits;
  /** Bytes of handleRequest requests in flight: the node's budget and one peer's share (docs/LIMITS.md). */
  requests?: RequestLimits;
}

/** A route to a node, as the router sees it. */
export interface RouteInfo {
  readonly nodeId: NodeId;
  /** The neighbour traffic for `nodeId` goes through (the node itself for a neighbour). */
  readonly nextHop: NodeId;
  readonly cost: number;
  readonly hops: number;
}

/** The network map as this node's router knows it: every signed link-state record it holds. */
export interface Topology {
  /** Every node in the map, this node first. */
  readonly nodes: NodeId[];
  /** Directed links as their origins announce them (two-way checked links appear once per direction). */
  readonly links: Array<{ readonly from: NodeId; readonly to: NodeId; readonly cost: number }>;
}

/** A change in reachability of one node. */
export interface RouteEvent {
  readonly nodeId: NodeId;
  /** undefined: no longer reachable. */
  readonly nextHop: NodeId | undefined;
  readonly previousNextHop: NodeId | undefined;
}

/** Counters of this node's outbound dials (see PnetNode.dialStats). */
export interface DialStats {
  /** QUIC handshakes started. */
  quic: number;
  /** HTTP/2 handshakes started (fallbacks and dials that went straight to HTTP/2). */
  h2: number;
  /** Dials that raced QUIC against HTTP/2 and HTTP/2 won. */
  fallbacks: number;
  /** Dials that went straight to HTTP/2 because the address was remembered. */
  remembered: number;
  /** Dials failed fast because HTTP/2's TCP connect was refused and QUIC did not answer within its grace. */
  refused: number;
  /** Background QUIC tries for peers reached over HTTP/2 (a link that fell back). */
  quicRetries: number;
  /** Links that moved from HTTP/2 back to QUIC after such a try. */
  quicRecovered: number;
  /** Remembered HTTP/2-only addresses forgotten because the memory was full. */
  rememberedEvicted: number;
}

/** How one bootstrap dial of createNode went: the node it reached, or why not. */
export type BootstrapResult =
  | { readonly address: string; readonly ok: true; readonly nodeId: NodeId }
  | { readonly address: string; readonly ok: false; readonly error: PnetError };

/** How bootstrap peers are redialed (docs/ROUTING.md, "Bootstrap peers and a hub restart"). */
export interface BootstrapRedialOptions {
  /** Wait after the first failed dial (default 1000 ms); doubles per failure, each wait a random point of its upper half. */
  minDelayMs?: number;
  /** Longest wait between redials (default 10000 ms): with N leaves per hub, about N / (maxDelayMs × 0.75) dials per second reach it. */
  maxDelayMs?: number;
  /** A peer that dropped is redialed at a random point of this window (default 5000 ms), so a hub's leaves do not return at one instant. */
  spreadMs?: number;
}

/** One redial of a bootstrap peer (createNode's own dials are reported too, as attempt 1, just after it resolved). */
export type BootstrapEvent =
  | { readonly address: string; readonly attempt: number; readonly ok: true; readonly nodeId: NodeId }
  | { readonly address: string; readonly attempt: number; readonly ok: false; readonly error: PnetError; readonly retryMs: number };

/** Counters of the bootstrap redials (NodeStats.bootstrap). */
export interface BootstrapStats {
  /** Bootstrap addresses kept connected (a gauge; 0 with bootstrapRedial false). */
  addresses: number;
  /** Redials started (createNode's own dials not counted). */
  redials: number;
  /** Redials that failed (each is retried after its backoff). */
  redialFailures: number;
  /** Redials that connected. */
  reconnected: number;
}

/** An address this node listens on, per transport. */
export interface ListenAddress {
  readonly transport: TransportKind;
  /** "host:port" */
  readonly address: string;
}

export interface PeerInfo {
  readonly nodeId: NodeId;
  readonly address: string;
  /** 'relay': an end-to-end QUIC connection to a far node, its packets relayed by neighbours (relay v2). */
  readonly transport: TransportKind | 'relay';
  readonly direction: 'inbound' | 'outbound';
  readonly rttMs: number;
  readonly streams: number;
}

/** A negotiated channel stream: a Node Duplex plus what negotiation established. */
export interface PnetStream extends Duplex {
  readonly channel: string;
  readonly remoteNodeId: NodeId;
  /** Metadata the other side sent (its ACCEPT for an opener, its OPEN for a handler). */
  readonly remoteMetadata: Metadata;
  /** Abort both directions; the other side's stream errors with ERR_STREAM_RESET. */
  reset(code?: number): void;
}

/** Serves one accepted stream; a returned promise that rejects resets the stream (and is reported as 'error'). */
export type StreamHandler = (stream: PnetStream, info: ChannelRequestInfo) => unknown;
export type RequestHandler = (request: Buffer, info: ChannelRequestInfo) => Uint8Array | string | Promise<Uint8Array | string>;

export interface HandleOptions {
  /** Decides whether this peer may use the channel; sees the verified node id and the OPEN's metadata. */
  authorise?: AuthoriseHook;
  /** Metadata sent back in every ACCEPT. */
  metadata?: Record<string, string>;
}

export interface HandleRequestOptions extends HandleOptions {
  /** Largest request accepted (default 16 MiB); a larger one resets the stream. */
  maxRequestBytes?: number;
}

export interface OpenStreamOptions {
  metadata?: Record<string, string>;
  credentials?: Uint8Array;
  /**
   * Resolve at once, before the ACCEPT, so payload can follow OPEN with no
   * round trip; a REJECT then arrives as an 'error' on the stream. Default false.
   */
  optimistic?: boolean;
  /**
   * Deadline of the whole call (default `negotiationTimeoutMs`): route lookup or dial, the wait
   * for stream credit, a relay tunnel's handshake, and the ACCEPT (unless optimistic):
   * ERR_REQUEST_TIMEOUT.
   */
  timeoutMs?: number;
}

export interface RequestOptions {
  metadata?: Record<string, string>;
  credentials?: Uint8Array;
  /** Whole-request deadline (default 10000 ms), from the first step (dial, stream open, negotiation) to the last byte of the reply: ERR_REQUEST_TIMEOUT. */
  timeoutMs?: number;
  /** Largest response accepted (default 16 MiB): ERR_REQUEST_TOO_LARGE. */
  maxResponseBytes?: number;
}

export interface NodeEvents {
  'peer:up': [peer: PeerInfo];
  'peer:down': [peer: { nodeId: NodeId; error: PnetError | undefined }];
  route: [change: RouteEvent];
  /** A bootstrap peer dialed again (see NodeOptions.bootstrapRedial), or createNode's own dial of it. */
  bootstrap: [event: BootstrapEvent];
  /** Non-fatal problems (a failed bootstrap dial, a handler that threw). Only emitted when listened to. */
  error: [error: Error];
}

// ---- fan-out ----------------------------------------------------------------

export interface FanoutOptions {
  /** Every target's answer is due this long after the call (default 10000 ms). */
  deadlineMs?: number;
  /** Targets in flight at once (default: all). Applies to targets this node knows (not to `'all'` through `via`). */
  concurrency?: number;
  /** Sent to every target's authorise hook and handler. */
  metadata?: Record<string, string>;
  /**
   * Send every target through this connected node, which splits them by its own routes: for a
   * node outside the routing map (a CLI, a node that just connected). With `'all'`, that node
   * expands the list to every node it knows.
   */
  via?: NodeId;
  /** Largest reply accepted from each target (default 1 MiB, at most 16 MiB). */
  maxReplyBytes?: number;
  /** Links a leg may cross (default 32). */
  hopLimit?: number;
}

/** One target's outcome. `ms` is measured by the caller from the start of the fan-out. */
export type FanoutResult = {
  readonly nodeId: NodeId;
  readonly ms: number;
  /** Links between the caller and the node that reported the result (0: the caller itself). */
  readonly hops: number;
} & ({ readonly ok: true; readonly data: Buffer } | { readonly ok: false; readonly error: PnetError });

/** Every fan-out limit that tripped, one counter each (docs/FANOUT.md, "Limits a peer cannot use to lock others out"). */
export interface FanoutLimitCounters {
  /** Request ids forgotten early because their origin reached its share (its own oldest). */
  rememberedEvictedOwn: number;
  /** Request ids forgotten early because the node's memory was full (the heaviest origin's oldest). */
  rememberedEvictedHeaviest: number;
  /** Authorised requests refused OVERLOADED: the memory was full of origins holding one id each. */
  rememberedRefused: number;
  /** Requests refused because their origin's evicted ids reach past their issue time (no replay after eviction). */
  replayFloorRefused: number;
  /** Legs refused OVERLOADED: the node served `maxActiveLegs` already. */
  legsRefusedNodeLimit: number;
  /** Legs refused OVERLOADED: the peer had its share of legs already. */
  legsRefusedPeerLimit: number;
  /** Legs refused (UNREACHABLE per target): from a peer that is not a routing neighbour, not its own fan-out. */
  legsRefusedNotNeighbour: number;
  /** Legs cut because they were not read whole within the leg read deadline. */
  legReadTimeouts: number;
  /** Legs cut because their peer buffered more than its share of leg bytes. */
  legBytesPeerLimit: number;
  /** Legs cut to make room in the node's leg byte budget (the peer buffering the most). */
  legBytesEvicted: number;
}

export interface FanoutStats extends FanoutLimitCounters {
  /** Results whose signature did not verify, dropped. */
  forged: number;
  /** Legs received from neighbours. */
  legsServed: number;
  /** Legs sent to next hops. */
  legsSent: number;
  /** Targets sent again after their leg failed. */
  retried: number;
}

export interface FanoutLimits {
  /** Legs this node serves at once; more are refused with OVERLOADED (default 256). */
  maxActiveLegs?: number;
  /** Request ids remembered against replay (default 10000). */
  maxRememberedRequests?: number;
  /** Clock difference tolerated between origin and target (default 60000 ms). */
  maxClockSkewMs?: number;
  /** One origin's share of the remembered request ids (default 1,024, at most a quarter of the whole): its own requests evict only its own. */
  maxRememberedPerOrigin?: number;
  /** Legs one routing neighbour may have served at once (default 64). */
  maxLegsPerPeer?: number;
  /** Legs a connected peer that is not a routing neighbour may have at once: its own fan-outs through us (default 4). */
  maxLegsPerStranger?: number;
  /** A leg must be read whole within this (default 10,000 ms). */
  legReadTimeoutMs?: number;
  /** Bytes all legs being read may buffer (default 64 MiB). */
  maxLegBytes?: number;
  /** Bytes one peer's legs being read may buffer (default 16 MiB: one largest leg). */
  maxLegBytesPerPeer?: number;
  /**
   * Which nodes open their fan-out link to each routing neighbour before the first leg, as the
   * neighbour becomes a next hop (docs/FANOUT.md, "Links opened ahead"): 'routers' (default: a
   * node whose role is router), 'always', or 'never' (the first leg opens it).
   */
  linksAhead?: 'routers' | 'always' | 'never';
  /** Links opened ahead per second at most (default 100), and at most that many awaiting their ACCEPT. */
  linksAheadPerSecond?: number;
}

// ---- stats ------------------------------------------------------------------

/** Connections established (handshake completed), by direction. */
export interface HandshakeCounts {
  inbound: number;
  outbound: number;
}

/**
 * Every limit that refused or cut something, one counter each (docs/LIMITS.md). A view over the
 * layer counters in NodeStats: the same events, named by the limit that tripped.
 */
export interface LimitTrips {
  /** Channel: a peer over its share of pending negotiations (OVERLOADED). */
  channelPeerShare: number;
  /** Channel: the node cap of pending negotiations, nothing to evict (OVERLOADED). */
  channelNodeCap: number;
  /** Channel: a pending negotiation evicted for a lighter peer at the node cap. */
  channelEvicted: number;
  /** Channel: no complete frame header within the header deadline. */
  channelHeaderDeadline: number;
  /** Channel: no complete OPEN within the negotiation deadline. */
  channelOpenDeadline: number;
  /** Channel: an authorise hook over its deadline. */
  channelAuthoriseDeadline: number;
  /** QUIC: Initials refused (closing, too short, over the connection or handshake limits). */
  quicConnectionRefused: number;
  /** QUIC: datagrams held back by the 3x anti-amplification limit on unvalidated addresses. */
  quicAmplificationLimit: number;
  /** QUIC: Initials dropped over the Retry rate cap. */
  quicRetryLimit: number;
  /** QUIC: Initials dropped while the endpoint is behind (admission by latency: more in progress than it completes in half the handshake timeout). */
  quicAdmissionLimit: number;
  /** HTTP/2: inbound TCP connections closed before TLS while the node was behind on handshakes (the admission QUIC's gate shares). */
  h2AdmissionLimit: number;
  /** QUIC: version negotiation answers not sent, over their rate limit. */
  quicVersionNegotiationLimit: number;
  /** QUIC: connections given the lean flow-control windows, the full ones past the node's windowBudget. */
  quicWindowBudget: number;
  /** QUIC: connections closed for holding 256 streams quiche never collects (an opener that ignores REJECTs). */
  quicStreamsLeftOpen: number;
  /** QUIC: a host that completed a handshake lost its own Initial budget (undecryptable Initials past 16, gate.ts). */
  quicHostDistrusted: number;
  /** QUIC: a tokenless Initial sent to Retry because its host held its share (1/16 of maxPendingHandshakes) of handshakes in progress that skipped Retry (gate.ts). */
  quicHostHandshakeShare: number;
  /** QUIC: an inbound handshake closed at a full maxPendingHandshakes for a newcomer from a host holding fewer (the heaviest host's oldest, gate.ts). */
  quicHandshakeEvicted: number;
  /** QUIC: a closing connection stopped after CLOSING_PACKETS (quiche 0.18 would write ACK-only Handshake packets without end, machine.ts). */
  quicClosingSendsCut: number;
  /** Relay: a neighbour over maxStreamsPerPeer. */
  relayPeerLimit: number;
  /** Relay: a relay request refused at the node's maxStreams, no neighbour holding more than the opener would. */
  relayNodeLimit: number;
  /** Relay: a relayed stream cut at the node's maxStreams for a neighbour holding fewer (the heaviest's oldest). */
  relayEvicted: number;
  /** Relay: a relayed stream cut at maxLifetimeMs. */
  relayLifetime: number;
  /** Relay: a relayed stream cut at maxBytes. */
  relayBytes: number;
  /** Routing: a new origin while the map held maxRecords records. */
  routingTableFull: number;
  /** Routing: a message, record or link count over its bound. */
  routingOversized: number;
  /** Routing: a record over its origin's maxOriginBytes. */
  routingOriginFull: number;
  /** Routing: an origin removed from a full map for a record a lighter neighbour brought. */
  routingEvicted: number;
  /** Routing: own publications held back by the origination rate limit. */
  routingPublishRate: number;
  /** Routing: arriving record versions held back by the acceptance rate limit. */
  routingArrivalRate: number;
  /** Routing: routing streams refused OVERLOADED over their peer's share (a non-neighbour's is small). */
  routingStreamsPeerLimit: number;
  /** Routing: routing streams refused OVERLOADED over the bound shared by all peers that are not routing neighbours. */
  routingStreamsNodeLimit: number;
  /** Streams: a new stream that waited unread for its peer's next turn of the event loop (a peer's new streams are taken up one per turn). */
  streamPeerTurn: number;
  /** Connections: an inbound QUIC connection closed at twice `rotateAfterStreams` (its peer never dialed a fresh one). */
  connectionStreamBudget: number;
  /** Connections: one retired because all open QUIC connections together carried `maxStreamIdsHeld` streams (the most worn go first). */
  nodeStreamBudget: number;
  /** Connections: a dial address forgotten at the bound of remembered addresses (65,536; the least recently dialed goes). */
  knownAddressesEvicted: number;
  /** Fan-out: legs refused OVERLOADED at maxActiveLegs. */
  fanoutLegsNodeLimit: number;
  /** Fan-out: legs refused OVERLOADED over the peer's share. */
  fanoutLegsPeerLimit: number;
  /** Fan-out: legs refused from a peer that is not a routing neighbour. */
  fanoutNotNeighbour: number;
  /** Fan-out: legs cut at the leg read deadline. */
  fanoutLegReadDeadline: number;
  /** Fan-out: legs cut over their peer's share of leg bytes. */
  fanoutLegBytesPeer: number;
  /** Fan-out: legs cut to make room in the node's leg byte budget. */
  fanoutLegBytesEvicted: number;
  /** Fan-out: request ids forgotten early (the origin's share, or the heaviest origin's at a full memory). */
  fanoutRememberedEvicted: number;
  /** Fan-out: requests refused OVERLOADED because the request-id memory was full. */
  fanoutRememberedRefused: number;
  /** Fan-out: requests refused below their origin's replay floor. */
  fanoutReplayFloor: number;
  /** Relay v2: datagrams dropped because their inbound neighbour spent its forwarding budget. */
  datagramRelayOverBudget: number;
  /** Relay v2: datagrams dropped with their hop limit spent. */
  datagramRelayHopLimit: number;
  /** Relay v2: error reports not sent, over the errorsPerSecond budget. */
  datagramRelayErrorBudget: number;
  /** Relay v2: datagrams for a new flow over the endpoint's flow limit. */
  datagramRelayFlowLimit: number;
  /** Relay v2: flows evicted at the endpoint. */
  datagramRelayEvicted: number;
  /** Relay v2: a far node's first Initial dropped over its previous hop's share of pending flows. */
  datagramRelayPendingHopLimit: number;
  /** Relay v2: a pending flow evicted at maxPendingFlows for a previous hop holding fewer. */
  datagramRelayPendingEvicted: number;
  /** Requests: a handleRequest request reset OVERLOADED over its peer's share of request bytes in flight. */
  requestBytesPeerLimit: number;
  /** Requests: a request reset OVERLOADED at the node's budget, no heavier peer's request being read to cut. */
  requestBytesNodeLimit: number;
  /** Requests: a request of the peer holding the most bytes cut OVERLOADED for a lighter peer's. */
  requestBytesEvicted: number;
}

/**
 * One snapshot of this node's counters (PnetNode.stats()): a plain object, cheap to take (no
 * per-peer work beyond summing stream counts). Counters are monotonic since the node was made;
 * the gauges are `connections`, `peers`, `streams`, `relay.active`, `negotiations.pending`,
 * `negotiations.pendingPeers`. Bytes in/out per transport are not counted by the transports yet;
 * `relay.bytes` counts what this node forwarded for others (docs/METRICS.md).
 */
export interface NodeStats {
  /** Connections each transport holds now (kept or draining). */
  readonly connections: Readonly<Record<TransportKind, number>>;
  /** Peers with a kept connection. */
  readonly peers: number;
  /** Streams open now on the kept connections. */
  readonly streams: number;
  readonly handshakes: {
    /** Outbound handshakes started, fallbacks, remembered-HTTP/2 dials (as `dialStats`). */
    readonly started: Readonly<DialStats>;
    /** Connections established, by transport and direction. */
    readonly completed: Readonly<Record<TransportKind, Readonly<HandshakeCounts>>>;
    /** Inbound QUIC handshakes in progress now (a gauge; 0 without QUIC). */
    readonly pending: number;
  };
  /** Datagrams the QUIC endpoint dropped, by reason (undefined without QUIC). */
  readonly datagramsDropped: Readonly<QuicDropStats> | undefined;
  /** The stream relay (flows this node spliced for others, bytes forwarded, limits). */
  readonly relay: Readonly<RelayStats>;
  /**
   * Relay v2 (undefined with `relay.datagrams: false`): relayed connections up at this end, the
   * forwarder (datagrams and bytes received, delivered, forwarded; drops by reason) and the endpoint.
   */
  readonly datagramRelay: Readonly<DatagramRelayStats> | undefined;
  /** The link-state router: records received, accepted, dropped by reason, SPF runs, rate limits. */
  readonly routing: Readonly<RouterStats>;
  /** Fan-out work: legs served and sent, retries, forged results dropped. */
  readonly fanout: Readonly<FanoutStats>;
  /** Channel negotiations this node answered, direct and inside relay tunnels together. */
  readonly negotiations: Readonly<NegotiationStats>;
  /** Every limit that tripped, by name. */
  readonly limits: Readonly<LimitTrips>;
  /** Bootstrap redials: attempts, failures, reconnections. */
  readonly bootstrap: Readonly<BootstrapStats>;
  /** Connection rotation (`rotateAfterStreams`): worn connections redialed, replaced, closed over budget. */
  readonly rotation: Readonly<RotationStats>;
  /** Per-peer turns (src/node/turns.ts): streams that waited for their peer's turn, and why each was taken up. */
  readonly streamTurns: Readonly<StreamTurnStats>;
}

/** Per-peer turns' counters (node.stats().streamTurns, docs/LIMITS.md "Per-peer fairness"). */
export interface StreamTurnStats {
  /** Streams that waited for their peer's turn (= limits.streamPeerTurn). */
  readonly waited: number;
  /** Why a waiting stream was taken up: three other peers' starts since its peer's last, 1 ms of idle loop, the 20 ms bound, no other peer active. */
  readonly released: { readonly others: number; readonly idle: number; readonly maxWait: number; readonly alone: number };
}

/** Connection rotation's counters (node.stats().rotation). */
export interface RotationStats {
  /** Redials of a worn connection this node dialed. */
  rotated: number;
  /** Connections replaced by a fresh one (either end), draining their streams. */
  replaced: number;
  /** Inbound connections closed at twice the budget: the peer never dialed a fresh one. */
  overBudgetClosed: number;
  /** Connections retired because all open ones together carried `maxStreamIdsHeld` streams, the most worn first: replaced by one this node dials back, else closed. */
  nodeBudgetRetired: number;
}
