import { MAX_RELAYED_BYTES } from './header.js';

/** Rates of one token bucket pair: datagrams and bytes per second, with a burst of `burstMs` worth. */
export interface BudgetRates {
  readonly datagramsPerSecond: number;
  readonly bytesPerSecond: number;
  readonly burstMs: number;
}

/**
 * Two token buckets (datagrams/s and bytes/s) refilled from the caller's clock. Over budget is a
 * refusal, never a queue. Mutates two numbers per call: no allocation.
 */
export class Budget {
  private datagrams: number;
  private bytes: number;
  private last: number;
  private readonly maxDatagrams: number;
  private readonly maxBytes: number;
  private readonly datagramsPerMs: number;
  private readonly bytesPerMs: number;

  constructor(rates: BudgetRates, now: number) {
    this.datagramsPerMs = rates.datagramsPerSecond / 1000;
    this.bytesPerMs = rates.bytesPerSecond / 1000;
    // At least one datagram and one full datagram's bytes, or a tiny rate could never pass anything.
    this.maxDatagrams = Math.max(1, this.datagramsPerMs * rates.burstMs);
    this.maxBytes = Math.max(MAX_RELAYED_BYTES, this.bytesPerMs * rates.burstMs);
    this.datagrams = this.maxDatagrams;
    this.bytes = this.maxBytes;
    this.last = now;
  }

  /** Takes one datagram of `length` bytes if both buckets hold enough; false (nothing taken) otherwise. */
  take(length: number, now: number): boolean {
    const elapsed = now - this.last;
    if (elapsed > 0) {
      // A clock that goes back refills nothing (elapsed <= 0) instead of draining.
      this.last = now;
      this.datagrams = Math.min(this.maxDatagrams, this.datagrams + elapsed * this.datagramsPerMs);
      this.bytes = Math.min(this.maxBytes, this.bytes + elapsed * this.bytesPerMs);
    }
    if (this.datagrams < 1 || this.bytes < length) return false;
    this.datagrams -= 1;
    this.bytes -= length;
    return true;
  }
}
