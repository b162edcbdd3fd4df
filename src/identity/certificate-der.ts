/**
 * The fields pnet checks in a peer's certificate, read straight from its DER (RFC 5280 §4.1,
 * RFC 8410 for Ed25519). Only the plain shape of a self-signed Ed25519 certificate is read; any
 * other shape gives undefined and the caller asks OpenSSL (node:crypto's X509Certificate), whose
 * parse cost a restarted hub ~1 ms a leaf under load (docs/IDENTITY.md).
 */

/** What verifyPeerCertificate needs from an Ed25519 certificate. */
export interface Ed25519CertificateFields {
  /** The raw 32-byte public key of the subject. */
  readonly publicKey: Uint8Array;
  /** Validity, ms since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
  /** The DER of tbsCertificate: what the signature covers. */
  readonly signed: Uint8Array;
  /** The 64-byte Ed25519 signature. */
  readonly signature: Uint8Array;
}

/** AlgorithmIdentifier of Ed25519, parameters absent (RFC 8410 §3). */
const ED25519_ALGORITHM = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
/** SubjectPublicKeyInfo of an Ed25519 key up to the key: the algorithm, then a BIT STRING of 33 bytes, 0 unused bits. */
const ED25519_SPKI_PREFIX = [0x30, 0x2a, ...ED25519_ALGORITHM, 0x03, 0x21, 0x00];
const TAG = { sequence: 0x30, integer: 0x02, bitString: 0x03, utcTime: 0x17, generalizedTime: 0x18, version: 0xa0 } as const;

interface Element {
  readonly tag: number;
  /** Offset of the element's first byte (its tag). */
  readonly at: number;
  /** Offset of its content. */
  readonly start: number;
  /** Offset just past it. */
  readonly end: number;
}

/** The DER element at `at`, within `limit`: definite, minimally encoded lengths only. */
function element(der: Uint8Array, at: number, limit: number): Element | undefined {
  if (at + 2 > limit) return undefined;
  const tag = der[at]!;
  let length = der[at + 1]!;
  let start = at + 2;
  if (length >= 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3 || start + count > limit || der[start] === 0) return undefined;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[start + i]!;
    if (length < 0x80) return undefined;
    start += count;
  }
  const end = start + length;
  return end > limit ? undefined : { tag, at, start, end };
}

function expect(der: Uint8Array, at: number, limit: number, tag: number): Element | undefined {
  const found = element(der, at, limit);
  return found?.tag === tag ? found : undefined;
}

function bytesAre(der: Uint8Array, at: number, expected: readonly number[]): boolean {
  if (at + expected.length > der.length) return false;
  for (let i = 0; i < expected.length; i++) if (der[at + i] !== expected[i]) return false;
  return true;
}

/** UTCTime YYMMDDHHMMSSZ (years 1950–2049, RFC 5280 §4.1.2.5.1) or GeneralizedTime YYYYMMDDHHMMSSZ. */
function readTime(der: Uint8Array, time: Element): number | undefined {
  const text = String.fromCharCode(...der.subarray(time.start, time.end));
  const match = time.tag === TAG.utcTime ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text) : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (match === null) return undefined;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  const fullYear = time.tag === TAG.utcTime ? (year < 50 ? 2000 + year : 1900 + year) : year;
  const ms = Date.UTC(fullYear, month - 1, day, hour, minute, second);
  const check = new Date(ms);
  // Date.UTC rolls over (month 13, day 32): such a date is not well formed.
  if (check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) return undefined;
  return ms;
}

/** The validity's two times, or undefined. */
function readValidity(der: Uint8Array, validity: Element): { notBefore: number; notAfter: number } | undefined {
  const first = element(der, validity.start, validity.end);
  const second = first === undefined ? undefined : element(der, first.end, validity.end);
  if (first === undefined || second === undefined || second.end !== validity.end) return undefined;
  const isTime = (e: Element): boolean => e.tag === TAG.utcTime || e.tag === TAG.generalizedTime;
  if (!isTime(first) || !isTime(second)) return undefined;
  const notBefore = readTime(der, first);
  const notAfter = readTime(der, second);
  return notBefore === undefined || notAfter === undefined ? undefined : { notBefore, notAfter };
}

/**
 * tbsCertificate's fields: [0] version, serial, signature algorithm (Ed25519), issuer, validity,
 * subject, an Ed25519 SubjectPublicKeyInfo, then optional unique ids and extensions, nothing else.
 */
function readTbs(der: Uint8Array, tbs: Element): Omit<Ed25519CertificateFields, 'signed' | 'signature'> | undefined {
  let at = tbs.start;
  const version = element(der, at, tbs.end);
  if (version?.tag === TAG.version) at = version.end;
  const serial = expect(der, at, tbs.end, TAG.integer);
  if (serial === undefined || !bytesAre(der, serial.end, ED25519_ALGORITHM)) return undefined;
  const issuer = expect(der, serial.end + ED25519_ALGORITHM.length, tbs.end, TAG.sequence);
  const validity = issuer && expect(der, issuer.end, tbs.end, TAG.sequence);
  const subject = validity && expect(der, validity.end, tbs.end, TAG.sequence);
  const spki = subject && expect(der, subject.end, tbs.end, TAG.sequence);
  if (spki === undefined || spki.end - spki.at !== ED25519_SPKI_PREFIX.length + 32 || !bytesAre(der, spki.at, ED25519_SPKI_PREFIX)) return undefined;
  // Unique ids and extensions: each a well-formed element, ending exactly with tbsCertificate.
  for (let rest = spki.end; rest < tbs.end; ) {
    const next = element(der, rest, tbs.end);
    if (next === undefined) return undefined;
    rest = next.end;
  }
  const times = readValidity(der, validity!);
  if (times === undefined) return undefined;
  return { publicKey: der.slice(spki.end - 32, spki.end), ...times };
}

/**
 * The fields of a self-signed Ed25519 certificate in DER, or undefined when `der` is not one
 * in the plain shape (anything else, malformed or merely unusual, is for OpenSSL to judge).
 * Checks shape only: the signature and the dates are the caller's.
 */
export function readEd25519Certificate(der: Uint8Array): Ed25519CertificateFields | undefined {
  const certificate = expect(der, 0, der.length, TAG.sequence);
  if (certificate === undefined || certificate.end !== der.length) return undefined;
  const tbs = expect(der, certificate.start, certificate.end, TAG.sequence);
  if (tbs === undefined || !bytesAre(der, tbs.end, ED25519_ALGORITHM)) return undefined;
  const signature = expect(der, tbs.end + ED25519_ALGORITHM.length, certificate.end, TAG.bitString);
  if (signature === undefined || signature.end !== certificate.end || signature.end - signature.start !== 65 || der[signature.start] !== 0) return undefined;
  const fields = readTbs(der, tbs);
  if (fields === undefined) return undefined;
  return { ...fields, signed: der.subarray(tbs.at, tbs.end), signature: der.subarray(signature.start + 1, signature.end) };
}
