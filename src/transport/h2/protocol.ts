/**
 * What pnet puts on the wire over HTTP/2 (see docs/TRANSPORT.md, "HTTP/2 over TLS"):
 * request paths, the two pnet headers, reset and close codes, and the control stream's
 * one message.
 */

/** The dialer's first request; its response body carries the dialed side's stream demands. */
export const CONTROL_PATH = '/pnet/1/control';
/** A dialer-opened request held by the dialed side until it opens a stream (its response starts it). */
export const PARKED_PATH = '/pnet/1/park';
/** A stream the dialer opens. */
export const STREAM_PATH = '/pnet/1/stream';
/** Carried on the control request and its response: how many streams the sender lets its peer open. */
export const MAX_STREAMS_HEADER = 'pnet-max-streams';

/**
 * Trailers that end every pnet stream's sending side: the receiver treats an end of stream as
 * genuine only after them (Node also reports resets and lost connections as an end of stream).
 * Node sends empty trailers as an empty DATA frame, hence one field; HPACK makes it one byte after the first.
 */
export const END_TRAILERS = Object.freeze({ 'pnet-end': '1' });

/** Response HEADERS of a pnet stream: 200, no `date` header (Node adds one unless told not to). */
export const RESPONSE_HEADERS = Object.freeze({ ':status': 200 });
export const RESPONSE_OPTIONS = Object.freeze({ endStream: false, waitForTrailers: true, sendDate: false });

/**
 * HTTP/2 error codes 0x0-0xff are HTTP/2's own (NO_ERROR, PROTOCOL_ERROR, CANCEL, ...), and Node
 * itself sends some of them. A pnet reset or close code `c` travels as `CODE_BASE + c`, so a code
 * received below CODE_BASE always means HTTP/2 (or Node) ended the stream, never the application.
 */
export const CODE_BASE = 0x100;
/** Largest pnet code that fits an HTTP/2 error code (32 bits). Larger codes are sent as this. */
export const MAX_CODE = 0xffff_ffff - CODE_BASE;

export function toWireCode(code: number): number {
  if (!Number.isInteger(code) || code < 0) return CODE_BASE;
  return CODE_BASE + Math.min(code, MAX_CODE);
}

/** The pnet code a wire code carries, or undefined when HTTP/2 itself chose it. */
export function fromWireCode(wire: number | undefined): number | undefined {
  return wire !== undefined && wire >= CODE_BASE ? wire - CODE_BASE : undefined;
}

const H2_ERRORS = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];

/** "code 7" for pnet codes, "HTTP/2 error CANCEL" for HTTP/2's own. */
export function describeWireCode(wire: number | undefined): string {
  const code = fromWireCode(wire);
  if (code !== undefined) return `code ${code}`;
  if (wire === undefined) return 'no code';
  return `HTTP/2 error ${H2_ERRORS[wire] ?? `0x${wire.toString(16)}`}`;
}

/**
 * Control stream message, dialed side to dialer: "park this many more requests", a 32-bit
 * big-endian count. The only message; 4 bytes each.
 */
export const DEMAND_SIZE = 4;

export function encodeDemand(count: number): Buffer {
  const bytes = Buffer.allocUnsafe(DEMAND_SIZE);
  bytes.writeUInt32BE(count, 0);
  return bytes;
}

/** Parses a header value as a stream limit (a positive 31-bit integer), or undefined. */
export function parseLimit(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^[1-9][0-9]{0,9}$/.test(value)) return undefined;
  const limit = Number(value);
  return limit <= 0x7fff_ffff ? limit : undefined;
}
