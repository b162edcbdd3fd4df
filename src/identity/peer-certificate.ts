import { X509Certificate } from 'node:crypto';
import { PnetError } from '../errors.js';
import { nodeIdFromPublicKey, type NodeId } from './node-id.js';
import { rawPublicKey } from './keys.js';
import { readEd25519Certificate } from './certificate-der.js';
import { verifySignature } from './signature.js';

function reject(reason: string, cause?: unknown): never {
  throw new PnetError('ERR_PEER_CERTIFICATE', `peer certificate rejected: ${reason}`, cause === undefined ? undefined : { cause });
}

/**
 * Verifies a peer's certificate chain as presented in a TLS/QUIC handshake
 * and returns the peer's node id. Synchronous (runs inside the QUIC loop).
 *
 * Only the leaf (`chain[0]`, DER) matters; further certificates are ignored.
 * The leaf must carry an Ed25519 public key, be signed by that same key, and
 * be valid at `now` (validFrom <= now <= validTo). The node id comes from the
 * key, never from the subject name.
 *
 * @throws PnetError ERR_PEER_CERTIFICATE with the reason.
 */
export function verifyPeerCertificate(chain: readonly Uint8Array[] | null | undefined, now: Date = new Date()): NodeId {
  if (chain == null || chain.length === 0) reject('peer presented no certificate');
  const leaf = chain[0];
  if (!(leaf instanceof Uint8Array) || leaf.length === 0) reject('leaf certificate is empty or not bytes');

  // A check costs ~0.15 ms (about 1 ms on a loaded hub); the same bytes always give the same
  // answer, so a peer that reconnects is only checked against the clock.
  const key = leaf.length <= MAX_CACHED_DER ? Buffer.from(leaf.buffer, leaf.byteOffset, leaf.length).toString('latin1') : undefined;
  const cached = key === undefined ? undefined : verified.get(key);
  if (cached !== undefined) {
    const t = now.getTime();
    if (t >= cached.notBefore && t <= cached.notAfter) return cached.nodeId;
    verified.delete(key!);
  }
  const result = verifyUncached(leaf, now);
  if (key !== undefined) {
    if (verified.size >= MAX_CACHED) verified.delete(verified.keys().next().value!);
    verified.set(key, result);
  }
  return result.nodeId;
}

const MAX_CACHED = 4096;
const MAX_CACHED_DER = 2048;
type Verified = { nodeId: NodeId; notBefore: number; notAfter: number };
/** Certificates that passed every check, by their DER bytes, oldest first. */
const verified = new Map<string, Verified>();

function verifyUncached(leaf: Uint8Array, now: Date): Verified {
  const fields = readEd25519Certificate(leaf);
  if (fields === undefined) return verifyWithOpenSsl(leaf, now);
  const { notBefore, notAfter } = fields;
  checkValidity(now.getTime(), notBefore, notAfter);
  const nodeId = nodeIdFromPublicKey(fields.publicKey);
  // By node id: the key imported here is the one the peer's routing records are checked with next.
  if (!verifySignature(nodeId, fields.signed, fields.signature)) reject('certificate is not signed by its own key');
  return { nodeId, notBefore, notAfter };
}

function checkValidity(t: number, notBefore: number, notAfter: number): void {
  if (t < notBefore) reject(`certificate is not valid before ${new Date(notBefore).toISOString()}`);
  if (t > notAfter) reject(`certificate expired at ${new Date(notAfter).toISOString()}`);
}

/** Any certificate not in the plain Ed25519 shape: OpenSSL parses it and gives the reason. */
function verifyWithOpenSsl(leaf: Uint8Array, now: Date): Verified {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(leaf);
  } catch (err) {
    reject(`leaf certificate is not a parsable X.509 certificate (${(err as Error).message})`, err);
  }

  const key = cert.publicKey;
  if (key.asymmetricKeyType !== 'ed25519') {
    reject(`certificate key must be Ed25519, got ${key.asymmetricKeyType ?? 'unknown'}`);
  }

  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) reject('certificate validity dates are unreadable');
  checkValidity(now.getTime(), notBefore, notAfter);

  let selfSigned = false;
  try {
    selfSigned = cert.verify(key);
  } catch (err) {
    reject('certificate signature could not be checked', err);
  }
  if (!selfSigned) reject('certificate is not signed by its own key');

  return { nodeId: nodeIdFromPublicKey(rawPublicKey(key)), notBefore, notAfter };
}

/**
 * DER bytes of the first certificate in a PEM text.
 * @throws PnetError ERR_PEER_CERTIFICATE if there is no well-formed PEM certificate block.
 */
export function certificateDerFromPem(pem: string): Uint8Array {
  const match = /-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----/.exec(typeof pem === 'string' ? pem : '');
  if (match === null) reject('no PEM certificate block found');
  const der = Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64');
  if (der.length === 0 || der[0] !== 0x30) reject('PEM certificate block does not hold DER');
  return new Uint8Array(der); // copy: Buffer.from may hand out a slice of a shared pool
}
