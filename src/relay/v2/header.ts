/**
 * The relayed datagram of relay v2: a fixed 66-byte header in front of one inner (end-to-end) QUIC
 * packet, carried in a QUIC DATAGRAM frame (RFC 9221) on each neighbour connection of the route.
 * Layout, sizes and test vectors: docs/RELAY.md.
 */
import { PnetError } from '../../errors.js';
import { KEY_BYTES } from '../../routing/index.js';

/** Byte 0: high nibble the version (1), low nibble the type. */
export const KIND_DATA = 0x10;
/** An error report travelling back to the source of a DATA datagram a hop could not forward. */
export const KIND_ERROR = 0x11;
export const HOP_LIMIT_OFFSET = 1;
export const DST_OFFSET = 2;
export const SRC_OFFSET = DST_OFFSET + KEY_BYTES;
/** kind + hop limit + destination key + source key. */
export const HEADER_BYTES = SRC_OFFSET + KEY_BYTES;
/** Hop limit an opener puts on its datagrams (the old stream relay's `maxHops`). */
export const DEFAULT_HOP_LIMIT = 16;

/** What quiche 0.18 keeps back from a DATAGRAM frame: short header with a 16-byte id (17), packet number (4), AEAD tag (16), frame type + 2-byte length (3). */
export const DATAGRAM_FRAME_OVERHEAD = 1 + 16 + 4 + 16 + 3;
/** The UDP payload every pnet QUIC link sends by default. */
export const OUTER_DATAGRAM_SIZE = 1350;
/** DATAGRAM frame payload room on a default link (quiche's dgramMaxWritableLen at 1350: 1310). */
export const DATAGRAM_ROOM = OUTER_DATAGRAM_SIZE - DATAGRAM_FRAME_OVERHEAD;
/** Largest inner QUIC packet that fits a default link: 1244, above RFC 9000's 1200. */
export const INNER_DATAGRAM_SIZE = DATAGRAM_ROOM - HEADER_BYTES;
/** RFC 9000 section 14: every QUIC path must carry 1200-byte UDP payloads. */
export const MIN_INNER_DATAGRAM_SIZE = 1200;
/** quiche never sends a UDP payload above 16383 bytes, so no inner packet is longer. */
export const MAX_INNER_DATAGRAM_SIZE = 16383;
/** Largest relayed datagram anyone accepts; longer is malformed before anything is read. */
export const MAX_RELAYED_BYTES = HEADER_BYTES + MAX_INNER_DATAGRAM_SIZE;

/** Error report body: code, the original destination, then this many bytes of the inner packet. */
export const QUOTE_BYTES = 32;
export const ERROR_CODE_OFFSET = HEADER_BYTES;
export const ERROR_DST_OFFSET = ERROR_CODE_OFFSET + 1;
export const ERROR_QUOTE_OFFSET = ERROR_DST_OFFSET + KEY_BYTES;
/** Every error report has exactly this size: 131 bytes. */
export const ERROR_BYTES = ERROR_QUOTE_OFFSET + QUOTE_BYTES;

/** The opener-facing errors a hop may report, by their byte on the wire. */
/** Relay error report codes (wire value: index + 1). UNKNOWN_CONNECTION: the destination itself has no connection for the packet (it restarted, or closed it). */
export const ERROR_CODES = ['UNREACHABLE', 'HOP_LIMIT', 'RELAY_REFUSED', 'UNKNOWN_CONNECTION'] as const;
export type RelayErrorCode = (typeof ERROR_CODES)[number];

/** Why a relayed datagram was not delivered or forwarded (the names of the drop counters). */
export type DropReason =
  | 'malformed' // does not parse: unknown kind, bad length, hop limit 0, destination = source
  | 'overBudget' // its inbound neighbour spent its datagrams/s or bytes/s budget
  | 'refused' // this node's forwarding policy said no
  | 'hopLimit' // hop limit spent before the destination
  | 'noRoute' // no next hop for the destination
  | 'loop' // would go back to the neighbour it came from, or came back to its own source
  | 'tooBig'; // longer than the next link's DATAGRAM room

/** A relayed datagram, decoded (copies; the forwarder reads the header in place instead). */
export interface RelayedDatagram {
  readonly kind: 'data' | 'error';
  readonly hopLimit: number;
  /** 32-byte Ed25519 public key of the destination. */
  readonly destination: Buffer;
  /** 32-byte key of the source as the frame claims it: a return address, never an identity. */
  readonly source: Buffer;
  /** 'data': the inner QUIC packet. */
  readonly packet?: Buffer;
  /** 'error': what went wrong, for which destination, and the start of the inner packet that failed. */
  readonly error?: { readonly code: RelayErrorCode; readonly destination: Buffer; readonly quote: Buffer };
}

export type DecodeResult = { ok: true; value: RelayedDatagram } | { ok: false; reason: 'malformed'; error: PnetError };

/** Same 32 key bytes at `a[ao..]` and `b[bo..]` (no allocation). */
export function sameKey(a: Uint8Array, ao: number, b: Uint8Array, bo: number): boolean {
  for (let i = 0; i < KEY_BYTES; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

/**
 * What is wrong with the header of `bytes`, or undefined when a hop may handle it: a known kind,
 * a length within bounds (an error report exactly ERROR_BYTES), hop limit >= 1, destination and
 * source differ. Reads nothing past the header.
 */
export function headerProblem(bytes: Uint8Array): string | undefined {
  const length = bytes.length;
  if (length <= HEADER_BYTES) return `${length} bytes: shorter than a header and one byte`;
  if (length > MAX_RELAYED_BYTES) return `${length} bytes: over ${MAX_RELAYED_BYTES}`;
  const kind = bytes[0];
  if (kind === KIND_ERROR) {
    if (length !== ERROR_BYTES) return `error report of ${length} bytes, not ${ERROR_BYTES}`;
  } else if (kind !== KIND_DATA) {
    return `unknown kind 0x${(kind ?? 0).toString(16).padStart(2, '0')}`;
  }
  if (bytes[HOP_LIMIT_OFFSET] === 0) return 'hop limit 0';
  if (sameKey(bytes, DST_OFFSET, bytes, SRC_OFFSET)) return 'destination and source are the same node';
  return undefined;
}

/** Writes a DATA header into `out[offset..offset+66]`; the inner packet goes right after it. */
export function writeDataHeader(out: Uint8Array, offset: number, hopLimit: number, destination: Uint8Array, source: Uint8Array): void {
  checkHeaderInput(hopLimit, destination, source);
  out[offset] = KIND_DATA;
  out[offset + HOP_LIMIT_OFFSET] = hopLimit;
  out.set(destination.subarray(0, KEY_BYTES), offset + DST_OFFSET);
  out.set(source.subarray(0, KEY_BYTES), offset + SRC_OFFSET);
}

/** A DATA datagram carrying `packet` (a copy). Throws on bad local input, never on remote data. */
export function encodeData(hopLimit: number, destination: Uint8Array, source: Uint8Array, packet: Uint8Array): Buffer {
  if (packet.length < 1 || packet.length > MAX_INNER_DATAGRAM_SIZE) throw new RangeError(`inner packet of ${packet.length} bytes: need 1..${MAX_INNER_DATAGRAM_SIZE}`);
  const out = Buffer.allocUnsafe(HEADER_BYTES + packet.length);
  writeDataHeader(out, 0, hopLimit, destination, source);
  out.set(packet, HEADER_BYTES);
  return out;
}

/**
 * Writes an error report into `out[0..131]` about the DATA datagram `trigger` (it goes back to
 * the trigger's source): `reporter` is this node's key, the quote the first 32 bytes of the inner
 * packet, zero-padded.
 */
export function writeErrorReport(out: Uint8Array, hopLimit: number, reporter: Uint8Array, code: RelayErrorCode, trigger: Uint8Array): void {
  out[0] = KIND_ERROR;
  out[HOP_LIMIT_OFFSET] = hopLimit;
  out.set(trigger.subarray(SRC_OFFSET, SRC_OFFSET + KEY_BYTES), DST_OFFSET);
  out.set(reporter.subarray(0, KEY_BYTES), SRC_OFFSET);
  out[ERROR_CODE_OFFSET] = ERROR_CODES.indexOf(code) + 1;
  out.set(trigger.subarray(DST_OFFSET, DST_OFFSET + KEY_BYTES), ERROR_DST_OFFSET);
  const quoted = Math.min(QUOTE_BYTES, trigger.length - HEADER_BYTES);
  out.set(trigger.subarray(HEADER_BYTES, HEADER_BYTES + quoted), ERROR_QUOTE_OFFSET);
  out.fill(0, ERROR_QUOTE_OFFSET + quoted, ERROR_BYTES);
}

/** Decodes any relayed datagram; garbage gives `{ ok: false }` with a BAD_FRAME PnetError, never a throw. */
export function decodeRelayed(bytes: Uint8Array): DecodeResult {
  const problem = headerProblem(bytes);
  if (problem !== undefined) return malformed(problem);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const base = {
    hopLimit: buf[HOP_LIMIT_OFFSET]!,
    destination: Buffer.from(buf.subarray(DST_OFFSET, DST_OFFSET + KEY_BYTES)),
    source: Buffer.from(buf.subarray(SRC_OFFSET, SRC_OFFSET + KEY_BYTES)),
  };
  if (buf[0] === KIND_DATA) return { ok: true, value: { kind: 'data', ...base, packet: Buffer.from(buf.subarray(HEADER_BYTES)) } };
  const code = ERROR_CODES[buf[ERROR_CODE_OFFSET]! - 1];
  if (code === undefined) return malformed(`unknown error code ${buf[ERROR_CODE_OFFSET]!}`);
  const destination = Buffer.from(buf.subarray(ERROR_DST_OFFSET, ERROR_DST_OFFSET + KEY_BYTES));
  const quote = Buffer.from(buf.subarray(ERROR_QUOTE_OFFSET, ERROR_BYTES));
  return { ok: true, value: { kind: 'error', ...base, error: { code, destination, quote } } };
}

function malformed(detail: string): DecodeResult {
  return { ok: false, reason: 'malformed', error: new PnetError('BAD_FRAME', `relayed datagram: ${detail}`) };
}

function checkHeaderInput(hopLimit: number, destination: Uint8Array, source: Uint8Array): void {
  if (!Number.isInteger(hopLimit) || hopLimit < 1 || hopLimit > 255) throw new RangeError(`hop limit must be 1..255, got ${hopLimit}`);
  if (destination.length < KEY_BYTES || source.length < KEY_BYTES) throw new RangeError(`keys must be ${KEY_BYTES} bytes`);
}
