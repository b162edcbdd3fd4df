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
import type { NegotiationOutcome, NegotiationScope, NegotiationTicket } from './limits.js';
import { AcceptorNegotiation, type AcceptorOutcome } from './negotiate.js';
import { ChannelRegistry, kLookup, kScope, type RegistrationRecord } from './registry.js';
import type { AcceptChannelOptions, AcceptResult, ChannelAccepted, ChannelRequestInfo, ChannelStream } from './types.js';

export const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_PENDING = 1024;
/**
 * One peer's share of negotiations waiting in async authorise hooks (the application's resources):
 * a quarter of the node cap, and the relay's own per-peer stream limit, so that one speaks first.
 */
export const DEFAULT_MAX_PENDING_PER_PEER = 256;
/** A negotiation that has not sent its 4-byte header by then is a slowloris (an opener sends OPEN in its first write). */
export const DEFAULT_HEADER_TIMEOUT_MS = 2_000;
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

/** What became of the OPEN: the machine's outcome, an eviction, or the stream died (no answer possible). */
type OpenResult =
  | AcceptorOutcome
  | ({ readonly type: 'reject' } & Refusal)
  | { readonly type: 'failed'; readonly error: PnetError };

/** One negotiation in progress: its stream, its slot in the registry's scope, how it ended. */
interface Attempt {
  readonly session: AcceptorSession;
  readonly scope: NegotiationScope;
  readonly ticket: NegotiationTicket;
  readonly settings: AcceptSettings;
  /** Set where the generic outcome would not say it (deadlines, eviction). */
  outcome: NegotiationOutcome | undefined;
}

const EVICTED_REFUSAL: Refusal = { code: 'OVERLOADED', reason: 'evicted: the node is at its cap and this peer holds the most pending negotiations' };
const EVICTED: OpenResult = { type: 'reject', ...EVICTED_REFUSAL };
/** The stream closed while its hook ran: no answer to send, the slot is freed at once. */
const CLOSED_IN_HOOK: Refusal = { code: 'OVERLOADED', reason: 'stream closed during authorisation' };
const PEER_SHARE: Refusal = { code: 'OVERLOADED', reason: 'too many channel negotiations from this peer waiting for authorisation' };

/**
 * Move buffered bytes into the machine, never more than it wants, so the payload behind the OPEN
 * stays in the stream's buffer. A partial header goes in too: type and version decide on 2 bytes
 * (docs/PROTOCOL.md), not after a deadline. Null while more bytes are needed.
 */
function takeOpen(session: AcceptorSession, negotiation: AcceptorNegotiation): AcceptorOutcome | null {
  for (;;) {
    const want = negotiation.wanted;
    const buffered = session.stream.readableLength;
    const partial = buffered > 0 && buffered < want;
    const chunk = session.stream.read(partial ? buffered : want) as Buffer | null;
    if (chunk === null) return session.eofHeld ? negotiation.end() : null;
    const out = negotiation.push(chunk);
    if (out !== null) return out;
    if (!partial && chunk.length < want) return negotiation.end(); // read(want) gives a short chunk only at EOF
  }
}

/** Take the OPEN now if it is buffered, else as its bytes arrive, within the deadlines; evictable meanwhile. */
function receiveOpen(attempt: Attempt): Promise<OpenResult> {
  const { session, settings, ticket } = attempt;
  const negotiation = new AcceptorNegotiation();
  const now = takeOpen(session, negotiation);
  if (now !== null) {
    ticket.evictable = false;
    return Promise.resolve(now);
  }
  const stream = session.stream;
  const { timeoutMs, headerTimeoutMs } = settings;
  return new Promise<OpenResult>((resolve) => {
    let settled = false;
    const settle = (result: OpenResult, outcome?: NegotiationOutcome): void => {
      if (settled) return; // an eviction racing a deadline
      settled = true;
      ticket.evictable = false;
      attempt.outcome = outcome;
      clearTimeout(timer);
      clearTimeout(headerTimer);
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
    const timer = setTimeout(() => settle(negotiation.timeout(timeoutMs), 'openTimeouts'), timeoutMs);
    // Decided a loop turn later: after an event-loop stall the timer runs before the I/O (and the
    // transport's batch) that may hold the header, which must not read as a slow peer.
    const onHeaderDeadline = (): void => {
      setImmediate(() => setImmediate(() => {
        if (settled) return;
        const out = negotiation.headerTimeout(headerTimeoutMs);
        if (out !== null) settle(out, 'headerTimeouts');
      }));
    };
    const headerTimer = headerTimeoutMs < timeoutMs && !negotiation.headerReceived ? setTimeout(onHeaderDeadline, headerTimeoutMs) : undefined;
    ticket.evict = () => settle(EVICTED, 'evicted');
    session.onEof = onReadable; // EOF held back: decide with what is buffered
    stream.on('readable', onReadable);
    stream.on('end', onEnd); // EOF that arrived before acceptChannel was called
    stream.on('close', onClose);
    stream.on('error', onError);
  });
}

class DeadlineError extends Error {}

/** `p`'s outcome within `ms` (else a DeadlineError), or what `lost` resolves to first; the timer never outlives it. */
function withDeadline<T, L>(p: PromiseLike<T>, ms: number, lost: Promise<L>): Promise<T | L> {
  return new Promise<T | L>((resolve, reject) => {
    const timer = setTimeout(() => reject(new DeadlineError('deadline')), ms);
    const settle = <V>(fn: (v: V) => void) => (v: V): void => {
      clearTimeout(timer);
      fn(v);
    };
    p.then(settle(resolve), settle(reject));
    void lost.then(settle(resolve));
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
  readonly maxPendingPerPeer: number;
  readonly timeoutMs: number;
  readonly headerTimeoutMs: number;
  readonly lingerMs: number;
  readonly onHandlerError: AcceptChannelOptions['onHandlerError'];
}

/** setTimeout's largest delay: a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function acceptSettings(options: AcceptChannelOptions): AcceptSettings {
  const where = 'acceptChannel option';
  return {
    maxPending: numberOption(where, 'maxPending', options.maxPending, DEFAULT_MAX_PENDING, { integer: true }),
    maxPendingPerPeer: numberOption(where, 'maxPendingPerPeer', options.maxPendingPerPeer, DEFAULT_MAX_PENDING_PER_PEER, { integer: true }),
    timeoutMs: numberOption(where, 'timeoutMs', options.timeoutMs, DEFAULT_OPEN_TIMEOUT_MS, { above: true, max: MAX_TIMER_MS }),
    headerTimeoutMs: numberOption(where, 'headerTimeoutMs', options.headerTimeoutMs, DEFAULT_HEADER_TIMEOUT_MS, { above: true, max: MAX_TIMER_MS }),
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
  const session = new AcceptorSession(stream);
  if (options.turn !== undefined && !(await options.turn)) {
    session.release();
    return { accepted: false, error: new PnetError('ERR_STREAM_RESET', 'stream closed while waiting for its turn') };
  }
  const scope = registry[kScope];
  const ticket = scope.admit(remoteNodeId, settings, noop); // receiveOpen sets the real evict
  if (ticket === 'node') {
    session.release();
    return refuse(stream, { code: 'OVERLOADED', reason: 'too many pending channel negotiations' }, settings.lingerMs);
  }
  const attempt: Attempt = { session, scope, ticket, settings, outcome: undefined };
  try {
    return await negotiate(attempt, registry, remoteNodeId);
  } finally {
    scope.release(ticket);
    attempt.session.release();
  }
}

/** Counts the outcome of a negotiation that got a slot and returns its result. */
function ended<T extends AcceptResult>(attempt: Attempt, outcome: NegotiationOutcome, result: T): T {
  attempt.scope.count(attempt.outcome ?? outcome);
  return result;
}

/** The steps after the checks: OPEN, channel, authorise, then ACCEPT and the handler. */
async function negotiate(attempt: Attempt, registry: ChannelRegistry, remoteNodeId: NodeId): Promise<AcceptResult> {
  const { session, settings } = attempt;
  const stream = session.stream;
  const started = Date.now();
  const opened = await receiveOpen(attempt);
  attempt.ticket.evictable = false; // the OPEN is in: evictable again only while an async hook runs
  if (opened.type === 'reject') {
    return ended(attempt, opened.code === 'VERSION' ? 'versionRejects' : 'badFrames', refuse(stream, opened, settings.lingerMs));
  }
  if (opened.type === 'failed') {
    destroyQuietly(stream);
    return ended(attempt, 'streamFailures', { accepted: false, error: opened.error });
  }
  const open = opened.frame;
  const info: ChannelRequestInfo =
    open.credentials === undefined
      ? { channel: open.channel, remoteNodeId, metadata: open.metadata }
      : { channel: open.channel, remoteNodeId, metadata: open.metadata, credentials: open.credentials };
  const reg = registry[kLookup](open.channel);
  if (reg === undefined) {
    const refusal: Refusal = { code: 'UNKNOWN_CHANNEL', reason: `unknown channel "${open.channel}"` };
    return ended(attempt, 'unknownChannel', refuse(stream, refusal, settings.lingerMs, info));
  }
  const verdict = await authorise(reg, info, settings.timeoutMs - (Date.now() - started), attempt);
  attempt.ticket.evictable = false; // decided: an eviction now would answer twice
  if (verdict === CLOSED_IN_HOOK) {
    return ended(attempt, 'streamFailures', { accepted: false, error: new PnetError('ERR_STREAM_RESET', 'stream closed during negotiation'), info });
  }
  if (!Buffer.isBuffer(verdict)) return ended(attempt, refusalOutcome(verdict), refuse(stream, verdict, settings.lingerMs, info));
  if (stream.destroyed || !stream.writable) {
    return ended(attempt, 'streamFailures', { accepted: false, error: new PnetError('ERR_STREAM_RESET', 'stream closed during negotiation'), info });
  }
  return ended(attempt, 'accepted', handOff(session, reg, info, verdict, settings));
}

const NOT_AUTHORISED: Refusal = { code: 'UNAUTHORIZED', reason: 'not authorised' };
const AUTHORISE_TIMED_OUT: Refusal = { code: 'OVERLOADED', reason: 'authorisation timed out' };

function refusalOutcome(refusal: Refusal): NegotiationOutcome {
  if (refusal === AUTHORISE_TIMED_OUT) return 'authoriseTimeouts';
  if (refusal === PEER_SHARE) return 'rejectedPeerLimit';
  if (refusal === EVICTED_REFUSAL) return 'evicted';
  return 'unauthorised';
}

/** A negotiation's place while its async authorise hook runs: within the peer's share, and evictable. */
interface HookSlot {
  /** False when the peer has its share of hooks in flight already. */
  hold(): boolean;
  /** Resolves if the slot is evicted or the stream closes meanwhile (the hook's verdict is then ignored). */
  readonly lost: Promise<Refusal>;
  /** Stops watching the stream (the hook decided). */
  done(): void;
}

function hookSlot(attempt: Attempt): HookSlot {
  const stream = attempt.session.stream;
  let lose: (refusal: Refusal) => void = noop;
  const lost = new Promise<Refusal>((resolve) => (lose = resolve));
  const onClose = (): void => lose(CLOSED_IN_HOOK);
  return {
    hold() {
      if (!attempt.scope.authorise(attempt.ticket, attempt.settings)) return false;
      attempt.ticket.evict = () => lose(EVICTED_REFUSAL);
      attempt.ticket.evictable = true;
      stream.once('close', onClose);
      return true;
    },
    lost,
    done: () => stream.removeListener('close', onClose),
  };
}

/**
 * Runs the channel's authorise hook within `budgetMs`: the ACCEPT frame to send, or a refusal. A
 * hook that answers at once holds nothing; one that returns a promise takes a slot of the peer's
 * share first, and loses it to an eviction.
 */
async function authorise(reg: RegistrationRecord, info: ChannelRequestInfo, budgetMs: number, attempt: Attempt): Promise<Buffer | Refusal> {
  if (reg.authorise === undefined) return reg.acceptFrame;
  let verdict: unknown;
  try {
    verdict = reg.authorise(info);
    if (isThenable(verdict)) {
      const slot = hookSlot(attempt);
      if (!slot.hold()) {
        verdict.then(undefined, noop); // refused: its verdict is never read, nor its rejection
        return PEER_SHARE;
      }
      try {
        verdict = await withDeadline(verdict, Math.max(0, budgetMs), slot.lost);
      } finally {
        slot.done();
      }
      if (verdict === EVICTED_REFUSAL || verdict === CLOSED_IN_HOOK) return verdict as Refusal;
    }
  } catch (err) {
    if (err instanceof DeadlineError) return AUTHORISE_TIMED_OUT;
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
