/**
 * The acceptor's glue: the OPEN is taken off the stream by `read(n)` calls sized by the sans-IO
 * AcceptorNegotiation (`wanted`: the header, then the body) before anyone else can read it, so
 * payload behind it stays in the stream's buffer untouched (no copy, no unshift). Then the
 * registry lookup, the authorise hook within the deadline, and ACCEPT plus the handler, or REJECT
 * and a linger.
 */
import { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { numberOption } from '../options.js';
import { EMPTY_METADATA, encodeAccept, encodeReject, isChannelRejectCode, type ChannelRejectCode, type Metadata } from './codec.js';
import { checkByteStream, noop, toPnetError, uncork, type PushFn } from './glue.js';
import { AcceptorNegotiation, type AcceptorOutcome } from './negotiate.js';
import { ChannelRegistry, kLookup, kPending, type RegistrationRecord } from './registry.js';
import type { AcceptChannelOptions, AcceptResult, ChannelAccepted, ChannelRequestInfo, ChannelStream } from './types.js';

export const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_PENDING = 1024;
export const DEFAULT_LINGER_MS = 1000;

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
