import { createHmac, createSecretKey, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/** How long a Retry token is good for: one round trip and the client's Initial retransmits. */
export const RETRY_TOKEN_LIFETIME_MS = 10_000;
const FORMAT = 0x01;
const MAC_LENGTH = 16;
/** format (1), issue time in ms (6), original destination id length (1). */
const PREFIX = 8;
const MAX_CID = 20;

/**
 * Address-bound Retry tokens (RFC 9000 §8.1.2): the original destination connection id, the
 * issue time and an HMAC-SHA256 (per-process random key) over them, the client's address and
 * port and the Retry's source id. Stateless: whatever presents one came from that address and
 * port within the lifetime, for that Retry.
 */
export class RetryTokens {
  private readonly key: KeyObject;

  constructor(key: Buffer = randomBytes(32)) {
    this.key = createSecretKey(key);
  }

  /** A token for `odcid`, issued `now` (ms, any monotonic clock of this process) to host:port, for a Retry from `retryScid`. */
  mint(odcid: Uint8Array, retryScid: Uint8Array, host: string, port: number, now: number): Buffer {
    const token = Buffer.allocUnsafe(PREFIX + odcid.length + MAC_LENGTH);
    token[0] = FORMAT;
    token.writeUIntBE(Math.max(0, Math.floor(now)), 1, 6);
    token[7] = odcid.length;
    token.set(odcid, PREFIX);
    const body = PREFIX + odcid.length;
    this.mac(token.subarray(0, body), retryScid, host, port).copy(token, body);
    return token;
  }

  /** The original destination id a valid token carries, else undefined (forged, another address, another Retry, expired). */
  verify(token: Uint8Array, dcid: Uint8Array, host: string, port: number, now: number): Buffer | undefined {
    if (token.length < PREFIX + MAC_LENGTH || token[0] !== FORMAT) return undefined;
    const odcidLength = token[7]!;
    const body = PREFIX + odcidLength;
    if (odcidLength > MAX_CID || token.length !== body + MAC_LENGTH) return undefined;
    const bytes = Buffer.from(token.buffer, token.byteOffset, token.length);
    const expected = this.mac(bytes.subarray(0, body), dcid, host, port);
    if (!timingSafeEqual(expected, bytes.subarray(body))) return undefined;
    const issued = bytes.readUIntBE(1, 6);
    if (issued > now + 1 || now - issued > RETRY_TOKEN_LIFETIME_MS) return undefined;
    return Buffer.from(bytes.subarray(PREFIX, body));
  }

  private mac(body: Uint8Array, retryScid: Uint8Array, host: string, port: number): Buffer {
    // One update over body, Retry id (with its length), port and host: fields cannot shift into each other.
    const input = Buffer.allocUnsafe(body.length + 1 + retryScid.length + 2 + Buffer.byteLength(host, 'latin1'));
    input.set(body, 0);
    let offset = body.length;
    input[offset++] = retryScid.length;
    input.set(retryScid, offset);
    offset += retryScid.length;
    offset = input.writeUInt16BE(port, offset);
    input.write(host, offset, 'latin1');
    return createHmac('sha256', this.key).update(input).digest().subarray(0, MAC_LENGTH);
  }
}

/** A token bucket fed the caller's clock (ms): `rate` per second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
