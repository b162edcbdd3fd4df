import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { PnetErrorCode } from '../errors.js';

/** A transport Stream (reset, resetError) or a plain Duplex such as a tunnel's TLS socket (neither). */
type ReadableEnd = Duplex & { reset?(code?: number): void; readonly resetError?: Error | undefined };

/**
 * Reads a stream to its end, failing with `code` past `maxBytes`; the stream is then reset with
 * `overflowResetCode` (a stream that cannot be reset is destroyed).
 */
export function readAll(stream: ReadableEnd, maxBytes: number, code: PnetErrorCode, overflowResetCode = 0): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > maxBytes) {
        cleanup();
        const error = new PnetError(code, `more than ${maxBytes} bytes`);
        if (stream.reset) stream.reset(overflowResetCode);
        else stream.destroy(error);
        reject(error);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onClose = (): void => {
      cleanup();
      reject(stream.resetError ?? new PnetError('ERR_STREAM_RESET', 'stream closed before its end'));
    };
    function cleanup(): void {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    }
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
