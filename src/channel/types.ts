/**
 * The channel layer's shared shapes: what an acceptor learns, the hooks a registration carries,
 * the negotiated stream both sides get, and the options and results of openChannel/acceptChannel.
 */
import type { Duplex } from 'node:stream';
import type { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import type { Metadata } from './codec.js';

/** What the acceptor knows about an incoming OPEN. */
export interface ChannelRequestInfo {
  readonly channel: string;
  /** From the peer's verified certificate (passed in by the transport), never from a frame. */
  readonly remoteNodeId: NodeId;
  /** The OPEN's metadata (null-prototype object). */
  readonly metadata: Metadata;
  /** The OPEN's credentials, if any (a copy; safe to keep). */
  readonly credentials?: Uint8Array;
}

/** Called once per accepted stream, after ACCEPT was written. */
export type ChannelHandler = (channel: ChannelStream, info: ChannelRequestInfo) => void | Promise<void>;

/**
 * `true` accepts with the registration's metadata; `{ metadata }` accepts and
 * adds/overrides ACCEPT metadata; `false`, any other value, or a throw rejects
 * with UNAUTHORIZED (fail closed). Throwing a PnetError whose code is a reject
 * code (e.g. OVERLOADED) rejects with that code and its message as reason.
 */
export type AuthoriseVerdict = boolean | { metadata?: Record<string, string> };
export type AuthoriseHook = (info: ChannelRequestInfo) => AuthoriseVerdict | Promise<AuthoriseVerdict>;

export interface RegisterOptions {
  authorise?: AuthoriseHook;
  /** Metadata sent in every ACCEPT for this channel (encoded once, at registration). */
  metadata?: Record<string, string>;
}

export interface ChannelRegistration {
  readonly name: string;
  readonly handler: ChannelHandler;
  readonly authorise: AuthoriseHook | undefined;
  readonly metadata: Metadata;
}

export interface ChannelAccepted {
  /** The peer's metadata: the ACCEPT's for an opener, the OPEN's for an acceptor. */
  readonly metadata: Metadata;
}

/**
 * A negotiated (or negotiating) channel. `stream` is the transport's Duplex
 * itself; read and write payload on it directly.
 */
export interface ChannelStream {
  readonly stream: Duplex;
  readonly channel: string;
  readonly role: 'opener' | 'acceptor';
  /** 'pending' until ACCEPT/REJECT (opener only); an acceptor's channel is always 'accepted'. */
  readonly state: 'pending' | 'accepted' | 'failed';
  /**
   * Opener: resolves when ACCEPT arrives, rejects with a PnetError (a
   * ChannelRejectedError carrying the REJECT's code, or BAD_FRAME / VERSION /
   * ERR_STREAM_RESET). Never an unhandledRejection if you do not look at it.
   * Acceptor: already resolved.
   */
  readonly accepted: Promise<ChannelAccepted>;
  /** The peer's metadata once known (opener: after ACCEPT), else undefined. */
  readonly remoteMetadata: Metadata | undefined;
}

export interface OpenChannelOptions {
  metadata?: Record<string, string>;
  credentials?: Uint8Array;
}

export interface AcceptChannelOptions {
  /**
   * Whole-node cap on negotiations in progress on the registry (default 1024). Free slots are
   * anyone's; at the cap a new OPEN evicts the oldest negotiation of the peer holding the most
   * (waiting for OPEN bytes first, else in an async authorise hook), if that peer holds more than
   * the newcomer would; else it is refused OVERLOADED. See docs/LIMITS.md.
   */
  maxPending?: number;
  /**
   * One peer's (keyed by `remoteNodeId`) share of negotiations waiting in async authorise hooks:
   * beyond it, REJECT OVERLOADED (default 256).
   */
  maxPendingPerPeer?: number;
  /** Deadline for the whole negotiation: OPEN (else REJECT BAD_FRAME) and authorise (else REJECT OVERLOADED). Default 10 s. */
  timeoutMs?: number;
  /** Deadline for the OPEN's 4-byte header (slowloris), else REJECT BAD_FRAME (default 2 s; none if >= timeoutMs). */
  headerTimeoutMs?: number;
  /** After a REJECT, how long to keep draining before destroying the stream (default 1 s). */
  lingerMs?: number;
  /** Called when a handler throws or its promise rejects (the stream is then destroyed). */
  onHandlerError?: (error: unknown, info: ChannelRequestInfo) => void;
  /**
   * The stream's turn (per-peer fairness, the node's): nothing is read, no slot is taken and no
   * deadline runs until it resolves; `false` means the stream closed meanwhile. The peer's EOF is
   * held back from the start, as during negotiation.
   */
  turn?: PromiseLike<boolean>;
}

export type AcceptResult =
  | { readonly accepted: true; readonly channel: ChannelStream; readonly info: ChannelRequestInfo }
  /** Nothing was handed to a handler; `error.code` is the REJECT code sent (or ERR_STREAM_RESET if the stream died first). */
  | { readonly accepted: false; readonly error: PnetError; readonly info?: ChannelRequestInfo };
