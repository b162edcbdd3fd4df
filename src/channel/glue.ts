/**
 * What both sides' glue shares: channel negotiation runs over any byte-mode Node Duplex.
 *
 * No wrapper stream: both sides hand back the transport's own Duplex,
 * positioned on the first payload byte (opener.ts and acceptor.ts say how).
 * Both shadow the stream's `push` with an instance property while they
 * negotiate; this requires (as every Node stream does: net, tls, http2) that
 * the Duplex delivers bytes via `this.push()`.
 *
 * Every stream that goes through this layer gets a no-op 'error' listener,
 * so a remote reset can never crash the process; errors still reach your own
 * 'error' listeners, `pipeline`, `finished` and async iteration.
 */
import { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';

/** The signature of Readable.push, which the glue shadows while negotiating. */
export type PushFn = (chunk: unknown, encoding?: BufferEncoding) => boolean;

export const EMPTY = Buffer.alloc(0);
export function noop(): void {}
export function uncork(s: Duplex): void {
  s.uncork();
}
export function toPnetError(err: unknown, fallback: string): PnetError {
  if (err instanceof PnetError) return err;
  return new PnetError('ERR_STREAM_RESET', err instanceof Error ? err.message : fallback, { cause: err });
}

export function checkByteStream(stream: Duplex): void {
  if (stream === null || typeof stream !== 'object' || typeof stream.push !== 'function' || typeof stream.write !== 'function') {
    throw new PnetError('ERR_BAD_OPTION', 'channel negotiation needs a Duplex stream');
  }
  if (stream.readableObjectMode || stream.writableObjectMode) {
    throw new PnetError('ERR_BAD_OPTION', 'channel negotiation needs a byte stream, not object mode');
  }
}
