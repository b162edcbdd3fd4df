/**
 * Sans-IO link-state router.
 *
 * A Router is fed events - neighbourUp, neighbourDown, rttSample,
 * recordReceived, tick - each with the current time in ms, and returns the
 * actions the IO glue must carry out: send bytes to a neighbour, or note that
 * routes changed. It owns no socket and no timer and never reads a clock: the
 * glue calls tick() at nextDeadline() (or on a fixed short cadence).
 *
 * See docs/ROUTING.md for the protocol and the timers.
 */
import { Buffer } from 'node:buffer';
import { PnetError } from '../../errors.js';
import { numberOption } from '../../options.js';
import { verifySignature, type NodeId } from '../../identity/index.js';
import {
  asBuffer,
  checkMessage,
  decodeRecord,
  KEY_BYTES,
  nodeIdAt,
  encodeMessage,
  encodeRecord,
  MAX_COST,
  MAX_LINKS,
  MAX_LIFETIME_MS,
  MAX_SEQUENCE,
  maxRecordBytes,
  MESSAGE_HEADER_BYTES,
  ENTRY_HEADER_BYTES,
  MIN_RECORD_BYTES,
  packMessages,
  RECORD_MAGIC,
  RECORD_VERSION,
  verifyRecord,
  type DropReason,
  type LinkStateRecord,
  type MessageEntry,
  type VerifyFn,
} from './codec.js';
import { tablePathComputer, type Link, type NextHopShare, type PathComputer, type PathComputerFactory, type Route } from './path-computer.js';
import type { RecordCache } from './record-cache.js';

/** What the router needs of an identity (Identity satisfies it). */
export interface RecordSigner {
  readonly nodeId: NodeId;
  /** Ed25519 signature (64 bytes) over data. */
  sign(data: Uint8Array): Uint8Array;
}

/** How link costs follow RTT. cost = clamp(base + round(srttMs / unitMs), 1, MAX_COST). */
export interface CostOptions {
  /** RTT per cost unit, ms (default 1). */
  unitMs?: number;
  /** Cost added per link, so that hop count breaks near-ties (default 1). */
  base?: number;
  /** EWMA weight of a new RTT sample (default 1/8, as TCP's SRTT). */
  smoothing?: number;
  /**
   * The announced cost c stands for the band c ± max(hysteresisMin, hysteresisRatio * c): it moves
   * only when the smoothed cost and every sample have stayed outside that band (same side) for
   * holdMs, and then to the smoothed cost. Defaults 2, 0.5 and 30 s (a busy event loop's RTT
   * stalls do not re-flood; a lasting change moves the cost within 30 s).
   */
  hysteresisMin?: number;
  hysteresisRatio?: number;
  holdMs?: number;
  /** RTT assumed for a neighbour until its first sample (default 100 ms). */
  defaultRttMs?: number;
}

export interface RouterOptions {
  signer: RecordSigner;
  /** Lifetime written into our records (default 1 h: liveness comes from neighbours withdrawing links, not expiry). */
  recordLifetimeMs?: number;
  /** Our record is re-published this often (default 30 min, at most half the lifetime, minus up to refreshJitter of it). Must be < recordLifetimeMs. */
  refreshIntervalMs?: number;
  /** Fraction of refreshIntervalMs taken off at random, so nodes do not refresh in step (default 0.1). */
  refreshJitter?: number;
  /** A change of our links is published this long after it (coalesces bursts; default 50 ms). */
  publishDelayMs?: number;
  /** At least this long between two publications of one of our records, except refresh and sequence recovery (OSPF MinLSInterval; default 5 s). */
  minPublishIntervalMs?: number;
  /**
   * A new version of a record accepted less than this long after the previous one waits until
   * the interval is over (the newest waiting version is then taken; OSPF MinLSArrival; default 1 s).
   */
  minArrivalIntervalMs?: number;
  /**
   * Flood pacing: records are sent at once unless a batch left less than this
   * long ago; then they wait and leave together, one message per neighbour
   * (default 10 ms; 0 sends every event's records at once).
   */
  floodPacingMs?: number;
  /** Shortest paths are recomputed this long after the first change (default 10 ms)... */
  spfDelayMs?: number;
  /** ...and at most once per this interval (default 100 ms). 0 and 0 recompute inside the event. */
  spfMinIntervalMs?: number;
  /** Most links in one record, ours or received (default and cap 1024). */
  maxLinks?: number;
  /** Largest message sent or accepted (default 64 KiB; at least one largest record). */
  maxMessageBytes?: number;
  /** Most origins kept in the map (default 100,000); records of new origins beyond it are dropped. */
  maxRecords?: number;
  /** Received records are kept at most this long, whatever they claim (default 1 h). */
  maxRecordLifetimeMs?: number;
  /** First sequence number we use (default 1). Restarts recover anyway, see docs. */
  initialSequence?: bigint;
  cost?: CostOptions;
  /** Signature check (default identity's verifySignature). */
  verify?: VerifyFn;
  /** Shared verified-record cache (simulations). */
  recordCache?: RecordCache;
  /** Random source in [0, 1) for jitter (default Math.random). */
  random?: () => number;
  /** Shortest-path implementation (default the routing table: native addon, or its TypeScript twin). */
  pathComputer?: PathComputerFactory;
}

export interface RouteChange {
  readonly dest: NodeId;
  /** undefined: no longer reachable. */
  readonly nextHop: NodeId | undefined;
  /** undefined: was not reachable. */
  readonly previousNextHop: NodeId | undefined;
  readonly cost?: number;
  readonly hops?: number;
}

export type RouterAction =
  | { readonly type: 'send'; readonly to: NodeId; readonly bytes: Uint8Array }
  | { readonly type: 'routes-changed'; readonly changed: readonly RouteChange[] };

export interface NeighbourInfo {
  readonly nodeId: NodeId;
  /** Cost we announce for the link. */
  readonly cost: number;
  /** Smoothed RTT, ms; undefined before the first sample. */
  readonly srttMs: number | undefined;
}

export interface RecordInfo {
  readonly origin: NodeId;
  readonly seq: bigint;
  readonly lifetimeMs: number;
  readonly links: readonly Link[];
  /** Local time (ms, same clock as the events) at which the record is dropped unless refreshed. */
  readonly expiresAt: number;
  readonly bytes: Uint8Array;
}

export interface RouterStats {
  messagesReceived: number;
  recordsReceived: number;
  /** New record versions stored (and flooded). */
  recordsAccepted: number;
  /** Copies of a version already held (normal flooding redundancy). */
  duplicates: number;
  messagesSent: number;
  recordsSent: number;
  /** Our own records signed. */
  published: number;
  /** Publications that waited for minPublishIntervalMs (origination rate limit). */
  publishRateLimited: number;
  /** Record versions that arrived within minArrivalIntervalMs of the previous one and waited (acceptance rate limit). */
  arrivalRateLimited: number;
  /** Of those, versions replaced by a newer one while waiting (never verified nor flooded). */
  arrivalSuperseded: number;
  /** Times we met our own record with a higher (or conflicting) sequence number and jumped above it. */
  sequenceRecovered: number;
  /** Records removed because they were not refreshed in time. */
  expiredRecords: number;
  spfRuns: number;
  /** Records (or whole messages, for message-level faults) dropped, by reason. */
  dropped: Record<DropReason, number>;
}

interface Stored {
  readonly rec: LinkStateRecord;
  readonly expiresAt: number;
  /** When we accepted it (the acceptance rate limit counts from here). */
  readonly acceptedAt: number;
}

/** A record version that arrived too soon after the previous one (acceptance rate limit). */
interface Waiting {
  readonly from: NodeId;
  /** A copy: the message it came in is not ours to keep. */
  readonly bytes: Buffer;
  readonly remainingMs: number;
  readonly arrivedAt: number;
  readonly at: number;
}

interface Neighbour {
  srtt: number | undefined;
  cost: number;
  /** Since when the smoothed cost has been outside the announced cost's band (hysteresis hold). */
  outsideSince: number | undefined;
}

interface Outgoing {
  readonly rec: LinkStateRecord;
  readonly expiresAt: number;
}

/** Min-heap of (time, id), lazy deletion by the caller. */
class ExpiryHeap {
  #at: number[] = [];
  #id: NodeId[] = [];

  get size(): number {
    return this.#at.length;
  }

  peek(): number | undefined {
    return this.#at[0];
  }

  push(at: number, id: NodeId): void {
    const a = this.#at;
    const d = this.#id;
    let i = a.length;
    a.push(at);
    d.push(id);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= at) break;
      a[i] = a[p]!;
      d[i] = d[p]!;
      i = p;
    }
    a[i] = at;
    d[i] = id;
  }

  pop(): [number, NodeId] {
    const a = this.#at;
    const d = this.#id;
    const top: [number, NodeId] = [a[0]!, d[0]!];
    const at = a.pop()!;
    const id = d.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && a[c + 1]! < a[c]!) c++;
        if (a[c]! >= at) break;
        a[i] = a[c]!;
        d[i] = d[c]!;
        i = c;
      }
      a[i] = at;
      d[i] = id;
    }
    return top;
  }

  /** Rebuilds from the live entries. */
  rebuild(entries: Iterable<[number, NodeId]>): void {
    this.#at = [];
    this.#id = [];
    for (const [at, id] of entries) this.push(at, id);
  }
}

/** A numeric router option (ERR_BAD_OPTION naming it when out of range). */
function option(name: string, value: number | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  return numberOption('router option', name, value, fallback, { min, max });
}

/** A numeric router option that must be greater than 0. */
function positive(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  return numberOption('router option', name, value, fallback, { min: 0, above: true, max });
}

function sameLinks(a: readonly Link[] | null | undefined, b: readonly Link[] | null): boolean {
  if (a === b) return true;
  if (a == null || b === null || a.length !== b.length) return (a ?? null) === b;
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.to !== b[i]!.to || a[i]!.cost !== b[i]!.cost) return false;
  }
  return true;
}

/** Links in ascending id order (our own records are compared as sets). */
function sortedLinks(links: readonly Link[]): Link[] {
  return [...links].sort((a, b) => (a.to < b.to ? -1 : a.to > b.to ? 1 : 0));
}

function isRecordStart(buf: Buffer, off: number): boolean {
  return (
    buf[off] === RECORD_MAGIC[0] &&
    buf[off + 1] === RECORD_MAGIC[1] &&
    buf[off + 2] === RECORD_MAGIC[2] &&
    buf[off + 3] === RECORD_MAGIC[3] &&
    buf[off + 4] === RECORD_VERSION
  );
}

const ORIGIN_OFFSET = 6;
const SEQ_OFFSET = 38;
/** Returned when an event has nothing to do (never mutated). */
const NO_ACTIONS: readonly RouterAction[] = Object.freeze([]);

export class Router {
  readonly nodeId: NodeId;
  readonly #signer: RecordSigner;
  readonly #lifetimeMs: number;
  readonly #refreshMs: number;
  readonly #refreshJitter: number;
  readonly #publishDelayMs: number;
  readonly #minPublishMs: number;
  readonly #minArrivalMs: number;
  readonly #holdMs: number;
  readonly #spfDelayMs: number;
  readonly #spfMinMs: number;
  readonly #floodPacingMs: number;
  readonly #maxLinks: number;
  readonly #maxMessageBytes: number;
  readonly #maxRecordBytes: number;
  readonly #maxRecords: number;
  readonly #maxRecordLifetimeMs: number;
  readonly #costUnit: number;
  readonly #costBase: number;
  readonly #smoothing: number;
  readonly #hystMin: number;
  readonly #hystRatio: number;
  readonly #defaultRtt: number;
  readonly #verify: VerifyFn;
  readonly #cache: RecordCache | undefined;
  readonly #random: () => number;
  readonly #paths: PathComputer;

  #now = -Infinity;
  readonly #neighbours = new Map<NodeId, Neighbour>();
  readonly #records = new Map<NodeId, Stored>();
  readonly #expiry = new ExpiryHeap();

  #lastSeq: bigint;
  #own: LinkStateRecord | undefined;
  #publishAt: number | undefined;
  #lastPublishAt = -Infinity;
  #refreshAt = Infinity;
  /** The next publication must happen even if our links did not change (refresh, sequence recovery). */
  #mustPublish = false;
  readonly #waiting = new Map<NodeId, Waiting>();
  #waitingAt = Infinity;

  /** Effective (two-way checked) links given to the path computer. */
  readonly #applied = new Map<NodeId, readonly Link[]>();
  /** Origins whose effective links may have changed since the last run. */
  readonly #dirty = new Set<NodeId>();
  #selfDirty = true;
  #spfAt: number | undefined;
  #lastSpfAt = -Infinity;
  #nextHops = new Map<NodeId, NodeId>();

  /** Records waiting to be sent, per neighbour, by origin (a newer version replaces an older one). */
  readonly #out = new Map<NodeId, Map<NodeId, Outgoing>>();
  #queued = 0;
  #flushAt: number | undefined;
  #lastFlushAt = -Infinity;
  #routeChanges: RouteChange[] = [];

  readonly #stats: RouterStats = {
    messagesReceived: 0,
    recordsReceived: 0,
    recordsAccepted: 0,
    duplicates: 0,
    messagesSent: 0,
    recordsSent: 0,
    published: 0,
    publishRateLimited: 0,
    arrivalRateLimited: 0,
    arrivalSuperseded: 0,
    sequenceRecovered: 0,
    expiredRecords: 0,
    spfRuns: 0,
    dropped: { forged: 0, unsigned: 0, replayed: 0, oversized: 0, malformed: 0, expired: 0, notNeighbour: 0, tableFull: 0 },
  };

  constructor(options: RouterOptions) {
    const signer = options?.signer;
    if (signer === undefined || typeof signer.sign !== 'function' || typeof signer.nodeId !== 'string') {
      throw new PnetError('ERR_BAD_OPTION', 'router option signer must have nodeId and sign()');
    }
    this.#signer = signer;
    this.nodeId = signer.nodeId;
    this.#lifetimeMs = option('recordLifetimeMs', options.recordLifetimeMs, 3_600_000, 1, MAX_LIFETIME_MS);
    this.#refreshMs = option('refreshIntervalMs', options.refreshIntervalMs, Math.min(1_800_000, Math.floor(this.#lifetimeMs / 2)) || 1, 1, this.#lifetimeMs - 1);
    this.#refreshJitter = option('refreshJitter', options.refreshJitter, 0.1, 0, 0.9);
    this.#publishDelayMs = option('publishDelayMs', options.publishDelayMs, 50, 0);
    this.#minPublishMs = option('minPublishIntervalMs', options.minPublishIntervalMs, 5_000, 0);
    this.#minArrivalMs = option('minArrivalIntervalMs', options.minArrivalIntervalMs, 1_000, 0);
    this.#floodPacingMs = option('floodPacingMs', options.floodPacingMs, 10, 0);
    this.#spfDelayMs = option('spfDelayMs', options.spfDelayMs, 10, 0);
    this.#spfMinMs = option('spfMinIntervalMs', options.spfMinIntervalMs, 100, 0);
    this.#maxLinks = Math.floor(option('maxLinks', options.maxLinks, MAX_LINKS, 1, MAX_LINKS));
    this.#maxRecordBytes = maxRecordBytes(this.#maxLinks);
    const minMessage = MESSAGE_HEADER_BYTES + ENTRY_HEADER_BYTES + this.#maxRecordBytes;
    this.#maxMessageBytes = option('maxMessageBytes', options.maxMessageBytes, Math.max(65_536, minMessage), minMessage, 0xffff_ffff);
    this.#maxRecords = option('maxRecords', options.maxRecords, 100_000, 1);
    this.#maxRecordLifetimeMs = option('maxRecordLifetimeMs', options.maxRecordLifetimeMs, 3_600_000, 1, MAX_LIFETIME_MS);
    const cost = options.cost ?? {};
    this.#costUnit = positive('cost.unitMs', cost.unitMs, 1);
    this.#costBase = option('cost.base', cost.base, 1, 0, MAX_COST);
    this.#smoothing = positive('cost.smoothing', cost.smoothing, 0.125, 1);
    this.#hystMin = option('cost.hysteresisMin', cost.hysteresisMin, 2, 0);
    this.#hystRatio = option('cost.hysteresisRatio', cost.hysteresisRatio, 0.5, 0);
    this.#holdMs = option('cost.holdMs', cost.holdMs, 30_000, 0);
    this.#defaultRtt = option('cost.defaultRttMs', cost.defaultRttMs, 100, 0);
    const initial = options.initialSequence ?? 1n;
    if (typeof initial !== 'bigint' || initial < 1n || initial > MAX_SEQUENCE) {
      throw new PnetError('ERR_BAD_OPTION', `router option initialSequence must be a bigint in 1..2^64-1, got ${String(initial)}`);
    }
    this.#lastSeq = initial - 1n;
    this.#verify = options.verify ?? verifySignature;
    this.#cache = options.recordCache;
    this.#random = options.random ?? Math.random;
    this.#paths = (options.pathComputer ?? tablePathComputer)(this.nodeId);
  }

  // -------------------------------------------------------------------------
  // Events

  /** A connection to `nodeId` is up (again). Optional first RTT sample, e.g. from the handshake. Sends it the whole map. */
  neighbourUp(nodeId: NodeId, nowMs: number, rttMs?: number): readonly RouterAction[] {
    this.#begin(nowMs);
    if (nodeId !== this.nodeId) {
      let n = this.#neighbours.get(nodeId);
      if (n === undefined) {
        n = { srtt: undefined, cost: this.costFromRtt(this.#defaultRtt), outsideSince: undefined };
        this.#neighbours.set(nodeId, n);
        this.#selfLinksChanged();
        this.#markDirty(nodeId);
      }
      if (rttMs !== undefined) this.#sample(n, rttMs);
      // The whole map, so a joining node learns it from its first neighbour.
      for (const s of this.#records.values()) this.#enqueue(nodeId, s.rec, s.expiresAt);
    }
    return this.#finish();
  }

  /** The connection to `nodeId` is gone. */
  neighbourDown(nodeId: NodeId, nowMs: number): readonly RouterAction[] {
    this.#begin(nowMs);
    if (this.#neighbours.delete(nodeId)) {
      const q = this.#out.get(nodeId);
      if (q !== undefined) {
        this.#queued -= q.size;
        this.#out.delete(nodeId);
      }
      this.#selfLinksChanged();
      this.#markDirty(nodeId);
    }
    return this.#finish();
  }

  /** A round-trip time measured to a neighbour. Ignored for non-neighbours and nonsense values. */
  rttSample(nodeId: NodeId, rttMs: number, nowMs: number): readonly RouterAction[] {
    this.#begin(nowMs);
    const n = this.#neighbours.get(nodeId);
    if (n !== undefined) this.#sample(n, rttMs);
    return this.#finish();
  }

  /** A routing message from a neighbour (the bytes of a 'send' action of its router). */
  recordReceived(fromNeighbour: NodeId, bytes: Uint8Array, nowMs: number): readonly RouterAction[] {
    this.#begin(nowMs);
    this.#stats.messagesReceived++;
    if (!this.#neighbours.has(fromNeighbour)) {
      this.#stats.dropped.notNeighbour++;
    } else {
      const buf = asBuffer(bytes);
      const count = checkMessage(buf, this.#maxMessageBytes);
      if (typeof count !== 'number') {
        this.#stats.dropped[count.reason]++;
      } else {
        let off = MESSAGE_HEADER_BYTES;
        for (let i = 0; i < count; i++) {
          const remainingMs = buf.readUInt32BE(off);
          const length = buf.readUInt32BE(off + 4);
          off += ENTRY_HEADER_BYTES;
          this.#stats.recordsReceived++;
          if (length > this.#maxRecordBytes) this.#drop('oversized');
          else this.#receive(fromNeighbour, buf, off, length, remainingMs);
          off += length;
        }
      }
    }
    return this.#finish();
  }

  /** Timers: call at nextDeadline() (or on a short fixed cadence). */
  tick(nowMs: number): readonly RouterAction[] {
    this.#begin(nowMs);
    return this.#finish();
  }

  // -------------------------------------------------------------------------
  // Queries

  /** Earliest time tick() has work (publish, recompute, refresh, expiry); undefined when none. Always > the last event's time. */
  nextDeadline(): number | undefined {
    let t = Infinity;
    if (this.#publishAt !== undefined) t = this.#publishAt;
    if (this.#spfAt !== undefined && this.#spfAt < t) t = this.#spfAt;
    if (this.#flushAt !== undefined && this.#flushAt < t) t = this.#flushAt;
    if (this.#own !== undefined && this.#refreshAt < t) t = this.#refreshAt;
    if (this.#waitingAt < t) t = this.#waitingAt;
    const e = this.#expiry.peek();
    if (e !== undefined && e < t) t = e;
    return t === Infinity ? undefined : t;
  }

  /** True while a publication, a paced flood or a route recomputation is scheduled. */
  hasPendingWork(): boolean {
    return this.#publishAt !== undefined || this.#spfAt !== undefined || this.#flushAt !== undefined || this.#waiting.size > 0;
  }

  nextHop(dest: NodeId): NodeId | undefined {
    return this.#nextHops.get(dest);
  }

  /**
   * Splits destinations (packed 32-byte keys, as fan-out carries them) by next hop in one
   * call to the routing table: the local key groups under the local node, unreachable keys
   * under undefined.
   */
  groupByNextHop(packed: Uint8Array): NextHopShare[] {
    if (packed.length % KEY_BYTES !== 0) throw new PnetError('ERR_BAD_OPTION', 'groupByNextHop: packed keys must be a multiple of 32 bytes');
    if (this.#paths.groupByNextHop) return this.#paths.groupByNextHop(packed);
    const keys = asBuffer(packed);
    const shares = new Map<NodeId | undefined, number[]>();
    for (let i = 0; i < keys.length / KEY_BYTES; i++) {
      const dest = nodeIdAt(keys, i * KEY_BYTES);
      const hop = dest === this.nodeId ? dest : this.#nextHops.get(dest);
      let list = shares.get(hop);
      if (list === undefined) shares.set(hop, (list = []));
      list.push(i);
    }
    return [...shares].map(([hop, positions]) => ({
      hop,
      indexes: Uint32Array.from(positions),
      ids: Buffer.concat(positions.map((i) => keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES))),
    }));
  }

  /** Node ids from this node to dest, both included (an equal-cost path through nextHop(dest)). */
  path(dest: NodeId): NodeId[] | undefined {
    return this.#paths.path(dest);
  }

  routes(): Route[] {
    return this.#paths.routes();
  }

  /** Largest message this router sends or accepts: the IO glue's frame-length bound. */
  get maxMessageBytes(): number {
    return this.#maxMessageBytes;
  }

  get routeCount(): number {
    return this.#nextHops.size;
  }

  /** Sequence number of our latest record (initialSequence - 1 before the first). */
  get sequence(): bigint {
    return this.#lastSeq;
  }

  record(origin: NodeId): RecordInfo | undefined {
    const s = this.#records.get(origin);
    return s === undefined ? undefined : { ...this.#info(s) };
  }

  /** The link-state map, ours included (a snapshot). */
  records(): Map<NodeId, RecordInfo> {
    const out = new Map<NodeId, RecordInfo>();
    for (const [id, s] of this.#records) out.set(id, this.#info(s));
    return out;
  }

  neighbours(): NeighbourInfo[] {
    return [...this.#neighbours].map(([nodeId, n]) => ({ nodeId, cost: n.cost, srttMs: n.srtt }));
  }

  neighbourCost(nodeId: NodeId): number | undefined {
    return this.#neighbours.get(nodeId)?.cost;
  }

  stats(): RouterStats {
    return { ...this.#stats, dropped: { ...this.#stats.dropped } };
  }

  /** The integer cost (>= 1) this router gives a link of smoothed RTT `srttMs` (before hysteresis). */
  costFromRtt(srttMs: number): number {
    const c = this.#costBase + Math.round(srttMs / this.#costUnit);
    return Math.min(MAX_COST, Math.max(1, c));
  }

  // -------------------------------------------------------------------------
  // Internals

  #info(s: Stored): RecordInfo {
    const r = s.rec;
    return { origin: r.origin, seq: r.seq, lifetimeMs: r.lifetimeMs, links: r.links, expiresAt: s.expiresAt, bytes: r.bytes };
  }

  #begin(nowMs: number): void {
    if (typeof nowMs !== 'number' || Number.isNaN(nowMs)) throw new TypeError(`now must be a number of ms, got ${String(nowMs)}`);
    if (nowMs > this.#now) this.#now = nowMs;
    this.#expire();
    if (this.#now >= this.#waitingAt) this.#acceptWaiting();
  }

  #finish(): readonly RouterAction[] {
    const now = this.#now;
    if (this.#own !== undefined && now >= this.#refreshAt) {
      this.#publishAt = now;
      this.#mustPublish = true;
    }
    if (this.#publishAt !== undefined && now >= this.#publishAt) this.#publish();
    if (this.#spfAt !== undefined && now >= this.#spfAt) this.#runSpf();
    let actions: RouterAction[] | undefined;
    if (this.#flushAt !== undefined && now >= this.#flushAt) actions = this.#flush();
    if (this.#routeChanges.length === 0) return actions ?? NO_ACTIONS;
    actions ??= [];
    if (this.#routeChanges.length > 0) {
      actions.push({ type: 'routes-changed', changed: this.#routeChanges });
      this.#routeChanges = [];
    }
    return actions;
  }

  /** Queues a record for a neighbour; it leaves at the next flush (at once unless one happened less than floodPacingMs ago). */
  #enqueue(to: NodeId, rec: LinkStateRecord, expiresAt: number): void {
    if (!this.#neighbours.has(to)) return;
    let q = this.#out.get(to);
    if (q === undefined) {
      q = new Map();
      this.#out.set(to, q);
    }
    const before = q.size;
    q.set(rec.origin, { rec, expiresAt });
    this.#queued += q.size - before;
    if (this.#flushAt === undefined) this.#flushAt = Math.max(this.#now, this.#lastFlushAt + this.#floodPacingMs);
  }

  /** The neighbour `from` holds `rec` (it sent it to us): no need to send it back. */
  #unqueue(from: NodeId, origin: NodeId): void {
    const q = this.#out.get(from);
    if (q !== undefined && q.delete(origin)) this.#queued--;
  }

  #flush(): RouterAction[] {
    const now = this.#now;
    this.#flushAt = undefined;
    this.#lastFlushAt = now;
    const actions: RouterAction[] = [];
    // A record flooded alone goes to every neighbour but one in the same message: encode it once.
    let single: Outgoing | undefined;
    let singleMessage: Uint8Array | undefined;
    for (const [to, queue] of this.#out) {
      if (queue.size === 0) continue;
      this.#stats.recordsSent += queue.size;
      if (queue.size === 1) {
        const q: Outgoing = queue.values().next().value!;
        if (single === undefined || q.rec !== single.rec || q.expiresAt !== single.expiresAt) {
          single = q;
          singleMessage = encodeMessage([{ remainingMs: Math.max(1, q.expiresAt - now), record: q.rec.bytes }]);
        }
        actions.push({ type: 'send', to, bytes: singleMessage! });
        this.#stats.messagesSent++;
      } else {
        const entries: MessageEntry[] = [];
        for (const q of queue.values()) entries.push({ remainingMs: Math.max(1, q.expiresAt - now), record: q.rec.bytes });
        for (const bytes of packMessages(entries, this.#maxMessageBytes)) {
          actions.push({ type: 'send', to, bytes });
          this.#stats.messagesSent++;
        }
      }
      queue.clear();
    }
    this.#queued = 0;
    return actions;
  }

  #sample(n: Neighbour, rttMs: number): void {
    if (typeof rttMs !== 'number' || !Number.isFinite(rttMs) || rttMs < 0) return;
    const first = n.srtt === undefined;
    n.srtt = first ? rttMs : n.srtt! + this.#smoothing * (rttMs - n.srtt!);
    if (!first) {
      // Hysteresis on the unrounded cost: the announced cost moves only when the smoothed RTT
      // has left its band and stayed out for holdMs, never on rounding flips or a short spike.
      const band = Math.max(this.#hystMin, this.#hystRatio * n.cost);
      const exact = this.#costBase + n.srtt / this.#costUnit - n.cost;
      const raw = this.#costBase + rttMs / this.#costUnit - n.cost;
      // Outside only while the smoothed cost AND the sample are beyond the band on the same
      // side: the sample back inside (a stall is over) restarts the hold.
      if (Math.abs(exact) < band || Math.abs(raw) < band || exact > 0 !== raw > 0) {
        n.outsideSince = undefined;
        return;
      }
      n.outsideSince ??= this.#now;
      if (this.#now - n.outsideSince < this.#holdMs) return;
    }
    n.outsideSince = undefined;
    const cost = this.costFromRtt(n.srtt);
    if (cost === n.cost) return;
    n.cost = cost;
    this.#selfLinksChanged();
  }

  #selfLinksChanged(): void {
    this.#selfDirty = true;
    this.#scheduleSpf();
    this.#schedulePublish();
  }

  #schedulePublish(): void {
    const at = Math.max(this.#now + this.#publishDelayMs, this.#lastPublishAt + this.#minPublishMs);
    if (at > this.#now + this.#publishDelayMs && this.#publishAt === undefined) this.#stats.publishRateLimited++;
    if (this.#publishAt === undefined || at < this.#publishAt) this.#publishAt = at;
  }

  #scheduleSpf(): void {
    if (this.#spfAt === undefined) this.#spfAt = Math.max(this.#now + this.#spfDelayMs, this.#lastSpfAt + this.#spfMinMs);
  }

  /** Our links: every up neighbour, the cheapest maxLinks if there are more. */
  #liveLinks(): Link[] {
    const links: Link[] = [];
    for (const [to, n] of this.#neighbours) links.push({ to, cost: n.cost });
    if (links.length > this.#maxLinks) {
      links.sort((a, b) => a.cost - b.cost || (a.to < b.to ? -1 : 1));
      links.length = this.#maxLinks;
    }
    return links;
  }

  #publish(): void {
    this.#publishAt = undefined;
    const must = this.#mustPublish;
    this.#mustPublish = false;
    const links = this.#liveLinks();
    // A change undone before it left (a neighbour down and up again) publishes nothing.
    if (!must && this.#own !== undefined && sameLinks(sortedLinks(this.#own.links), sortedLinks(links))) return;
    if (this.#lastSeq >= MAX_SEQUENCE) {
      // 2^64 - 1 reached (only a record we signed can bring us here): nothing above it can be signed.
      this.#refreshAt = Infinity;
      return;
    }
    const seq = this.#lastSeq + 1n;
    const bytes = encodeRecord({ origin: this.nodeId, seq, lifetimeMs: this.#lifetimeMs, links }, (d) => this.#signer.sign(d));
    const decoded = decodeRecord(bytes, MAX_LINKS);
    if (!decoded.ok) throw new Error(`own record does not decode: ${decoded.detail}`);
    this.#lastSeq = seq;
    this.#own = decoded.value;
    const now = this.#now;
    this.#lastPublishAt = now;
    this.#refreshAt = now + this.#refreshMs * (1 - this.#refreshJitter * this.#random());
    const stored: Stored = { rec: decoded.value, expiresAt: now + this.#lifetimeMs, acceptedAt: now };
    this.#records.set(this.nodeId, stored);
    this.#stats.published++;
    for (const to of this.#neighbours.keys()) this.#enqueue(to, decoded.value, stored.expiresAt);
  }

  #expire(): void {
    const now = this.#now;
    let top = this.#expiry.peek();
    if (top === undefined || top > now) return;
    while (top !== undefined && top <= now) {
      const [at, id] = this.#expiry.pop();
      const s = this.#records.get(id);
      if (s !== undefined && s.expiresAt === at && id !== this.nodeId) {
        this.#records.delete(id);
        this.#stats.expiredRecords++;
        this.#graphChanged(id, s.rec, undefined);
      }
      top = this.#expiry.peek();
    }
    if (this.#expiry.size > 2 * this.#records.size + 64) {
      const live: [number, NodeId][] = [];
      for (const [id, s] of this.#records) if (id !== this.nodeId) live.push([s.expiresAt, id]);
      this.#expiry.rebuild(live);
    }
  }

  #drop(reason: DropReason): undefined {
    this.#stats.dropped[reason]++;
    return undefined;
  }

  /** One record: `len` bytes at `off` of the message `msg`. */
  #receive(from: NodeId, msg: Buffer, off: number, len: number, remainingMs: number): void {
    if (len < MIN_RECORD_BYTES || !isRecordStart(msg, off)) {
      this.#drop('malformed');
      return;
    }
    const origin = nodeIdAt(msg, off + ORIGIN_OFFSET);
    if (origin === this.nodeId) {
      this.#receiveOwn(from, msg.subarray(off, off + len));
      return;
    }
    const known = this.#records.get(origin);
    if (known !== undefined) {
      // Big-endian sequence numbers compare as bytes (no BigInt on this hot path).
      const k = known.rec.bytes;
      const order = msg.compare(k, SEQ_OFFSET, SEQ_OFFSET + 8, off + SEQ_OFFSET, off + SEQ_OFFSET + 8);
      if (order < 0) {
        // The neighbour is behind: hand it our newer copy (this is also how a
        // restarted origin learns the number it must jump above).
        this.#enqueue(from, known.rec, known.expiresAt);
        return this.#drop('replayed');
      }
      if (order === 0) {
        if (len === k.length && msg.compare(k, 0, len, off, off + len) === 0) {
          this.#stats.duplicates++;
          if (this.#queued > 0 && this.#out.get(from)?.get(origin)?.rec === known.rec) this.#unqueue(from, origin);
        } else {
          this.#drop('replayed');
        }
        return;
      }
    } else if (this.#records.size >= this.#maxRecords) {
      return this.#drop('tableFull');
    }
    if (remainingMs === 0) return this.#drop('expired');
    if (known !== undefined && this.#now < known.acceptedAt + this.#minArrivalMs) return this.#wait(from, origin, msg.subarray(off, off + len), remainingMs, known.acceptedAt + this.#minArrivalMs);
    const buf = msg.subarray(off, off + len);
    const rec = this.#decodeVerified(buf);
    if (rec === undefined) return;
    const expiresAt = this.#now + Math.min(remainingMs, rec.lifetimeMs, this.#maxRecordLifetimeMs);
    this.#records.set(origin, { rec, expiresAt, acceptedAt: this.#now });
    this.#expiry.push(expiresAt, origin);
    this.#stats.recordsAccepted++;
    this.#graphChanged(origin, known?.rec, rec);
    this.#unqueue(from, origin);
    for (const to of this.#neighbours.keys()) {
      if (to !== from) this.#enqueue(to, rec, expiresAt);
    }
  }

  /** Keeps the newest version that came too soon; it is taken when the arrival interval is over. */
  #wait(from: NodeId, origin: NodeId, buf: Buffer, remainingMs: number, at: number): void {
    const w = this.#waiting.get(origin);
    if (w !== undefined) {
      // Newer of the two wins (sequence numbers compare as big-endian bytes).
      const order = buf.compare(w.bytes, SEQ_OFFSET, SEQ_OFFSET + 8, SEQ_OFFSET, SEQ_OFFSET + 8);
      if (order === 0) {
        this.#stats.duplicates++;
        return;
      }
      this.#stats.arrivalSuperseded++;
      if (order < 0) return;
    }
    this.#stats.arrivalRateLimited++;
    this.#waiting.set(origin, { from, bytes: Buffer.from(buf), remainingMs, arrivedAt: this.#now, at });
    if (at < this.#waitingAt) this.#waitingAt = at;
  }

  /** Takes the waiting versions whose arrival interval is over, as if they arrived now. */
  #acceptWaiting(): void {
    const now = this.#now;
    let next = Infinity;
    for (const [origin, w] of this.#waiting) {
      if (w.at > now) {
        next = Math.min(next, w.at);
        continue;
      }
      this.#waiting.delete(origin);
      const left = w.remainingMs - (now - w.arrivedAt);
      // If its sender went away meanwhile, it is flooded to every neighbour (no one to skip).
      if (left > 0) this.#receive(w.from, w.bytes, 0, w.bytes.length, left);
    }
    this.#waitingAt = next;
  }

  /** Our own id on a record from the network: an old copy, or proof that an earlier run of us got further. */
  #receiveOwn(from: NodeId, buf: Buffer): void {
    const seq = buf.readBigUInt64BE(SEQ_OFFSET);
    const published = this.#own !== undefined;
    if (seq < this.#lastSeq || (seq === this.#lastSeq && !published)) {
      if (this.#own !== undefined) this.#enqueue(from, this.#own, this.#records.get(this.nodeId)!.expiresAt);
      return this.#drop('replayed');
    }
    if (seq === this.#lastSeq && buf.equals(this.#own!.bytes)) {
      this.#stats.duplicates++;
      return;
    }
    // Higher than ours, or same number with other content: only believe it if we really signed it.
    const rec = this.#decodeVerified(buf);
    if (rec === undefined) return;
    if (seq > this.#lastSeq) this.#lastSeq = seq;
    this.#stats.sequenceRecovered++;
    this.#publishAt = this.#now; // at once: every copy of our earlier records is now stale
    this.#mustPublish = true;
  }

  #decodeVerified(buf: Buffer): LinkStateRecord | undefined {
    const cached = this.#cache?.get(buf);
    if (cached !== undefined) {
      if (cached.links.length > this.#maxLinks) return this.#drop('oversized');
      return cached;
    }
    // Copy: the record outlives the message it came in.
    const decoded = decodeRecord(Buffer.from(buf), this.#maxLinks);
    if (!decoded.ok) return this.#drop(decoded.reason);
    const verdict = verifyRecord(decoded.value, this.#verify);
    if (verdict !== 'ok') return this.#drop(verdict);
    this.#cache?.add(decoded.value);
    return decoded.value;
  }

  /** A record appeared, changed or vanished: mark the origins whose effective links it can affect. */
  #graphChanged(origin: NodeId, before: LinkStateRecord | undefined, after: LinkStateRecord | undefined): void {
    this.#markDirty(origin);
    // Only neighbours that entered or left the list change the two-way check of their own links.
    if (before !== undefined) {
      for (const l of before.links) if (after === undefined || !after.linkCost.has(l.to)) this.#markDirty(l.to);
    }
    if (after !== undefined) {
      for (const l of after.links) if (before === undefined || !before.linkCost.has(l.to)) this.#markDirty(l.to);
    }
  }

  #markDirty(origin: NodeId): void {
    if (origin === this.nodeId) return;
    this.#dirty.add(origin);
    if (this.#spfAt === undefined) this.#scheduleSpf();
  }

  /** Links of `origin` that both ends announce (ours come from the neighbour table instead). */
  #effective(origin: NodeId, rec: LinkStateRecord): readonly Link[] {
    const links = rec.links;
    let out: Link[] | undefined;
    for (let i = 0; i < links.length; i++) {
      const l = links[i]!;
      const ok = l.to === this.nodeId ? this.#neighbours.has(origin) : this.#records.get(l.to)?.rec.linkCost.has(origin) === true;
      if (out !== undefined) {
        if (ok) out.push(l);
      } else if (!ok) {
        out = links.slice(0, i);
      }
    }
    return out ?? links;
  }

  #runSpf(): void {
    this.#spfAt = undefined;
    this.#lastSpfAt = this.#now;
    const paths = this.#paths;
    let changed = false;
    if (this.#selfDirty) {
      this.#selfDirty = false;
      paths.setLinks(this.nodeId, this.#liveLinks());
      changed = true;
    }
    for (const origin of this.#dirty) {
      const s = this.#records.get(origin);
      const eff = s === undefined ? null : this.#effective(origin, s.rec);
      const current = this.#applied.get(origin);
      if (eff === null) {
        if (current === undefined) continue;
        paths.removeNode(origin);
        this.#applied.delete(origin);
      } else {
        if (sameLinks(current, eff)) continue;
        paths.setLinks(origin, eff);
        this.#applied.set(origin, eff);
      }
      changed = true;
    }
    this.#dirty.clear();
    if (!changed) return;
    this.#stats.spfRuns++;
    const previous = this.#nextHops;
    const next = new Map<NodeId, NodeId>();
    const out = this.#routeChanges;
    for (const r of paths.routes()) {
      next.set(r.dest, r.nextHop);
      const before = previous.get(r.dest);
      if (before !== r.nextHop) out.push({ dest: r.dest, nextHop: r.nextHop, previousNextHop: before, cost: r.cost, hops: r.hops });
    }
    for (const [dest, before] of previous) {
      if (!next.has(dest)) out.push({ dest, nextHop: undefined, previousNextHop: before });
    }
    this.#nextHops = next;
  }
}
