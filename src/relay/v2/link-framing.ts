/**
 * Relayed datagrams over a link without QUIC DATAGRAM frames (HTTP/2 over TLS): one long-lived
 * stream per link, each datagram behind a 2-byte big-endian length. The reader keeps at most one
 * partial datagram; a length of 0 or over MAX_RELAYED_BYTES ends the stream with BAD_FRAME.
 */
import { PnetError } from '../../errors.js';
import { MAX_RELAYED_BYTES } from './header.js';

export const LENGTH_PREFIX_BYTES = 2;

/** The length prefix for a datagram of `length` bytes (write it, then the datagram). */
export function writeLengthPrefix(out: Uint8Array, offset: number, length: number): void {
  if (!Number.isInteger(length) || length < 1 || length > MAX_RELAYED_BYTES) throw new RangeError(`datagram of ${length} bytes: need 1..${MAX_RELAYED_BYTES}`);
  out[offset] = length >>> 8;
  out[offset + 1] = length & 0xff;
}

/** One datagram framed for the stream (a copy). */
export function frameDatagram(datagram: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + datagram.length);
  writeLengthPrefix(out, 0, datagram.length);
  out.set(datagram, LENGTH_PREFIX_BYTES);
  return out;
}

/** Cuts a link stream's bytes back into datagrams. */
export class DatagramStreamReader {
  private readonly partial = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + MAX_RELAYED_BYTES);
  private have = 0;
  private failed: PnetError | undefined;

  /**
   * Feeds a chunk; calls `onDatagram` for each whole datagram (a view, valid during the call).
   * Returns a BAD_FRAME error once the stream carries a bad length (and ignores all later input).
   */
  push(chunk: Uint8Array, onDatagram: (datagram: Buffer) => void): PnetError | undefined {
    if (this.failed !== undefined) return this.failed;
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let at = 0;
    while (at < bytes.length) {
      if (this.have === 0 && bytes.length - at >= LENGTH_PREFIX_BYTES) {
        // Fast path: whole datagrams straight from the chunk, no copy.
        const length = bytes.readUInt16BE(at);
        if (length === 0 || length > MAX_RELAYED_BYTES) return this.fail(length);
        if (bytes.length - at - LENGTH_PREFIX_BYTES >= length) {
          onDatagram(bytes.subarray(at + LENGTH_PREFIX_BYTES, at + LENGTH_PREFIX_BYTES + length));
          at += LENGTH_PREFIX_BYTES + length;
          continue;
        }
      }
      at = this.accumulate(bytes, at, onDatagram);
      if (this.failed !== undefined) return this.failed;
    }
    return undefined;
  }

  /** Copies from `bytes[at..]` into the partial datagram; delivers it when whole. Returns the new position. */
  private accumulate(bytes: Buffer, at: number, onDatagram: (datagram: Buffer) => void): number {
    const partial = this.partial;
    if (this.have < LENGTH_PREFIX_BYTES) {
      partial[this.have++] = bytes[at]!;
      if (this.have === LENGTH_PREFIX_BYTES) {
        const length = partial.readUInt16BE(0);
        if (length === 0 || length > MAX_RELAYED_BYTES) this.fail(length);
      }
      return at + 1;
    }
    const want = LENGTH_PREFIX_BYTES + partial.readUInt16BE(0) - this.have;
    const take = Math.min(want, bytes.length - at);
    bytes.copy(partial, this.have, at, at + take);
    this.have += take;
    if (take === want) {
      this.have = 0;
      onDatagram(partial.subarray(LENGTH_PREFIX_BYTES, LENGTH_PREFIX_BYTES + partial.readUInt16BE(0)));
    }
    return at + take;
  }

  private fail(length: number): PnetError {
    this.failed = new PnetError('BAD_FRAME', `relayed datagram length ${length} on a link stream: need 1..${MAX_RELAYED_BYTES}`);
    return this.failed;
  }
}
