import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import { Identity, loadOrCreateIdentity } from '../identity/index.js';
import type { NodeId } from '../identity/index.js';
import { H2Transport, QuicTransport, formatAddress, parseAddress } from '../transport/index.js';
import type { Connection, DialOptions, H2TransportOptions, QuicTransportOptions, SocketAddress, Stream, TransportKind } from '../transport/index.js';
import { ChannelRegistry, acceptChannel, openChannel } from '../channel/index.js';
import type { AuthoriseHook, ChannelRequestInfo, Metadata } from '../channel/index.js';
import { KEY_BYTES, Router, SharedRecordCache, keyBytesOf, nodeIdAt } from '../routing/index.js';
import type { NextHopShare, RouterAction, RouterOptions } from '../routing/index.js';
import { RELAY_CHANNEL, RelayService } from '../relay/index.js';
import type { RelayOptions } from '../relay/index.js';
import { FANOUT_CHANNEL, FanoutService } from './fanout.js';
import { readAll } from './read-all.js';
import type { FanoutLimits, FanoutOptions, FanoutResult, FanoutStats, FanoutTargetHandler } from './fanout.js';

/** Reserved channel carrying link-state messages between neighbours. */
const ROUTING_CHANNEL = 'pnet/routing';
const RESERVED_PREFIX = 'pnet/';

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
  /** Link-state router tuning (record lifetime, refresh, costs) and how often RTT is sampled. */
  routing?: Omit<RouterOptions, 'signer' | 'verify' | 'recordCache' | 'random' | 'pathComputer'> & {
    /** Neighbour RTT is sampled this often (default 1000 ms). */
    rttSampleMs?: number;
    /** A new connection becomes a routing neighbour once it has lived this long (default 200 ms). */
    neighbourHoldDownMs?: number;
  };
  /** Limits of the streams this node relays for others. */
  relay?: RelayOptions;
  /** Limits of the fan-outs this node serves for others. */
  fanout?: FanoutLimits;
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
}

/** How one bootstrap dial of createNode went: the node it reached, or why not. */
export type BootstrapResult =
  | { readonly address: string; readonly ok: true; readonly nodeId: NodeId }
  | { readonly address: string; readonly ok: false; readonly error: PnetError };

/** An address this node listens on, per transport. */
export interface ListenAddress {
  readonly transport: TransportKind;
  /** "host:port" */
  readonly address: string;
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
/** Reset codes of a handleRequest stream (docs/PROTOCOL.md, "Request and response"). */
const REQUEST_TOO_LARGE = 1;
const HANDLER_FAILED = 2;
/** An empty message on the routing channel: "I route; take me as a neighbour". */
const HELLO = new Uint8Array(0);
/**
 * Verified link-state records shared by every node of this process: N nodes in one process
 * (tests, simulations, the demo) would otherwise verify every record N times. A hit needs the
 * exact same bytes, so the answer is the one a fresh verification would give.
 */
const processRecordCache = new SharedRecordCache(1 << 15);
/** How long a connection that lost the duplicate-connection rule keeps serving before it drains. */
const DUPLICATE_GRACE_MS = 500;
/** Binding QUIC and HTTP/2 on one free port number: attempts when the TCP port of QUIC's number is taken. */
const BIND_ATTEMPTS = 5;
/** Peer addresses remembered as HTTP/2-only, at most. */
const MAX_REMEMBERED = 10_000;
/** Dial failures that another transport cannot fix: the peer is not who we want. */
const FINAL_DIAL_ERRORS = new Set(['ERR_PEER_ID_MISMATCH', 'ERR_PEER_CERTIFICATE', 'ERR_TRANSPORT_CLOSED']);

type QuicSettings = Omit<QuicTransportOptions, 'identity' | 'host' | 'port'>;
type H2Settings = Omit<H2TransportOptions, 'identity' | 'host' | 'port'>;

interface TransportSettings {
  quic: QuicSettings | undefined;
  h2: H2Settings | undefined;
  fallbackDelayMs: number;
  transportMemoryMs: number;
}

/** Checks the transport options before anything is bound (ERR_BAD_OPTION). */
function transportSettings(options: NodeOptions): TransportSettings {
  const pick = <T extends object>(name: string, value: boolean | T | undefined): T | undefined => {
    if (value === undefined || value === true) return {} as T;
    if (value === false) return undefined;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new PnetError('ERR_BAD_OPTION', `${name} must be true, false or an options object, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const quic = pick<QuicSettings>('quic', options.quic);
  const h2 = pick<H2Settings>('h2', options.h2);
  if (quic === undefined && h2 === undefined) throw new PnetError('ERR_BAD_OPTION', 'quic and h2 cannot both be disabled');
  const duration = (name: string, value: number | undefined, fallback: number): number => {
    const result = value ?? fallback;
    if (typeof result !== 'number' || !Number.isFinite(result) || result < 0) {
      throw new PnetError('ERR_BAD_OPTION', `${name} must be a finite number >= 0, got ${String(value)}`);
    }
    return result;
  };
  return {
    quic,
    h2,
    fallbackDelayMs: duration('fallbackDelayMs', options.fallbackDelayMs, 300),
    transportMemoryMs: duration('transportMemoryMs', options.transportMemoryMs, 10 * 60_000),
  };
}

/**
 * Binds QUIC, then HTTP/2 on the TCP port of the same number. With port 0 the number comes from
 * QUIC's socket; when that TCP port is taken both are bound again on a new number, a few times.
 */
async function bindTransports(identity: Identity, listen: SocketAddress, settings: TransportSettings): Promise<{ quic?: QuicTransport; h2?: H2Transport }> {
  const { host } = listen;
  const attempts = listen.port === 0 && settings.quic && settings.h2 ? BIND_ATTEMPTS : 1;
  for (let attempt = 1; ; attempt++) {
    const quic = settings.quic ? await QuicTransport.listen({ ...settings.quic, identity, host, port: listen.port }) : undefined;
    if (!settings.h2) return { quic: quic! };
    try {
      const h2 = await H2Transport.listen({ ...settings.h2, identity, host, port: quic?.address.port ?? listen.port });
      return quic ? { quic, h2 } : { h2 };
    } catch (error) {
      await quic?.close();
      const cause = (error as { cause?: { code?: string } }).cause;
      if (attempt >= attempts || cause?.code !== 'EADDRINUSE') throw error;
    }
  }
}

/**
 * A pnet node: one identity, one QUIC endpoint, a table of channels it
 * serves and at most one connection per peer.
 */
export class PnetNode extends EventEmitter<NodeEvents> {
  readonly identity: Identity;
  private readonly quicTransport: QuicTransport | undefined;
  private readonly h2Transport: H2Transport | undefined;
  /** The transports this node listens and dials on, QUIC first. */
  private readonly transports: Array<QuicTransport | H2Transport>;
  private readonly fallbackDelayMs: number;
  private readonly transportMemoryMs: number;
  /** Peer addresses last reached over HTTP/2 after QUIC failed, and until when to dial them over HTTP/2 straight away. */
  private readonly h2Addresses = new Map<string, number>();
  private readonly dialCounts: DialStats = { quic: 0, h2: 0, fallbacks: 0, remembered: 0 };
  /** Connections that lost the duplicate rule, serving out their grace; one takes over if the survivor dies meanwhile. */
  private readonly spares = new Map<Connection, NodeJS.Timeout>();
  /** Channels served on direct streams: the user's plus pnet's reserved ones. */
  private readonly registry = new ChannelRegistry();
  /** Channels served inside relay tunnels: the user's only. */
  private readonly tunnelRegistry = new ChannelRegistry();
  private readonly router: Router;
  private readonly relay: RelayService;
  private readonly fanouts: FanoutService;
  /** handleRequest handlers, which also answer fan-outs. */
  private readonly requestHandlers = new Map<string, FanoutTargetHandler>();
  private routerTimer: NodeJS.Timeout | undefined;
  /**
   * Peers that are not routing neighbours yet: `timer` runs their hold-down (undefined once it
   * ended and we said hello), `heard` is set when they said hello.
   */
  private readonly pendingNeighbours = new Map<NodeId, { timer: NodeJS.Timeout | undefined; heard: boolean }>();
  private readonly neighbourHoldDownMs: number;
  private readonly rttTimer: NodeJS.Timeout;
  private readonly connections = new Map<NodeId, Connection>();
  private readonly dialing = new Map<string, Promise<NodeId>>();
  private readonly knownAddresses = new Map<NodeId, SocketAddress>();
  private readonly negotiationTimeoutMs: number;
  private closing: Promise<void> | undefined;

  private constructor(identity: Identity, transports: { quic?: QuicTransport; h2?: H2Transport }, settings: TransportSettings, options: NodeOptions) {
    super();
    this.identity = identity;
    this.quicTransport = transports.quic;
    this.h2Transport = transports.h2;
    this.transports = [transports.quic, transports.h2].filter((transport) => transport !== undefined);
    this.fallbackDelayMs = settings.fallbackDelayMs;
    this.transportMemoryMs = settings.transportMemoryMs;
    this.negotiationTimeoutMs = options.negotiationTimeoutMs ?? 10_000;
    const { rttSampleMs = 1000, neighbourHoldDownMs = 200, ...routerOptions } = options.routing ?? {};
    this.neighbourHoldDownMs = neighbourHoldDownMs;
    // A restarted node starts above its old sequence numbers (it would recover them from the network anyway).
    this.router = new Router({ initialSequence: BigInt(Date.now()), ...routerOptions, signer: identity, recordCache: processRecordCache });
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
    this.fanouts = new FanoutService(
      {
        identity,
        groupByNextHop: (packed) => this.groupByNextHop(packed),
        allNodes: () => Buffer.concat([keyBytesOf(this.id), ...this.router.routes().map((route) => keyBytesOf(route.dest))]),
        openLeg: (neighbour) => this.openDirect(neighbour, FANOUT_CHANNEL, { optimistic: true }),
        isConnected: (neighbour) => this.connections.get(neighbour)?.closing === false,
        requestHandler: (channel) => this.requestHandlers.get(channel),
      },
      options.fanout,
    );
    this.registry.register(FANOUT_CHANNEL, (negotiated, info) => this.fanouts.serveLeg(negotiated.stream, info.remoteNodeId), { authorise: this.fanouts.authorise });
    this.registry.register(ROUTING_CHANNEL, (negotiated, info) => this.receiveRouting(negotiated.stream, info.remoteNodeId));
    for (const transport of this.transports) {
      transport.on('connection', (connection) => this.adopt(connection));
      transport.on('error', (error) => this.report(error));
    }
    this.rttTimer = setInterval(() => this.sampleRtt(), rttSampleMs);
    this.rttTimer.unref();
  }

  static async create(options: NodeOptions = {}): Promise<PnetNode> {
    const identity = options.identity ?? (options.keyFile !== undefined ? await loadOrCreateIdentity(options.keyFile) : await Identity.generate());
    const settings = transportSettings(options);
    const listen = parseAddress(options.listen ?? '127.0.0.1:0');
    const node = new PnetNode(identity, await bindTransports(identity, listen, settings), settings, options);
    const addresses = options.bootstrap ?? [];
    const results = await Promise.allSettled(addresses.map((address) => node.dial(address)));
    node.bootstrapOutcome = results.map((result, i): BootstrapResult => {
      const address = typeof addresses[i] === 'string' ? addresses[i] : formatAddress(addresses[i]!);
      if (result.status === 'fulfilled') return { address, ok: true, nodeId: result.value };
      const error = result.reason instanceof PnetError ? result.reason : new PnetError('UNREACHABLE', String(result.reason), { cause: result.reason });
      node.report(error);
      return { address, ok: false, error };
    });
    return node;
  }

  private bootstrapOutcome: readonly BootstrapResult[] = [];

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
    return { ...this.dialCounts };
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
          request = await readAll(stream, maxBytes, 'ERR_REQUEST_TOO_LARGE', REQUEST_TOO_LARGE);
        } catch {
          return; // too large (reset with REQUEST_TOO_LARGE), or the stream died
        }
        let reply: Uint8Array | string;
        try {
          reply = await handler(request, info);
        } catch (error) {
          stream.reset(HANDLER_FAILED);
          throw error; // reported as the node's 'error'
        }
        stream.end(typeof reply === 'string' ? Buffer.from(reply) : reply);
      },
      options,
    );
    this.requestHandlers.set(channel, { handler, authorise: options.authorise, maxRequestBytes: maxBytes });
  }

  /** Stops serving `channel`; streams already accepted carry on. */
  unhandle(channel: string): void {
    if (channel.startsWith(RESERVED_PREFIX)) return;
    this.requestHandlers.delete(channel);
    this.registry.unregister(channel);
    this.tunnelRegistry.unregister(channel);
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
    const key = formatAddress(target);
    const expected = options.expectedNodeId;
    if (expected !== undefined) {
      const existing = this.connections.get(expected);
      if (existing && !existing.closing) return expected;
    }
    let pending = this.dialing.get(key);
    if (pending === undefined) {
      pending = this.connect(target, key, options)
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

  /** A connection to `target`: straight over HTTP/2 when remembered, else QUIC first with HTTP/2 as the fallback. */
  private async connect(target: SocketAddress, key: string, options: { expectedNodeId?: NodeId; timeoutMs?: number }): Promise<Connection> {
    const quic = this.quicTransport;
    const h2 = this.h2Transport;
    const budget = options.timeoutMs ?? Math.max(...this.transports.map((transport) => transport.options.handshakeTimeoutMs));
    const deadline = performance.now() + budget;
    if (quic === undefined || h2 === undefined) return this.attempt((quic ?? h2)!, target, options, deadline);
    const until = this.h2Addresses.get(key);
    if (until !== undefined && until <= performance.now()) this.h2Addresses.delete(key);
    if (until === undefined || until <= performance.now()) return this.race(quic, h2, target, key, options, deadline);
    this.dialCounts.remembered++;
    try {
      return await this.attempt(h2, target, options, deadline);
    } catch (error) {
      // The peer may have changed (UDP opened, HTTP/2 turned off): forget, and race while time is left.
      this.h2Addresses.delete(key);
      if (isFinalDialError(error) || performance.now() >= deadline) throw error;
      return this.race(quic, h2, target, key, options, deadline);
    }
  }

  /** One handshake on one transport, bounded by the dial's deadline and the transport's own handshake timeout. */
  private attempt(transport: QuicTransport | H2Transport, target: SocketAddress, options: { expectedNodeId?: NodeId; timeoutMs?: number }, deadline: number, signal?: AbortSignal): Promise<Connection> {
    this.dialCounts[transport.kind]++;
    const left = Math.max(1, deadline - performance.now());
    const dialOptions: DialOptions = {
      timeoutMs: options.timeoutMs === undefined ? Math.min(left, transport.options.handshakeTimeoutMs) : left,
      ...(options.expectedNodeId === undefined ? {} : { expectedNodeId: options.expectedNodeId }),
      ...(signal === undefined ? {} : { signal }),
    };
    return transport.dial(target, dialOptions);
  }

  /**
   * QUIC first; HTTP/2 starts after `fallbackDelayMs`, or at once when QUIC fails early. The
   * first handshake to complete wins and the other is abandoned (or closed, if it completed
   * too). A final error (wrong or bad peer certificate) ends the race; any other failure of
   * one transport waits for the other.
   */
  private race(quic: QuicTransport, h2: H2Transport, target: SocketAddress, key: string, options: { expectedNodeId?: NodeId; timeoutMs?: number }, deadline: number): Promise<Connection> {
    return new Promise<Connection>((resolve, reject) => {
      const aborts = { quic: new AbortController(), h2: new AbortController() };
      const errors: { quic?: unknown; h2?: unknown } = {};
      let settled = false;
      let h2Started = false;
      const settle = (): void => {
        settled = true;
        clearTimeout(timer);
      };
      const won = (connection: Connection): void => {
        if (settled) {
          void connection.close({ graceful: false, reason: 'lost the dial race' });
          return;
        }
        settle();
        aborts[connection.transport === 'quic' ? 'h2' : 'quic'].abort();
        if (connection.transport === 'h2') {
          this.dialCounts.fallbacks++;
          this.rememberH2(key);
        }
        resolve(connection);
      };
      const failed = (kind: TransportKind, error: unknown): void => {
        if (settled) return;
        errors[kind] = error;
        if (isFinalDialError(error)) {
          settle();
          aborts.quic.abort();
          aborts.h2.abort();
          reject(error);
        } else if (!h2Started) {
          startH2();
        } else if (errors.quic !== undefined && errors.h2 !== undefined) {
          settle();
          reject(bothFailed(errors.quic, errors.h2));
        }
      };
      const startH2 = (): void => {
        clearTimeout(timer);
        if (h2Started || settled) return;
        h2Started = true;
        this.attempt(h2, target, options, deadline, aborts.h2.signal).then(won, (error: unknown) => failed('h2', error));
      };
      // When the delay ends, QUIC datagrams that came within it are read first (a poll phase and a
      // batch later): a busy event loop runs late timers before reading the socket, and would
      // start HTTP/2 beside a QUIC handshake whose answer is already waiting.
      const timer = setTimeout(() => setImmediate(() => setImmediate(startH2)), this.fallbackDelayMs);
      this.attempt(quic, target, options, deadline, aborts.quic.signal).then(won, (error: unknown) => failed('quic', error));
    });
  }

  private rememberH2(key: string): void {
    if (this.transportMemoryMs <= 0) return;
    this.h2Addresses.delete(key);
    this.h2Addresses.set(key, performance.now() + this.transportMemoryMs);
    // Oldest first (insertion order): drop the oldest beyond the bound.
    for (const oldest of this.h2Addresses.keys()) {
      if (this.h2Addresses.size <= MAX_REMEMBERED) break;
      this.h2Addresses.delete(oldest);
    }
  }

  /** Closes the connection to `nodeId` (gracefully: open streams finish first). */
  async disconnect(nodeId: NodeId): Promise<void> {
    // Duplicates still in their grace period go too, or one would take over.
    const spares = [...this.spares.keys()].filter((spare) => spare.remoteNodeId === nodeId);
    const connection = this.connections.get(nodeId);
    await Promise.all([...spares, ...(connection ? [connection] : [])].map((c) => c.close({ reason: 'disconnect' })));
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
    connection.on('close', (error) => this.lost(connection, error));
    const existing = this.connections.get(id);
    if (existing && !existing.closing) {
      // Two connections to one peer (simultaneous dial, or a dial race's loser that completed at
      // the peer): both ends keep the same one; the other serves a grace period, then drains.
      const keep = preferred(existing, connection, this.id);
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
    this.emit('peer:up', peerInfo(connection));
    // Hold-down: a connection that lives a moment (a one-shot command) never disturbs the routing map.
    const pending = { timer: setTimeout(() => this.holdDownEnded(id), this.neighbourHoldDownMs), heard: false };
    pending.timer.unref();
    this.pendingNeighbours.set(id, pending);
  }

  /**
   * After the hold-down a node says hello (an empty message on the routing channel); a peer is a
   * routing neighbour once both ends said it. A peer that never speaks routing (a CLI's
   * short-lived node) never becomes one, so it never shows up as a link in the map.
   */
  private holdDownEnded(id: NodeId): void {
    const pending = this.pendingNeighbours.get(id);
    if (pending === undefined || this.closing) return;
    pending.timer = undefined;
    this.sendRouting(id, HELLO);
    if (pending.heard) this.neighbourReady(id);
  }

  private heardHello(id: NodeId): void {
    const pending = this.pendingNeighbours.get(id);
    if (pending === undefined) return;
    pending.heard = true;
    if (pending.timer === undefined) this.neighbourReady(id);
  }

  /**
   * The peer becomes a routing neighbour: both ends said hello, or it sent link-state records
   * (it took us for a neighbour first; the router drops records from non-neighbours, and its
   * first message is the whole map, which would otherwise be lost until each origin refreshes).
   */
  private neighbourReady(id: NodeId): void {
    const pending = this.pendingNeighbours.get(id);
    if (pending === undefined) return;
    clearTimeout(pending.timer);
    this.pendingNeighbours.delete(id);
    // The peer may be on another connection by now (a duplicate won): it is still a neighbour.
    const current = this.connections.get(id);
    if (current !== undefined && !current.closing && !this.closing) {
      this.apply(this.router.neighbourUp(id, performance.now(), current.rttMs()));
    }
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
    this.emit('peer:down', { nodeId: id, error });
    const pending = this.pendingNeighbours.get(id);
    if (pending !== undefined) {
      clearTimeout(pending.timer);
      this.pendingNeighbours.delete(id);
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
        if (this.closing) return;
        if (bytes.length === 0) return this.heardHello(from);
        this.neighbourReady(from);
        this.apply(this.router.recordReceived(from, bytes, performance.now()));
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

  /**
   * Sends one request to many nodes (node ids, or `'all'`: every node of the map, this one
   * included) and yields each answer as it arrives. Targets answer with their handleRequest
   * handler; the iteration always ends, by `deadlineMs` at the latest, with one result per
   * target (failed ones carry an error: UNREACHABLE, UNAUTHORIZED, ERR_REQUEST_TIMEOUT, ...).
   * One copy goes to each next hop, which splits its share again (docs/FANOUT.md).
   */
  fanout(targets: readonly NodeId[] | 'all', channel: string, payload: Uint8Array | string, options: FanoutOptions = {}): AsyncIterable<FanoutResult> {
    this.assertOpen();
    if (channel.startsWith(RESERVED_PREFIX)) throw new PnetError('ERR_BAD_OPTION', `channel names starting with "${RESERVED_PREFIX}" are reserved for pnet`);
    return this.fanouts.start(targets, channel, payload, options);
  }

  /** Counters of this node's fan-out work (forged results dropped, legs, retries). */
  get fanoutStats(): Readonly<FanoutStats> {
    return { ...this.fanouts.stats };
  }

  /** Targets by next hop in one routing-table call; a connected peer the map does not know yet is its own next hop. */
  private groupByNextHop(packed: Uint8Array): NextHopShare[] {
    const shares = this.router.groupByNextHop(packed);
    const unreachable = shares.find((share) => share.hop === undefined);
    if (unreachable === undefined) return shares;
    const rest = shares.filter((share) => share !== unreachable);
    const keys = Buffer.from(unreachable.ids.buffer, unreachable.ids.byteOffset, unreachable.ids.byteLength);
    const left: number[] = [];
    unreachable.indexes.forEach((index, i) => {
      const id = nodeIdAt(keys, i * KEY_BYTES);
      if (this.connections.get(id)?.closing === false) rest.push({ hop: id, ids: keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES), indexes: Uint32Array.of(index) });
      else left.push(i);
    });
    if (left.length > 0) {
      rest.push({
        hop: undefined,
        ids: Buffer.concat(left.map((i) => keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES))),
        indexes: Uint32Array.from(left, (i) => unreachable.indexes[i]!),
      });
    }
    return rest;
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
    } catch (error) {
      throw requestFailure(error, channel, nodeId);
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
      this.fanouts.close();
      for (const pending of this.pendingNeighbours.values()) clearTimeout(pending.timer);
      this.pendingNeighbours.clear();
      if (this.routerTimer) clearTimeout(this.routerTimer);
      this.routerTimer = undefined;
      for (const timer of this.spares.values()) clearTimeout(timer);
      this.spares.clear();
      this.closing = Promise.all(this.transports.map((transport) => transport.close(options))).then(() => undefined);
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

/** What a reset from a handleRequest peer means, as the error request() rejects with. */
function requestFailure(error: unknown, channel: string, nodeId: NodeId): unknown {
  if (!(error instanceof PnetError) || error.code !== 'ERR_STREAM_RESET') return error;
  if (error.resetCode === REQUEST_TOO_LARGE) {
    return new PnetError('ERR_REQUEST_TOO_LARGE', `${nodeId} refused the request on ${channel}: over its size limit`, { cause: error });
  }
  if (error.resetCode === HANDLER_FAILED) return new PnetError('ERR_HANDLER_FAILED', `the ${channel} handler on ${nodeId} failed`, { cause: error });
  return error;
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

function isFinalDialError(error: unknown): boolean {
  return error instanceof PnetError && FINAL_DIAL_ERRORS.has(error.code);
}

/** Neither transport connected: QUIC's error (its code), with what HTTP/2 said. */
function bothFailed(quicError: unknown, h2Error: unknown): Error {
  const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error));
  const code = quicError instanceof PnetError ? quicError.code : h2Error instanceof PnetError ? h2Error.code : 'ERR_HANDSHAKE';
  return new PnetError(code, `${describe(quicError)}; over HTTP/2: ${describe(h2Error)}`, { cause: quicError });
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
