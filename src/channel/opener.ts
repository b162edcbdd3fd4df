/**
 * The opener's glue. The caller gets the stream at once (to write optimistically) and may attach
 * readers immediately, so the ACCEPT/REJECT must be removed before it enters the readable buffer:
 * while negotiating, the stream's `push` is shadowed by an instance property that feeds the
 * sans-IO OpenerNegotiation and forwards only the bytes after ACCEPT. Afterwards the instance
 * property points back to the original `push`.
 */
import { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import { encodeOpen, type Metadata } from './codec.js';
import { EMPTY, checkByteStream, noop, toPnetError, uncork, type PushFn } from './glue.js';
import { OpenerNegotiation, type OpenerOutcome } from './negotiate.js';
import type { ChannelAccepted, ChannelStream, OpenChannelOptions } from './types.js';

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
