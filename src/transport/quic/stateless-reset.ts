import { createHmac, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/** A stateless reset's token length (RFC 9000 §10.3). */
export const RESET_TOKEN_LENGTH = 16;
/** The smallest stateless reset: a byte of header, 4 unpredictable bytes, the token (RFC 9000 §10.3). */
const MIN_RESET_LENGTH = 21;
/** A reset answers a larger packet with this many bytes, the size of a short packet with a 16-byte id and a little data. */
const RESET_LENGTH = 43;

/**
 * Stateless reset tokens (RFC 9000 §10.3.2), derived from the node's key and the connection id
 * this endpoint issued: the same key after a restart gives the same token, so a restarted node can
 * tell a peer of its last run that the connection is gone at the peer's next packet, instead of
 * the peer's idle timeout. The token is an HMAC, so it cannot be computed without the key.
 */
export class StatelessResets {
  private readonly key: Buffer;

  /** `secret`: bytes only this node holds across restarts (its private key), never sent. */
  constructor(secret: Uint8Array | KeyObject) {
    const bytes = secret instanceof Uint8Array ? secret : secret.export({ format: 'der', type: 'pkcs8' });
    this.key = createHmac('sha256', bytes).update('pnet quic stateless reset v1').digest();
  }

  /** The token for a connection id this endpoint issued. */
  token(cid: Uint8Array): Buffer {
    return createHmac('sha256', this.key).update(cid).digest().subarray(0, RESET_TOKEN_LENGTH);
  }

  /** The token as quiche's Config.setStatelessResetToken takes it (a u128, big-endian). */
  tokenValue(cid: Uint8Array): bigint {
    return BigInt(`0x${this.token(cid).toString('hex')}`);
  }

  /**
   * A stateless reset for a short-header packet of `receivedLength` bytes to `cid`, or undefined
   * when that packet is too short to answer: every reset is smaller than the packet it answers, so
   * two endpoints can never reset each other in a loop (RFC 9000 §10.3.3).
   */
  packet(cid: Uint8Array, receivedLength: number): Buffer | undefined {
    const length = Math.min(RESET_LENGTH, receivedLength - 1);
    if (length < MIN_RESET_LENGTH) return undefined;
    const packet = randomBytes(length);
    packet[0] = 0x40 | (packet[0]! & 0x3f); // a short header: fixed bit set, the rest unpredictable
    this.token(cid).copy(packet, length - RESET_TOKEN_LENGTH);
    return packet;
  }
}
