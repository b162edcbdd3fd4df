/**
 * Binary codec of link-state records and of the routing messages that carry
 * them between neighbours. Sans-IO, synchronous. The byte layout is written
 * down in docs/ROUTING.md; keep the two in step.
 *
 * Record, one fragment of a node's links (all integers unsigned big-endian):
 *
 *   off  size  field
 *     0     4  magic "pnLS" (70 6e 4c 53): also the signature's domain separator
 *     4     1  version (2)
 *     5     1  flags: bit 0 = the origin is a leaf (never a transit node); other bits 0
 *     6    32  origin: raw Ed25519 public key of the node the record describes
 *    38     8  sequence number (u64)
 *    46     4  lifetime in ms (>= 1)
 *    50     2  fragment number (each fragment is a record of its own: newer sequence wins per fragment)
 *    52     2  link count n (<= maxLinks, at most MAX_LINKS)
 *    54  36*n  links, strictly ascending by key bytes: 32-byte neighbour key, 1 byte link flags
 *              (bit 0 = stub: the neighbour is a leaf attached to the origin), u24 cost (1..MAX_COST)
 *  54+36n  64  Ed25519 signature by the origin over bytes [0, 54+36n)
 *
 * Message (what a 'send' action carries):
 *
 *     0     1  type 0xB1 (link-state records)
 *     1     1  version (2)
 *     2     2  entry count (>= 1)
 *     4   ...  entries: u32 remaining lifetime (ms), u32 record length, record
 *
 * Decoders bound every length before slicing or allocating and never throw on
 * remote input: they return a drop reason instead.
 */
import { Buffer } from 'node:buffer';
import { nodeIdFromPublicKey, nodeIdToBytes, verifySignature, type NodeId } from '../../identity/index.js';

/** A directed link out of a node, with its cost (integer >= 1). */
export interface Link {
  readonly to: NodeId;
  readonly cost: number;
  /** In a record: `to` is a leaf attached to the origin (reachable through it, never transit). Path computers ignore it. */
  readonly stub?: boolean;
}

export const RECORD_MAGIC: readonly number[] = [0x70, 0x6e, 0x4c, 0x53];
export const RECORD_VERSION = 2;
export const RECORD_HEADER_BYTES = 54;
/** Field offsets in a record. */
export const ORIGIN_OFFSET = 6;
export const SEQ_OFFSET = 38;
export const LIFETIME_OFFSET = 46;
export const FRAGMENT_OFFSET = 50;
export const COUNT_OFFSET = 52;
/** Record flag: the origin is a leaf. */
export const RECORD_FLAG_LEAF = 0x01;
/** Link flag (the byte before the cost): the neighbour is a leaf attached to the origin. */
export const LINK_FLAG_STUB = 0x01;
/** Largest fragment number. */
export const MAX_FRAGMENT = 0xffff;
export const LINK_BYTES = 36;
export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
/** Smallest record: no links. */
export const MIN_RECORD_BYTES = RECORD_HEADER_BYTES + SIGNATURE_BYTES;
/** Protocol cap on the links of one record (fragment); a node with more neighbours uses more fragments. */
export const MAX_LINKS = 1024;
/** Largest link cost; keeps path sums exact in a double for any realistic path length. */
export const MAX_COST = 0xffffff;
/** Largest sequence number (u64). */
export const MAX_SEQUENCE = 0xffff_ffff_ffff_ffffn;
export const MAX_LIFETIME_MS = 0xffff_ffff;

export const MESSAGE_TYPE_RECORDS = 0xb1;
export const MESSAGE_VERSION = 2;
export const MESSAGE_HEADER_BYTES = 4;
export const ENTRY_HEADER_BYTES = 8;
export const MAX_ENTRIES = 0xffff;

/** Size of a record with `links` links. */
export function recordBytes(links: number): number {
  return RECORD_HEADER_BYTES + LINK_BYTES * links + SIGNATURE_BYTES;
}

/** Largest record the decoder accepts for a given link cap. */
export function maxRecordBytes(maxLinks: number = MAX_LINKS): number {
  return recordBytes(Math.min(maxLinks, MAX_LINKS));
}

/** Why a record or message was dropped (the names of the router's drop counters). */
export type DropReason =
  | 'forged' // signature does not verify under the origin's key (tampered, or signed by another key)
  | 'unsigned' // signature field all zero
  | 'replayed' // sequence number older than the known one, or same number with other bytes
  | 'oversized' // message, record or link count over its bound
  | 'malformed' // does not parse
  | 'expired' // arrived with no lifetime left
  | 'notNeighbour' // came from a node that is not an up neighbour
  | 'tableFull'; // the map is full (maxRecords, maxTableBytes) and the neighbour charged brought the most

/** A decoded (and, once in the router, verified) link-state record. Immutable; may be shared between routers. */
export interface LinkStateRecord {
  readonly origin: NodeId;
  /** Which of the origin's fragments this is. */
  readonly fragment: number;
  /** The origin is a leaf (its links are never transit). */
  readonly leaf: boolean;
  readonly seq: bigint;
  readonly lifetimeMs: number;
  /** Ascending by key bytes, as signed. */
  readonly links: readonly Link[];
  /** The same links by neighbour id, for the two-way check. */
  readonly linkCost: ReadonlyMap<NodeId, number>;
  /** The whole record, signature included, exactly as signed. */
  readonly bytes: Uint8Array;
}

export interface RecordFields {
  readonly origin: NodeId;
  /** Default 0. */
  readonly fragment?: number;
  /** Default false. */
  readonly leaf?: boolean;
  readonly seq: bigint;
  readonly lifetimeMs: number;
  readonly links: readonly Link[];
}

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; reason: DropReason; detail: string };

function fail<T>(reason: DropReason, detail: string): DecodeResult<T> {
  return { ok: false, reason, detail };
}

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---------------------------------------------------------------------------
// Node id <-> key bytes, cached: every router converts the same few thousand
// keys over and over (and in a simulation, a thousand routers share them).

const ID_CACHE_LIMIT = 1 << 18;
const idByKey = new Map<string, NodeId>();
const keyById = new Map<NodeId, Buffer>();

/** Node id of the 32 key bytes at `offset` of `buf`. */
export function nodeIdAt(buf: Buffer, offset: number): NodeId {
  const k = buf.toString('latin1', offset, offset + KEY_BYTES);
  let id = idByKey.get(k);
  if (id === undefined) {
    id = nodeIdFromPublicKey(buf.subarray(offset, offset + KEY_BYTES));
    if (idByKey.size >= ID_CACHE_LIMIT) idByKey.clear();
    idByKey.set(k, id);
  }
  return id;
}

/** The 32 key bytes of a node id (shared, do not modify). */
export function keyBytesOf(id: NodeId): Buffer {
  let key = keyById.get(id);
  if (key === undefined) {
    key = Buffer.from(nodeIdToBytes(id));
    if (keyById.size >= ID_CACHE_LIMIT) keyById.clear();
    keyById.set(id, key);
  }
  return key;
}

/**
 * A string that sorts like the node id's 32 key bytes (byte-wise, unsigned):
 * the tie-break order of shortest paths, the same as the native table's.
 * (The base32 text of ids does not sort like the bytes: '2'..'7' come before
 * 'a' in ASCII but stand for 26..31.)
 */
export function idOrderKey(id: NodeId): string {
  return keyBytesOf(id).toString('latin1');
}

// ---------------------------------------------------------------------------
// Records

/**
 * Encodes and signs a record. Links are sorted into canonical order (ascending
 * key bytes). Throws RangeError/TypeError on bad local input (a programming
 * error, never remote data).
 */
export function encodeRecord(fields: RecordFields, sign: (data: Uint8Array) => Uint8Array): Uint8Array {
  const { origin, seq, lifetimeMs, links, fragment = 0, leaf = false } = fields;
  if (!Number.isInteger(fragment) || fragment < 0 || fragment > MAX_FRAGMENT) throw new RangeError(`fragment number out of range: ${fragment}`);
  if (typeof seq !== 'bigint' || seq < 0n || seq > MAX_SEQUENCE) throw new RangeError(`sequence number out of range: ${String(seq)}`);
  if (!Number.isInteger(lifetimeMs) || lifetimeMs < 1 || lifetimeMs > MAX_LIFETIME_MS) throw new RangeError(`lifetime out of range: ${lifetimeMs}`);
  if (links.length > MAX_LINKS) throw new RangeError(`at most ${MAX_LINKS} links, got ${links.length}`);
  const originKey = keyBytesOf(origin);
  const sorted = links.map((l) => {
    if (!Number.isInteger(l.cost) || l.cost < 1 || l.cost > MAX_COST) throw new RangeError(`link cost out of range: ${l.cost}`);
    if (l.to === origin) throw new RangeError('a record cannot link its origin to itself');
    return { key: keyBytesOf(l.to), cost: l.cost, flags: l.stub === true ? LINK_FLAG_STUB : 0 };
  });
  sorted.sort((a, b) => Buffer.compare(a.key, b.key));
  const size = recordBytes(sorted.length);
  const buf = Buffer.alloc(size);
  buf.set(RECORD_MAGIC, 0);
  buf[4] = RECORD_VERSION;
  buf[5] = leaf ? RECORD_FLAG_LEAF : 0;
  buf.set(originKey, ORIGIN_OFFSET);
  buf.writeBigUInt64BE(seq, SEQ_OFFSET);
  buf.writeUInt32BE(lifetimeMs, LIFETIME_OFFSET);
  buf.writeUInt16BE(fragment, FRAGMENT_OFFSET);
  buf.writeUInt16BE(sorted.length, COUNT_OFFSET);
  let off = RECORD_HEADER_BYTES;
  let prev: Buffer | undefined;
  for (const l of sorted) {
    if (prev !== undefined && Buffer.compare(prev, l.key) === 0) throw new RangeError('duplicate link');
    buf.set(l.key, off);
    buf.writeUInt32BE(l.cost, off + KEY_BYTES);
    buf[off + KEY_BYTES] = l.flags;
    off += LINK_BYTES;
    prev = l.key;
  }
  const signature = sign(buf.subarray(0, off));
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_BYTES) throw new TypeError('sign() must return 64 bytes');
  buf.set(signature, off);
  return buf;
}

/**
 * Parses a record (structure and bounds only: the signature is NOT checked
 * here, see verifyRecord). The returned record keeps a view of `bytes`.
 */
export function decodeRecord(bytes: Uint8Array, maxLinks: number = MAX_LINKS): DecodeResult<LinkStateRecord> {
  const buf = asBuffer(bytes);
  if (buf.length < MIN_RECORD_BYTES) return fail('malformed', `record of ${buf.length} bytes is shorter than ${MIN_RECORD_BYTES}`);
  if (buf[0] !== RECORD_MAGIC[0] || buf[1] !== RECORD_MAGIC[1] || buf[2] !== RECORD_MAGIC[2] || buf[3] !== RECORD_MAGIC[3]) {
    return fail('malformed', 'bad record magic');
  }
  if (buf[4] !== RECORD_VERSION) return fail('malformed', `record version ${buf[4]} is not supported`);
  if ((buf[5]! & ~RECORD_FLAG_LEAF) !== 0) return fail('malformed', `record flags ${buf[5]} has unknown bits`);
  const count = buf.readUInt16BE(COUNT_OFFSET);
  const cap = Math.min(maxLinks, MAX_LINKS);
  if (count > cap) return fail('oversized', `record has ${count} links, at most ${cap} allowed`);
  if (buf.length !== recordBytes(count)) return fail('malformed', `record of ${count} links must be ${recordBytes(count)} bytes, got ${buf.length}`);
  const lifetimeMs = buf.readUInt32BE(LIFETIME_OFFSET);
  if (lifetimeMs === 0) return fail('malformed', 'record lifetime is 0');
  const origin = nodeIdAt(buf, ORIGIN_OFFSET);
  const seq = buf.readBigUInt64BE(SEQ_OFFSET);
  const links: Link[] = new Array(count);
  const linkCost = new Map<NodeId, number>();
  let off = RECORD_HEADER_BYTES;
  for (let i = 0; i < count; i++, off += LINK_BYTES) {
    // buf.compare(target = previous key, ..., source = this key): 1 when this key sorts after the previous one.
    if (i > 0 && buf.compare(buf, off - LINK_BYTES, off - LINK_BYTES + KEY_BYTES, off, off + KEY_BYTES) <= 0) {
      return fail('malformed', 'links are not in strictly ascending key order (or repeat a neighbour)');
    }
    const to = nodeIdAt(buf, off);
    if (to === origin) return fail('malformed', 'record links its origin to itself');
    const flags = buf[off + KEY_BYTES]!;
    if ((flags & ~LINK_FLAG_STUB) !== 0) return fail('malformed', `link flags ${flags} has unknown bits`);
    const cost = buf.readUIntBE(off + KEY_BYTES + 1, 3);
    if (cost < 1) return fail('malformed', `link cost ${cost} is outside 1..${MAX_COST}`);
    // Only stub links carry the flag, so a link reads back exactly as it was given.
    links[i] = flags === 0 ? { to, cost } : { to, cost, stub: true };
    linkCost.set(to, cost);
  }
  const fragment = buf.readUInt16BE(FRAGMENT_OFFSET);
  return { ok: true, value: { origin, fragment, leaf: (buf[5]! & RECORD_FLAG_LEAF) !== 0, seq, lifetimeMs, links, linkCost, bytes: buf } };
}

/** Signature verification hook: same contract as identity's verifySignature. */
export type VerifyFn = (nodeId: NodeId, data: Uint8Array, signature: Uint8Array) => boolean;

/**
 * Checks the record's signature against its origin's key (the node id is the
 * public key, so the origin field is never trusted otherwise).
 */
export function verifyRecord(record: LinkStateRecord, verify: VerifyFn = verifySignature): 'ok' | 'unsigned' | 'forged' {
  const buf = asBuffer(record.bytes);
  const sigOff = buf.length - SIGNATURE_BYTES;
  const signature = buf.subarray(sigOff);
  let zero = true;
  for (let i = 0; i < SIGNATURE_BYTES; i++) {
    if (signature[i] !== 0) {
      zero = false;
      break;
    }
  }
  if (zero) return 'unsigned';
  return verify(record.origin, buf.subarray(0, sigOff), signature) ? 'ok' : 'forged';
}

// ---------------------------------------------------------------------------
// Messages

export interface MessageEntry {
  /** Lifetime left, ms, as the sender saw it (1..2^32-1). */
  readonly remainingMs: number;
  /** The record bytes (a view into the message when decoded). */
  readonly record: Uint8Array;
}

/** Bytes an entry takes in a message. */
export function entryBytes(recordLength: number): number {
  return ENTRY_HEADER_BYTES + recordLength;
}

/** Encodes one message. The caller keeps it within its size bound (see packMessages). */
export function encodeMessage(entries: readonly MessageEntry[]): Uint8Array {
  if (entries.length < 1 || entries.length > MAX_ENTRIES) throw new RangeError(`a message carries 1..${MAX_ENTRIES} records, got ${entries.length}`);
  let size = MESSAGE_HEADER_BYTES;
  for (const e of entries) size += entryBytes(e.record.length);
  const buf = Buffer.allocUnsafe(size);
  buf[0] = MESSAGE_TYPE_RECORDS;
  buf[1] = MESSAGE_VERSION;
  buf.writeUInt16BE(entries.length, 2);
  let off = MESSAGE_HEADER_BYTES;
  for (const e of entries) {
    const remaining = Math.min(MAX_LIFETIME_MS, Math.max(0, Math.floor(e.remainingMs)));
    buf.writeUInt32BE(remaining, off);
    buf.writeUInt32BE(e.record.length, off + 4);
    buf.set(e.record, off + ENTRY_HEADER_BYTES);
    off += entryBytes(e.record.length);
  }
  return buf;
}

/** Splits entries into as few messages as fit in `maxMessageBytes` each (in order). */
export function packMessages(entries: readonly MessageEntry[], maxMessageBytes: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let batch: MessageEntry[] = [];
  let size = MESSAGE_HEADER_BYTES;
  for (const e of entries) {
    const n = entryBytes(e.record.length);
    if (MESSAGE_HEADER_BYTES + n > maxMessageBytes) throw new RangeError(`a record of ${e.record.length} bytes does not fit a message of ${maxMessageBytes} bytes`);
    if (batch.length > 0 && (size + n > maxMessageBytes || batch.length === MAX_ENTRIES)) {
      out.push(encodeMessage(batch));
      batch = [];
      size = MESSAGE_HEADER_BYTES;
    }
    batch.push(e);
    size += n;
  }
  if (batch.length > 0) out.push(encodeMessage(batch));
  return out;
}

export interface DecodedEntry {
  readonly remainingMs: number;
  /** View into the message; undefined when the entry's length exceeds the record bound (dropped as oversized). */
  readonly record: Buffer | undefined;
}

/**
 * Checks a message's envelope as a whole (header, every entry length, no
 * trailing bytes) without allocating. Returns the entry count, or why the
 * message is dropped. Entries then start at MESSAGE_HEADER_BYTES, each a u32
 * remaining lifetime, a u32 length and that many record bytes.
 */
export function checkMessage(buf: Buffer, maxMessageBytes: number): number | { reason: DropReason; detail: string } {
  if (buf.length > maxMessageBytes) return { reason: 'oversized', detail: `message of ${buf.length} bytes exceeds ${maxMessageBytes}` };
  if (buf.length < MESSAGE_HEADER_BYTES) return { reason: 'malformed', detail: `message of ${buf.length} bytes is shorter than its header` };
  if (buf[0] !== MESSAGE_TYPE_RECORDS) return { reason: 'malformed', detail: `unknown message type 0x${buf[0]!.toString(16)}` };
  if (buf[1] !== MESSAGE_VERSION) return { reason: 'malformed', detail: `message version ${buf[1]} is not supported` };
  const count = buf.readUInt16BE(2);
  if (count === 0) return { reason: 'malformed', detail: 'message carries no record' };
  let off = MESSAGE_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (off + ENTRY_HEADER_BYTES > buf.length) return { reason: 'malformed', detail: `entry ${i} header runs past the end` };
    const length = buf.readUInt32BE(off + 4);
    off += ENTRY_HEADER_BYTES;
    if (length > buf.length - off) return { reason: 'malformed', detail: `entry ${i} of ${length} bytes runs past the end` };
    off += length;
  }
  if (off !== buf.length) return { reason: 'malformed', detail: `${buf.length - off} trailing bytes after the last record` };
  return count;
}

/**
 * Decodes a message's envelope (see checkMessage). An entry whose record
 * length is over `recordLimit` is kept with `record: undefined` so the caller
 * can count it as oversized and go on with the others.
 */
export function decodeMessage(bytes: Uint8Array, maxMessageBytes: number, recordLimit: number = maxRecordBytes()): DecodeResult<DecodedEntry[]> {
  const buf = asBuffer(bytes);
  const count = checkMessage(buf, maxMessageBytes);
  if (typeof count !== 'number') return fail(count.reason, count.detail);
  const entries: DecodedEntry[] = new Array(count);
  let off = MESSAGE_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const remainingMs = buf.readUInt32BE(off);
    const length = buf.readUInt32BE(off + 4);
    off += ENTRY_HEADER_BYTES;
    entries[i] = { remainingMs, record: length > recordLimit ? undefined : buf.subarray(off, off + length) };
    off += length;
  }
  return { ok: true, value: entries };
}
