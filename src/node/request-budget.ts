/**
 * The bytes of handleRequest requests this node holds (being read, or read and waiting for their
 * handler's answer): a node budget and a smaller per-peer share (docs/LIMITS.md). Sans-IO: the
 * pipeline (requests.ts) charges each chunk as it arrives and frees a request's bytes when it ends.
 */
import { ByteShares } from './byte-shares.js';
import type { ByteRead } from './byte-shares.js';

/** Byte limits of requests in flight (NodeOptions.requests). */
export interface RequestLimits {
  /** Request bytes all peers together may have in flight at this node (default 128 MiB). */
  maxBytesInFlight?: number;
  /** Request bytes one peer may have in flight at this node (default 32 MiB: two largest requests). */
  maxBytesInFlightPerPeer?: number;
}

/** What the request byte limits refused or cut (monotonic). */
export interface RequestLimitStats {
  /** Requests reset OVERLOADED: their peer's bytes in flight would pass its share. */
  bytesPeerLimit: number;
  /** Requests reset OVERLOADED: the node budget was spent and no heavier peer had a request still being read. */
  bytesNodeLimit: number;
  /** Requests of the peer holding the most cut OVERLOADED to make room for a lighter peer's. */
  bytesEvicted: number;
}

/** One request's bytes; `cut` resets it (an eviction), `reading` false once its handler holds it. */
export interface RequestRead extends ByteRead {
  reading: boolean;
}

export const DEFAULT_REQUEST_BYTES_IN_FLIGHT = 128 * 1024 * 1024;
export const DEFAULT_REQUEST_BYTES_PER_PEER = 32 * 1024 * 1024;

/**
 * Past its share a peer's newest request is refused. Past the node budget, the peer holding the
 * most loses its largest request still being read (a handler already running is not cut), when it
 * holds more than the newcomer would; else the newcomer's request is refused.
 */
export class RequestBudget {
  readonly stats: RequestLimitStats = { bytesPeerLimit: 0, bytesNodeLimit: 0, bytesEvicted: 0 };
  private readonly shares: ByteShares<RequestRead>;

  constructor(maxBytes: number, maxBytesPerPeer: number) {
    this.shares = new ByteShares<RequestRead>(maxBytes, maxBytesPerPeer, (read) => read.reading);
  }

  /** Bytes held now, all peers together. */
  get heldBytes(): number {
    return this.shares.heldBytes;
  }

  /** Adds `n` bytes to `read`; false: refused (counted), the caller resets it and calls done(). */
  charge(read: RequestRead, n: number): boolean {
    const evicted = this.shares.evicted;
    const outcome = this.shares.charge(read, n);
    this.stats.bytesEvicted += this.shares.evicted - evicted;
    if (outcome === 'peer') this.stats.bytesPeerLimit++;
    else if (outcome === 'node') this.stats.bytesNodeLimit++;
    return outcome === 'ok';
  }

  /** The request ended (answered, failed or cut): its bytes are freed. */
  done(read: RequestRead): void {
    this.shares.done(read);
  }
}
