import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import { Identity, loadOrCreateIdentity } from '../identity/index.js';
import type { NodeId } from '../identity/index.js';
import { QuicTransport, formatAddress, parseAddress } from '../transport/index.js';
import type { Connection, QuicTransportOptions, SocketAddress, Stream, TransportKind } from '../transport/index.js';
import { ChannelRegistry, acceptChannel, openChannel } from '../channel/index.js';
import type { AuthoriseHook, ChannelRequestInfo, Metadata } from '../channel/index.js';
import { Router } from '../routing/index.js';
import type { RouterAction, RouterOptions } from '../routing/index.js';
import { RELAY_CHANNEL, RelayService } from '../relay/index.js';
import type { RelayOptions } from '../relay/index.js';

/** Reserved channel carrying link-state messages between neighbours. */
const ROUTING_CHANNEL = 'pnet/routing';
const RESERVED_PREFIX = 'pnet/';

export interface NodeOptions {
  /** Where to listen for QUIC (UDP): "host:port" or { host, port }. Default "127.0.0.1:0". */
  listen?: string | SocketAddress;
  /** The node's identity; if absent, `keyFile` is loaded (or created), else a fresh key is made. */
  identity?: Identity;
  /** Path of the node's private key (PEM, created with mode 0600 when missing). */
  keyFile?: string;
  /** Nodes to connect to at start; createNode waits until each has connected or failed. */
  bootstrap?: ReadonlyArray<string | SocketAddress>;
  /** QUIC tuning: datagram size, idle timeout, flow-control windows, stream limits. */
  quic?: Omit<QuicTransportOptions, 'identity' | 'host' | 'port'>;
  /** Deadline for channel negotiation (OPEN to ACCEPT), both directions (default 10000 ms). */
  negotiationTimeoutMs?: number;
  /** Link-state router tuning (record lifetime, refresh, costs) and how often RTT is sampled. */
  routing?: Omit<RouterOptions, 'signer' | 'verify' | 'recordCache' | 'random' | 'pathComputer'> & {
    /** Neighbour RTT is sampled this often (default 1000 ms). */
    rttSampleMs?: number;
    /** A new connection becomes a routing neighbour once it has lived this long (default 200 ms). */
    neighbourHoldDownMs?: number;
  };
  /** Limits of the streams this node relays for others. */
  relay?: RelayOptions;
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

export interface PeerInfo {
  readonly nodeId: NodeId;
  readonly address: string;
  readonly transport: TransportKind;
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
}

export interface RequestOptions {
  metadata?: Record<string, string>;
  credentials?: Uint8Array;
  /** Whole-request deadline (default 10000 ms): ERR_REQUEST_TIMEOUT. */
  timeoutMs?: number;
  /** Largest response accepted (default 16 MiB): ERR_REQUEST_TOO_LARGE. */
  maxResponseBytes?: number;
}

export interface NodeEvents {
  'peer:up': [peer: PeerInfo];
  'peer:down': [peer: { nodeId: NodeId; error: PnetError | undefined }];
  route: [change: RouteEvent];
  /** Non-fatal problems (a failed bootstrap dial, a handler that threw). Only emitted when listened to. */
  error: [error: Error];
}

const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
/** How long a connection that lost the duplicate-connection rule keeps serving before it drains. */
const DUPLICATE_GRACE_MS = 500;

/**
 * A pnet node: one identity, one QUIC endpoint, a table of channels it
 * serves and at most one connection per peer.
 */
export class PnetNode extends EventEmitter<NodeEvents> {
  readonly identity: Identity;
  private readonly transport: QuicTransport;
  /** Channels served on direct streams: the user's plus pnet's reserved ones. */
  private readonly registry = new ChannelRegistry();
  /** Channels served inside relay tunnels: the user's only. */
  private readonly tunnelRegistry = new ChannelRegistry();
  private readonly router: Router;
  private readonly relay: RelayService;
  private routerTimer: NodeJS.Timeout | undefined;
  /** Peers connected for less than the hold-down, not yet routing neighbours. */
  private readonly neighbourTimers = new Map<NodeId, NodeJS.Timeout>();
  private readonly neighbourHoldDownMs: number;
  private readonly rttTimer: NodeJS.Timeout;
  private readonly connections = new Map<NodeId, Connection>();
  private readonly dialing = new Map<string, Promise<NodeId>>();
  private readonly knownAddresses = new Map<NodeId, SocketAddress>();
  private readonly negotiationTimeoutMs: number;
  private closing: Promise<void> | undefined;

  private constructor(identity: Identity, transport: QuicTransport, options: NodeOptions) {
    super();
    this.identity = identity;
    this.transport = transport;
    this.negotiationTimeoutMs = options.negotiationTimeoutMs ?? 10_000;
    const { rttSampleMs = 1000, neighbourHoldDownMs = 200, ...routerOptions } = options.routing ?? {};
    this.neighbourHoldDownMs = neighbourHoldDownMs;
    // A restarted node starts above its old sequence numbers (it would recover them from the network anyway).
    this.router = new Router({ initialSequence: BigInt(Date.now()), ...routerOptions, signer: identity });
    this.relay = new RelayService(
      {
        identity,
        nextHop: (destination) => this.router.nextHop(destination) ?? null,
        openToNeighbour: (peer, channel, metadata) => this.openDirect(peer, channel, { metadata }),
        acceptTunnelled: (stream, origin) => this.acceptOn(stream, origin, this.tunnelRegistry),
      },
      options.relay,
    );
    this.registry.register(RELAY_CHANNEL, (negotiated, info) => this.relay.handle(negotiated.stream, info), { authorise: this.relay.authorise });
    this.registry.register(ROUTING_CHANNEL, (negotiated, info) => this.receiveRouting(negotiated.stream, info.remoteNodeId));
    transport.on('connection', (connection) => this.adopt(connection));
    transport.on('error', (error) => this.report(error));
    this.rttTimer = setInterval(() => this.sampleRtt(), rttSampleMs);
    this.rttTimer.unref();
  }

  static async create(options: NodeOptions = {}): Promise<PnetNode> {
    const identity = options.identity ?? (options.keyFile !== undefined ? await loadOrCreateIdentity(options.keyFile) : await Identity.generate());
    const listen = parseAddress(options.listen ?? '127.0.0.1:0');
    const transport = await QuicTransport.listen({ ...options.quic, identity, host: listen.host, port: listen.port });
    const node = new PnetNode(identity, transport, options);
    const results = await Promise.allSettled((options.bootstrap ?? []).map((address) => node.dial(address)));
    for (const result of results) if (result.status === 'rejected') node.report(result.reason as Error);
    return node;
  }

  get id(): NodeId {
    return this.identity.nodeId;
  }

  /** The address peers dial, "host:port". */
  get address(): string {
    return formatAddress(this.transport.address);
  }

  // ---- channels ---------------------------------------------------------

  /** Serves `channel`: the handler gets each accepted stream. */
  handle(channel: string, handler: StreamHandler, options: HandleOptions = {}): void {
    if (channel.startsWith(RESERVED_PREFIX)) throw new PnetError('ERR_BAD_OPTION', `channel names starting with "${RESERVED_PREFIX}" are reserved for pnet`);
    const registration = {
      ...(options.authorise ? { authorise: options.authorise } : {}),
      ...(options.metadata ? { metadata: options.metadata } : {}),
    };
    const serve = (negotiated: { stream: Duplex }, info: ChannelRequestInfo): void | Promise<void> =>
      handler(decorate(negotiated.stream, channel, info.remoteNodeId, info.metadata), info) as void | Promise<void>;
    this.registry.register(channel, serve, registration);
    this.tunnelRegistry.register(channel, serve, registration);
  }

  /** Serves `channel` as request/response: the whole request in, one reply out. */
  handleRequest(channel: string, handler: RequestHandler, options: HandleRequestOptions = {}): void {
    const maxBytes = options.maxRequestBytes ?? DEFAULT_MAX_BYTES;
    this.handle(
      channel,
      async (stream, info) => {
        let request: Buffer;
        try {
          request = await readAll(stream, maxBytes, 'ERR_REQUEST_TOO_LARGE');
        } catch {
          stream.reset(1);
          return;
        }
        const reply = await handler(request, info);
        stream.end(typeof reply === 'string' ? Buffer.from(reply) : reply);
      },
      options,
    );
  }

  /** Stops serving `channel`; streams already accepted carry on. */
  unhandle(channel: string): void {
    if (channel.startsWith(RESERVED_PREFIX)) return;
    this.registry.unregister(channel);
    this.tunnelRegistry.unregister(channel);
  }

  // ---- connections ------------------------------------------------------

  /**
   * Connects to the node at `address` (mutual TLS; with `expectedNodeId`, a
   * different key fails with ERR_PEER_ID_MISMATCH) and returns its node id.
   */
  async dial(address: string | SocketAddress, options: { expectedNodeId?: NodeId; timeoutMs?: number } = {}): Promise<NodeId> {
    this.assertOpen();
    const target = parseAddress(address);
    const key = formatAddress(target);
    const expected = options.expectedNodeId;
    if (expected !== undefined) {
      const existing = this.connections.get(expected);
      if (existing && !existing.closing) return expected;
    }
    let pending = this.dialing.get(key);
    if (pending === undefined) {
      pending = this.transport
        .dial(target, options)
        .then((connection) => {
          this.knownAddresses.set(connection.remoteNodeId, target);
          this.adopt(connection);
          return connection.remoteNodeId;
        })
        .finally(() => this.dialing.delete(key));
      this.dialing.set(key, pending);
    }
    const id = await pending;
    if (expected !== undefined && id !== expected) {
      throw new PnetError('ERR_PEER_ID_MISMATCH', `expected node ${expected} at ${key}, but ${id} answered`);
    }
    return id;
  }

  /** Closes the connection to `nodeId` (gracefully: open streams finish first). */
  async disconnect(nodeId: NodeId): Promise<void> {
    const connection = this.connections.get(nodeId);
    if (connection) await connection.close({ reason: 'disconnect' });
  }

  peers(): PeerInfo[] {
    return [...this.connections.values()].map(peerInfo);
  }

  private adopt(connection: Connection): void {
    const id = connection.remoteNodeId;
    connection.on('stream', (stream) => this.accept(stream, id));
    if (this.closing) {
      void connection.close({ graceful: false, reason: 'node closing' });
      return;
    }
    const existing = this.connections.get(id);
    if (existing && !existing.closing) {
      // Two connections to one peer (simultaneous dial): both ends keep the same one.
      const keep = preferred(existing, connection, this.id);
      const drop = keep === existing ? connection : existing;
      this.connections.set(id, keep);
      setTimeout(() => void drop.close({ reason: 'duplicate connection' }), DUPLICATE_GRACE_MS).unref();
      if (keep === existing) return;
      connection.on('close', (error) => this.lost(connection, error));
      return;
    }
    this.connections.set(id, connection);
    connection.on('close', (error) => this.lost(connection, error));
    this.emit('peer:up', peerInfo(connection));
    // Hold-down: a connection that lives a moment (a one-shot command) never disturbs the routing map.
    const timer = setTimeout(() => {
      this.neighbourTimers.delete(id);
      if (this.connections.get(id) === connection && !this.closing) {
        this.apply(this.router.neighbourUp(id, performance.now(), connection.rttMs()));
      }
    }, this.neighbourHoldDownMs);
    timer.unref();
    this.neighbourTimers.set(id, timer);
  }

  private lost(connection: Connection, error: PnetError | undefined): void {
    const id = connection.remoteNodeId;
    if (this.connections.get(id) !== connection) return;
    this.connections.delete(id);
    this.emit('peer:down', { nodeId: id, error });
    const pending = this.neighbourTimers.get(id);
    if (pending !== undefined) {
      clearTimeout(pending);
      this.neighbourTimers.delete(id);
    } else if (!this.closing) {
      this.apply(this.router.neighbourDown(id, performance.now()));
    }
  }

  private accept(stream: Stream, remoteNodeId: NodeId): void {
    this.acceptOn(stream, remoteNodeId, this.registry);
  }

  private acceptOn(stream: Duplex, remoteNodeId: NodeId, registry: ChannelRegistry): void {
    acceptChannel(stream, registry, remoteNodeId, {
      timeoutMs: this.negotiationTimeoutMs,
      onHandlerError: (error) => this.report(error instanceof Error ? error : new Error(String(error))),
    }).catch((error: unknown) => this.report(error as Error));
  }

  // ---- routing ----------------------------------------------------------

  /** Routes to every node the router knows a way to. */
  routes(): RouteInfo[] {
    return this.router.routes().map((route) => ({ nodeId: route.dest, nextHop: route.nextHop, cost: route.cost, hops: route.hops }));
  }

  /** Node ids from this node to `nodeId`, both included; undefined when unreachable. */
  path(nodeId: NodeId): NodeId[] | undefined {
    return this.router.path(nodeId);
  }

  /** The network map: nodes and the links their records announce. */
  topology(): Topology {
    const nodes = new Set<NodeId>([this.id]);
    const links: Topology['links'] = [];
    for (const [origin, record] of this.router.records()) {
      nodes.add(origin);
      for (const link of record.links) {
        nodes.add(link.to);
        links.push({ from: origin, to: link.to, cost: link.cost });
      }
    }
    return { nodes: [...nodes], links };
  }

  /** Carries out what the router asked for, and wakes it when it next has work. */
  private apply(actions: readonly RouterAction[]): void {
    for (const action of actions) {
      if (action.type === 'send') this.sendRouting(action.to, action.bytes);
      else for (const change of action.changed) this.emit('route', { nodeId: change.dest, nextHop: change.nextHop, previousNextHop: change.previousNextHop });
    }
    if (this.closing) return;
    const deadline = this.router.nextDeadline();
    if (this.routerTimer) clearTimeout(this.routerTimer);
    this.routerTimer = undefined;
    if (deadline !== undefined) {
      this.routerTimer = setTimeout(() => {
        this.routerTimer = undefined;
        this.apply(this.router.tick(performance.now()));
      }, Math.max(0, deadline - performance.now()));
      this.routerTimer.unref();
    }
  }

  private sendRouting(to: NodeId, bytes: Uint8Array): void {
    const connection = this.connections.get(to);
    if (!connection || connection.closing) return; // the router republishes; a lost message is repaired by refresh
    connection.openStream().then(
      (stream) => {
        const negotiated = openChannel(stream, ROUTING_CHANNEL);
        negotiated.accepted.catch(() => undefined);
        stream.on('error', () => undefined);
        stream.resume();
        stream.end(bytes);
      },
      () => undefined,
    );
  }

  private receiveRouting(stream: Duplex, from: NodeId): void {
    readAll(stream, this.router.maxMessageBytes, 'ERR_REQUEST_TOO_LARGE').then(
      (bytes) => {
        stream.end();
        if (!this.closing) this.apply(this.router.recordReceived(from, bytes, performance.now()));
      },
      () => stream.destroy(),
    );
  }

  private sampleRtt(): void {
    const now = performance.now();
    for (const [id, connection] of this.connections) {
      if (!connection.closing) this.apply(this.router.rttSample(id, connection.rttMs(), now));
    }
  }

  // ---- streams ----------------------------------------------------------

  /**
   * Opens a stream to `nodeId` on `channel`. Resolves once the peer accepted
   * (rejects with its REJECT code: UNKNOWN_CHANNEL, UNAUTHORIZED, ...), or at
   * once with `optimistic: true`.
   */
  async openStream(nodeId: NodeId, channel: string, options: OpenStreamOptions = {}): Promise<PnetStream> {
    this.assertOpen();
    if (channel.startsWith(RESERVED_PREFIX)) throw new PnetError('ERR_BAD_OPTION', `channel names starting with "${RESERVED_PREFIX}" are reserved for pnet`);
    const direct = this.connections.get(nodeId);
    let stream: Duplex;
    if (direct && !direct.closing) stream = await direct.openStream();
    else if (this.router.nextHop(nodeId) !== undefined) stream = await this.relay.open(nodeId);
    else stream = await (await this.connectionTo(nodeId)).openStream();
    return this.negotiate(stream, nodeId, channel, options);
  }

  /** Opens a stream on a direct connection only (the relay's legs, pnet's own channels). */
  private async openDirect(nodeId: NodeId, channel: string, options: OpenStreamOptions): Promise<PnetStream> {
    const connection = this.connections.get(nodeId);
    if (!connection || connection.closing) throw new PnetError('UNREACHABLE', `next hop ${nodeId} is not connected`);
    return this.negotiate(await connection.openStream(), nodeId, channel, options);
  }

  private async negotiate(stream: Duplex, nodeId: NodeId, channel: string, options: OpenStreamOptions): Promise<PnetStream> {
    const negotiated = openChannel(stream, channel, {
      ...(options.metadata ? { metadata: options.metadata } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
    const result = decorate(stream, channel, nodeId, undefined);
    if (options.optimistic) {
      negotiated.accepted.then(({ metadata }) => setMetadata(result, metadata), () => undefined);
      return result;
    }
    const timer = setTimeout(() => stream.destroy(new PnetError('ERR_REQUEST_TIMEOUT', `no answer to OPEN ${channel} from ${nodeId} within ${this.negotiationTimeoutMs} ms`)), this.negotiationTimeoutMs);
    try {
      const { metadata } = await negotiated.accepted;
      setMetadata(result, metadata);
      return result;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `data` on `channel` and resolves with the whole reply (see handleRequest). */
  async request(nodeId: NodeId, channel: string, data: Uint8Array | string, options: RequestOptions = {}): Promise<Buffer> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const stream = await this.openStream(nodeId, channel, {
      optimistic: true,
      ...(options.metadata ? { metadata: options.metadata } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
    const timer = setTimeout(() => stream.destroy(new PnetError('ERR_REQUEST_TIMEOUT', `request on ${channel} to ${nodeId} got no reply within ${timeoutMs} ms`)), timeoutMs);
    try {
      const reply = readAll(stream, options.maxResponseBytes ?? DEFAULT_MAX_BYTES, 'ERR_REQUEST_TOO_LARGE');
      stream.end(typeof data === 'string' ? Buffer.from(data) : data);
      return await reply;
    } finally {
      clearTimeout(timer);
    }
  }

  private async connectionTo(nodeId: NodeId): Promise<Connection> {
    this.assertOpen();
    const connection = this.connections.get(nodeId);
    if (connection && !connection.closing) return connection;
    const address = this.knownAddresses.get(nodeId);
    if (address === undefined) throw new PnetError('UNREACHABLE', `no route to ${nodeId} and no address known for it`);
    await this.dial(address, { expectedNodeId: nodeId });
    const dialed = this.connections.get(nodeId);
    if (!dialed) throw new PnetError('UNREACHABLE', `connection to ${nodeId} closed right after it opened`);
    return dialed;
  }

  // ---- lifecycle --------------------------------------------------------

  /** Drains open streams (bounded by timeoutMs, default 2000), closes every connection and the socket. */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (!this.closing) {
      clearInterval(this.rttTimer);
      for (const timer of this.neighbourTimers.values()) clearTimeout(timer);
      this.neighbourTimers.clear();
      if (this.routerTimer) clearTimeout(this.routerTimer);
      this.routerTimer = undefined;
      this.closing = this.transport.close(options);
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

/** Both ends pick the same survivor: the connection dialed by the smaller node id, then the smaller key. */
function preferred(a: Connection, b: Connection, self: NodeId): Connection {
  const dialerA = a.direction === 'outbound' ? self : a.remoteNodeId;
  const dialerB = b.direction === 'outbound' ? self : b.remoteNodeId;
  if (dialerA !== dialerB) return dialerA < dialerB ? a : b;
  return a.connectionKey <= b.connectionKey ? a : b;
}

function peerInfo(connection: Connection): PeerInfo {
  return {
    nodeId: connection.remoteNodeId,
    address: formatAddress(connection.remoteAddress),
    transport: connection.transport,
    direction: connection.direction,
    // Read on demand: asking quiche for path statistics costs more than a connection's bookkeeping.
    get rttMs() {
      return connection.rttMs();
    },
    get streams() {
      return connection.streamCount;
    },
  };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function decorate(stream: Duplex, channel: string, remoteNodeId: NodeId, metadata: Metadata | undefined): PnetStream {
  const result = stream as unknown as Mutable<PnetStream>;
  result.channel = channel;
  result.remoteNodeId = remoteNodeId;
  result.remoteMetadata = metadata ?? EMPTY_METADATA;
  // A tunnelled stream is a TLS socket: resetting it means tearing down the relayed leg under it.
  if (typeof result.reset !== 'function') result.reset = () => void stream.destroy();
  return result;
}

function setMetadata(stream: PnetStream, metadata: Metadata): void {
  (stream as Mutable<PnetStream>).remoteMetadata = metadata;
}

const EMPTY_METADATA: Metadata = Object.freeze({});

/** Reads a stream to its end, failing with `code` past `maxBytes`. */
export function readAll(stream: Duplex, maxBytes: number, code: 'ERR_REQUEST_TOO_LARGE'): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > maxBytes) {
        cleanup();
        const error = new PnetError(code, `more than ${maxBytes} bytes`);
        stream.destroy(error);
        reject(error);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onClose = (): void => {
      cleanup();
      const reason = (stream as { resetError?: Error }).resetError;
      reject(reason ?? new PnetError('ERR_STREAM_RESET', 'stream closed before its end'));
    };
    function cleanup(): void {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    }
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
