import { createPrivateKey, generateKeyPair, sign as cryptoSign, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { inspect, promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import { PnetError } from '../errors.js';
import { nodeIdFromPublicKey, type NodeId } from './node-id.js';
import { rawPublicKey } from './keys.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/** Node's WebCrypto, typed as the DOM `Crypto` that @peculiar/x509 expects. */
const webCrypto = webcrypto as unknown as Crypto;
x509.cryptoProvider.set(webCrypto);

const ED25519 = { name: 'Ed25519' } as const;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
export const DEFAULT_VALIDITY_DAYS = 3650;
/** notBefore is set this far in the past so peers with slow clocks accept the certificate. */
export const CLOCK_SKEW_MS = HOUR_MS;

export interface IdentityOptions {
  /** Certificate lifetime from now, in days (default 3650, i.e. ~10 years). */
  validityDays?: number;
}

/** Parses a PEM PKCS#8 (or other OpenSSL-readable PEM) Ed25519 private key; returns a reason string on failure. */
export function parseEd25519PrivateKeyPem(pem: string): KeyObject | string {
  if (typeof pem !== 'string') return 'expected PEM text';
  if (!pem.includes('-----BEGIN')) return 'not PEM (no "-----BEGIN" line)';
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/.test(pem)) {
    return 'encrypted private keys are not supported';
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    return `not a readable PEM private key (${(err as Error).message})`;
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    return `expected an Ed25519 private key, got ${key.asymmetricKeyType ?? 'unknown'} key`;
  }
  return key;
}

function validityDaysOf(options: IdentityOptions | undefined): number {
  const days = options?.validityDays ?? DEFAULT_VALIDITY_DAYS;
  if (typeof days !== 'number' || !Number.isFinite(days) || days <= 0 || days > 100 * 366) {
    throw new PnetError('ERR_BAD_OPTION', `validityDays must be a positive number of days (at most 100 years), got ${String(days)}`);
  }
  return days;
}

/** Random positive 128-bit serial number, hex, with a non-zero first byte (so DER keeps all 16 bytes). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) || 0x01;
  return bytes.toString('hex');
}

async function createCertificate(privateKey: KeyObject, publicKey: Uint8Array, nodeId: NodeId, validityDays: number): Promise<x509.X509Certificate> {
  const subtle = webCrypto.subtle;
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const keys: CryptoKeyPair = {
    privateKey: await subtle.importKey('pkcs8', pkcs8, ED25519, false, ['sign']),
    publicKey: await subtle.importKey('raw', new Uint8Array(publicKey), ED25519, true, ['verify']),
  };
  // Whole seconds: X.509 times carry no milliseconds.
  const now = Math.floor(Date.now() / 1000) * 1000;
  return x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: `CN=${nodeId}`,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + Math.round(validityDays * DAY_MS)),
      signingAlgorithm: ED25519,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      ],
    },
    webCrypto,
  );
}

/**
 * A node's Ed25519 key pair and its self-signed X.509 certificate.
 *
 * Immutable: byte-array getters return fresh copies. The private key never
 * appears in `JSON.stringify` or `util.inspect` output.
 */
export class Identity {
  readonly nodeId: NodeId;
  /** Ed25519 private key, for node:crypto `sign(null, data, key)` and TLS. */
  readonly privateKey: KeyObject;
  /** Self-signed certificate, PEM. CN = node id. */
  readonly certPem: string;
  readonly #publicKey: Uint8Array;
  readonly #keyPem: string;
  readonly #certDer: Uint8Array;

  private constructor(privateKey: KeyObject, publicKey: Uint8Array, nodeId: NodeId, cert: x509.X509Certificate) {
    this.nodeId = nodeId;
    this.privateKey = privateKey;
    this.#publicKey = publicKey;
    this.#keyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    this.#certDer = new Uint8Array(cert.rawData);
    this.certPem = cert.toString('pem') + '\n';
    Object.freeze(this);
  }

  /** Raw 32-byte Ed25519 public key (copy). */
  get publicKey(): Uint8Array {
    return this.#publicKey.slice();
  }

  /** Private key as PKCS#8 PEM (what key files contain). */
  get keyPem(): string {
    return this.#keyPem;
  }

  /** Certificate, DER (copy). */
  get certDer(): Uint8Array {
    return this.#certDer.slice();
  }

  /** Ed25519 signature (64 bytes) over `data`. Synchronous. */
  sign(data: Uint8Array): Uint8Array {
    return new Uint8Array(cryptoSign(null, data, this.privateKey));
  }

  /** A new random identity. */
  static async generate(options?: IdentityOptions): Promise<Identity> {
    const validityDays = validityDaysOf(options);
    const { privateKey } = await generateKeyPairAsync('ed25519');
    return Identity.#build(privateKey, validityDays);
  }

  /**
   * The identity of an existing Ed25519 private key (PEM, normally PKCS#8).
   * A fresh self-signed certificate is made on every call.
   * @throws PnetError ERR_KEY_FILE if the text is not an unencrypted Ed25519 private key in PEM.
   */
  static async fromPrivateKeyPem(pem: string, options?: IdentityOptions): Promise<Identity> {
    const validityDays = validityDaysOf(options);
    const key = parseEd25519PrivateKeyPem(pem);
    if (typeof key === 'string') throw new PnetError('ERR_KEY_FILE', `invalid private key: ${key}`);
    return Identity.#build(key, validityDays);
  }

  /**
   * The identity of an Ed25519 private KeyObject.
   * @throws PnetError ERR_KEY_FILE if it is not an Ed25519 private key.
   */
  static async fromPrivateKey(privateKey: KeyObject, options?: IdentityOptions): Promise<Identity> {
    const validityDays = validityDaysOf(options);
    if (privateKey?.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
      throw new PnetError('ERR_KEY_FILE', `expected an Ed25519 private key, got ${privateKey?.asymmetricKeyType ?? typeof privateKey} ${privateKey?.type ?? ''}`.trim());
    }
    return Identity.#build(privateKey, validityDays);
  }

  static async #build(privateKey: KeyObject, validityDays: number): Promise<Identity> {
    const publicKey = rawPublicKey(privateKey);
    const nodeId = nodeIdFromPublicKey(publicKey);
    const cert = await createCertificate(privateKey, publicKey, nodeId, validityDays);
    return new Identity(privateKey, publicKey, nodeId, cert);
  }

  toJSON(): { nodeId: NodeId; certPem: string } {
    return { nodeId: this.nodeId, certPem: this.certPem };
  }

  [inspect.custom](): string {
    return `Identity { nodeId: '${this.nodeId}' }`;
  }
}
