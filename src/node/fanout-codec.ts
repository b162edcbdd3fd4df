/**
 * Fan-out wire format (docs/FANOUT.md): the origin's signed envelope, the leg a
 * node sends each next hop (envelope + that hop's share of the targets), and the frames that
 * come back up the tree (results, signed by the node that answered). Pure functions, no IO (the async checks run off the event loop, fanout-signer.ts).
 */
import { randomBytes } from 'node:crypto';
import { PnetError, type PnetErrorCode } from '../errors.js';
import { verifySignature, verifySignatureAsync, type NodeId } from '../identity/index.js';
import { verifyOffThread } from './fanout-signer.js';
import { isValidChannelName } from '../channel/index.js';
import { KEY_BYTES, keyBytesOf, nodeIdAt } from '../routing/index.js';

export const FANOUT_VERSION = 1;
export const SIGNATURE_BYTES = 64;
export const REQUEST_ID_BYTES = 16;
/** Largest payload a fan-out carries. */
export const MAX_FANOUT_PAYLOAD = 4 * 1024 * 1024;
/** Largest reply a target may send (the origin may ask for less). */
export const MAX_FANOUT_REPLY = 16 * 1024 * 1024;
export const MAX_FANOUT_TARGETS = 100_000;
export const MAX_FANOUT_METADATA_BYTES = 4096;
export const MAX_ERROR_MESSAGE_BYTES = 1024;
/** Envelope flag: every node of the network may answer (no per-target tickets). */
export const FLAG_ALL = 1;
/** Leg flag: the receiving hop expands the target list to every node it knows. */
export const LEG_EXPAND = 1;

const REQUEST_DOMAIN = Buffer.from('pnet/fanout/1 request\0');
const TICKET_DOMAIN = Buffer.from('pnet/fanout/1 ticket\0');
const REPLY_DOMAIN = Buffer.from('pnet/fanout/1 reply\0');
const ENVELOPE_FIXED = 1 + 1 + REQUEST_ID_BYTES + KEY_BYTES + 8 + 4 + 4;
const LEG_FIXED = 1 + 1 + 1 + 4 + 4;
export const MAX_ENVELOPE_BYTES = ENVELOPE_FIXED + 1 + 64 + 2 + MAX_FANOUT_METADATA_BYTES + 4 + MAX_FANOUT_PAYLOAD + SIGNATURE_BYTES;
export const MAX_LEG_BYTES = LEG_FIXED + MAX_ENVELOPE_BYTES + 4 + MAX_FANOUT_TARGETS * (KEY_BYTES + SIGNATURE_BYTES);

/** What the origin signs once per fan-out. */
export interface Envelope {
  readonly flags: number;
  readonly requestId: Buffer;
  readonly origin: NodeId;
  /** Origin's wall clock, ms since the epoch. */
  readonly issuedAt: number;
  readonly ttlMs: number;
  readonly maxReplyBytes: number;
  readonly channel: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly payload: Buffer;
  /** The encoded envelope, signature included: forwarded verbatim by every hop. */
  readonly bytes: Buffer;
}

export interface Signer {
  readonly nodeId: NodeId;
  sign(data: Uint8Array): Uint8Array;
}

export function encodeEnvelope(
  signer: Signer,
  fields: { all: boolean; ttlMs: number; maxReplyBytes: number; channel: string; metadata: Record<string, string>; payload: Uint8Array },
  issuedAt = Date.now(),
): Envelope {
  const channel = Buffer.from(fields.channel, 'latin1');
  const metadata = Buffer.from(Object.keys(fields.metadata).length === 0 ? '' : JSON.stringify(fields.metadata));
  if (metadata.length > MAX_FANOUT_METADATA_BYTES) throw new PnetError('ERR_BAD_OPTION', `fan-out metadata over ${MAX_FANOUT_METADATA_BYTES} bytes`);
  const body = Buffer.allocUnsafe(ENVELOPE_FIXED + 1 + channel.length + 2 + metadata.length + 4 + fields.payload.length);
  const requestId = randomBytes(REQUEST_ID_BYTES);
  let o = body.writeUInt8(FANOUT_VERSION, 0);
  o = body.writeUInt8(fields.all ? FLAG_ALL : 0, o);
  o += requestId.copy(body, o);
  o += keyBytesOf(signer.nodeId).copy(body, o);
  o = body.writeBigUInt64BE(BigInt(issuedAt), o);
  o = body.writeUInt32BE(fields.ttlMs, o);
  o = body.writeUInt32BE(fields.maxReplyBytes, o);
  o = body.writeUInt8(channel.length, o);
  o += channel.copy(body, o);
  o = body.writeUInt16BE(metadata.length, o);
  o += metadata.copy(body, o);
  o = body.writeUInt32BE(fields.payload.length, o);
  body.set(fields.payload, o);
  const signature = signer.sign(Buffer.concat([REQUEST_DOMAIN, body]));
  return decodeEnvelope(Buffer.concat([body, signature]));
}

/**
 * Envelopes whose signature verified, by signature, for every node of this process: N nodes in
 * one process (tests, simulations) would otherwise verify each fan-out N times. A hit needs the
 * exact same bytes, so it answers what a fresh verification would.
 */
const verifiedEnvelopes = new Map<string, Buffer>();
const VERIFIED_ENVELOPES = 256;
/** Larger envelopes are verified every time (the cache stays under 16 MiB). */
const MAX_CACHED_ENVELOPE = 64 * 1024;

/** Parses and verifies an envelope; throws BAD_FRAME (malformed) or UNAUTHORIZED (bad signature). */
export function decodeEnvelope(bytes: Buffer): Envelope {
  const bad = (what: string): never => {
    throw new PnetError('BAD_FRAME', `fan-out envelope: ${what}`);
  };
  if (bytes.length < ENVELOPE_FIXED + 1 + 2 + 4 + SIGNATURE_BYTES || bytes.length > MAX_ENVELOPE_BYTES) bad('bad length');
  if (bytes[0] !== FANOUT_VERSION) throw new PnetError('VERSION', `fan-out version ${bytes[0]} not supported`);
  const flags = bytes[1]!;
  let o = 2;
  const requestId = bytes.subarray(o, (o += REQUEST_ID_BYTES));
  const origin = nodeIdAt(bytes, o);
  o += KEY_BYTES;
  const issuedAt = Number(bytes.readBigUInt64BE(o));
  o += 8;
  const ttlMs = bytes.readUInt32BE(o);
  const maxReplyBytes = bytes.readUInt32BE(o + 4);
  o += 8;
  const channelLength = bytes[o++]!;
  const end = bytes.length - SIGNATURE_BYTES;
  if (o + channelLength + 2 > end) bad('truncated');
  const channel = bytes.toString('latin1', o, (o += channelLength));
  if (!isValidChannelName(channel)) bad('invalid channel name');
  const metadataLength = bytes.readUInt16BE(o);
  o += 2;
  if (metadataLength > MAX_FANOUT_METADATA_BYTES || o + metadataLength + 4 > end) bad('bad metadata length');
  const metadata = metadataLength === 0 ? {} : parseMetadata(bytes.toString('utf8', o, o + metadataLength));
  o += metadataLength;
  const payloadLength = bytes.readUInt32BE(o);
  o += 4;
  if (o + payloadLength !== end) bad('payload length does not match');
  if (maxReplyBytes > MAX_FANOUT_REPLY) bad('reply limit too large');
  const signature = bytes.toString('latin1', end);
  if (verifiedEnvelopes.get(signature)?.equals(bytes) !== true) {
    if (!verifySignature(origin, Buffer.concat([REQUEST_DOMAIN, bytes.subarray(0, end)]), bytes.subarray(end))) {
      throw new PnetError('UNAUTHORIZED', `fan-out envelope not signed by its origin ${origin}`);
    }
    if (bytes.length <= MAX_CACHED_ENVELOPE) {
      if (verifiedEnvelopes.size >= VERIFIED_ENVELOPES) verifiedEnvelopes.delete(verifiedEnvelopes.keys().next().value!);
      verifiedEnvelopes.set(signature, Buffer.from(bytes));
    }
  }
  return { flags, requestId, origin, issuedAt, ttlMs, maxReplyBytes, channel, metadata, payload: bytes.subarray(o, end), bytes };
}

function parseMetadata(text: string): Record<string, string> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new PnetError('BAD_FRAME', 'fan-out envelope: metadata is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new PnetError('BAD_FRAME', 'fan-out envelope: metadata is not an object');
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new PnetError('BAD_FRAME', 'fan-out envelope: metadata values must be strings');
    out[key] = v;
  }
  return out;
}

/** The origin's permission for one target to answer a listed (not FLAG_ALL) fan-out. */
export function signTicket(signer: Signer, requestId: Buffer, target: Uint8Array): Uint8Array {
  return signer.sign(Buffer.concat([TICKET_DOMAIN, requestId, target]));
}

export function verifyTicket(envelope: Envelope, target: Uint8Array, ticket: Uint8Array): boolean {
  return verifySignature(envelope.origin, Buffer.concat([TICKET_DOMAIN, envelope.requestId, target]), ticket);
}

// ---- legs -----------------------------------------------------------------

export interface Leg {
  readonly flags: number;
  readonly hopLimit: number;
  /** Time left for this leg's whole subtree, ms. */
  readonly budgetMs: number;
  readonly envelope: Buffer;
  /** Packed 32-byte keys. */
  readonly targets: Buffer;
  /** Packed 64-byte tickets, one per target (empty for FLAG_ALL envelopes). */
  readonly tickets: Buffer;
}

/** A leg's bytes, after `headroom` bytes left free (a v2 link's frame header goes there: no copy of the leg). */
export function encodeLeg(leg: Leg, headroom = 0): Buffer {
  const out = Buffer.allocUnsafe(headroom + LEG_FIXED + leg.envelope.length + 4 + leg.targets.length + leg.tickets.length);
  let o = out.writeUInt8(FANOUT_VERSION, headroom);
  o = out.writeUInt8(leg.flags, o);
  o = out.writeUInt8(leg.hopLimit, o);
  o = out.writeUInt32BE(Math.max(0, Math.min(0xffff_ffff, Math.floor(leg.budgetMs))), o);
  o = out.writeUInt32BE(leg.envelope.length, o);
  o += leg.envelope.copy(out, o);
  o = out.writeUInt32BE(leg.targets.length / KEY_BYTES, o);
  o += leg.targets.copy(out, o);
  leg.tickets.copy(out, o);
  return out;
}

/** Parses a leg (not the envelope inside it); throws BAD_FRAME. */
export function decodeLeg(bytes: Buffer): Leg {
  const bad = (what: string): never => {
    throw new PnetError('BAD_FRAME', `fan-out leg: ${what}`);
  };
  if (bytes.length < LEG_FIXED + 4) bad('truncated');
  if (bytes[0] !== FANOUT_VERSION) throw new PnetError('VERSION', `fan-out version ${bytes[0]} not supported`);
  const envelopeLength = bytes.readUInt32BE(7);
  if (envelopeLength > MAX_ENVELOPE_BYTES || LEG_FIXED + envelopeLength + 4 > bytes.length) bad('bad envelope length');
  let o = LEG_FIXED;
  const envelope = bytes.subarray(o, (o += envelopeLength));
  const count = bytes.readUInt32BE(o);
  o += 4;
  if (count > MAX_FANOUT_TARGETS) bad(`more than ${MAX_FANOUT_TARGETS} targets`);
  const perTarget = envelopeIsTicketed(envelope) ? KEY_BYTES + SIGNATURE_BYTES : KEY_BYTES;
  if (o + count * perTarget !== bytes.length) bad('target list length does not match');
  const targets = bytes.subarray(o, (o += count * KEY_BYTES));
  return { flags: bytes[1]!, hopLimit: bytes[2]!, budgetMs: bytes.readUInt32BE(3), envelope, targets, tickets: bytes.subarray(o) };
}

/** Whether an (undecoded) envelope lists its targets, so legs carry tickets. */
export function envelopeIsTicketed(envelope: Buffer): boolean {
  return envelope.length > 1 && (envelope[1]! & FLAG_ALL) === 0;
}

// ---- frames back up the tree ----------------------------------------------

export const FRAME_RESULT = 1;
/** A hop that expanded the target list tells its parent whom to expect. */
export const FRAME_EXPECT = 2;
/** Answered by the target, signed. */
export const STATUS_OK = 0;
/** Failed at the target (unknown channel, refused, handler error), signed. */
export const STATUS_ERROR = 1;
/** Failed on the way (unreachable, deadline, hop limit), reported unsigned by a hop. */
export const STATUS_HOP_ERROR = 2;
/** type, key, hops, status, body length. */
const RESULT_FIXED = 1 + KEY_BYTES + 1 + 1 + 4;
/** Offset of the hop count in a result frame body: relaying nodes bump it in place. */
export const RESULT_HOPS_OFFSET = 4 + 1 + KEY_BYTES;

/** A length-prefixed result frame. The hop count starts at 0 and each relaying node bumps it. */
export function encodeResult(signer: Signer | undefined, requestId: Buffer, target: Uint8Array, status: number, body: Uint8Array): Buffer {
  const signed = status !== STATUS_HOP_ERROR;
  const out = unsignedResult(target, status, body, signed);
  if (signed) {
    if (signer === undefined) throw new Error('a signed result needs a signer');
    out.set(signer.sign(replySigned(requestId, target, status, body)), out.length - SIGNATURE_BYTES);
  }
  return out;
}

/** A result frame with room for its signature at the end when `signed`. */
function unsignedResult(target: Uint8Array, status: number, body: Uint8Array, signed: boolean): Buffer {
  const length = RESULT_FIXED + body.length + (signed ? SIGNATURE_BYTES : 0);
  const out = Buffer.allocUnsafe(4 + length);
  let o = out.writeUInt32BE(length, 0);
  o = out.writeUInt8(FRAME_RESULT, o);
  out.set(target, o);
  o += KEY_BYTES;
  o = out.writeUInt8(0, o);
  o = out.writeUInt8(status, o);
  o = out.writeUInt32BE(body.length, o);
  out.set(body, o);
  return out;
}

function replySigned(requestId: Buffer, target: Uint8Array, status: number, body: Uint8Array): Buffer {
  return Buffer.concat([REPLY_DOMAIN, requestId, target, Buffer.of(status), body]);
}

export function encodeErrorBody(code: PnetErrorCode, message: string): Buffer {
  const text = Buffer.from(message).subarray(0, MAX_ERROR_MESSAGE_BYTES);
  return Buffer.concat([Buffer.of(code.length), Buffer.from(code, 'latin1'), text]);
}

export function decodeErrorBody(body: Buffer): PnetError {
  const length = body[0] ?? 0;
  const code = body.toString('latin1', 1, 1 + length);
  const message = body.toString('utf8', 1 + length, Math.min(body.length, 1 + length + MAX_ERROR_MESSAGE_BYTES));
  return new PnetError(/^[A-Z_]{1,40}$/.test(code) ? (code as PnetErrorCode) : 'BAD_FRAME', message);
}

export function encodeExpect(targets: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + 1 + targets.length);
  out.writeUInt32BE(1 + targets.length, 0);
  out[4] = FRAME_EXPECT;
  targets.copy(out, 5);
  return out;
}

export type UpFrame =
  | { readonly type: typeof FRAME_EXPECT; readonly targets: Buffer }
  | {
      readonly type: typeof FRAME_RESULT;
      /** The whole frame, length prefix included (relayed upward as is). */
      readonly frame: Buffer;
      readonly target: Buffer;
      readonly hops: number;
      readonly status: number;
      readonly body: Buffer;
      readonly signature: Buffer | undefined;
    };

/**
 * Splits a byte stream into length-prefixed frames, each bounded before it is buffered. Linear:
 * chunks are collected and concatenated once, when the frame they belong to is complete.
 */
export class UpFrameReader {
  private pending: Buffer[] = [];
  private buffered = 0;
  /** Bytes of the frame in progress, length prefix included (undefined until its prefix is in). */
  private frameBytes: number | undefined;

  constructor(private readonly maxFrameBytes: number) {}

  /** Frames completed by `chunk`; throws BAD_FRAME on a malformed or oversized frame. */
  push(chunk: Buffer): UpFrame[] {
    this.pending.push(chunk);
    this.buffered += chunk.length;
    const out: UpFrame[] = [];
    while (this.buffered >= 4) {
      if (this.frameBytes === undefined) {
        const length = this.peekLength();
        if (length === 0 || length > this.maxFrameBytes) throw new PnetError('BAD_FRAME', `fan-out frame of ${length} bytes (limit ${this.maxFrameBytes})`);
        this.frameBytes = 4 + length;
      }
      if (this.buffered < this.frameBytes) break;
      const head = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.buffered);
      const frame = head.subarray(0, this.frameBytes);
      const rest = head.subarray(this.frameBytes);
      this.pending = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      this.frameBytes = undefined;
      out.push(parseUpFrame(frame));
    }
    return out;
  }

  /** The 4-byte length prefix, which may straddle chunks (only those 4 bytes are copied). */
  private peekLength(): number {
    const first = this.pending[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    const prefix = Buffer.allocUnsafe(4);
    let o = 0;
    for (const part of this.pending) {
      o += part.copy(prefix, o, 0, Math.min(part.length, 4 - o));
      if (o === 4) break;
    }
    return prefix.readUInt32BE(0);
  }
}

/** Parses one whole result frame (one this node made). */
export function parseResult(frame: Buffer): ResultFrame {
  const parsed = parseUpFrame(frame);
  if (parsed.type !== FRAME_RESULT) throw new PnetError('BAD_FRAME', 'not a result frame');
  return parsed;
}

export type ResultFrame = Extract<UpFrame, { type: typeof FRAME_RESULT }>;

/** Whole upstream frames packed back to back (a v2 link's FRAMES body), each bounded by `maxFrameBytes`; throws BAD_FRAME. */
export function splitUpFrames(bytes: Buffer, maxFrameBytes: number): UpFrame[] {
  const out: UpFrame[] = [];
  let o = 0;
  while (o < bytes.length) {
    if (bytes.length - o < 4) throw new PnetError('BAD_FRAME', 'fan-out frame: truncated length');
    const length = bytes.readUInt32BE(o);
    if (length === 0 || length > maxFrameBytes || o + 4 + length > bytes.length) throw new PnetError('BAD_FRAME', `fan-out frame of ${length} bytes (limit ${maxFrameBytes})`);
    out.push(parseUpFrame(bytes.subarray(o, (o += 4 + length))));
  }
  return out;
}

function parseUpFrame(frame: Buffer): UpFrame {
  const type = frame[4];
  if (type === FRAME_EXPECT) {
    const targets = frame.subarray(5);
    if (targets.length % KEY_BYTES !== 0 || targets.length / KEY_BYTES > MAX_FANOUT_TARGETS) throw new PnetError('BAD_FRAME', 'fan-out EXPECT: bad target list');
    return { type, targets };
  }
  if (type !== FRAME_RESULT || frame.length < 4 + RESULT_FIXED) throw new PnetError('BAD_FRAME', `fan-out frame type ${type}`);
  let o = 5;
  const target = frame.subarray(o, (o += KEY_BYTES));
  const hops = frame[o++]!;
  const status = frame[o++]!;
  const bodyLength = frame.readUInt32BE(o);
  o += 4;
  const signed = status === STATUS_OK || status === STATUS_ERROR;
  if (status > STATUS_HOP_ERROR || o + bodyLength + (signed ? SIGNATURE_BYTES : 0) !== frame.length) throw new PnetError('BAD_FRAME', 'fan-out result: bad length or status');
  const body = frame.subarray(o, o + bodyLength);
  return { type, frame, target, hops, status, body, signature: signed ? frame.subarray(o + bodyLength) : undefined };
}

/** verifyResult off the event loop's thread (fanout-signer.ts). */
export function verifyResultAsync(requestId: Buffer, result: ResultFrame): Promise<boolean> {
  const signature = result.signature;
  if (signature === undefined) return Promise.resolve(false);
  const data = replySigned(requestId, result.target, result.status, result.body);
  return verifyOffThread(result.target, data, signature, () => verifySignatureAsync(nodeIdAt(result.target, 0), data, signature));
}

/** Whether a signed result really comes from its target, for this request. */
export function verifyResult(requestId: Buffer, result: ResultFrame): boolean {
  if (result.signature === undefined) return false;
  return verifySignature(nodeIdAt(result.target, 0), replySigned(requestId, result.target, result.status, result.body), result.signature);
}
