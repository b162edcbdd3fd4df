/**
 * Channel streams: the channels this node serves (directly and inside relay tunnels), accepting
 * streams, and opening them: on the direct connection, through the relay, or after a dial.
 */
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { Identity, NodeId } from '../identity/index.js';
import { numberOption } from '../options.js';
import type { Connection } from '../transport/index.js';
import { ChannelRegistry, acceptChannel, openChannel } from '../channel/index.js';
import type { ChannelHandler, ChannelRequestInfo, Metadata, NegotiationStats, RegisterOptions } from '../channel/index.js';
import { RELAY_CHANNEL, RelayService } from '../relay/index.js';
import type { RelayOptions, RelayStats } from '../relay/index.js';
import type { HandleOptions, OpenStreamOptions, PnetStream, StreamHandler, StreamTurnStats } from './types.js';
import { PeerTurns, STREAMS_PER_TURN } from './turns.js';

const RESERVED_PREFIX = 'pnet/';
const EMPTY_METADATA: Metadata = Object.freeze({});
/** The longest delay a Node timer takes (larger ones fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Channel names starting with "pnet/" are pnet's own (ERR_BAD_OPTION). */
export function assertUserChannel(channel: string): void {
  if (channel.startsWith(RESERVED_PREFIX)) throw new PnetError('ERR_BAD_OPTION', `channel names starting with "${RESERVED_PREFIX}" are reserved for pnet`);
}

/** What streams need from their node. */
export interface StreamsHost {
  readonly identity: Identity;
  /** The connection to a peer if it takes new streams. */
  live(nodeId: NodeId): Connection | undefined;
  /** The neighbour the router sends traffic for `nodeId` through. */
  nextHop(nodeId: NodeId): NodeId | undefined;
  /** A connection to a node that is not routed to, dialed at its known address. */
  connectionTo(nodeId: NodeId): Promise<Connection>;
  /** Relay v2: the end-to-end connection to a far node (kept or new), or undefined where it cannot carry (the stream relay then). */
  relayed?(nodeId: NodeId): Promise<Connection> | undefined;
  report(error: Error): void;
}

export interface StreamsSettings {
  /** Deadline for channel negotiation (OPEN to ACCEPT), both directions. */
  readonly negotiationTimeoutMs: number;
  readonly relay: RelayOptions | undefined;
}

export class Streams {
  /** Channels served on direct streams: the user's plus pnet's reserved ones. */
  private readonly registry = new ChannelRegistry();
  /** Channels served inside relay tunnels: the user's only. */
  private readonly tunnelRegistry = new ChannelRegistry();
  private readonly relay: RelayService;
  /** Each peer's new streams are taken up a turn of the event loop at a time (turns.ts). */
  private readonly turns = new PeerTurns(STREAMS_PER_TURN);

  constructor(
    private readonly host: StreamsHost,
    private readonly settings: StreamsSettings,
  ) {
    this.relay = new RelayService(
      {
        identity: host.identity,
        nextHop: (destination) => host.nextHop(destination) ?? null,
        openToNeighbour: (peer, channel, metadata) => this.openDirect(peer, channel, { metadata }),
        acceptTunnelled: (stream, origin) => this.acceptOn(stream, origin, this.tunnelRegistry),
      },
      settings.relay,
    );
    this.serveReserved(RELAY_CHANNEL, (negotiated, info) => this.relay.handle(negotiated.stream, info), { authorise: this.relay.authorise });
  }

  /** Serves a user channel, on direct streams and inside tunnels. */
  handle(channel: string, handler: StreamHandler, options: HandleOptions = {}): void {
    assertUserChannel(channel);
    const registration = {
      ...(options.authorise ? { authorise: options.authorise } : {}),
      ...(options.metadata ? { metadata: options.metadata } : {}),
    };
    const serve = (negotiated: { stream: Duplex }, info: ChannelRequestInfo): void | Promise<void> =>
      handler(decorate(negotiated.stream, channel, info.remoteNodeId, info.metadata), info) as void | Promise<void>;
    this.registry.register(channel, serve, registration);
    this.tunnelRegistry.register(channel, serve, registration);
  }

  /** Serves one of pnet's own channels, on direct streams only. */
  serveReserved(channel: string, handler: ChannelHandler, options?: RegisterOptions): void {
    this.registry.register(channel, handler, options);
  }

  unhandle(channel: string): void {
    if (channel.startsWith(RESERVED_PREFIX)) return;
    this.registry.unregister(channel);
    this.tunnelRegistry.unregister(channel);
  }

  /** What the channel acceptor did: the direct registry's counters, then the relay tunnels'. */
  negotiationStats(): [direct: NegotiationStats, tunnelled: NegotiationStats] {
    return [this.registry.negotiationStats(), this.tunnelRegistry.negotiationStats()];
  }

  /** The stream relay's counters (flows spliced for others, bytes, limits). */
  relayStats(): RelayStats {
    return this.relay.stats();
  }

  /** Negotiates a stream a peer opened on a direct connection. */
  accept(stream: Duplex, remoteNodeId: NodeId): void {
    this.acceptOn(stream, remoteNodeId, this.registry);
  }

  /**
   * Opens a user stream: on the direct connection, else through the relay, else after dialing a
   * known address. `timeoutMs` (default the negotiation deadline) covers the whole call, from the
   * route lookup or dial through the wait for stream credit and the tunnel handshake to the ACCEPT
   * (to the stream's creation when optimistic): ERR_REQUEST_TIMEOUT.
   */
  async open(nodeId: NodeId, channel: string, options: OpenStreamOptions = {}): Promise<PnetStream> {
    assertUserChannel(channel);
    const deadline = this.deadline(options, `openStream ${channel} to ${nodeId}`);
    try {
      const stream = await deadline.race(this.rawStream(nodeId, deadline), destroyLate);
      return await this.negotiate(stream, nodeId, channel, options, deadline);
    } finally {
      deadline.clear();
    }
  }

  /** A bare stream to `nodeId` by the first way that exists: direct, relayed, dialed. */
  private async rawStream(nodeId: NodeId, deadline: CallDeadline): Promise<Duplex> {
    const direct = this.host.live(nodeId);
    // The transport's wait for credit keeps its own bound (streamOpenTimeoutMs, ERR_STREAM_LIMIT); the race ends the call sooner.
    if (direct) return direct.openStream();
    if (this.host.nextHop(nodeId) !== undefined) return this.openRelayed(nodeId, deadline);
    const connection = await deadline.race(this.host.connectionTo(nodeId), () => undefined);
    return connection.openStream();
  }

  /** A stream to a far node: on its relay v2 connection, else through the stream relay (its tunnel handshake under the deadline). */
  private async openRelayed(nodeId: NodeId, deadline: CallDeadline): Promise<Duplex> {
    const relayed = this.host.relayed?.(nodeId);
    if (relayed === undefined) return this.relay.open(nodeId, deadline.signal);
    let connection: Connection;
    try {
      connection = await deadline.race(relayed, () => undefined);
    } catch (error) {
      // A hop refused datagrams (an HTTP/2 link further on, or its policy): the stream relay's answer is the one to give.
      if (error instanceof PnetError && error.code === 'RELAY_REFUSED') return this.relay.open(nodeId, deadline.signal);
      throw error;
    }
    return connection.openStream();
  }

  /** Negotiates a stream a far node opened on a relayed connection: user channels only, as inside a tunnel. */
  acceptRelayed(stream: Duplex, remoteNodeId: NodeId): void {
    this.acceptOn(stream, remoteNodeId, this.tunnelRegistry);
  }

  /** Opens a stream on a direct connection only (the relay's legs, pnet's own channels); the same whole-call deadline as open(). */
  async openDirect(nodeId: NodeId, channel: string, options: OpenStreamOptions): Promise<PnetStream> {
    const connection = this.host.live(nodeId);
    if (!connection) throw new PnetError('UNREACHABLE', `next hop ${nodeId} is not connected`);
    const deadline = this.deadline(options, `OPEN ${channel} to ${nodeId}`);
    try {
      const stream = await deadline.race(connection.openStream(), destroyLate);
      return await this.negotiate(stream, nodeId, channel, options, deadline);
    } finally {
      deadline.clear();
    }
  }

  private deadline(options: OpenStreamOptions, what: string): CallDeadline {
    const timeoutMs = numberOption('openStream option', 'timeoutMs', options.timeoutMs, this.settings.negotiationTimeoutMs, { max: MAX_TIMER_MS });
    return new CallDeadline(timeoutMs, what);
  }

  /** Streams that waited for their peer's next turn (node.stats().limits.streamPeerTurn). */
  get turnWaits(): number {
    return this.turns.waited;
  }

  /** The same, and why each waiting stream was taken up (node.stats().streamTurns). */
  get turnStats(): StreamTurnStats {
    return { waited: this.turns.waited, released: { ...this.turns.released } };
  }

  private acceptOn(stream: Duplex, remoteNodeId: NodeId, registry: ChannelRegistry): void {
    const turn = this.turns.acquire(remoteNodeId, stream);
    acceptChannel(stream, registry, remoteNodeId, {
      ...(turn === true ? {} : { turn }),
      timeoutMs: this.settings.negotiationTimeoutMs,
      onHandlerError: (error) => this.host.report(error instanceof Error ? error : new Error(String(error))),
    }).catch((error: unknown) => this.host.report(error as Error));
  }

  /** OPEN on `stream`: resolved at once when optimistic, else at the ACCEPT, the stream destroyed if the deadline comes first. */
  private async negotiate(stream: Duplex, nodeId: NodeId, channel: string, options: OpenStreamOptions, deadline: CallDeadline): Promise<PnetStream> {
    const negotiated = openChannel(stream, channel, {
      ...(options.metadata ? { metadata: options.metadata } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
    const result = decorate(stream, channel, nodeId, undefined);
    if (options.optimistic) {
      negotiated.accepted.then(({ metadata }) => (setMetadata(result, metadata), result.emit(ACCEPTED_EVENT, metadata)), () => undefined);
      return result;
    }
    const expire = (): void => void stream.destroy(deadline.signal.reason as Error);
    if (deadline.signal.aborted) expire();
    deadline.signal.addEventListener('abort', expire, { once: true });
    try {
      const { metadata } = await negotiated.accepted;
      setMetadata(result, metadata);
      return result;
    } finally {
      deadline.signal.removeEventListener('abort', expire);
    }
  }
}

/** Emitted by an optimistic stream when its ACCEPT came, with the ACCEPT's metadata (bytes after the ACCEPT may reach 'data' before it). */
export const ACCEPTED_EVENT = 'pnet:accepted';

/**
 * One call's deadline: its signal aborts with ERR_REQUEST_TIMEOUT once `timeoutMs` passed, and
 * each step is raced against it (a step that finishes late hands what it made to be discarded).
 */
export class CallDeadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;

  constructor(timeoutMs: number, what: string) {
    this.timer = setTimeout(() => this.controller.abort(new PnetError('ERR_REQUEST_TIMEOUT', `${what} did not complete within ${timeoutMs} ms`)), timeoutMs);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** `step`'s result, or the deadline's error if it comes first; a result that comes after goes to `discard`. */
  race<T>(step: Promise<T>, discard: (late: T) => void): Promise<T> {
    const signal = this.signal;
    return new Promise<T>((resolve, reject) => {
      const expire = (): void => reject(signal.reason);
      if (signal.aborted) expire();
      else signal.addEventListener('abort', expire, { once: true });
      step.then(
        (value) => {
          signal.removeEventListener('abort', expire);
          if (signal.aborted) discard(value);
          else resolve(value);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', expire);
          reject(signal.aborted ? signal.reason : error);
        },
      );
    });
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

/** A stream opened after its call gave up. */
function destroyLate(stream: Duplex): void {
  stream.destroy();
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** The stream, with what negotiation established: a PnetStream. */
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
