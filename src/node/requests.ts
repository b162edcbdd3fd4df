/**
 * Request/response: one pipeline for every request this node answers, whether it came on its own
 * stream (handleRequest) or inside a fan-out envelope: the same authorise deadline and verdict,
 * the same size limits, the same error codes. Also the requester's side (request()).
 */
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { numberOption } from '../options.js';
import { isChannelRejectCode } from '../channel/index.js';
import type { AuthoriseHook, AuthoriseVerdict, ChannelRequestInfo } from '../channel/index.js';
import { readAll } from './read-all.js';
import { DEFAULT_REQUEST_BYTES_IN_FLIGHT, DEFAULT_REQUEST_BYTES_PER_PEER, RequestBudget } from './request-budget.js';
import type { RequestLimits, RequestLimitStats, RequestRead } from './request-budget.js';
import type { HandleOptions, HandleRequestOptions, OpenStreamOptions, PnetStream, RequestHandler, RequestOptions, StreamHandler } from './types.js';

const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 10_000;
/** The longest delay a Node timer takes (larger ones fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Reset codes of a handleRequest stream (docs/PROTOCOL.md, "Request and response"). */
const REQUEST_RESET_CODES = { ERR_REQUEST_TOO_LARGE: 1, ERR_HANDLER_FAILED: 2, OVERLOADED: 3 } as const;

/** A registered request handler with its hook and limit. */
export interface RequestTarget {
  readonly handler: RequestHandler;
  readonly authorise: AuthoriseHook | undefined;
  readonly maxRequestBytes: number;
}

/** What became of one request: the reply, or the error (its code is what the asker sees). */
export type RequestOutcome = { readonly ok: true; readonly reply: Buffer } | { readonly ok: false; readonly error: PnetError };

/** Limits the asker sets on an answer. */
export interface AnswerLimits {
  /** The handler must have answered by then (performance.now() time): ERR_REQUEST_TIMEOUT. */
  readonly deadlineAt?: number;
  /** Largest reply taken: ERR_REQUEST_TOO_LARGE. */
  readonly maxReplyBytes?: number;
  /** Called once authorise admitted the request, before the handler runs; a throw refuses it with that error. */
  readonly admitted?: () => void;
}

/** What the pipeline needs from its node. */
export interface RequestsHost {
  /** An authorise hook that has not decided within this refuses with OVERLOADED (the negotiation deadline). */
  readonly authoriseTimeoutMs: number;
  /** Serves `channel` with a stream handler (direct and tunnelled streams). */
  serve(channel: string, handler: StreamHandler, options: HandleOptions): void;
  /** Opens a user stream (direct, relayed or dialed). */
  open(nodeId: NodeId, channel: string, options: OpenStreamOptions): Promise<PnetStream>;
}

export class Requests {
  private readonly targets = new Map<string, RequestTarget>();
  private readonly budget: RequestBudget;

  constructor(
    private readonly host: RequestsHost,
    limits: RequestLimits = {},
  ) {
    const maxBytes = numberOption('requests option', 'maxBytesInFlight', limits.maxBytesInFlight, DEFAULT_REQUEST_BYTES_IN_FLIGHT);
    const perPeer = numberOption('requests option', 'maxBytesInFlightPerPeer', limits.maxBytesInFlightPerPeer, Math.min(DEFAULT_REQUEST_BYTES_PER_PEER, maxBytes));
    if (perPeer > maxBytes) throw new PnetError('ERR_BAD_OPTION', 'requests option maxBytesInFlightPerPeer is over maxBytesInFlight');
    this.budget = new RequestBudget(maxBytes, perPeer);
  }

  /** What the request byte limits refused or cut. */
  limitStats(): RequestLimitStats {
    return { ...this.budget.stats };
  }

  /** Serves `channel` as request/response; fan-outs to this node reach the same handler. */
  handle(channel: string, handler: RequestHandler, options: HandleRequestOptions = {}): void {
    const maxRequestBytes = numberOption('handleRequest option', 'maxRequestBytes', options.maxRequestBytes, DEFAULT_MAX_BYTES);
    if (options.authorise && typeof options.authorise !== 'function') throw new PnetError('ERR_BAD_OPTION', 'authorise must be a function');
    const target: RequestTarget = { handler, authorise: options.authorise, maxRequestBytes };
    const registration: HandleOptions = {
      ...(options.metadata ? { metadata: options.metadata } : {}),
      ...(options.authorise ? { authorise: (info: ChannelRequestInfo) => this.authorise(target, info) } : {}),
    };
    this.host.serve(channel, (stream, info) => this.serveStream(target, stream, info), registration);
    this.targets.set(channel, target);
  }

  unhandle(channel: string): void {
    this.targets.delete(channel);
  }

  /** Answers a request that did not come on its own stream (a fan-out target): the whole pipeline, authorise included. */
  async answer(channel: string, request: Buffer, info: ChannelRequestInfo, limits: AnswerLimits): Promise<RequestOutcome> {
    const target = this.targets.get(channel);
    if (target === undefined) return { ok: false, error: new PnetError('UNKNOWN_CHANNEL', `no request handler for "${channel}"`) };
    try {
      await this.authorise(target, info);
      limits.admitted?.();
      return { ok: true, reply: await this.run(target, request, info, limits) };
    } catch (error) {
      return { ok: false, error: error as PnetError };
    }
  }

  /** The requester's side: sends `data`, reads the whole reply; a handler's reset code becomes its error. `timeoutMs` counts from this call. */
  async request(nodeId: NodeId, channel: string, data: Uint8Array | string, options: RequestOptions = {}): Promise<Buffer> {
    const timeoutMs = numberOption('request option', 'timeoutMs', options.timeoutMs, DEFAULT_TIMEOUT_MS, { max: MAX_TIMER_MS });
    const maxResponseBytes = numberOption('request option', 'maxResponseBytes', options.maxResponseBytes, DEFAULT_MAX_BYTES);
    const endsAt = performance.now() + timeoutMs;
    const expired = (): PnetError => new PnetError('ERR_REQUEST_TIMEOUT', `request on ${channel} to ${nodeId} got no reply within ${timeoutMs} ms`);
    let stream: PnetStream;
    try {
      stream = await this.host.open(nodeId, channel, {
        optimistic: true,
        timeoutMs,
        ...(options.metadata ? { metadata: options.metadata } : {}),
        ...(options.credentials ? { credentials: options.credentials } : {}),
      });
    } catch (error) {
      throw error instanceof PnetError && error.code === 'ERR_REQUEST_TIMEOUT' ? expired() : error;
    }
    const timer = setTimeout(() => stream.destroy(expired()), Math.max(0, endsAt - performance.now()));
    try {
      const reply = readAll(stream, maxResponseBytes, 'ERR_REQUEST_TOO_LARGE');
      stream.end(typeof data === 'string' ? Buffer.from(data) : data);
      return await reply;
    } catch (error) {
      throw requestFailure(error, channel, nodeId);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The verdict, read the same way on both paths: `true` or an object admits (its metadata goes
   * in an ACCEPT); anything else, a throw, or no verdict within the deadline refuses with a
   * channel REJECT code (the hook's own, else UNAUTHORIZED; OVERLOADED when it timed out).
   * A synchronous hook is answered synchronously.
   */
  private authorise(target: RequestTarget, info: ChannelRequestInfo): AuthoriseVerdict | Promise<AuthoriseVerdict> {
    const hook = target.authorise;
    if (hook === undefined) return true;
    let verdict: unknown;
    try {
      verdict = hook(info);
    } catch (error) {
      throw refusal(error);
    }
    if (!isThenable(verdict)) return admitted(verdict);
    const timedOut = (): PnetError => new PnetError('OVERLOADED', 'authorisation timed out');
    return withDeadline(verdict, this.host.authoriseTimeoutMs, timedOut).then(admitted, (error: unknown) => {
      throw refusal(error);
    });
  }

  /** Runs the handler on a whole request: its reply, or ERR_REQUEST_TOO_LARGE, ERR_HANDLER_FAILED (cause: what it threw), ERR_REQUEST_TIMEOUT. */
  private async run(target: RequestTarget, request: Buffer, info: ChannelRequestInfo, limits: AnswerLimits): Promise<Buffer> {
    if (request.length > target.maxRequestBytes) throw new PnetError('ERR_REQUEST_TOO_LARGE', `request over ${target.maxRequestBytes} bytes`);
    let reply: unknown;
    try {
      const running = new Promise<unknown>((resolve) => resolve(target.handler(request, info)));
      const timedOut = (): PnetError => new PnetError('ERR_REQUEST_TIMEOUT', 'handler still running at the deadline');
      reply = await (limits.deadlineAt === undefined ? running : withDeadline(running, limits.deadlineAt - performance.now(), timedOut));
    } catch (error) {
      if (error instanceof PnetError && error.code === 'ERR_REQUEST_TIMEOUT') throw error;
      throw new PnetError('ERR_HANDLER_FAILED', error instanceof Error ? error.message : String(error), { cause: error });
    }
    const bytes = typeof reply === 'string' ? Buffer.from(reply) : reply;
    if (!(bytes instanceof Uint8Array)) throw new PnetError('ERR_HANDLER_FAILED', 'handler returned neither bytes nor a string');
    if (limits.maxReplyBytes !== undefined && bytes.length > limits.maxReplyBytes) {
      throw new PnetError('ERR_REQUEST_TOO_LARGE', `reply of ${bytes.length} bytes over the requester's ${limits.maxReplyBytes}`);
    }
    return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** A request on its own stream (authorised during negotiation): read it whole within its peer's byte budget, run it, answer or reset with the code. */
  private async serveStream(target: RequestTarget, stream: PnetStream, info: ChannelRequestInfo): Promise<void> {
    const read: RequestRead = { peer: info.remoteNodeId, bytes: 0, reading: true, cut: () => stream.reset(REQUEST_RESET_CODES.OVERLOADED) };
    const charge = (chunk: Buffer): void => {
      if (this.budget.charge(read, chunk.length)) return;
      this.budget.done(read);
      stream.reset(REQUEST_RESET_CODES.OVERLOADED);
    };
    stream.on('data', charge);
    try {
      let request: Buffer;
      try {
        request = await readAll(stream, target.maxRequestBytes, 'ERR_REQUEST_TOO_LARGE', REQUEST_RESET_CODES.ERR_REQUEST_TOO_LARGE);
      } catch {
        return; // too large (reset with its code), over the byte budget (reset OVERLOADED), or the stream died
      } finally {
        stream.off('data', charge);
        read.reading = false;
      }
      let reply: Buffer;
      try {
        reply = await this.run(target, request, info, {});
      } catch (error) {
        const failure = error as PnetError;
        stream.reset(failure.code === 'ERR_REQUEST_TOO_LARGE' ? REQUEST_RESET_CODES.ERR_REQUEST_TOO_LARGE : REQUEST_RESET_CODES.ERR_HANDLER_FAILED);
        throw failure; // reported as the node's 'error': a PnetError, what the handler threw as its cause
      }
      stream.end(reply);
    } finally {
      this.budget.done(read); // the request's bytes are the handler's until it answered
    }
  }
}

/** What a reset from a handleRequest peer means, as the error request() rejects with. */
function requestFailure(error: unknown, channel: string, nodeId: NodeId): unknown {
  if (!(error instanceof PnetError) || error.code !== 'ERR_STREAM_RESET') return error;
  if (error.resetCode === REQUEST_RESET_CODES.ERR_REQUEST_TOO_LARGE) {
    return new PnetError('ERR_REQUEST_TOO_LARGE', `${nodeId} refused the request on ${channel}: over its size limit`, { cause: error });
  }
  if (error.resetCode === REQUEST_RESET_CODES.ERR_HANDLER_FAILED) return new PnetError('ERR_HANDLER_FAILED', `the ${channel} handler on ${nodeId} failed`, { cause: error });
  if (error.resetCode === REQUEST_RESET_CODES.OVERLOADED) return new PnetError('OVERLOADED', `${nodeId} refused the request on ${channel}: its bytes of requests in flight are spent`, { cause: error });
  return error;
}

/** An admitting verdict as it is, else UNAUTHORIZED. */
function admitted(verdict: unknown): AuthoriseVerdict {
  if (verdict === true || (typeof verdict === 'object' && verdict !== null)) return verdict as AuthoriseVerdict;
  throw new PnetError('UNAUTHORIZED', 'not authorised');
}

/** A hook's throw as a REJECT: its own code when it is one, else UNAUTHORIZED. */
function refusal(error: unknown): PnetError {
  if (error instanceof PnetError && isChannelRejectCode(error.code)) return error;
  return new PnetError('UNAUTHORIZED', 'not authorised', { cause: error });
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** `promise`, or `timedOut()` if it has not settled within `ms`. */
function withDeadline<T>(promise: PromiseLike<T>, ms: number, timedOut: () => PnetError): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // Unref'd: a handler that never settles must not keep the process alive after its node closed.
    const timer = setTimeout(() => reject(timedOut()), Math.max(0, ms)).unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
