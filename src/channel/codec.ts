/**
 * Sans-IO codec for the channel negotiation frames (OPEN / ACCEPT / REJECT).
 * The wire format is specified in docs/PROTOCOL.md; keep the two in step.
 *
 * Frame = header (4 bytes) + body:
 *   byte 0   magic/type: 0xA1 OPEN, 0xA2 ACCEPT, 0xA3 REJECT (high nibble 0xA is the magic)
 *   byte 1   version (1)
 *   byte 2-3 body length, u16 big-endian, <= MAX_BODY_LENGTH
 *
 * Decoders check every length against its bound before slicing or allocating;
 * nothing here ever allocates more than MAX_FRAME_LENGTH bytes per frame.
 * Encoders validate their input and throw PnetError('ERR_BAD_OPTION') (a local
 * caller error); decoders throw PnetError('BAD_FRAME') (a remote protocol error).
 */
import { Buffer } from 'node:buffer';
import { isUtf8 } from 'node:buffer';
import { PnetError } from '../errors.js';

export const PROTOCOL_VERSION = 1;
/** Versions this implementation can decode (and answer in). */
export const SUPPORTED_VERSIONS: readonly number[] = [1];

export const HEADER_LENGTH = 4;
/** Upper bound of a whole frame, header included. */
export const MAX_FRAME_LENGTH = 8192;
export const MAX_BODY_LENGTH = MAX_FRAME_LENGTH - HEADER_LENGTH;
export const MAX_CHANNEL_NAME_LENGTH = 64;
export const MAX_METADATA_ENTRIES = 32;
export const MAX_METADATA_KEY_LENGTH = 64;
export const MAX_METADATA_VALUE_LENGTH = 1024;
export const MAX_CREDENTIALS_LENGTH = 2048;
export const MAX_REASON_LENGTH = 256;

const MAGIC_MASK = 0xf0;
const MAGIC = 0xa0;
export const TYPE_OPEN = 0xa1;
export const TYPE_ACCEPT = 0xa2;
export const TYPE_REJECT = 0xa3;

/** OPEN flags byte. Bits other than these must be zero in version 1. */
const OPEN_FLAG_CREDENTIALS = 0x01;

export type Metadata = Readonly<Record<string, string>>;

/** The PnetError codes a REJECT frame can carry. */
export type ChannelRejectCode =
  | 'UNKNOWN_CHANNEL'
  | 'UNAUTHORIZED'
  | 'BAD_FRAME'
  | 'VERSION'
  | 'OVERLOADED'
  | 'UNREACHABLE'
  | 'HOP_LIMIT'
  | 'RELAY_REFUSED';

/** Wire values of the reject codes (u8). 0 and 9..255 are unassigned in version 1. */
export const REJECT_CODE_VALUES: Readonly<Record<ChannelRejectCode, number>> = Object.freeze({
  UNKNOWN_CHANNEL: 1,
  UNAUTHORIZED: 2,
  BAD_FRAME: 3,
  VERSION: 4,
  OVERLOADED: 5,
  UNREACHABLE: 6,
  HOP_LIMIT: 7,
  RELAY_REFUSED: 8,
});
const REJECT_CODE_BY_VALUE: readonly (ChannelRejectCode | undefined)[] = [
  undefined,
  'UNKNOWN_CHANNEL',
  'UNAUTHORIZED',
  'BAD_FRAME',
  'VERSION',
  'OVERLOADED',
  'UNREACHABLE',
  'HOP_LIMIT',
  'RELAY_REFUSED',
];

export function isChannelRejectCode(code: unknown): code is ChannelRejectCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(REJECT_CODE_VALUES, code);
}

export interface OpenFrame {
  readonly type: 'open';
  readonly version: 1;
  readonly channel: string;
  readonly metadata: Metadata;
  readonly credentials?: Uint8Array;
}
export interface AcceptFrame {
  readonly type: 'accept';
  readonly version: 1;
  readonly metadata: Metadata;
}
export interface RejectFrame {
  readonly type: 'reject';
  readonly version: 1;
  readonly code: ChannelRejectCode;
  readonly reason: string;
}
/**
 * A frame of the pnet negotiation family whose version this reader does not
 * speak. Only the first two bytes were examined; an acceptor answers
 * REJECT VERSION and closes, an opener fails with VERSION.
 */
export interface UnsupportedVersionFrame {
  readonly type: 'unsupported-version';
  readonly version: number;
}
export type Frame = OpenFrame | AcceptFrame | RejectFrame | UnsupportedVersionFrame;

/** Shared empty metadata (frozen, null prototype): decoding no entries allocates nothing. */
export const EMPTY_METADATA: Metadata = Object.freeze(Object.create(null) as Record<string, string>);

// ---------------------------------------------------------------------------
// Validation helpers

/**
 * Channel name rule: 1..64 bytes, each one of [a-z0-9._/-], the first one a
 * letter or digit. (Pure ASCII, so bytes == characters.)
 */
const NAME_CHAR = new Uint8Array(256);
for (let c = 0x61; c <= 0x7a; c++) NAME_CHAR[c] = 2; // a-z
for (let c = 0x30; c <= 0x39; c++) NAME_CHAR[c] = 2; // 0-9
NAME_CHAR[0x2e] = 1; // .
NAME_CHAR[0x5f] = 1; // _
NAME_CHAR[0x2f] = 1; // /
NAME_CHAR[0x2d] = 1; // -

export function isValidChannelName(name: unknown): name is string {
  if (typeof name !== 'string') return false;
  const n = name.length;
  if (n < 1 || n > MAX_CHANNEL_NAME_LENGTH) return false;
  if (NAME_CHAR[name.charCodeAt(0)] !== 2) return false;
  for (let i = 1; i < n; i++) {
    const c = name.charCodeAt(i);
    if (c > 0xff || NAME_CHAR[c] === 0) return false;
  }
  return true;
}

function validNameBytes(buf: Buffer, start: number, end: number): boolean {
  if (NAME_CHAR[buf[start]!] !== 2) return false;
  for (let i = start + 1; i < end; i++) if (NAME_CHAR[buf[i]!] === 0) return false;
  return true;
}

function badOption(message: string): PnetError {
  return new PnetError('ERR_BAD_OPTION', message);
}
function badFrame(message: string): PnetError {
  return new PnetError('BAD_FRAME', message);
}

/** Decode UTF-8 strictly: invalid sequences are a BAD_FRAME, not U+FFFD. */
function utf8(buf: Buffer, start: number, end: number, what: string): string {
  if (start === end) return '';
  const s = buf.toString('utf8', start, end);
  // Node replaces malformed sequences by U+FFFD; only then pay for the exact check.
  if (s.indexOf('\ufffd') !== -1 && !isUtf8(buf.subarray(start, end))) {
    throw badFrame(`${what} is not valid UTF-8`);
  }
  return s;
}

// ---------------------------------------------------------------------------
// Encoding

// String.prototype.isWellFormed exists in Node 20 (V8 11.3) but not in the ES2022 lib typings.
const isWellFormed = (String.prototype as unknown as { isWellFormed?: (this: string) => boolean }).isWellFormed;
function wellFormed(s: string): boolean {
  return isWellFormed === undefined ? true : isWellFormed.call(s);
}

/** Byte size of an encoded metadata block; validates it (ERR_BAD_OPTION). */
function metadataSize(metadata: Metadata | undefined, keys: string[] | undefined): number {
  if (keys === undefined || metadata === undefined) return 1;
  if (keys.length > MAX_METADATA_ENTRIES) {
    throw badOption(`metadata has ${keys.length} entries, at most ${MAX_METADATA_ENTRIES} allowed`);
  }
  let size = 1;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = metadata[k];
    if (typeof v !== 'string') throw badOption(`metadata value for "${k}" must be a string`);
    if (!wellFormed(k) || !wellFormed(v)) throw badOption('metadata keys and values must be well-formed Unicode (no lone surrogates)');
    const kl = k.length > MAX_METADATA_KEY_LENGTH ? k.length : Buffer.byteLength(k, 'utf8');
    if (kl < 1 || kl > MAX_METADATA_KEY_LENGTH) {
      throw badOption(`metadata key must be 1..${MAX_METADATA_KEY_LENGTH} bytes of UTF-8`);
    }
    const vl = v.length > MAX_METADATA_VALUE_LENGTH ? v.length : Buffer.byteLength(v, 'utf8');
    if (vl > MAX_METADATA_VALUE_LENGTH) {
      throw badOption(`metadata value for "${k}" exceeds ${MAX_METADATA_VALUE_LENGTH} bytes`);
    }
    size += 1 + kl + 2 + vl;
  }
  return size;
}

function metadataKeys(metadata: Metadata | undefined): string[] | undefined {
  if (metadata === undefined || metadata === null) return undefined;
  if (typeof metadata !== 'object') throw badOption('metadata must be an object of strings');
  const keys = Object.keys(metadata);
  return keys.length === 0 ? undefined : keys;
}

function writeMetadata(buf: Buffer, off: number, metadata: Metadata | undefined, keys: string[] | undefined): number {
  if (keys === undefined || metadata === undefined) {
    buf[off] = 0;
    return off + 1;
  }
  buf[off++] = keys.length;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = metadata[k]!;
    const kl = buf.write(k, off + 1, 'utf8');
    buf[off] = kl;
    off += 1 + kl;
    const vl = v.length === 0 ? 0 : buf.write(v, off + 2, 'utf8');
    buf.writeUInt16BE(vl, off);
    off += 2 + vl;
  }
  return off;
}

function writeHeader(buf: Buffer, type: number, bodyLength: number): void {
  buf[0] = type;
  buf[1] = PROTOCOL_VERSION;
  buf[2] = bodyLength >>> 8;
  buf[3] = bodyLength & 0xff;
}

export interface OpenFields {
  metadata?: Metadata | undefined;
  credentials?: Uint8Array | undefined;
}

/** Encode an OPEN frame into one Buffer. Throws PnetError('ERR_BAD_OPTION') on invalid input. */
export function encodeOpen(channel: string, fields?: OpenFields): Buffer {
  if (!isValidChannelName(channel)) {
    throw badOption(`invalid channel name ${JSON.stringify(String(channel)).slice(0, 80)}: 1..64 of [a-z0-9._/-], starting with [a-z0-9]`);
  }
  const metadata = fields?.metadata;
  const credentials = fields?.credentials;
  const keys = metadataKeys(metadata);
  let bodyLength = 1 + 1 + channel.length + metadataSize(metadata, keys);
  if (credentials !== undefined) {
    if (!(credentials instanceof Uint8Array)) throw badOption('credentials must be a Uint8Array');
    if (credentials.length > MAX_CREDENTIALS_LENGTH) {
      throw badOption(`credentials exceed ${MAX_CREDENTIALS_LENGTH} bytes`);
    }
    bodyLength += 2 + credentials.length;
  }
  if (bodyLength > MAX_BODY_LENGTH) throw badOption(`OPEN frame would exceed ${MAX_FRAME_LENGTH} bytes`);
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength);
  writeHeader(buf, TYPE_OPEN, bodyLength);
  buf[4] = credentials !== undefined ? OPEN_FLAG_CREDENTIALS : 0;
  buf[5] = channel.length;
  buf.write(channel, 6, 'latin1');
  let off = writeMetadata(buf, 6 + channel.length, metadata, keys);
  if (credentials !== undefined) {
    buf.writeUInt16BE(credentials.length, off);
    buf.set(credentials, off + 2);
    off += 2 + credentials.length;
  }
  return buf;
}

/** Encode an ACCEPT frame. Throws PnetError('ERR_BAD_OPTION') on invalid metadata. */
export function encodeAccept(metadata?: Metadata): Buffer {
  const keys = metadataKeys(metadata);
  const bodyLength = metadataSize(metadata, keys);
  if (bodyLength > MAX_BODY_LENGTH) throw badOption(`ACCEPT frame would exceed ${MAX_FRAME_LENGTH} bytes`);
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength);
  writeHeader(buf, TYPE_ACCEPT, bodyLength);
  writeMetadata(buf, HEADER_LENGTH, metadata, keys);
  return buf;
}

/** Cut a string to at most `max` UTF-8 bytes without splitting a character. */
function truncateUtf8(s: string, max: number): string {
  if (s.length * 3 <= max || Buffer.byteLength(s, 'utf8') <= max) return s;
  const b = Buffer.from(s, 'utf8');
  let end = max;
  // back off continuation bytes (10xxxxxx) so we cut on a character boundary
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.toString('utf8', 0, end);
}

/**
 * Encode a REJECT frame. `reason` is cut to 256 bytes of UTF-8 on a character
 * boundary (it is for humans). Throws ERR_BAD_OPTION on an unknown code.
 */
export function encodeReject(code: ChannelRejectCode, reason = ''): Buffer {
  if (!isChannelRejectCode(code)) throw badOption(`not a channel reject code: ${String(code)}`);
  const r = truncateUtf8(String(reason), MAX_REASON_LENGTH);
  const rl = Buffer.byteLength(r, 'utf8');
  const bodyLength = 1 + 2 + rl;
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength);
  writeHeader(buf, TYPE_REJECT, bodyLength);
  buf[4] = REJECT_CODE_VALUES[code];
  buf.writeUInt16BE(rl, 5);
  if (rl > 0) buf.write(r, 7, 'utf8');
  return buf;
}

// ---------------------------------------------------------------------------
// Decoding

/** Smallest legal body per type: OPEN flags+nameLen+1 name byte+count; ACCEPT count; REJECT code+reasonLen. */
function minBody(type: number): number {
  return type === TYPE_OPEN ? 4 : type === TYPE_ACCEPT ? 1 : 3;
}

/**
 * Examine the first bytes of a frame. Returns:
 * - `-1` if more bytes are needed to decide,
 * - `0` if the version is not supported (the frame is an UnsupportedVersionFrame),
 * - otherwise the total frame length (header + body), already checked against
 *   MAX_FRAME_LENGTH and the type's minimum.
 * Throws PnetError('BAD_FRAME') as soon as the bytes seen cannot start a frame.
 */
function frameLength(buf: Uint8Array, offset: number, available: number): number {
  if (available < 1) return -1;
  const type = buf[offset]!;
  if ((type & MAGIC_MASK) !== MAGIC) throw badFrame(`not a pnet channel frame (first byte 0x${type.toString(16).padStart(2, '0')})`);
  if (available < 2) return -1;
  if (buf[offset + 1] !== PROTOCOL_VERSION) return 0;
  if (type !== TYPE_OPEN && type !== TYPE_ACCEPT && type !== TYPE_REJECT) {
    throw badFrame(`unknown frame type 0x${type.toString(16)}`);
  }
  if (available < HEADER_LENGTH) return -1;
  const bodyLength = (buf[offset + 2]! << 8) | buf[offset + 3]!;
  if (bodyLength > MAX_BODY_LENGTH) throw badFrame(`frame body of ${bodyLength} bytes exceeds ${MAX_BODY_LENGTH}`);
  if (bodyLength < minBody(type)) throw badFrame(`frame body of ${bodyLength} bytes is too short`);
  return HEADER_LENGTH + bodyLength;
}

function readMetadata(buf: Buffer, off: number, end: number, out: { off: number }): Metadata {
  if (off >= end) throw badFrame('metadata count missing');
  const count = buf[off++]!;
  if (count > MAX_METADATA_ENTRIES) throw badFrame(`metadata has ${count} entries, at most ${MAX_METADATA_ENTRIES} allowed`);
  if (count === 0) {
    out.off = off;
    return EMPTY_METADATA;
  }
  const md = Object.create(null) as Record<string, string>;
  for (let i = 0; i < count; i++) {
    if (off >= end) throw badFrame('metadata truncated');
    const kl = buf[off++]!;
    if (kl < 1 || kl > MAX_METADATA_KEY_LENGTH) throw badFrame(`metadata key length ${kl} out of 1..${MAX_METADATA_KEY_LENGTH}`);
    if (kl + 2 > end - off) throw badFrame('metadata truncated');
    const key = utf8(buf, off, off + kl, 'metadata key');
    off += kl;
    const vl = (buf[off]! << 8) | buf[off + 1]!;
    off += 2;
    if (vl > MAX_METADATA_VALUE_LENGTH) throw badFrame(`metadata value length ${vl} exceeds ${MAX_METADATA_VALUE_LENGTH}`);
    if (vl > end - off) throw badFrame('metadata truncated');
    if (key in md) throw badFrame(`duplicate metadata key`);
    md[key] = utf8(buf, off, off + vl, 'metadata value');
    off += vl;
  }
  out.off = off;
  return md;
}

/**
 * Decode the body of a version-1 frame whose header starts at `offset` and
 * whose total length `length` was returned by frameLength(). Throws BAD_FRAME.
 */
function decodeFrameAt(buf: Buffer, offset: number, length: number): OpenFrame | AcceptFrame | RejectFrame {
  return decodeBody(buf[offset]!, buf, offset + HEADER_LENGTH, offset + length);
}

/**
 * Decode a version-1 body of frame type `type` held in buf[start, end)
 * (the header having been checked by frameLength()). Throws BAD_FRAME.
 */
function decodeBody(type: number, buf: Buffer, start: number, end: number): OpenFrame | AcceptFrame | RejectFrame {
  let off = start;
  const cursor = { off: 0 };
  if (type === TYPE_OPEN) {
    const flags = buf[off++]!;
    if ((flags & ~OPEN_FLAG_CREDENTIALS) !== 0) throw badFrame(`reserved OPEN flags set (0x${flags.toString(16)})`);
    const nl = buf[off++]!;
    if (nl < 1 || nl > MAX_CHANNEL_NAME_LENGTH) throw badFrame(`channel name length ${nl} out of 1..${MAX_CHANNEL_NAME_LENGTH}`);
    if (nl > end - off) throw badFrame('channel name truncated');
    if (!validNameBytes(buf, off, off + nl)) throw badFrame('channel name has characters outside [a-z0-9._/-]');
    const channel = buf.toString('latin1', off, off + nl);
    off += nl;
    const metadata = readMetadata(buf, off, end, cursor);
    off = cursor.off;
    let credentials: Uint8Array | undefined;
    if ((flags & OPEN_FLAG_CREDENTIALS) !== 0) {
      if (2 > end - off) throw badFrame('credentials length missing');
      const cl = (buf[off]! << 8) | buf[off + 1]!;
      off += 2;
      if (cl > MAX_CREDENTIALS_LENGTH) throw badFrame(`credentials of ${cl} bytes exceed ${MAX_CREDENTIALS_LENGTH}`);
      if (cl > end - off) throw badFrame('credentials truncated');
      credentials = new Uint8Array(buf.subarray(off, off + cl)); // a copy: never alias the stream's chunk
      off += cl;
    }
    if (off !== end) throw badFrame(`${end - off} trailing bytes in OPEN`);
    return credentials === undefined
      ? { type: 'open', version: 1, channel, metadata }
      : { type: 'open', version: 1, channel, metadata, credentials };
  }
  if (type === TYPE_ACCEPT) {
    const metadata = readMetadata(buf, off, end, cursor);
    if (cursor.off !== end) throw badFrame(`${end - cursor.off} trailing bytes in ACCEPT`);
    return { type: 'accept', version: 1, metadata };
  }
  // TYPE_REJECT (frameLength() admitted no other type)
  const value = buf[off++]!;
  const code = REJECT_CODE_BY_VALUE[value];
  if (code === undefined) throw badFrame(`unknown reject code ${value}`);
  const rl = (buf[off]! << 8) | buf[off + 1]!;
  off += 2;
  if (rl > MAX_REASON_LENGTH) throw badFrame(`reject reason of ${rl} bytes exceeds ${MAX_REASON_LENGTH}`);
  if (rl !== end - off) throw badFrame('reject reason length does not match the frame');
  return { type: 'reject', version: 1, code, reason: utf8(buf, off, end, 'reject reason') };
}

/**
 * Try to decode one frame from `buf` at `offset`.
 * Returns 'need-more' if the bytes so far are a valid prefix of a frame,
 * `{ frame, bytesUsed }` once complete (bytes after it are payload), and
 * throws PnetError('BAD_FRAME') as soon as the input cannot be a valid frame.
 * For an unsupported version, frame.type is 'unsupported-version' and
 * bytesUsed is 2 (only type and version were read).
 */
export function tryDecodeFrame(buf: Buffer, offset = 0): { frame: Frame; bytesUsed: number } | 'need-more' {
  const len = frameLength(buf, offset, buf.length - offset);
  if (len < 0) return 'need-more';
  if (len === 0) return { frame: { type: 'unsupported-version', version: buf[offset + 1]! }, bytesUsed: 2 };
  if (buf.length - offset < len) return 'need-more';
  return { frame: decodeFrameAt(buf, offset, len), bytesUsed: len };
}

/**
 * Incremental decoder for one negotiation frame arriving in chunks of any
 * size. Memory is bounded: at most one header (4 bytes) and then one frame
 * (≤ 8 KiB, allocated only after its length passed the bound) are buffered.
 * When the frame is whole in one chunk it is decoded in place (no copy).
 */
export class FrameReader {
  private frameBuf: Buffer | undefined; // partial frame (allocated once its length is known)
  private header: Buffer | undefined; // partial header (< 4 bytes seen)
  private have = 0;
  private done = false;

  /** Bytes held while waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.have;
  }

  /**
   * Bytes that would complete what is outstanding: the header, then the frame (0 once done).
   * Glue that reads exactly this many never takes a payload byte from its stream.
   */
  get wanted(): number {
    if (this.done) return 0;
    return (this.frameBuf === undefined ? HEADER_LENGTH : this.frameBuf.length) - this.have;
  }

  /**
   * Feed the next chunk. Returns null while the frame is incomplete; the
   * decoded frame and the bytes after it (`rest`, possibly empty, a view of
   * `chunk`) when complete. Throws PnetError('BAD_FRAME'). Single use.
   */
  push(chunk: Buffer): { frame: Frame; rest: Buffer } | null {
    if (this.done) throw new PnetError('ERR_BAD_OPTION', 'FrameReader already produced its frame');
    if (this.have === 0) {
      // fast path: nothing buffered, decode straight from the chunk
      const len = frameLength(chunk, 0, chunk.length);
      if (len === 0) return this.finish({ type: 'unsupported-version', version: chunk[1]! }, chunk.subarray(2));
      if (len > 0 && chunk.length >= len) return this.finish(decodeFrameAt(chunk, 0, len), chunk.subarray(len));
      if (len > 0) {
        this.frameBuf = Buffer.allocUnsafe(len);
        chunk.copy(this.frameBuf, 0);
      } else {
        this.header = Buffer.allocUnsafe(HEADER_LENGTH);
        chunk.copy(this.header, 0);
      }
      this.have = chunk.length;
      return null;
    }
    let pos = 0;
    if (this.frameBuf === undefined) {
      const header = this.header!;
      // fill the header a byte at a time so a bad magic/version fails at once
      while (pos < chunk.length && this.have < HEADER_LENGTH) {
        header[this.have++] = chunk[pos++]!;
        const len = frameLength(header, 0, this.have);
        if (len === 0) return this.finish({ type: 'unsupported-version', version: header[1]! }, chunk.subarray(pos));
        if (len > 0) {
          this.frameBuf = Buffer.allocUnsafe(len);
          header.copy(this.frameBuf, 0, 0, HEADER_LENGTH);
          this.header = undefined;
        }
      }
      if (this.frameBuf === undefined) return null;
    }
    const frame = this.frameBuf;
    const take = Math.min(frame.length - this.have, chunk.length - pos);
    chunk.copy(frame, this.have, pos, pos + take);
    this.have += take;
    pos += take;
    if (this.have < frame.length) return null;
    return this.finish(decodeFrameAt(frame, 0, frame.length), chunk.subarray(pos));
  }

  private finish(frame: Frame, rest: Buffer): { frame: Frame; rest: Buffer } {
    this.done = true;
    this.frameBuf = undefined;
    this.header = undefined;
    this.have = 0;
    return { frame, rest };
  }
}
