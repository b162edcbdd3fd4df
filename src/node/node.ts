/**
 * The node facade: the public PnetNode, wiring small services that never import it back.
 * binding.ts checks options and binds the transports; dialer.ts races QUIC against HTTP/2;
 * peers.ts keeps one connection per peer; neighbours.ts glues the router to connections;
 * streams.ts serves and opens channel streams (direct, relayed, dialed); requests.ts is the one
 * request pipeline (handleRequest and fan-out targets); fanout.ts spreads requests by next hop
 * (spread.ts: one node's share of one fan-out).
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import { Identity, loadOrCreateIdentity, parseNodeId } from '../identity/index.js';
import type { NodeId } from '../identity/index.js';
import { QuicConnection, QuicTransport, formatAddress, parseAddress } from '../transport/index.js';
import { DATAGRAM_LINK_CHANNEL, DatagramRelay, RAW_TAG_CHANNEL } from '../relay/index.js';
import type { DatagramLink, RawLinkHost } from '../relay/index.js';
import type { Connection, SocketAddress, Transport } from '../transport/index.js';
import { bindTransports, datagramRelayOptions, nodeSettings } from './binding.js';
import { numberOption } from '../options.js';
import type { NodeSettings } from './binding.js';
import { Dialer } from './dialer.js';
import { PeerTable, peerInfo } from './peers.js';
import { Neighbours, ROUTING_CHANNEL } from './neighbours.js';
import { Streams, assertUserChannel } from './streams.js';
import { Requests } from './requests.js';
import { RoutingGate, serveGated } from './routing-gate.js';
import { FANOUT_CHANNEL, FanoutService, legOpenOptions } from './fanout.js';
import { LinksAhead } from './fanout-link-ahead.js';
import { HandshakeCounter, takeStats } from './stats.js';
import { BootstrapKeeper, redialSchedule } from './bootstrap.js';
import { unrefTimers } from '../timers.js';
import type {
  BootstrapEvent,
  BootstrapResult,
  DialStats,
  FanoutOptions,
  FanoutResult,
  FanoutStats,
  HandleOptions,
  HandleRequestOptions,
  ListenAddress,
  NodeEvents,
  NodeStats,
  NodeOptions,
  OpenStreamOptions,
  PeerInfo,
  PnetStream,
  RequestHandler,
  RequestOptions,
  RouteInfo,
  StreamHandler,
  Topology,
} from './types.js';

/** The services one node is made of. Not public API: tests reach one job through its service. */
export interface NodeServices {
  /** The bound transports, QUIC first. */
  readonly transports: readonly Transport[];
  readonly dialer: Dialer;
  readonly peers: PeerTable;
  readonly neighbours: Neighbours;
  readonly streams: Streams;
  readonly requests: Requests;
  readonly fanouts: FanoutService;
  /** Relay v2 (undefined with relay.datagrams false). */
  readonly datagrams: DatagramRelay | undefined;
}

const servicesOf = new WeakMap<PnetNode, NodeServices>();

/** The services behind `node` (tests; src/node/index.ts does not export it). */
export function nodeServices(node: PnetNode): NodeServices {
  return servicesOf.get(node)!;
}

/**
 * A pnet node: one identity, one QUIC endpoint, a table of channels it
 * serves and at most one connection per peer.
 */
export class PnetNode extends EventEmitter<NodeEvents> {
  readonly identity: Identity;
  /** The transports this node listens and dials on, QUIC first. */
  private readonly transports: readonly Transport[];
  private readonly dialer: Dialer;
  private readonly peerTable: PeerTable;
  private readonly neighbours: Neighbours;
  private readonly streams: Streams;
  private readonly requests: Requests;
  private readonly fanouts: FanoutService;
  /** Relay v2 (undefined with relay.datagrams false). */
  private readonly datagrams: DatagramRelay | undefined;
  private readonly handshakes = new HandshakeCounter();
  private readonly routingGate: RoutingGate;
  private bootstrapOutcome: readonly BootstrapResult[] = [];
  /** Redials the bootstrap peers while they are down (bootstrap.ts). */
  private keeper: BootstrapKeeper | undefined;
  private closing: Promise<void> | undefined;

  private constructor(identity: Identity, transports: readonly Transport[], settings: NodeSettings, options: NodeOptions) {
    super();
    this.identity = identity;
    this.transports = transports;
    const report = (error: Error): void => this.report(error);
    const live = (nodeId: NodeId): Connection | undefined => this.peerTable.live(nodeId);
    this.peerTable = new PeerTable(identity.nodeId, {
      up: (connection) => {
        this.emit('peer:up', peerInfo(connection));
        this.neighbours.connected(connection.remoteNodeId);
        this.sendLinkTag(connection);
      },
      down: (nodeId, error) => {
        this.emit('peer:down', { nodeId, error });
        this.neighbours.disconnected(nodeId);
        this.datagrams?.neighbourDown(nodeId);
        this.keeper?.peerDown(nodeId);
      },
      rotate: (connection) => this.dialer.dial(connection.remoteAddress, { expectedNodeId: connection.remoteNodeId }),
    }, settings.rotateAfterStreams, undefined, settings.maxStreamIdsHeld);
    this.dialer = new Dialer(transports, settings, (connection, target) => {
      this.peerTable.rememberAddress(connection.remoteNodeId, target);
      this.adopt(connection);
    });
    this.streams = new Streams(
      {
        identity,
        live,
        nextHop: (nodeId) => this.neighbours.nextHop(nodeId),
        connectionTo: (nodeId) => this.connectionTo(nodeId),
        relayed: (nodeId) => (this.datagrams?.carries(nodeId) ? this.datagrams.connect(nodeId) : undefined),
        report,
      },
      { negotiationTimeoutMs: settings.negotiationTimeoutMs, relay: options.relay },
    );
    this.requests = new Requests({
      authoriseTimeoutMs: settings.negotiationTimeoutMs,
      serve: (channel, handler, handleOptions) => this.streams.handle(channel, handler, handleOptions),
      open: (nodeId, channel, openOptions) => this.openStream(nodeId, channel, openOptions),
    }, options.requests);
    this.fanouts = new FanoutService(
      {
        identity,
        groupByNextHop: (packed) => this.neighbours.groupByNextHop(packed),
        allNodes: () => this.neighbours.allNodes(),
        openLeg: (neighbour, link) => this.streams.openDirect(neighbour, FANOUT_CHANNEL, legOpenOptions(link)),
        isConnected: (neighbour) => live(neighbour) !== undefined,
        isNeighbour: (peer) => this.neighbours.router.neighbourCost(peer) !== undefined,
        answerRequest: (channel, request, info, limits) => this.requests.answer(channel, request, info, limits),
      },
      options.fanout,
    );
    // The fan-out's links to next hops opened as the routes name them, before the first leg (closed with the fan-out).
    const linksAhead = new LinksAhead(this.fanouts.links, { role: () => this.neighbours.router.role, isNeighbour: (peer) => live(peer) !== undefined && this.neighbours.router.neighbourCost(peer) !== undefined }, options.fanout);
    // Last: they start timers, and the services above may still refuse their options.
    this.datagrams = options.relay?.datagrams === false ? undefined : this.makeDatagramRelay(options, report);
    this.neighbours = new Neighbours(identity, settings, {
      live,
      entries: () => this.peerTable.entries(),
      route: (change) => this.emit('route', change),
      routesChanged: (changes) => (this.datagrams?.routesChanged(changes), linksAhead.routesChanged(changes)),
      defaultRoute: (hop) => this.datagrams?.defaultRoute(hop),
      report,
    });
    this.routingGate = new RoutingGate((peer) => this.neighbours.router.neighbourCost(peer) !== undefined);
    this.serveReservedChannels();
    this.takeLinkPackets();
    for (const transport of transports) transport.on('connection', (connection) => this.adopt(connection)).on('error', report);
    const { dialer, peerTable: peers, neighbours, streams, requests, fanouts, datagrams } = this;
    servicesOf.set(this, { transports, dialer, peers, neighbours, streams, requests, fanouts, datagrams });
  }

  /** Relay v2: the hop, the ends and their links (link packets on the QUIC socket unless relay.linkPackets is false). */
  private makeDatagramRelay(options: NodeOptions, report: (error: Error) => void): DatagramRelay {
    const host = {
      identity: this.identity,
      link: (nodeId: NodeId) => this.relayLink(nodeId),
      openLinkStream: (nodeId: NodeId) => this.streams.openDirect(nodeId, DATAGRAM_LINK_CHANNEL, { optimistic: true }),
      adopt: (connection: QuicConnection, far: NodeId) => this.adoptRelayed(connection, far),
      report,
      ...(options.relay?.linkPackets === false ? {} : rawLinkHost(this.transports)),
    };
    return new DatagramRelay(host, datagramRelayOptions(options));
  }

  /** relay v2's link to a neighbour: its QUIC connection, or a datagram stream on an HTTP/2 one. */
  private relayLink(nodeId: NodeId): DatagramLink | undefined {
    const connection = this.peerTable.live(nodeId);
    if (connection === undefined) return undefined;
    if (!(connection instanceof QuicConnection)) return this.datagrams?.streamLink(nodeId);
    return this.datagrams?.rawLinks?.link(nodeId, connection) ?? connection;
  }

  /** Relay v2 link packets (src/relay/raw-link.ts): the QUIC socket's datagrams that are not QUIC go to the raw links. */
  private takeLinkPackets(): void {
    const relay = this.datagrams;
    const raw = relay?.rawLinks;
    const quic = quicOf(this.transports);
    if (relay === undefined || raw === undefined || quic === undefined) return;
    quic.onForeignDatagram = (packet, host, port) => {
      const taken = raw.receive(packet, host, port);
      if (taken !== undefined) relay.receive(taken.from, taken.datagram);
    };
    this.streams.serveReserved(RAW_TAG_CHANNEL, (negotiated, info) => {
      const neighbour = info.remoteNodeId;
      raw.readTagStream(neighbour, negotiated.stream, (outcome) => {
        if (outcome === 'resend') this.sendTag(neighbour, raw.tagMessage(neighbour));
      });
    });
  }

  /** A QUIC link is up: give the neighbour the tag its link packets to us carry (a node without the channel refuses it: DATAGRAM frames then). */
  private sendLinkTag(connection: Connection): void {
    const raw = this.datagrams?.rawLinks;
    if (raw === undefined || !(connection instanceof QuicConnection)) return;
    this.sendTag(connection.remoteNodeId, raw.linkUp(connection.remoteNodeId, connection));
  }

  private sendTag(neighbour: NodeId, message: Buffer | undefined): void {
    if (message === undefined) return;
    this.streams.openDirect(neighbour, RAW_TAG_CHANNEL, { optimistic: true }).then(
      (stream) => {
        stream.on('error', () => undefined);
        stream.resume();
        stream.end(message);
      },
      () => undefined,
    );
  }

  /** The node's own channels: fan-out legs, relay v2's link streams, routing. */
  private serveReservedChannels(): void {
    this.streams.serveReserved(FANOUT_CHANNEL, (negotiated, info) => this.fanouts.serveLeg(negotiated.stream, info.remoteNodeId, info.metadata), { authorise: this.fanouts.authorise });
    const relay = this.datagrams;
    if (relay) this.streams.serveReserved(DATAGRAM_LINK_CHANNEL, (negotiated, info) => relay.acceptLinkStream(info.remoteNodeId, negotiated.stream));
    // Each peer's routing streams are read a few at a time, the rest wait; a peer that is not a routing neighbour gets a small share (routing-gate.ts).
    const receive = (stream: Duplex, from: NodeId): void => this.neighbours.receive(stream, from);
    this.streams.serveReserved(ROUTING_CHANNEL, (negotiated, info) => serveGated(this.routingGate, negotiated.stream, info.remoteNodeId, receive), {
      authorise: (info) => {
        this.routingGate.check(info.remoteNodeId);
        return true;
      },
    });
  }

  static async create(options: NodeOptions = {}): Promise<PnetNode> {
    const identity = options.identity ?? (options.keyFile !== undefined ? await loadOrCreateIdentity(options.keyFile) : await Identity.generate());
    const settings = nodeSettings(options);
    const redial = redialSchedule(options.bootstrapRedial);
    const listen = parseAddress(options.listen ?? '127.0.0.1:0');
    const transports = await bindTransports(identity, listen, settings);
    let node: PnetNode;
    try {
      node = new PnetNode(identity, transports, settings, options);
    } catch (error) {
      // A service refused its options (relay, fanout): nothing may stay bound.
      await Promise.all(transports.map((transport) => transport.close({ timeoutMs: 0 })));
      throw error;
    }
    const addresses = options.bootstrap ?? [];
    const results = await Promise.allSettled(addresses.map((address) => node.dial(address)));
    node.bootstrapOutcome = results.map((result, i): BootstrapResult => {
      const address = typeof addresses[i] === 'string' ? addresses[i] : formatAddress(addresses[i]!);
      if (result.status === 'fulfilled') return { address, ok: true, nodeId: result.value };
      const error = result.reason instanceof PnetError ? result.reason : new PnetError('UNREACHABLE', String(result.reason), { cause: result.reason });
      node.report(error);
      return { address, ok: false, error };
    });
    if (redial && addresses.length > 0 && !node.closing) node.keeper = node.keepBootstrap(redial);
    return node;
  }

  private keepBootstrap(redial: NonNullable<ReturnType<typeof redialSchedule>>): BootstrapKeeper {
    const io = {
      dial: (address: string) => this.dial(address),
      connected: (id: NodeId) => this.peerTable.live(id) !== undefined,
      ...unrefTimers,
      event: (event: BootstrapEvent) => this.emit('bootstrap', event),
    };
    return new BootstrapKeeper(redial, io, this.bootstrapOutcome);
  }

  /** How createNode's bootstrap dials went, in the order given (their errors came before any listener could). */
  get bootstrapResults(): readonly BootstrapResult[] {
    return this.bootstrapOutcome;
  }

  get id(): NodeId {
    return this.identity.nodeId;
  }

  /** The address peers dial, "host:port": QUIC's (HTTP/2 listens on the same number), or HTTP/2's without QUIC. */
  get address(): string {
    return formatAddress(this.transports[0]!.address);
  }

  /** Every address this node listens on, QUIC first. */
  get addresses(): ListenAddress[] {
    return this.transports.map((transport) => ({ transport: transport.kind, address: formatAddress(transport.address) }));
  }

  /** Counters of outbound dials: handshakes started per transport, fallbacks, dials that went straight to HTTP/2. */
  get dialStats(): Readonly<DialStats> {
    return this.dialer.stats;
  }

  /**
   * A snapshot of this node's counters: connections by transport, streams, handshakes, QUIC
   * datagrams dropped by reason, relay flows and bytes, routing, fan-outs, channel negotiations
   * and every limit that tripped (docs/METRICS.md). Cheap: read from counters the layers keep.
   */
  stats(): NodeStats {
    const { transports, dialer, peerTable, streams, neighbours, fanouts, datagrams } = this;
    return takeStats(
      {
        transports,
        connections: () => [...peerTable.entries()].map(([, connection]) => connection),
        dials: () => dialer.stats,
        negotiations: () => streams.negotiationStats(),
        relay: () => streams.relayStats(),
        datagramRelay: () => datagrams?.stats(),
        router: () => neighbours.router.stats(),
        fanout: () => fanouts.stats,
        routingGate: () => this.routingGate.stats,
        streamTurnWaits: () => this.streams.turnWaits,
        streamTurns: () => this.streams.turnStats,
        requests: () => this.requests.limitStats(),
        bootstrap: () => this.keeper?.stats,
        rotation: () => peerTable.rotation,
        addressesEvicted: () => peerTable.addressesEvicted,
      },
      this.handshakes,
    );
  }

  // ---- channels ---------------------------------------------------------

  /** Serves `channel`: the handler gets each accepted stream. */
  handle(channel: string, handler: StreamHandler, options: HandleOptions = {}): void {
    this.streams.handle(channel, handler, options);
  }

  /** Serves `channel` as request/response: the whole request in, one reply out (fan-outs to this node too). */
  handleRequest(channel: string, handler: RequestHandler, options: HandleRequestOptions = {}): void {
    this.requests.handle(channel, handler, options);
  }

  /** Stops serving `channel`; streams already accepted carry on. */
  unhandle(channel: string): void {
    this.requests.unhandle(channel);
    this.streams.unhandle(channel);
  }

  // ---- connections ------------------------------------------------------

  /**
   * Connects to the node at `address` (mutual TLS; with `expectedNodeId`, a
   * different key fails with ERR_PEER_ID_MISMATCH) and returns its node id.
   * QUIC first; HTTP/2 joins the race after `fallbackDelayMs` or when QUIC fails
   * early (docs/TRANSPORT.md). `timeoutMs` bounds the whole dial.
   */
  async dial(address: string | SocketAddress, options: { expectedNodeId?: NodeId; timeoutMs?: number } = {}): Promise<NodeId> {
    this.assertOpen();
    const target = parseAddress(address);
    // A malformed id could never match: say so, rather than blame the peer (ERR_PEER_ID_MISMATCH).
    const expected = options.expectedNodeId === undefined ? undefined : parseNodeId(options.expectedNodeId);
    if (expected !== undefined && this.peerTable.live(expected)) return expected;
    const { remoteNodeId: id } = await this.dialer.dial(target, options);
    if (expected !== undefined && id !== expected) {
      throw new PnetError('ERR_PEER_ID_MISMATCH', `expected node ${expected} at ${formatAddress(target)}, but ${id} answered`);
    }
    return id;
  }

  /** Closes the connection to `nodeId` gracefully: open streams get up to `timeoutMs` (default 1000) to finish, then are cut. */
  disconnect(nodeId: NodeId, options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = numberOption('disconnect option', 'timeoutMs', options.timeoutMs, 1000);
    return this.peerTable.disconnect(nodeId, timeoutMs);
  }

  peers(): PeerInfo[] {
    return this.peerTable.peers();
  }

  /** Every new connection, dialed or accepted: its streams are served, the peer table takes it. */
  private adopt(connection: Connection): void {
    const id = connection.remoteNodeId;
    this.handshakes.established(connection);
    connection.on('stream', (stream) => {
      this.peerTable.streamAccepted(connection);
      this.streams.accept(stream, id);
    });
    if (connection.transport === 'quic') connection.on('datagram', (datagram) => this.datagrams?.receive(id, datagram));
    if (this.closing) {
      void connection.close({ graceful: false, reason: 'node closing' });
      return;
    }
    this.peerTable.add(connection);
  }

  /** A relayed connection to a far node (relay v2), either direction: its streams carry user channels only. */
  private adoptRelayed(connection: Connection, far: NodeId): void {
    if (this.closing) {
      void connection.close({ graceful: false, reason: 'node closing' });
      return;
    }
    connection.on('stream', (stream) => this.streams.acceptRelayed(stream, far));
    this.peerTable.addRelayed(connection);
  }

  /** A connection to a node the router does not reach: the live one, or a dial to where it was reached before. */
  private async connectionTo(nodeId: NodeId): Promise<Connection> {
    this.assertOpen();
    const connection = this.peerTable.live(nodeId);
    if (connection) return connection;
    const address = this.peerTable.addressOf(nodeId);
    if (address === undefined) throw new PnetError('UNREACHABLE', `no route to ${nodeId} and no address known for it`);
    await this.dial(address, { expectedNodeId: nodeId });
    const dialed = this.peerTable.get(nodeId);
    if (!dialed) throw new PnetError('UNREACHABLE', `connection to ${nodeId} closed right after it opened`);
    return dialed;
  }

  // ---- routing ----------------------------------------------------------

  /** Routes to every node the router knows a way to. */
  routes(): RouteInfo[] {
    return this.neighbours.routes();
  }

  /** Node ids from this node to `nodeId`, both included; undefined when unreachable. */
  path(nodeId: NodeId): NodeId[] | undefined {
    return this.neighbours.path(nodeId);
  }

  /** The network map: nodes and the links their records announce. */
  topology(): Topology {
    return this.neighbours.topology();
  }

  // ---- streams and requests ------------------------------------------------

  /**
   * Opens a stream to `nodeId` on `channel`. Resolves once the peer accepted
   * (rejects with its REJECT code: UNKNOWN_CHANNEL, UNAUTHORIZED, ...), or at
   * once with `optimistic: true`.
   */
  async openStream(nodeId: NodeId, channel: string, options: OpenStreamOptions = {}): Promise<PnetStream> {
    this.assertOpen();
    return this.streams.open(nodeId, channel, options);
  }

  /** Sends `data` on `channel` and resolves with the whole reply (see handleRequest). */
  request(nodeId: NodeId, channel: string, data: Uint8Array | string, options: RequestOptions = {}): Promise<Buffer> {
    if (nodeId === this.id) return this.requestSelf(channel, data, options);
    return this.requests.request(nodeId, channel, data, options);
  }

  /** A request to this node itself: its own handler, through the same pipeline (authorise, limits), without a stream. */
  private async requestSelf(channel: string, data: Uint8Array | string, options: RequestOptions): Promise<Buffer> {
    this.assertOpen();
    assertUserChannel(channel);
    const info = { channel, remoteNodeId: this.id, metadata: Object.assign(Object.create(null) as Record<string, string>, options.metadata ?? {}), ...(options.credentials ? { credentials: options.credentials } : {}) };
    const limits = { deadlineAt: performance.now() + (options.timeoutMs ?? 10_000), ...(options.maxResponseBytes === undefined ? {} : { maxReplyBytes: options.maxResponseBytes }) };
    const outcome = await this.requests.answer(channel, typeof data === 'string' ? Buffer.from(data) : Buffer.from(data), info, limits);
    if (!outcome.ok) throw outcome.error;
    return outcome.reply;
  }

  /**
   * Sends one request to many nodes (node ids, or `'all'`: every node of the map, this one
   * included) and yields each answer as it arrives. Targets answer with their handleRequest
   * handler; the iteration always ends, by `deadlineMs` at the latest, with one result per
   * target (failed ones carry an error: UNREACHABLE, UNAUTHORIZED, ERR_REQUEST_TIMEOUT, ...).
   * One copy goes to each next hop, which splits its share again (docs/FANOUT.md).
   */
  fanout(targets: readonly NodeId[] | 'all', channel: string, payload: Uint8Array | string, options: FanoutOptions = {}): AsyncIterable<FanoutResult> {
    this.assertOpen();
    assertUserChannel(channel);
    // A leaf holds no map: its router expands 'all' (docs/ROUTING.md, What a leaf does).
    const via = targets === 'all' && options.via === undefined ? this.neighbours.allVia() : undefined;
    return this.fanouts.start(targets, channel, payload, via === undefined ? options : { ...options, via });
  }

  /** Counters of this node's fan-out work (forged results dropped, legs, retries). */
  get fanoutStats(): Readonly<FanoutStats> {
    return { ...this.fanouts.stats };
  }

  // ---- lifecycle --------------------------------------------------------

  /** Drains open streams (bounded by timeoutMs, default 2000), closes every connection and the socket. */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (!this.closing) {
      this.keeper?.close();
      this.neighbours.close();
      this.fanouts.close();
      this.peerTable.close();
      this.dialer.close();
      const relayed = this.datagrams?.close(options) ?? Promise.resolve();
      this.closing = Promise.all([relayed, ...this.transports.map((transport) => transport.close(options))]).then(() => undefined);
    }
    return this.closing;
  }

  /** close() was called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  private assertOpen(): void {
    if (this.closing) throw new PnetError('ERR_NODE_CLOSED', 'node is closed');
  }

  private report(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }
}

function quicOf(transports: readonly Transport[]): QuicTransport | undefined {
  return transports.find((transport) => transport instanceof QuicTransport);
}

/** The QUIC transport as raw links need it (relay v2's link packets), when the node has one. */
function rawLinkHost(transports: readonly Transport[]): { raw?: RawLinkHost } {
  const quic = quicOf(transports);
  if (quic === undefined) return {};
  return { raw: { send: (prefix, payload, to) => quic.sendRelayed(prefix, payload, to.host, to.port), maxDatagramSize: quic.options.maxDatagramSize } };
}
