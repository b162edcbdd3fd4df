import { Duplex } from 'node:stream';
import { PnetError } from '../../errors.js';
import type { Stream } from '../types.js';
import type { QuicConnection } from './connection.js';

/**
 * One QUIC bidirectional stream as a Node Duplex. All quiche calls go through
 * the owning QuicConnection, which batches sends; this class only keeps the
 * per-stream state the connection needs (pending write, read wanted, ends).
 */
export class QuicStream extends Duplex implements Stream {
  readonly streamId: number;
  readonly connection: QuicConnection;
  /** Bytes quiche did not take yet (flow control), with the write callback. */
  pendingChunk: Buffer | null = null;
  pendingFin = false;
  /** Length of the write `pendingChunk` is the rest of (tells whether it is the last one). */
  pendingWriteLength = 0;
  pendingCallback: ((error?: Error | null) => void) | null = null;
  /** The connection's flush count when quiche last took data of this stream. */
  queuedAt = -1;
  /** The consumer wants data (Node called _read and we have not pushed since). */
  wantRead = true;
  readEnded = false;
  writeEnded = false;
  /** The stream is no longer tracked by the connection. */
  released = false;

  constructor(connection: QuicConnection, streamId: number) {
    super({ allowHalfOpen: true, highWaterMark: 256 * 1024 });
    this.connection = connection;
    this.streamId = streamId;
  }

  override _read(): void {
    if (!this.wantRead) {
      this.wantRead = true;
      this.connection.streamWantsRead(this);
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.connection.streamWrite(this, chunk, false, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    const chunk = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this.connection.streamWrite(this, chunk, false, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.connection.streamWrite(this, EMPTY, true, callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.released) this.connection.streamAbort(this, 0);
    callback(error);
  }

  reset(code = 0): void {
    if (!this.released) this.connection.streamAbort(this, code);
    this.destroy();
  }

  /**
   * Fail the stream with a transport error. An error with no listener would
   * crash the process, so without one the stream is destroyed quietly and the
   * error stays readable on `stream.errored`-like `resetError`.
   */
  fail(error: PnetError): void {
    this.released = true;
    if (this.destroyed) return;
    this.resetError = error;
    if (this.listenerCount('error') > 0) this.destroy(error);
    else this.destroy();
  }

  /** Why the transport ended this stream, if it did. */
  resetError: PnetError | undefined;
}

const EMPTY = Buffer.alloc(0);
