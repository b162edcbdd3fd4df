import { verify, type KeyObject } from 'node:crypto';
import { publicKeyFromNodeId, type NodeId } from './node-id.js';
import { publicKeyObject } from './keys.js';

/**
 * Small cache of public KeyObjects by node id: routing verifies many records
 * from the same few thousand nodes, and importing a key costs about as much
 * as the verification itself. Insertion-ordered Map, oldest evicted first.
 */
// 16,384: a fan-out to 10,000 nodes verifies 10,000 distinct keys in turn, which cycled a 4,096 FIFO (every lookup missed).
const KEY_CACHE_LIMIT = 16_384;
const keyCache = new Map<string, KeyObject>();

function keyFor(nodeId: NodeId): KeyObject {
  let key = keyCache.get(nodeId);
  if (key === undefined) {
    key = publicKeyObject(publicKeyFromNodeId(nodeId));
    if (keyCache.size >= KEY_CACHE_LIMIT) {
      const oldest = keyCache.keys().next().value;
      if (oldest !== undefined) keyCache.delete(oldest);
    }
    keyCache.set(nodeId, key);
  }
  return key;
}

/**
 * Checks an Ed25519 signature by the key inside `nodeId`. Synchronous; never
 * throws: any bad input (invalid node id, non-bytes, wrong signature length,
 * key not on the curve) gives `false`.
 */
export function verifySignature(nodeId: NodeId, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    if (!wellFormed(data, signature)) return false;
    return verify(null, data, keyFor(nodeId), signature);
  } catch {
    return false;
  }
}

/**
 * verifySignature on libuv's thread pool (node:crypto's callback form): the caller's thread pays
 * ~20 us instead of ~100 us, for a process that checks thousands of answers at once. Never
 * rejects; bad input gives false.
 */
export function verifySignatureAsync(nodeId: NodeId, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      if (!wellFormed(data, signature)) return resolve(false);
      verify(null, data, keyFor(nodeId), signature, (error, ok) => resolve(error === null && ok));
    } catch {
      resolve(false);
    }
  });
}

/** Bytes to check and a 64-byte Ed25519 signature (anything else is simply not valid). */
function wellFormed(data: unknown, signature: unknown): boolean {
  return data instanceof Uint8Array && signature instanceof Uint8Array && signature.length === 64;
}
