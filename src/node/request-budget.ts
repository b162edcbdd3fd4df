/**
 * The bytes of handleRequest requests this node holds (being read, or read and waiting for their
 * handler's answer): a node budget and a smaller per-peer share (docs/LIMITS.md). Sans-IO: the
 * pipeline (requests.ts) charges each chunk as it arrives and frees a request's bytes when it ends.
 */
import type { NodeId } from '../identity/index.js';

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
export interface RequestRead {
  readonly peer: NodeId;
  bytes: number;
  reading: boolean;
  cut(): void;
}

export const DEFAULT_REQUEST_BYTES_IN_FLIGHT = 128 * 1024 * 1024;
export const DEFAULT_REQUEST_BYTES_PER_PEER = 32 * 1024 * 1024;

interface Account {
  bytes: number;
  readonly reads: Set<RequestRead>;
}

/**
 * Past its share a peer's newest request is refused. Past the node budget, the peer holding the
 * most loses its largest request still being read (a handler already running is not cut), when it
 * holds more than the newcomer would; else the newcomer's request is refused.
 */
export class RequestBudget {
  private held = 0;
  private readonly accounts = new Map<NodeId, Account>();
  readonly stats: RequestLimitStats = { bytesPeerLimit: 0, bytesNodeLimit: 0, bytesEvicted: 0 };

  constructor(
    private readonly maxBytes: number,
    private readonly maxBytesPerPeer: number,
  ) {}

  /** Bytes held now, all peers together. */
  get heldBytes(): number {
    return this.held;
  }

  /** Adds `n` bytes to `read`; false: refused (counted), the caller resets it and calls done(). */
  charge(read: RequestRead, n: number): boolean {
    let account = this.accounts.get(read.peer);
    if (account === undefined) this.accounts.set(read.peer, (account = { bytes: 0, reads: new Set() }));
    account.reads.add(read);
    if (account.bytes + n > this.maxBytesPerPeer) {
      this.stats.bytesPeerLimit++;
      return false;
    }
    while (this.held + n > this.maxBytes) {
      const victim = this.heaviestOther(read.peer, account.bytes + n);
      if (victim === undefined) {
        this.stats.bytesNodeLimit++;
        return false;
      }
      this.stats.bytesEvicted++;
      this.done(victim);
      victim.cut();
    }
    read.bytes += n;
    account.bytes += n;
    this.held += n;
    return true;
  }

  /** The request ended (answered, failed or cut): its bytes are freed. */
  done(read: RequestRead): void {
    const account = this.accounts.get(read.peer);
    if (account === undefined || !account.reads.delete(read)) return;
    account.bytes -= read.bytes;
    this.held -= read.bytes;
    read.bytes = 0;
    if (account.reads.size === 0) this.accounts.delete(read.peer);
  }

  /** The largest request still being read of the peer holding the most, if that peer holds more than `holds`. */
  private heaviestOther(peer: NodeId, holds: number): RequestRead | undefined {
    let heaviest: Account | undefined;
    for (const [id, account] of this.accounts) if (id !== peer && (heaviest === undefined || account.bytes > heaviest.bytes)) heaviest = account;
    if (heaviest === undefined || heaviest.bytes <= holds) return undefined;
    let largest: RequestRead | undefined;
    for (const read of heaviest.reads) if (read.reading && (largest === undefined || read.bytes > largest.bytes)) largest = read;
    return largest;
  }
}
