/**
 * Ed25519 key helpers shared by the identity modules (internal).
 *
 * Keys move between raw bytes and KeyObjects through JWK rather than DER
 * SPKI: on Node 20 / OpenSSL 3.0, JWK export is ~1 µs while DER export goes
 * through OpenSSL's encoder lookup and costs ~75 µs, which would dominate
 * verifyPeerCertificate.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { PUBLIC_KEY_LENGTH } from './node-id.js';

/** Raw 32-byte public key of an Ed25519 KeyObject (public or private). */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const jwk = key.export({ format: 'jwk' });
  const raw = typeof jwk.x === 'string' && jwk.kty === 'OKP' && jwk.crv === 'Ed25519' ? Buffer.from(jwk.x, 'base64url') : undefined;
  if (raw === undefined || raw.length !== PUBLIC_KEY_LENGTH) throw new Error('not an Ed25519 key');
  return new Uint8Array(raw);
}

/** Public KeyObject for a raw 32-byte Ed25519 public key. */
export function publicKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== PUBLIC_KEY_LENGTH) throw new Error('an Ed25519 public key is 32 bytes');
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('base64url') },
    format: 'jwk',
  });
}
