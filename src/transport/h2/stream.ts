import { Duplex } from 'node:stream';
import type { Http2Stream, ServerHttp2Stream } from 'node:http2';
import { PnetError } from '../../errors.js';
import type { Connection, Stream } from '../types.js';
import { END_TRAILERS, RESPONSE_HEADERS, RESPONSE_OPTIONS, toWireCode } from './protocol.js';

type Callback = (error?: Error | null) => void;


/** What an H2Stream asks of its connection (H2Connection implements it; declared here so the stream does not import the connection). */
export interface H2StreamHost extends Connection {
  /** The stream's HTTP/2 stream closed: its slot in the peer's limit is free. */
  innerClosed(stream: H2Stream): void;
  /** Why a stream's HTTP/2 stream ended without both sides finishing. */
  streamEndError(rstCode: number | undefined): PnetError;
  closedError(): PnetError;
  /** The stream is over (both directions ended, reset or failed). */
  release(stream: H2Stream): void;
}

/**
 * One pnet stream over one HTTP/2 stream, as a Node Duplex.
 *
 * Node's Http2Stream is already a duplex (request body one way, response body the other), but
 * an end of stream from it does not mean the peer finished: Node's own `close(code)` sends
 * END_STREAM before the RST_STREAM when the sending side was open, and a dying session or
 * socket pushes an end-of-stream too. So every pnet stream ends its sending side with a
 * one-field trailer, and this wrapper passes an end on only after the peer's trailers arrived;
 * any other ending is a reset or a lost connection, reported as ERR_STREAM_RESET,
 * ERR_CONNECTION_CLOSED or ERR_IDLE_TIMEOUT.
 */
export class H2Stream extends Duplex implements Stream {
  readonly connection: H2StreamHost;
  readonly inner: Http2Stream;
  /** Opened by the dialed side through a parked request (see docs/TRANSPORT.md). */
  readonly reverse: boolean;
  /** The stream is no longer tracked by the connection (ended both ways, reset or failed). */
  released = false;
  /** Why the transport ended this stream, if it did. */
  resetError: PnetError | undefined;
  /** The peer's trailers arrived: its end is genuine. */
  private peerEnded = false;
  private readEnded = false;
  private writeEnded = false;
  private pendingWrite: Callback | null = null;
  private pendingFinal: Callback | null = null;

  constructor(connection: H2StreamHost, inner: Http2Stream, reverse: boolean) {
    super({ allowHalfOpen: true, highWaterMark: 256 * 1024 });
    this.connection = connection;
    this.inner = inner;
    this.reverse = reverse;
    inner.on('data', this.onData);
    inner.on('trailers', this.onTrailers);
    inner.on('end', this.onEnd);
    inner.on('drain', this.onDrain);
    inner.on('finish', this.onFinish);
    inner.on('wantTrailers', this.onWantTrailers);
    inner.on('error', noop); // reported through 'close' and rstCode
    inner.on('close', this.onClose);
  }

  get streamId(): number {
    return this.inner.id ?? -1;
  }

  private readonly onData = (chunk: Buffer): void => {
    if (!this.push(chunk)) this.inner.pause();
  };

  private readonly onTrailers = (): void => {
    this.peerEnded = true;
  };

  private readonly onEnd = (): void => {
    // Without the peer's trailers, this end was made up by Node for a reset or a dead connection.
    if (!this.peerEnded || this.released) return;
    this.readEnded = true;
    this.push(null);
    this.maybeRelease();
  };

  private readonly onWantTrailers = (): void => {
    // Node turns empty trailers into an empty DATA frame, which would not mark the end as ours.
    try {
      this.inner.sendTrailers(END_TRAILERS);
    } catch {
      // the stream closed meanwhile; its 'close' reports why
    }
  };

  private readonly onDrain = (): void => {
    const callback = this.pendingWrite;
    this.pendingWrite = null;
    callback?.();
  };

  private readonly onFinish = (): void => {
    this.writeEnded = true;
    const callback = this.pendingFinal;
    this.pendingFinal = null;
    callback?.();
    this.maybeRelease();
  };

  private readonly onClose = (): void => {
    this.connection.innerClosed(this);
    if (this.released) return;
    const rstCode = this.inner.rstCode;
    if (this.peerEnded && this.inner.writableEnded && (rstCode === undefined || rstCode === 0)) {
      // Both sides finished; Node may report the close before our 'end'/'finish' ran.
      if (!this.readEnded) {
        this.readEnded = true;
        this.push(null);
      }
      this.onFinish();
      return;
    }
    this.fail(this.connection.streamEndError(rstCode));
  };

  override _read(): void {
    if (this.inner.isPaused()) this.inner.resume();
  }

  /** A stream the dialer opened is answered (response HEADERS) with the first bytes or end we send. */
  private respond(): void {
    const inner = this.inner as ServerHttp2Stream;
    if (inner.respond !== undefined && !inner.headersSent && !inner.closed && !inner.destroyed) inner.respond(RESPONSE_HEADERS, RESPONSE_OPTIONS);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    if (this.released) {
      callback(this.resetError ?? this.connection.closedError());
      return;
    }
    this.respond();
    if (this.inner.write(chunk)) callback();
    else this.pendingWrite = callback;
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: Callback): void {
    if (this.released) {
      callback(this.resetError ?? this.connection.closedError());
      return;
    }
    const inner = this.inner;
    this.respond();
    let room = true;
    inner.cork();
    for (const { chunk } of chunks) room = inner.write(chunk);
    inner.uncork();
    if (room) callback();
    else this.pendingWrite = callback;
  }

  override _final(callback: Callback): void {
    if (this.released) {
      callback(this.resetError ?? this.connection.closedError());
      return;
    }
    this.pendingFinal = callback;
    this.respond();
    this.inner.end();
  }

  override _destroy(error: Error | null, callback: Callback): void {
    if (!this.released) {
      this.closeInner(0);
      this.release();
      this.takeCallbacks()?.(new PnetError('ERR_STREAM_RESET', `stream ${this.streamId} was destroyed`));
    }
    callback(error);
  }

  /** Abort both directions; the peer sees ERR_STREAM_RESET with `code`. */
  reset(code = 0): void {
    if (this.released) {
      this.destroy();
      return;
    }
    this.closeInner(code);
    this.release();
    const callbacks = this.takeCallbacks();
    this.destroy();
    callbacks?.(new PnetError('ERR_STREAM_RESET', `stream ${this.streamId} was reset locally`));
  }

  /**
   * Fail the stream with a transport error. An error with no listener would crash the
   * process, so without one the stream is destroyed quietly and the reason kept in `resetError`.
   */
  fail(error: PnetError): void {
    if (this.released && this.destroyed) return;
    this.release();
    this.closeInner(0);
    const callbacks = this.takeCallbacks();
    if (!this.destroyed) {
      this.resetError = error;
      if (this.listenerCount('error') > 0) this.destroy(error);
      else this.destroy();
    }
    callbacks?.(error);
  }

  private closeInner(code: number): void {
    if (!this.inner.closed && !this.inner.destroyed) this.inner.close(toWireCode(code));
  }

  private maybeRelease(): void {
    if (this.readEnded && this.writeEnded) this.release();
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.connection.release(this);
  }

  /** Pending write and final callbacks, to be failed (after the stream is destroyed, so no 'error' is emitted twice). */
  private takeCallbacks(): Callback | undefined {
    const write = this.pendingWrite;
    const final = this.pendingFinal;
    this.pendingWrite = null;
    this.pendingFinal = null;
    if (write === null && final === null) return undefined;
    return (error) => {
      write?.(error);
      final?.(error);
    };
  }
}

function noop(): void {}
