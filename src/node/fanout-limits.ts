/**
 * The fan-out's peer-fillable tables (docs/LIMITS.md, "Node"), sans-IO: the request-id memory a
 * target keeps against replay, and the accounts of legs being served and bytes they buffer.
 * Each has a whole-node cap as the outer bound and a per-peer share smaller than the whole.
 */
import type { FanoutLimitCounters } from './types.js';
import type { NodeId } from '../identity/index.js';
import { ByteShares } from './byte-shares.js';
import type { ByteRead } from './byte-shares.js';

/** Counters of every fan-out limit that tripped (part of `node.fanoutStats`). */

export function emptyLimitStats(): FanoutLimitCounters {
  return {
    rememberedEvictedOwn: 0,
    rememberedEvictedHeaviest: 0,
    rememberedRefused: 0,
    replayFloorRefused: 0,
    legsRefusedNodeLimit: 0,
    legsRefusedPeerLimit: 0,
    legsRefusedNotNeighbour: 0,
    legReadTimeouts: 0,
    legBytesPeerLimit: 0,
    legBytesEvicted: 0,
  };
}

interface RememberedId<T> {
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly value: T;
}

interface OriginIds<T> {
  readonly ids: Map<string, RememberedId<T>>;
  /** Issue time at or below which this origin's ids may have been forgotten: refused, never run again. */
  floor: number;
  /** Until when the floor matters (the forgotten ids' lifetimes). */
  floorExpiresAt: number;
}

export type Remembered<T> = { readonly kind: 'seen'; readonly value: T } | { readonly kind: 'floor' } | undefined;

/**
 * Request ids answered here, per origin. An origin at its share forgets its own oldest id; a
 * full node forgets the oldest id of the origin holding the most (when it holds more than the
 * newcomer would). A forgotten id raises its origin's floor, so forgetting never reopens a replay.
 * Origin records (ids or a live floor) are capped at twice the id cap: past it, new origins are refused.
 */
export class ReplayMemory<T> {
  private readonly origins = new Map<NodeId, OriginIds<T>>();
  private size = 0;
  private lastSweep = -Infinity;

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerOrigin: number,
    private readonly stats: FanoutLimitCounters,
  ) {}

  get count(): number {
    return this.size;
  }

  get originCount(): number {
    return this.origins.size;
  }

  lookup(origin: NodeId, id: string, issuedAt: number, now: number): Remembered<T> {
    const record = this.origins.get(origin);
    if (record === undefined) return undefined;
    const entry = record.ids.get(id);
    if (entry !== undefined && entry.expiresAt >= now) return { kind: 'seen', value: entry.value };
    if (issuedAt <= record.floor && record.floorExpiresAt >= now) {
      this.stats.replayFloorRefused++;
      return { kind: 'floor' };
    }
    return undefined;
  }

  /** Remembers `id` until `expiresAt`; false (counted) when there is no room this origin may take. */
  remember(origin: NodeId, id: string, issuedAt: number, expiresAt: number, value: T, now: number): boolean {
    this.sweep(now);
    let record = this.origins.get(origin);
    if (record !== undefined && record.ids.size >= this.maxPerOrigin) {
      this.forgetOldest(record);
      this.stats.rememberedEvictedOwn++;
    } else if (this.size >= this.maxTotal || (record === undefined && this.origins.size >= 2 * this.maxTotal)) {
      if (this.size < this.maxTotal || !this.evictHeaviest(record?.ids.size ?? 0)) {
        this.stats.rememberedRefused++;
        return false;
      }
    }
    if (record === undefined) {
      record = { ids: new Map(), floor: -Infinity, floorExpiresAt: -Infinity };
      this.origins.set(origin, record);
    }
    record.ids.set(id, { issuedAt, expiresAt, value });
    this.size++;
    return true;
  }

  private evictHeaviest(newcomerHolds: number): boolean {
    let heaviest: OriginIds<T> | undefined;
    for (const record of this.origins.values()) if (heaviest === undefined || record.ids.size > heaviest.ids.size) heaviest = record;
    if (heaviest === undefined || heaviest.ids.size <= newcomerHolds + 1) return false;
    this.forgetOldest(heaviest);
    this.stats.rememberedEvictedHeaviest++;
    return true;
  }

  private forgetOldest(record: OriginIds<T>): void {
    const [id, entry] = record.ids.entries().next().value as [string, RememberedId<T>];
    record.ids.delete(id);
    this.size--;
    record.floor = Math.max(record.floor, entry.issuedAt);
    record.floorExpiresAt = Math.max(record.floorExpiresAt, entry.expiresAt);
  }

  /** Drops expired ids and origins left with neither ids nor a live floor (at most every 100 ms: O(ids)). */
  private sweep(now: number): void {
    if (now - this.lastSweep < 100) return;
    this.lastSweep = now;
    for (const [origin, record] of this.origins) {
      for (const [id, entry] of record.ids) {
        if (entry.expiresAt < now) {
          record.ids.delete(id);
          this.size--;
        }
      }
      if (record.ids.size === 0 && record.floorExpiresAt < now) this.origins.delete(origin);
    }
  }
}

/** One leg being read: its bytes so far, and how to cut it. */
export type LegRead = ByteRead;

export interface LegLimits {
  readonly maxActiveLegs: number;
  readonly maxLegsPerPeer: number;
  /** Legs a peer that is not a routing neighbour may have at once (its own fan-outs through us, `via`). */
  readonly maxLegsPerStranger: number;
  readonly maxLegBytes: number;
  readonly maxLegBytesPerPeer: number;
}

/**
 * Legs served at once and the bytes they buffer before decoding: a node cap and a smaller
 * per-peer share of each. Past the node byte budget, the peer buffering the most loses its
 * largest leg (when it holds more than the newcomer), else the newcomer's leg is cut.
 */
export class LegAccounts {
  private active = 0;
  private readonly legsOf = new Map<NodeId, number>();
  private readonly bytes: ByteShares<LegRead>;

  constructor(
    private readonly limits: LegLimits,
    private readonly stats: FanoutLimitCounters,
  ) {
    this.bytes = new ByteShares<LegRead>(limits.maxLegBytes, limits.maxLegBytesPerPeer);
  }

  get activeLegs(): number {
    return this.active;
  }

  get bufferedBytes(): number {
    return this.bytes.heldBytes;
  }

  /** Whether `peer` may start one more leg (counted when not). */
  mayOpen(peer: NodeId, neighbour: boolean): 'ok' | 'node' | 'peer' {
    if (this.active >= this.limits.maxActiveLegs) {
      this.stats.legsRefusedNodeLimit++;
      return 'node';
    }
    if ((this.legsOf.get(peer) ?? 0) >= (neighbour ? this.limits.maxLegsPerPeer : this.limits.maxLegsPerStranger)) {
      this.stats.legsRefusedPeerLimit++;
      return 'peer';
    }
    return 'ok';
  }

  opened(peer: NodeId): void {
    this.active++;
    this.legsOf.set(peer, (this.legsOf.get(peer) ?? 0) + 1);
  }

  closed(peer: NodeId): void {
    this.active--;
    const left = (this.legsOf.get(peer) ?? 1) - 1;
    if (left <= 0) this.legsOf.delete(peer);
    else this.legsOf.set(peer, left);
  }

  /** Adds `n` bytes to `read`; false: this read was cut (over its peer's share, or the node's budget). */
  charge(read: LegRead, n: number): boolean {
    const evicted = this.bytes.evicted;
    const outcome = this.bytes.charge(read, n);
    // A leg refused at the node budget counts as evicted too: it lost its place to the legs held.
    this.stats.legBytesEvicted += this.bytes.evicted - evicted + (outcome === 'node' ? 1 : 0);
    if (outcome === 'peer') this.stats.legBytesPeerLimit++;
    return outcome === 'ok';
  }

  /** The read ended (decoded, failed or cut): its bytes are freed. */
  done(read: LegRead): void {
    this.bytes.done(read);
  }
}
