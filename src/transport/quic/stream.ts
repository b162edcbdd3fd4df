import { Duplex } from 'node:stream';
import type { PnetError } from '../../errors.js';
import type { Connection, Stream } from '../types.js';

type Callback = (error?: Error | null) => void;

/** What a QuicStream asks of its connection (QuicConnection implements it; declared here so the stream does not import the connection). */
export interface QuicStreamHost extends Connection {
  streamWrite(stream: QuicStream, chunk: Buffer, fin: boolean, callback: Callback): void;
  streamEnding(stream: QuicStream): void;
  streamWantsRead(stream: QuicStream): void;
  streamReset(stream: QuicStream, code: number): void;
}
const EMPTY = Buffer.alloc(0);

/**
 * One QUIC bidirectional stream as a Node Duplex. Its QUIC state (parked bytes, ends, read
 * wanted) lives in the connection's QuicMachine; this class keeps only what Node's stream
 * machinery needs: the callback of a write the machine parked.
 */
export class QuicStream extends Duplex implements Stream {
  readonly streamId: number;
  readonly connection: QuicStreamHost;
  /** Why the transport ended this stream, if it did. */
  resetError: PnetError | undefined;

  private parkedCallback: Callback | null = null;
  private parkedLength = -1;
  /** The machine no longer knows this stream (finished, failed or reset). */
  private detached = false;
  /** Hands read chunks to Node (the machine calls it; null for the end). */
  readonly deliver = (chunk: Buffer | null): boolean => this.push(chunk);

  constructor(connection: QuicStreamHost, streamId: number) {
    super({ allowHalfOpen: true, highWaterMark: 256 * 1024 });
    this.connection = connection;
    this.streamId = streamId;
  }

  override _read(): void {
    if (!this.detached) this.connection.streamWantsRead(this);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.connection.streamWrite(this, chunk, false, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: Callback): void {
    const chunk = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this.connection.streamWrite(this, chunk, false, callback);
  }

  override _final(callback: Callback): void {
    this.connection.streamWrite(this, EMPTY, true, callback);
  }

  override end(...args: unknown[]): this {
    (Duplex.prototype.end as (...a: unknown[]) => unknown).apply(this, args);
    // end() while the parked write is the last one: that write carries the FIN (machine.streamEnding).
    if (this.parkedLength >= 0 && this.writableLength === this.parkedLength) this.connection.streamEnding(this);
    return this;
  }

  override _destroy(error: Error | null, callback: Callback): void {
    if (!this.detached) this.connection.streamReset(this, 0);
    callback(error);
  }

  reset(code = 0): void {
    if (!this.detached) this.connection.streamReset(this, code);
    this.destroy();
  }

  /** The machine parked the rest of a write of `length` bytes: `callback` waits for it. */
  park(callback: Callback, length: number): void {
    this.parkedCallback = callback;
    this.parkedLength = length;
  }

  /** The parked write is done (error: it failed); returns whether one was parked. */
  unpark(error?: PnetError): boolean {
    const callback = this.parkedCallback;
    this.parkedCallback = null;
    this.parkedLength = -1;
    callback?.(error);
    return callback !== null;
  }

  /** The machine forgot the stream (both directions ended). */
  detach(): void {
    this.detached = true;
  }

  /**
   * Fail the stream with a transport error. An error with no listener would
   * crash the process, so without one the stream is destroyed quietly and the
   * error stays readable on `resetError`.
   */
  fail(error: PnetError): void {
    this.detached = true;
    if (this.destroyed) return;
    this.resetError = error;
    if (this.listenerCount('error') > 0) this.destroy(error);
    else this.destroy();
  }
}
