/**
 * Admission by latency, one per endpoint: QUIC's gate asks it before starting a handshake for an
 * Initial, and the HTTP/2 listener beside it before taking a TCP connection into TLS, so both
 * transports' inbound handshakes share one measure of how far behind the node is
 * (docs/TRANSPORT.md, "Admission by latency"). Sans-IO: fed the clock.
 */

/** A handshake that took longer than this share of the handshake timeout says the endpoint is behind. */
const SLOW_SHARE = 0.3;
/** How long one slow handshake keeps the admission limit on (longer while one in progress is older than slow). */
const SLOW_HOLD_MS = 2000;
/** While behind, handshakes in progress may be what completes in this share of the timeout (the rest would time out, after their crypto). */
const WAIT_SHARE = 0.5;
/**
 * While behind, at least this many in progress: the rate cannot tell a slow endpoint from slow
 * clients (a join's leaf processes), and a limit that follows it down strangled a loaded join
 * (16: 2,885 Initials dropped, 405 dials failed).
 */
const MIN_ADMITTED = 128;
/** The completion rate is counted over this many buckets of BUCKET_MS. */
const BUCKETS = 8;
const BUCKET_MS = 250;

/**
 * Admission by latency (sans-IO, fed the clock): while recent handshakes were slow (over 0.3 of
 * the handshake timeout), new ones start only while those in progress are fewer than the
 * endpoint completes in half the timeout; the client resends its Initial after its probe timeout.
 * Off while handshakes are quick, so a join burst or an operator at rest is never held back;
 * abandoned handshakes never complete, so they cannot switch it on.
 */
export class HandshakeAdmission {
  private readonly started = new Map<number, number>();
  private next = 0;
  /** Handshakes completed per BUCKET_MS, a ring of BUCKETS. */
  private readonly completed = new Array<number>(BUCKETS).fill(0);
  private bucket = 0;
  private slowUntil = -Infinity;

  constructor(
    private readonly handshakeTimeoutMs: number,
    now: number,
  ) {
    this.bucket = Math.floor(now / BUCKET_MS);
  }

  /** Handshakes in progress. */
  get inProgress(): number {
    return this.started.size;
  }

  /** A handshake started: its handle for `ended`. */
  start(now: number): number {
    const id = ++this.next;
    this.started.set(id, now);
    return id;
  }

  /** A handshake completed (`ok`) or failed. */
  end(id: number, ok: boolean, now: number): void {
    const startedAt = this.started.get(id);
    if (startedAt === undefined) return;
    this.started.delete(id);
    if (!ok) return;
    this.roll(now);
    this.completed[this.bucket % BUCKETS]!++;
    if (now - startedAt > SLOW_SHARE * this.handshakeTimeoutMs) this.slowUntil = now + SLOW_HOLD_MS;
  }

  /** Whether a new handshake may start now. */
  admits(now: number): boolean {
    if (now >= this.slowUntil && !this.stillBehind(now)) return true;
    this.roll(now);
    let total = 0;
    for (const n of this.completed) total += n;
    const perMs = total / (BUCKETS * BUCKET_MS);
    return this.waiting(now) < Math.max(MIN_ADMITTED, perMs * WAIT_SHARE * this.handshakeTimeoutMs);
  }

  /**
   * Handshakes in progress that a client may still be waiting for: one older than the dial's
   * timeout here lingers only for a Finished that may be queued (the inbound 1.5× wait), and its
   * client has most likely given up; it holds no admission slot (in a 2,000-leaf restart such
   * handshakes held the slots while completions fell to ~20/s).
   */
  private waiting(now: number): number {
    let expired = 0;
    for (const startedAt of this.started.values()) {
      if (now - startedAt <= this.handshakeTimeoutMs) break;
      expired++;
    }
    return this.started.size - expired;
  }

  /**
   * The hold is over, but a handshake in progress is older than slow: nothing completed lately
   * because the endpoint stalls, not because it is quick. Only a hold already on is kept, so
   * abandoned handshakes alone never start one.
   */
  private stillBehind(now: number): boolean {
    if (now - this.slowUntil > SLOW_HOLD_MS) return false;
    let oldest: number | undefined;
    for (const startedAt of this.started.values()) {
      if (now - startedAt > this.handshakeTimeoutMs) continue; // given up by its client (see waiting())
      oldest = startedAt;
      break;
    }
    if (oldest === undefined || now - oldest <= SLOW_SHARE * this.handshakeTimeoutMs) return false;
    this.slowUntil = now + SLOW_HOLD_MS;
    return true;
  }

  /** Moves the ring to `now`'s bucket, emptying the buckets passed. */
  private roll(now: number): void {
    const bucket = Math.floor(now / BUCKET_MS);
    for (let b = this.bucket + 1; b <= bucket && b <= this.bucket + BUCKETS; b++) this.completed[b % BUCKETS] = 0;
    if (bucket > this.bucket) this.bucket = bucket;
  }
}
