/**
 * Node ids.
 *
 * Encoding (also written down in docs/IDENTITY.md):
 *
 *   checksum = SHA-256("pnet-node-id" || publicKey)[0..3]      (3 bytes)
 *   nodeId   = base32lower(publicKey || checksum)               (no padding)
 *
 * where `publicKey` is the 32-byte raw Ed25519 public key, "pnet-node-id" is
 * the 12 ASCII bytes of that string, and base32lower is RFC 4648 base32 with
 * the lowercase alphabet "abcdefghijklmnopqrstuvwxyz234567". 35 bytes are
 * exactly 280 bits, so a node id is always exactly 56 characters with no
 * padding and no spare bits (every 56-character string over the alphabet
 * decodes to exactly one byte string). Parsing accepts uppercase letters and
 * returns the canonical lowercase form.
 */
import { createHash } from 'node:crypto';
import { PnetError } from '../errors.js';
import { base32Decode, base32Encode } from './base32.js';

/** A validated, canonical (lowercase) node id: 56 base32 characters. */
export type NodeId = string & { readonly __brand: 'NodeId' };

export const PUBLIC_KEY_LENGTH = 32;
export const CHECKSUM_LENGTH = 3;
export const NODE_ID_LENGTH = 56;

const CHECKSUM_PREFIX = Buffer.from('pnet-node-id', 'ascii');
const BASE32_CHAR_RE = /^[a-z2-7]$/i;

function checksum(publicKey: Uint8Array): Buffer {
  return createHash('sha256').update(CHECKSUM_PREFIX).update(publicKey).digest().subarray(0, CHECKSUM_LENGTH);
}

/** Node id of a raw 32-byte Ed25519 public key. */
export function nodeIdFromPublicKey(raw: Uint8Array): NodeId {
  if (!(raw instanceof Uint8Array) || raw.length !== PUBLIC_KEY_LENGTH) {
    throw new PnetError(
      'ERR_BAD_NODE_ID',
      `an Ed25519 public key is ${PUBLIC_KEY_LENGTH} bytes, got ${raw instanceof Uint8Array ? `${raw.length} bytes` : typeof raw}`,
    );
  }
  const bytes = new Uint8Array(PUBLIC_KEY_LENGTH + CHECKSUM_LENGTH);
  bytes.set(raw, 0);
  bytes.set(checksum(raw), PUBLIC_KEY_LENGTH);
  return base32Encode(bytes) as NodeId;
}

/**
 * Decodes and checks a node id; returns the public key, or a reason string.
 * Never throws.
 */
function decode(text: unknown): Uint8Array | string {
  if (typeof text !== 'string') return `a node id is a string, got ${text === null ? 'null' : typeof text}`;
  if (text.length !== NODE_ID_LENGTH) {
    return `a node id is ${NODE_ID_LENGTH} characters, got ${text.length}`;
  }
  const bytes = base32Decode(text);
  if (bytes === undefined) {
    let bad = 0;
    while (bad < text.length && BASE32_CHAR_RE.test(text[bad]!)) bad++;
    return `a node id uses only a-z and 2-7, found ${JSON.stringify(text[bad] ?? '')} at position ${bad}`;
  }
  const key = bytes.subarray(0, PUBLIC_KEY_LENGTH);
  const sum = checksum(key);
  if (sum[0] !== bytes[32] || sum[1] !== bytes[33] || sum[2] !== bytes[34]) {
    return 'node id checksum does not match (mistyped or corrupted id)';
  }
  return key;
}

function describe(text: unknown): string {
  if (typeof text !== 'string') return '';
  const shown = text.length > 80 ? `${text.slice(0, 77)}...` : text;
  return ` ${JSON.stringify(shown)}`;
}

/**
 * Validates a node id (length, alphabet, checksum) and returns its canonical
 * lowercase form. Uppercase input is accepted.
 * @throws PnetError ERR_BAD_NODE_ID
 */
export function parseNodeId(text: string): NodeId {
  const result = decode(text);
  if (typeof result === 'string') {
    throw new PnetError('ERR_BAD_NODE_ID', `invalid node id${describe(text)}: ${result}`);
  }
  return text.toLowerCase() as NodeId;
}

/**
 * True when `text` is a valid node id in canonical (lowercase) form. An
 * uppercase spelling is not itself a NodeId (ids compare as strings); pass it
 * through parseNodeId to canonicalise.
 */
export function isNodeId(text: string): text is NodeId {
  if (typeof text !== 'string' || text !== text.toLowerCase()) return false;
  return typeof decode(text) !== 'string';
}

/**
 * The raw 32-byte Ed25519 public key inside a node id (a fresh copy).
 * @throws PnetError ERR_BAD_NODE_ID if `id` is not a valid node id.
 */
export function publicKeyFromNodeId(id: NodeId): Uint8Array {
  const result = decode(id);
  if (typeof result === 'string') {
    throw new PnetError('ERR_BAD_NODE_ID', `invalid node id${describe(id)}: ${result}`);
  }
  return result.slice();
}

/** The 32 public-key bytes of a node id (same as publicKeyFromNodeId). */
export function nodeIdToBytes(id: NodeId): Uint8Array {
  return publicKeyFromNodeId(id);
}
