/**
 * Thin IO glue: channel negotiation over any byte-mode Node Duplex.
 *
 * No wrapper stream: both sides hand back the transport's own Duplex,
 * positioned on the first payload byte.
 * - Acceptor: the OPEN is taken off the stream by `read(n)` calls sized by
 *   the sans-IO AcceptorNegotiation (`wanted`: the header, then the body)
 *   before anyone else can read it, so payload behind it stays in the
 *   stream's buffer untouched (no copy, no unshift).
 * - Opener: the caller gets the stream at once (to write optimistically)
 *   and may attach readers immediately, so the ACCEPT/REJECT must be removed
 *   before it enters the readable buffer: while negotiating, the stream's
 *   `push` is shadowed by an instance property that feeds the decoder and
 *   forwards only the bytes after ACCEPT. Afterwards the instance property
 *   points back to the original `push`. This requires (as every Node stream
 *   does: net, tls, http2) that the Duplex delivers bytes via `this.push()`.
 *
 * Every stream that goes through this module gets a no-op 'error' listener,
 * so a remote reset can never crash the process; errors still reach your own
 * 'error' listeners, `pipeline`, `finished` and async iteration.
 */
import { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { numberOption } from '../options.js';
import { EMPTY_METADATA, encodeAccept, encodeOpen, encodeReject, isChannelRejectCode, type ChannelRejectCode, type Metadata } from './codec.js';
import { AcceptorNegotiation, OpenerNegotiation, type AcceptorOutcome, type OpenerOutcome } from './negotiate.js';
import { ChannelRegistry, kLookup, kPending, type ChannelRequestInfo, type RegistrationRecord } from './registry.js';

export const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_PENDING = 1024;
export const DEFAULT_LINGER_MS = 1000;

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
  /** Refuse with OVERLOADED when this many negotiations are already in progress on the registry (default 1024). */
  maxPending?: number;
  /** Deadline for the whole negotiation: OPEN (else REJECT BAD_FRAME) and authorise (else REJECT OVERLOADED). Default 10 s. */
  timeoutMs?: number;
  /** After a REJECT, how long to keep draining before destroying the stream (default 1 s). */
  lingerMs?: number;
  /** Called when a handler throws or its promise rejects (the stream is then destroyed). */
  onHandlerError?: (error: unknown, info: ChannelRequestInfo) => void;
}

export type AcceptResult =
  | { readonly accepted: true; readonly channel: ChannelStream; readonly info: ChannelRequestInfo }
  /** Nothing was handed to a handler; `error.code` is the REJECT code sent (or ERR_STREAM_RESET if the stream died first). */
  | { readonly accepted: false; readonly error: PnetError; readonly info?: ChannelRequestInfo };

const EMPTY = Buffer.alloc(0);
function noop(): void {}
function uncork(s: Duplex): void {
  s.uncork();
}
function toPnetError(err: unknown, fallback: string): PnetError {
  if (err instanceof PnetError) return err;
  return new PnetError('ERR_STREAM_RESET', err instanceof Error ? err.message : fallback, { cause: err });
}

function checkByteStream(stream: Duplex): void {
  if (stream === null || typeof stream !== 'object' || typeof stream.push !== 'function' || typeof stream.write !== 'function') {
    throw new PnetError('ERR_BAD_OPTION', 'channel negotiation needs a Duplex stream');
  }
  if (stream.readableObjectMode || stream.writableObjectMode) {
    throw new PnetError('ERR_BAD_OPTION', 'channel negotiation needs a byte stream, not object mode');
  }
}

// ---------------------------------------------------------------------------
// Opener

type PushFn = (chunk: unknown, encoding?: BufferEncoding) => boolean;

class OpenerChannel implements ChannelStream {
  readonly role = 'opener' as const;
  state: 'pending' | 'accepted' | 'failed' = 'pending';
  remoteMetadata: Metadata | undefined = undefined;
  private error: PnetError | undefined = undefined;
  private promise: Promise<ChannelAccepted> | undefined = undefined;
  private resolveFn: ((v: ChannelAccepted) => void) | undefined = undefined;
  private rejectFn: ((e: PnetError) => void) | undefined = undefined;
  private readonly negotiation = new OpenerNegotiation();
  private readonly originalPush: PushFn;

  constructor(
    readonly stream: Duplex,
    readonly channel: string,
  ) {
    this.originalPush = stream.push as PushFn;
  }

  get accepted(): Promise<ChannelAccepted> {
    if (this.promise === undefined) {
      if (this.state === 'accepted') {
        this.promise = Promise.resolve({ metadata: this.remoteMetadata! });
      } else if (this.state === 'failed') {
        this.promise = Promise.reject(this.error!);
      } else {
        this.promise = new Promise<ChannelAccepted>((resolve, reject) => {
          this.resolveFn = resolve;
          this.rejectFn = reject;
        });
      }
      this.promise.catch(noop); // an unobserved rejection is not an unhandledRejection
    }
    return this.promise;
  }

  start(frame: Buffer): void {
    const s = this.stream;
    s.on('error', this.onError);
    s.once('close', this.onClose);
    if (s.destroyed) {
      this.fail(new PnetError('ERR_STREAM_RESET', 'stream already destroyed'), false);
      return;
    }
    (s as { push: PushFn }).push = this.onPush;
    if (s.readableLength > 0) {
      // bytes arrived before we were called (a protocol violation, but decode them as the answer)
      const early = s.read() as Buffer | null;
      if (early !== null) {
        const out = this.negotiation.push(early);
        if (out !== null) {
          this.settle(out);
          if (out.type === 'accepted' && out.rest.length > 0) s.unshift(out.rest);
        }
      }
    }
    // Pull-based streams only fetch data when read: ask for it, so the answer
    // arrives even if the caller waits for `accepted` before reading.
    if (this.state === 'pending') s.read(0);
    // Cork so OPEN and a payload written in the same tick leave in one write(v).
    s.cork();
    s.write(frame);
    process.nextTick(uncork, s);
  }

  private readonly onPush = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    const s = this.stream;
    if (this.state !== 'pending') return this.originalPush.call(s, chunk, encoding);
    if (chunk === null) {
      this.settle(this.negotiation.end());
      return false;
    }
    if (chunk === undefined) return this.originalPush.call(s, EMPTY);
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : typeof chunk === 'string'
        ? Buffer.from(chunk, encoding)
        : Buffer.from((chunk as Uint8Array).buffer, (chunk as Uint8Array).byteOffset, (chunk as Uint8Array).byteLength);
    const out = this.negotiation.push(buf);
    if (out === null) return this.originalPush.call(s, EMPTY); // keeps the stream's read loop going
    this.settle(out);
    if (out.type === 'failed') return false;
    return this.originalPush.call(s, out.rest.length > 0 ? out.rest : EMPTY);
  };

  private settle(out: OpenerOutcome): void {
    if (out.type === 'accepted') {
      this.state = 'accepted';
      this.restorePush();
      this.remoteMetadata = out.metadata;
      this.resolveFn?.({ metadata: out.metadata });
      this.resolveFn = this.rejectFn = undefined;
    } else {
      this.fail(out.error, true);
    }
  }

  private fail(error: PnetError, destroy: boolean): void {
    if (this.state !== 'pending') return;
    this.state = 'failed';
    this.error = error;
    this.restorePush();
    this.rejectFn?.(error);
    this.resolveFn = this.rejectFn = undefined;
    if (destroy && !this.stream.destroyed) this.stream.destroy(error);
  }

  private restorePush(): void {
    // Assign rather than delete: deleting an own property can drop the
    // stream object into dictionary mode; an own property equal to the
    // prototype's method keeps its hidden class stable.
    (this.stream as { push: PushFn }).push = this.originalPush;
  }

  private readonly onError = (err: unknown): void => {
    if (this.state === 'pending') this.fail(toPnetError(err, 'stream error before ACCEPT'), false);
  };

  private readonly onClose = (): void => {
    if (this.state === 'pending') {
      this.fail(new PnetError('ERR_STREAM_RESET', 'stream closed before ACCEPT or REJECT'), false);
    }
  };
}

/**
 * Start a channel on a fresh stream: writes OPEN and returns at once, so the
 * caller can write payload right away (it leaves with OPEN in one write when
 * written in the same tick). Read the answer from `channel.stream`; the
 * ACCEPT frame never shows up there. On REJECT the stream is destroyed with a
 * ChannelRejectedError (code = the REJECT's code) and `accepted` rejects.
 * Throws PnetError('ERR_BAD_OPTION') for an invalid name/metadata/credentials.
 */
export function openChannel(stream: Duplex, channel: string, options?: OpenChannelOptions): ChannelStream {
  checkByteStream(stream);
  const frame = encodeOpen(channel, options);
  const cs = new OpenerChannel(stream, channel);
  cs.start(frame);
  return cs;
}

// ---------------------------------------------------------------------------
// Acceptor

class AcceptorChannel implements ChannelStream {
  readonly role = 'acceptor' as const;
  readonly state = 'accepted' as const;
  private promise: Promise<ChannelAccepted> | undefined = undefined;
  constructor(
    readonly stream: Duplex,
    readonly channel: string,
    readonly remoteMetadata: Metadata,
  ) {}
  get accepted(): Promise<ChannelAccepted> {
    return (this.promise ??= Promise.resolve({ metadata: this.remoteMetadata }));
  }
}

/**
 * Acceptor-side guard for the end of the stream. While negotiating (which
 * may wait for an async authorise hook), an EOF from the peer is held back
 * instead of entering the stream: otherwise a stream like net.Socket emits
 * 'end' at once, before the handler exists to see it (OPEN + FIN with no
 * payload is a normal request). The EOF is replayed once the handler has
 * been called (or after a REJECT). Data chunks pass straight through.
 */
class AcceptorSession {
  private readonly originalPush: PushFn;
  private holding = true;
  eofHeld = false;
  onEof: (() => void) | undefined = undefined;

  constructor(readonly stream: Duplex) {
    this.originalPush = stream.push as PushFn;
    (stream as { push: PushFn }).push = this.onPush;
  }

  private readonly onPush = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk === null && this.holding) {
      if (!this.eofHeld) {
        this.eofHeld = true;
        this.onEof?.();
      }
      return false;
    }
    return this.originalPush.call(this.stream, chunk, encoding);
  };

  /** Restore `push` (by assignment, see OpenerChannel.restorePush) and replay a held EOF. */
  release(): void {
    if (!this.holding) return;
    this.holding = false;
    (this.stream as { push: PushFn }).push = this.originalPush;
    if (this.eofHeld && !this.stream.destroyed) this.originalPush.call(this.stream, null);
  }
}

/** What became of the OPEN: the machine's outcome, or the stream died (no answer possible). */
type OpenResult = AcceptorOutcome | { readonly type: 'failed'; readonly error: PnetError };

/**
 * Move buffered bytes into the machine, exactly as many as it wants at a time, so the payload
 * behind the OPEN stays in the stream's buffer. Null while more bytes are needed.
 */
function takeOpen(session: AcceptorSession, negotiation: AcceptorNegotiation): AcceptorOutcome | null {
  for (;;) {
    const want = negotiation.wanted;
    const chunk = session.stream.read(want) as Buffer | null;
    if (chunk === null) return session.eofHeld ? negotiation.end() : null;
    const out = negotiation.push(chunk);
    if (out !== null) return out;
    if (chunk.length < want) return negotiation.end(); // read() gives a short chunk only at EOF
  }
}

/** Take the OPEN now if it is buffered, else as its bytes arrive, within `timeoutMs`. */
function receiveOpen(session: AcceptorSession, timeoutMs: number): Promise<OpenResult> {
  const negotiation = new AcceptorNegotiation();
  const now = takeOpen(session, negotiation);
  if (now !== null) return Promise.resolve(now);
  const stream = session.stream;
  return new Promise<OpenResult>((resolve) => {
    const settle = (result: OpenResult): void => {
      clearTimeout(timer);
      session.onEof = undefined;
      stream.removeListener('readable', onReadable);
      stream.removeListener('end', onEnd);
      stream.removeListener('close', onClose);
      stream.removeListener('error', onError);
      resolve(result);
    };
    const onReadable = (): void => {
      const out = takeOpen(session, negotiation);
      if (out !== null) settle(out);
    };
    const onEnd = (): void => settle(negotiation.end());
    const onClose = (): void => settle({ type: 'failed', error: new PnetError('ERR_STREAM_RESET', 'stream closed before OPEN') });
    const onError = (err: unknown): void => settle({ type: 'failed', error: toPnetError(err, 'stream error before OPEN') });
    const timer = setTimeout(() => settle(negotiation.timeout(timeoutMs)), timeoutMs);
    session.onEof = onReadable; // EOF held back: decide with what is buffered
    stream.on('readable', onReadable);
    stream.on('end', onEnd); // EOF that arrived before acceptChannel was called
    stream.on('close', onClose);
    stream.on('error', onError);
  });
}

class DeadlineError extends Error {}

function withDeadline<T>(p: PromiseLike<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new DeadlineError('deadline')), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

function destroyQuietly(stream: Duplex): void {
  if (!stream.destroyed) stream.destroy();
}

/** A refusal to send: its code and reason, and the REJECT frame when one was made already. */
interface Refusal {
  readonly code: ChannelRejectCode;
  readonly reason: string;
  readonly reply?: Buffer;
}

/**
 * Send REJECT, half-close, discard whatever the peer sends (optimistic
 * payload, garbage) and destroy the stream when it closes or after `lingerMs`.
 * Draining instead of destroying at once lets the REJECT reach the peer.
 */
function refuse(stream: Duplex, refusal: Refusal, lingerMs: number, info?: ChannelRequestInfo): AcceptResult {
  if (!stream.destroyed) {
    if (stream.writable) stream.end(refusal.reply ?? encodeReject(refusal.code, refusal.reason));
    stream.resume();
    const t = setTimeout(destroyQuietly, lingerMs, stream);
    t.unref();
    stream.once('close', () => clearTimeout(t));
  }
  const error = new PnetError(refusal.code, refusal.reason);
  return info === undefined ? { accepted: false, error } : { accepted: false, error, info };
}

/** The acceptChannel options, checked, with their defaults. */
interface AcceptSettings {
  readonly maxPending: number;
  readonly timeoutMs: number;
  readonly lingerMs: number;
  readonly onHandlerError: AcceptChannelOptions['onHandlerError'];
}

/** setTimeout's largest delay: a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function acceptSettings(options: AcceptChannelOptions): AcceptSettings {
  const where = 'acceptChannel option';
  return {
    maxPending: numberOption(where, 'maxPending', options.maxPending, DEFAULT_MAX_PENDING, { integer: true }),
    timeoutMs: numberOption(where, 'timeoutMs', options.timeoutMs, DEFAULT_OPEN_TIMEOUT_MS, { above: true, max: MAX_TIMER_MS }),
    lingerMs: numberOption(where, 'lingerMs', options.lingerMs, DEFAULT_LINGER_MS, { max: MAX_TIMER_MS }),
    onHandlerError: options.onHandlerError,
  };
}

/**
 * Negotiate an incoming stream against `registry`: read OPEN, look up the
 * channel, run its authorise hook, answer ACCEPT or REJECT, and on ACCEPT
 * call the handler with the stream positioned on the first payload byte.
 * Never rejects (except for invalid arguments): the result says what happened.
 */
export async function acceptChannel(
  stream: Duplex,
  registry: ChannelRegistry,
  remoteNodeId: NodeId,
  options: AcceptChannelOptions = {},
): Promise<AcceptResult> {
  checkByteStream(stream);
  if (!(registry instanceof ChannelRegistry)) throw new PnetError('ERR_BAD_OPTION', 'registry must be a ChannelRegistry');
  const settings = acceptSettings(options);

  stream.on('error', noop); // a remote reset must never crash the process
  if (stream.destroyed) {
    return { accepted: false, error: new PnetError('ERR_STREAM_RESET', 'stream already destroyed') };
  }
  if (registry[kPending] >= settings.maxPending) {
    return refuse(stream, { code: 'OVERLOADED', reason: 'too many pending channel negotiations' }, settings.lingerMs);
  }
  registry[kPending]++;
  const session = new AcceptorSession(stream);
  try {
    return await negotiate(session, registry, remoteNodeId, settings);
  } finally {
    registry[kPending]--;
    session.release();
  }
}

/** The steps after the checks: OPEN, channel, authorise, then ACCEPT and the handler. */
async function negotiate(session: AcceptorSession, registry: ChannelRegistry, remoteNodeId: NodeId, settings: AcceptSettings): Promise<AcceptResult> {
  const stream = session.stream;
  const started = Date.now();
  const opened = await receiveOpen(session, settings.timeoutMs);
  if (opened.type === 'reject') return refuse(stream, opened, settings.lingerMs);
  if (opened.type === 'failed') {
    destroyQuietly(stream);
    return { accepted: false, error: opened.error };
  }
  const open = opened.frame;
  const info: ChannelRequestInfo =
    open.credentials === undefined
      ? { channel: open.channel, remoteNodeId, metadata: open.metadata }
      : { channel: open.channel, remoteNodeId, metadata: open.metadata, credentials: open.credentials };
  const reg = registry[kLookup](open.channel);
  if (reg === undefined) {
    return refuse(stream, { code: 'UNKNOWN_CHANNEL', reason: `unknown channel "${open.channel}"` }, settings.lingerMs, info);
  }
  const verdict = await authorise(reg, info, settings.timeoutMs - (Date.now() - started));
  if (!Buffer.isBuffer(verdict)) return refuse(stream, verdict, settings.lingerMs, info);
  if (stream.destroyed || !stream.writable) {
    return { accepted: false, error: new PnetError('ERR_STREAM_RESET', 'stream closed during negotiation'), info };
  }
  return handOff(session, reg, info, verdict, settings);
}

const NOT_AUTHORISED: Refusal = { code: 'UNAUTHORIZED', reason: 'not authorised' };

/** Runs the channel's authorise hook within `budgetMs`: the ACCEPT frame to send, or a refusal. */
async function authorise(reg: RegistrationRecord, info: ChannelRequestInfo, budgetMs: number): Promise<Buffer | Refusal> {
  if (reg.authorise === undefined) return reg.acceptFrame;
  let verdict: unknown;
  try {
    verdict = reg.authorise(info);
    if (isThenable(verdict)) verdict = await withDeadline(verdict, Math.max(0, budgetMs));
  } catch (err) {
    if (err instanceof DeadlineError) return { code: 'OVERLOADED', reason: 'authorisation timed out' };
    if (err instanceof PnetError && isChannelRejectCode(err.code)) return { code: err.code, reason: err.message };
    return NOT_AUTHORISED;
  }
  if (verdict === true) return reg.acceptFrame;
  if (verdict === null || typeof verdict !== 'object') return NOT_AUTHORISED;
  const extra = (verdict as { metadata?: Record<string, string> }).metadata;
  if (extra === undefined || extra === null) return reg.acceptFrame;
  try {
    return encodeAccept(reg.metadata === EMPTY_METADATA ? extra : { ...reg.metadata, ...extra });
  } catch {
    return { code: 'UNAUTHORIZED', reason: 'not authorised (invalid ACCEPT metadata)' };
  }
}

/**
 * ACCEPT, then the handler. Cork so ACCEPT and a reply written synchronously by the handler leave
 * in one write(v); release a held EOF only after the handler had the chance to attach listeners.
 */
function handOff(session: AcceptorSession, reg: RegistrationRecord, info: ChannelRequestInfo, acceptFrame: Buffer, settings: AcceptSettings): AcceptResult {
  const stream = session.stream;
  const cs = new AcceptorChannel(stream, info.channel, info.metadata);
  stream.cork();
  stream.write(acceptFrame);
  const onHandlerError = (err: unknown): void => {
    try {
      settings.onHandlerError?.(err, info);
    } finally {
      stream.uncork(); // let the ACCEPT out first: the opener sees ACCEPT, then the reset
      destroyQuietly(stream);
    }
  };
  try {
    const r = reg.handler(cs, info);
    if (isThenable(r)) r.then(undefined, onHandlerError);
  } catch (err) {
    onHandlerError(err);
  }
  session.release();
  process.nextTick(uncork, stream);
  return { accepted: true, channel: cs, info };
}
