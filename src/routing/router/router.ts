/**
 * Sans-IO link-state router.
 *
 * A Router is fed events - neighbourUp, neighbourDown, rttSample,
 * recordReceived, tick - each with the current time in ms, and returns the
 * actions the IO glue must carry out: send bytes to a neighbour, or note that
 * routes changed. It owns no socket and no timer and never reads a clock: the
 * glue calls tick() at nextDeadline() (or on a fixed short cadence).
 *
 * Two roles (docs/ROUTING.md): a 'router' holds the map of the routers and floods among them;
 * a 'leaf' sends its own small record to its neighbours that are routers, receives no flood
 * and sends everything that is not a neighbour through its default route (its cheapest
 * router neighbour). A node's links are published in signed fragments of at most
 * fragmentLinks links, each with its own sequence number.
 *
 * See docs/ROUTING.md for the protocol and the timers.
 */
import { Buffer } from 'node:buffer';
import { PnetError } from '../../errors.js';
import { verifySignature, type NodeId } from '../../identity/index.js';
import {
  asBuffer,
  checkMessage,
  decodeRecord,
  KEY_BYTES,
  nodeIdAt,
  encodeRecord,
  idOrderKey,
  MAX_LINKS,
  MAX_SEQUENCE,
  maxRecordBytes,
  MESSAGE_HEADER_BYTES,
  ENTRY_HEADER_BYTES,
  MIN_RECORD_BYTES,
  RECORD_MAGIC,
  RECORD_VERSION,
  RECORD_FLAG_LEAF,
  ORIGIN_OFFSET,
  SEQ_OFFSET,
  FRAGMENT_OFFSET,
  verifyRecord,
  type DropReason,
  type LinkStateRecord,
  type VerifyFn,
} from './codec.js';
import { ExpiryHeap, Origin, recordKey, type Stored } from './origins.js';
import { tablePathComputer, type Link, type NextHopShare, type PathComputer, type PathChange, type PathComputerFactory, type Route } from './path-computer.js';
import type { RecordCache } from './record-cache.js';
import { routerSettings, type RouterSettings } from './settings.js';
import { costFromRtt, sampleCost, type CostState } from './link-cost.js';
import { FloodQueue } from './flood-queue.js';
import { RecordShares } from './record-shares.js';
import { DueMap } from './due-map.js';
import { OwnFragments, type OwnFragment } from './own-fragments.js';
import type {
  NeighbourHint,
  NeighbourInfo,
  NodeRole,
  RecordInfo,
  RecordSigner,
  RouteChange,
  RouterAction,
  RouterOptions,
  RouterStats,
} from './types.js';

export type {
  CostOptions,
  NeighbourHint,
  NeighbourInfo,
  NodeRole,
  RecordInfo,
  RecordSigner,
  RoleOption,
  RouteChange,
  RouterAction,
  RouterOptions,
  RouterStats,
} from './types.js';

/** A record version that arrived too soon after the previous one (acceptance rate limit). */
interface Waiting {
  readonly from: NodeId;
  /** A copy: the message it came in is not ours to keep. */
  readonly bytes: Buffer;
  readonly remainingMs: number;
  readonly arrivedAt: number;
  readonly at: number;
}

interface Neighbour extends CostState {
  role: NodeRole | undefined;
  /** Sequence number of the newest of its own records its role was read from (0n: none yet, the role is a hint). */
  roleSeq: bigint;
  /** It opened the connection to us (NeighbourHint.inbound). */
  inbound: boolean;
  /** Which of our fragments lists this link. */
  frag: number;
}

/** A refresh waiting for its flood, with the neighbours known to hold it already. */
interface Delayed {
  readonly rec: LinkStateRecord;
  readonly expiresAt: number;
  readonly at: number;
  readonly have: Set<NodeId>;
}

function sameLinks(a: readonly Link[] | null | undefined, b: readonly Link[] | null): boolean {
  if (a === b) return true;
  if (a == null || b === null || a.length !== b.length) return (a ?? null) === b;
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.to !== b[i]!.to || a[i]!.cost !== b[i]!.cost) return false;
  }
  return true;
}

/** Same links, stub flags included, whatever the order (our own fragments before and after a change). */
function sameLinkSet(a: readonly Link[], b: readonly Link[]): boolean {
  if (a.length !== b.length) return false;
  const m = new Map(a.map((l) => [l.to, l]));
  return b.every((l) => {
    const x = m.get(l.to);
    return x !== undefined && x.cost === l.cost && (x.stub === true) === (l.stub === true);
  });
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

/** A new version with the same links counts as a refresh (flooded after a short delay) when the held one is at least this old. */
const REFRESH_AGE_MS = 60_000;

/** Returned when an event has nothing to do (never mutated). */
const NO_ACTIONS: readonly RouterAction[] = Object.freeze([]);

export class Router {
  readonly nodeId: NodeId;
  readonly #cfg: RouterSettings;
  #role: NodeRole;
  #leaf: boolean;
  /** Role 'auto': the role follows the neighbours (#checkRole). */
  readonly #auto: boolean;
  /** Current demotion hold (doubles with each demotion). */
  #demoteHold: number;
  /** When an 'auto' router becomes a leaf unless its neighbours change (undefined: not due). */
  #demoteAt: number | undefined;
  /** Neighbours that opened the connection to us, and neighbours not known to be leaves (auto's inputs). */
  #inboundCount = 0;
  #routerCount = 0;
  #roleDirty = false;
  /** After a role change: our next publication also goes to leaf neighbours (they learn it from the record's flag). */
  #announceRole = false;
  readonly #pathFactory: PathComputerFactory;
  readonly #signer: RecordSigner;
  readonly #verify: VerifyFn;
  readonly #cache: RecordCache | undefined;
  readonly #random: () => number;
  /** Shortest paths (routers only: a leaf keeps no map). */
  #paths: PathComputer | undefined;
  /** The path computer is new (or was replaced): the next recomputation diffs all routes, not its changes. */
  #pathsFresh = true;

  #now = -Infinity;
  readonly #neighbours = new Map<NodeId, Neighbour>();
  readonly #origins = new Map<NodeId, Origin>();
  /** Bytes of received records by origin and by the neighbour that brought each origin (the map's fair share). */
  readonly #shares: RecordShares;
  readonly #expiry = new ExpiryHeap();

  #lastSeq: bigint;
  readonly #frags: OwnFragments;
  /** Versions that came too soon after the one held (acceptance rate limit), by record key. */
  readonly #waiting = new DueMap<Waiting>();
  /** Refreshes waiting for their flood, by record key. */
  readonly #delayed = new DueMap<Delayed>();

  /** Effective (two-way checked) links given to the path computer. */
  readonly #applied = new Map<NodeId, readonly Link[]>();
  /** Origins whose effective links may have changed since the last run. */
  readonly #dirty = new Set<NodeId>();
  #selfDirty = true;
  #spfAt: number | undefined;
  #lastSpfAt = -Infinity;
  #nextHops = new Map<NodeId, NodeId>();
  /** A leaf's default next hop (its cheapest neighbour not known to be a leaf). */
  #defaultHop: NodeId | undefined;

  /** Records waiting to be sent, per neighbour, by record key (a newer version replaces an older one). */
  readonly #queue: FloodQueue;
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
    ignored: 0,
    sequenceRecovered: 0,
    expiredRecords: 0,
    spfRuns: 0,
    roleChanges: 0,
    originFull: 0,
    evicted: 0,
    dropped: { forged: 0, unsigned: 0, replayed: 0, oversized: 0, malformed: 0, expired: 0, notNeighbour: 0, tableFull: 0 },
  };

  constructor(options: RouterOptions) {
    const cfg = routerSettings(options);
    this.#cfg = cfg;
    this.#queue = new FloodQueue(cfg.floodPacingMs, cfg.maxMessageBytes, this.#stats);
    this.#shares = new RecordShares(cfg, this.#origins);
    // 'auto' starts as a leaf: most nodes join through one peer and carry no transit.
    this.#auto = cfg.role === 'auto';
    this.#role = cfg.role === 'router' ? 'router' : 'leaf';
    this.#leaf = this.#role === 'leaf';
    this.#demoteHold = cfg.demoteMs;
    this.#signer = options.signer;
    this.nodeId = options.signer.nodeId;
    this.#lastSeq = cfg.initialSequence - 1n;
    this.#frags = new OwnFragments(cfg, cfg.fragmentLinks);
    this.#verify = options.verify ?? verifySignature;
    this.#cache = options.recordCache;
    this.#random = options.random ?? Math.random;
    this.#pathFactory = options.pathComputer ?? tablePathComputer;
    this.#paths = this.#leaf ? undefined : this.#pathFactory(this.nodeId);
  }

  // -------------------------------------------------------------------------
  // Events

  /**
   * A connection to `nodeId` is up (again). Optional first RTT sample, e.g. from the handshake,
   * and what the glue knows of the peer (its role). A router sends a neighbour that is not a
   * leaf its whole map (database exchange); a leaf sends its own record to a router neighbour.
   */
  neighbourUp(nodeId: NodeId, nowMs: number, rttMs?: number, hint?: NeighbourHint): readonly RouterAction[] {
    this.#begin(nowMs);
    if (nodeId !== this.nodeId) {
      let n = this.#neighbours.get(nodeId);
      if (n === undefined) {
        const inbound = hint?.inbound === true;
        n = { srtt: undefined, cost: this.costFromRtt(this.#cfg.defaultRtt), outsideSince: undefined, role: hint?.role, roleSeq: 0n, inbound, frag: this.#frags.assign(nodeId) };
        this.#neighbours.set(nodeId, n);
        this.#count(n, 1);
        this.#selfLinksChanged(n.frag);
        this.#markDirty(nodeId);
      } else {
        if (hint?.inbound !== undefined && hint.inbound !== n.inbound) {
          this.#count(n, -1);
          n.inbound = hint.inbound;
          this.#count(n, 1);
        }
        if (hint?.role !== undefined && hint.role !== n.role) this.#setRole(nodeId, n, hint.role);
      }
      // A role change (auto) at once, so that the database exchange below follows the new role.
      if (this.#roleDirty) this.#checkRole();
      if (rttMs !== undefined) this.#sample(nodeId, n, rttMs);
      this.#sendMap(nodeId, n);
    }
    return this.#finish();
  }

  /**
   * What the glue learnt of an up neighbour since it came up (a second hello: its role changed).
   * Unlike neighbourUp, no database exchange (a leaf that turns out to be a router gets the map).
   * Ignored once the neighbour's own records told its role: they are signed and numbered, and
   * every later role change reaches us in them.
   */
  neighbourHint(nodeId: NodeId, hint: NeighbourHint, nowMs: number): readonly RouterAction[] {
    this.#begin(nowMs);
    const n = this.#neighbours.get(nodeId);
    // Its signed records outrank a hello (which may have been overtaken by them on the way).
    if (n !== undefined && n.roleSeq === 0n && hint.role !== undefined && hint.role !== n.role) this.#setRole(nodeId, n, hint.role);
    return this.#finish();
  }

  /** The connection to `nodeId` is gone. */
  neighbourDown(nodeId: NodeId, nowMs: number): readonly RouterAction[] {
    this.#begin(nowMs);
    const n = this.#neighbours.get(nodeId);
    if (n !== undefined) {
      this.#neighbours.delete(nodeId);
      this.#count(n, -1);
      this.#frags.at(n.frag)!.members.delete(nodeId);
      this.#queue.drop(nodeId);
      this.#selfLinksChanged(n.frag);
      this.#markDirty(nodeId);
    }
    return this.#finish();
  }

  /** A round-trip time measured to a neighbour. Ignored for non-neighbours and nonsense values. */
  rttSample(nodeId: NodeId, rttMs: number, nowMs: number): readonly RouterAction[] {
    this.#begin(nowMs);
    const n = this.#neighbours.get(nodeId);
    if (n !== undefined) this.#sample(nodeId, n, rttMs);
    return this.#finish();
  }

  /**
   * Whether a cost move on the link to neighbour `nodeId` can change a path now. False for a
   * leaf's link when it has one router to default to, and for a router's stub link to a leaf
   * attached to it alone: the IO glue samples their RTT seldom (the cost rides on the next
   * publication only).
   */
  costChoosesPath(nodeId: NodeId): boolean {
    const n = this.#neighbours.get(nodeId);
    if (n === undefined) return false;
    if (!this.#leaf) return !this.#onlyWayTo(nodeId, n);
    if (n.role === 'leaf') return false;
    let routers = 0;
    for (const other of this.#neighbours.values()) if (other.role !== 'leaf' && ++routers > 1) return true;
    return false;
  }

  /** A routing message from a neighbour (the bytes of a 'send' action of its router). */
  recordReceived(fromNeighbour: NodeId, bytes: Uint8Array, nowMs: number): readonly RouterAction[] {
    this.#begin(nowMs);
    this.#stats.messagesReceived++;
    if (!this.#neighbours.has(fromNeighbour)) {
      this.#stats.dropped.notNeighbour++;
    } else {
      const buf = asBuffer(bytes);
      const count = checkMessage(buf, this.#cfg.maxMessageBytes);
      if (typeof count !== 'number') {
        this.#stats.dropped[count.reason]++;
      } else {
        let off = MESSAGE_HEADER_BYTES;
        for (let i = 0; i < count; i++) {
          const remainingMs = buf.readUInt32BE(off);
          const length = buf.readUInt32BE(off + 4);
          off += ENTRY_HEADER_BYTES;
          this.#stats.recordsReceived++;
          if (length > this.#cfg.maxRecordBytes) this.#drop('oversized');
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
    const publishAt = this.#frags.publishAt;
    if (publishAt !== undefined) t = publishAt;
    if (this.#spfAt !== undefined && this.#spfAt < t) t = this.#spfAt;
    const flushAt = this.#queue.flushAt;
    if (flushAt !== undefined && flushAt < t) t = flushAt;
    t = Math.min(t, this.#frags.refreshAt, this.#waiting.nextAt, this.#delayed.nextAt);
    if (this.#demoteAt !== undefined && this.#demoteAt < t) t = this.#demoteAt;
    const e = this.#expiry.peek();
    if (e !== undefined && e < t) t = e;
    return t === Infinity ? undefined : t;
  }

  /** True while a publication, a paced flood, a waiting record or a route recomputation is scheduled. */
  hasPendingWork(): boolean {
    return this.#frags.publishAt !== undefined || this.#spfAt !== undefined || this.#queue.flushAt !== undefined || this.#waiting.size > 0 || this.#delayed.size > 0;
  }

  /** The neighbour to hand traffic for `dest` to. A leaf: the neighbour itself, else its default route. */
  nextHop(dest: NodeId): NodeId | undefined {
    if (this.#leaf) return dest === this.nodeId ? undefined : this.#neighbours.has(dest) ? dest : this.#defaultHop;
    return this.#nextHops.get(dest);
  }

  /** The current role ('auto' nodes: the one chosen now). */
  get role(): NodeRole {
    return this.#role;
  }

  /** A leaf's default route (its cheapest neighbour not known to be a leaf); undefined for a router. */
  get defaultRoute(): NodeId | undefined {
    return this.#defaultHop;
  }

  /**
   * Splits destinations (packed 32-byte keys, as fan-out carries them) by next hop in one
   * call to the routing table: the local key groups under the local node, unreachable keys
   * under undefined. A leaf groups everything but its neighbours under its default route.
   */
  groupByNextHop(packed: Uint8Array): NextHopShare[] {
    if (packed.length % KEY_BYTES !== 0) throw new PnetError('ERR_BAD_OPTION', 'groupByNextHop: packed keys must be a multiple of 32 bytes');
    if (this.#paths?.groupByNextHop) return this.#paths.groupByNextHop(packed);
    const keys = asBuffer(packed);
    const shares = new Map<NodeId | undefined, number[]>();
    for (let i = 0; i < keys.length / KEY_BYTES; i++) {
      const dest = nodeIdAt(keys, i * KEY_BYTES);
      const hop = dest === this.nodeId ? dest : this.nextHop(dest);
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

  /** Node ids from this node to dest, both included (an equal-cost path through nextHop(dest)). A leaf knows paths to its neighbours only. */
  path(dest: NodeId): NodeId[] | undefined {
    if (this.#paths !== undefined) return this.#paths.path(dest);
    if (dest === this.nodeId) return [dest];
    return this.#neighbours.has(dest) ? [this.nodeId, dest] : undefined;
  }

  /** Every destination with a route. A leaf: its neighbours (the rest goes by its default route). */
  routes(): Route[] {
    if (this.#paths !== undefined) return this.#paths.routes();
    return [...this.#neighbours].map(([dest, n]) => ({ dest, nextHop: dest, cost: n.cost, hops: 1 }));
  }

  /** Largest message this router sends or accepts: the IO glue's frame-length bound. */
  get maxMessageBytes(): number {
    return this.#cfg.maxMessageBytes;
  }

  get routeCount(): number {
    return this.#nextHops.size;
  }

  /** Sequence number of our latest record fragment (initialSequence - 1 before the first). */
  get sequence(): bigint {
    return this.#lastSeq;
  }

  record(origin: NodeId): RecordInfo | undefined {
    const o = this.#origins.get(origin);
    return o === undefined ? undefined : this.#info(origin, o);
  }

  /** The link-state map, ours included (a snapshot): one entry per origin, its fragments taken together. */
  records(): Map<NodeId, RecordInfo> {
    const out = new Map<NodeId, RecordInfo>();
    for (const [id, o] of this.#origins) out.set(id, this.#info(id, o));
    return out;
  }

  /** How many records (origin, fragment) the map holds. */
  get fragmentCount(): number {
    let n = 0;
    for (const o of this.#origins.values()) n += o.frags.size;
    return n;
  }

  neighbours(): NeighbourInfo[] {
    return [...this.#neighbours].map(([nodeId, n]) => ({ nodeId, cost: n.cost, srttMs: n.srtt, ...(n.role === undefined ? {} : { role: n.role }) }));
  }

  /** A neighbour's role, once known (undefined: not a neighbour, or not known yet). */
  neighbourRole(nodeId: NodeId): NodeRole | undefined {
    return this.#neighbours.get(nodeId)?.role;
  }

  neighbourCost(nodeId: NodeId): number | undefined {
    return this.#neighbours.get(nodeId)?.cost;
  }

  stats(): RouterStats {
    return { ...this.#stats, dropped: { ...this.#stats.dropped } };
  }

  /** The integer cost (>= 1) this router gives a link of smoothed RTT `srttMs` (before hysteresis). */
  costFromRtt(srttMs: number): number {
    return costFromRtt(this.#cfg, srttMs);
  }

  // -------------------------------------------------------------------------
  // Internals: events in, actions out

  #info(origin: NodeId, o: Origin): RecordInfo {
    let first: Stored | undefined;
    let firstFrag = Infinity;
    let newest: Stored | undefined;
    let expiresAt = Infinity;
    for (const [f, s] of o.frags) {
      if (f < firstFrag) [first, firstFrag] = [s, f];
      if (newest === undefined || s.rec.seq > newest.rec.seq) newest = s;
      if (s.expiresAt < expiresAt) expiresAt = s.expiresAt;
    }
    const links: Link[] = [];
    for (const [to, l] of o.links) links.push(l.stub ? { to, cost: l.cost, stub: true } : { to, cost: l.cost });
    return { origin, seq: newest!.rec.seq, lifetimeMs: newest!.rec.lifetimeMs, links, expiresAt, bytes: first!.rec.bytes, fragments: o.frags.size, leaf: o.leaf };
  }

  #begin(nowMs: number): void {
    if (typeof nowMs !== 'number' || Number.isNaN(nowMs)) throw new TypeError(`now must be a number of ms, got ${String(nowMs)}`);
    if (nowMs > this.#now) this.#now = nowMs;
    this.#expire();
    if (this.#now >= this.#waiting.nextAt) this.#acceptWaiting();
    if (this.#now >= this.#delayed.nextAt) this.#floodDelayed();
  }

  #finish(): readonly RouterAction[] {
    const now = this.#now;
    if (this.#roleDirty || (this.#demoteAt !== undefined && now >= this.#demoteAt)) this.#checkRole();
    if (now >= this.#frags.refreshAt) this.#frags.refresh(now);
    const publishAt = this.#frags.publishAt;
    if (publishAt !== undefined && now >= publishAt) this.#publish();
    if (this.#spfAt !== undefined && now >= this.#spfAt) this.#runSpf();
    let actions: RouterAction[] | undefined;
    const flushAt = this.#queue.flushAt;
    if (flushAt !== undefined && now >= flushAt) actions = this.#queue.flush(now);
    if (this.#routeChanges.length === 0) return actions ?? NO_ACTIONS;
    actions ??= [];
    actions.push({ type: 'routes-changed', changed: this.#routeChanges });
    this.#routeChanges = [];
    return actions;
  }

  /** Whether records flood to this neighbour: not to leaves (they hold no map). */
  #floodsTo(n: Neighbour): boolean {
    return n.role !== 'leaf';
  }

  /** Database exchange with a neighbour that came up or turned out to be a router. */
  #sendMap(to: NodeId, n: Neighbour): void {
    if (!this.#floodsTo(n)) return;
    // A leaf's record about to change goes out when it is published, not twice (a router sends
    // the whole map at once, its own fragments included, so a newcomer has it in one message).
    for (const f of this.#frags) if (f.rec !== undefined && (!this.#leaf || f.publishAt === undefined)) this.#enqueueOwn(to, f.rec);
    // A leaf's whole map is its own record.
    if (this.#leaf) return;
    for (const [id, o] of this.#origins) {
      // Leaves' records stay with the routers they are attached to.
      if (o.leaf || id === this.nodeId) continue;
      for (const s of o.frags.values()) this.#enqueue(to, s.rec, s.expiresAt);
    }
  }

  /** A neighbour's role became known (a hint, or its own record) or changed. */
  #setRole(id: NodeId, n: Neighbour, role: NodeRole): void {
    const before = n.role;
    this.#count(n, -1);
    n.role = role;
    this.#count(n, 1);
    // Our link to it changes its stub flag; a leaf's default route may change.
    if (!this.#leaf || before === 'leaf' || role === 'leaf') this.#selfLinksChanged(n.frag);
    if (role === 'leaf') this.#queue.drop(id);
    else if (before === 'leaf') this.#sendMap(id, n);
  }

  /** Adds (+1) or removes (-1) a neighbour from the counts 'auto' decides on. */
  #count(n: Neighbour, d: 1 | -1): void {
    if (n.inbound) this.#inboundCount += d;
    if (n.role !== 'leaf') this.#routerCount += d;
    if (this.#auto) this.#roleDirty = true;
  }

  /**
   * Role 'auto': a router at once when a neighbour attached to us (inbound) or two neighbours are
   * routers (we may be the only way between them); a leaf again only after no inbound neighbour
   * and at most one router neighbour held for the demotion hold (5 min, doubling with each
   * demotion): a node on the edge of the rule changes role at most once per hold.
   */
  #checkRole(): void {
    this.#roleDirty = false;
    if (!this.#auto) return;
    if (this.#leaf) {
      if (this.#inboundCount > 0 || this.#routerCount >= 2) this.#becomeRouter();
      return;
    }
    if (this.#inboundCount > 0 || this.#routerCount > 1) {
      this.#demoteAt = undefined;
      return;
    }
    if (this.#demoteAt === undefined) this.#demoteAt = this.#now + this.#demoteHold;
    else if (this.#now >= this.#demoteAt) this.#becomeLeaf();
  }

  #becomeRouter(): void {
    this.#role = 'router';
    this.#leaf = false;
    this.#defaultHop = undefined;
    this.#paths = this.#pathFactory(this.nodeId);
    this.#pathsFresh = true;
    this.#roleChanged();
  }

  /**
   * A leaf keeps no map. Routers further away may keep our router fragments until they expire:
   * harmless, since each router neighbour now announces us as a stub and a link whose far end
   * calls us a stub is not transit (#effective).
   */
  #becomeLeaf(): void {
    this.#role = 'leaf';
    this.#leaf = true;
    this.#demoteAt = undefined;
    this.#demoteHold = Math.min(8 * this.#cfg.demoteMs, 2 * this.#demoteHold);
    for (const id of [...this.#origins.keys()]) if (id !== this.nodeId) this.#origins.delete(id);
    this.#shares.clear();
    this.#expiry.rebuild([]);
    this.#queue.clear();
    this.#waiting.clear();
    this.#delayed.clear();
    this.#applied.clear();
    this.#paths = undefined;
    this.#defaultHop = this.#chooseDefault();
    this.#roleChanged();
  }

  /** Our records change flag (and a router's stub flags): all fragments now, and to every neighbour. */
  #roleChanged(): void {
    this.#stats.roleChanges++;
    this.#applied.clear();
    this.#selfDirty = true;
    for (const id of this.#origins.keys()) this.#markDirty(id);
    this.#scheduleSpf();
    for (const f of this.#frags) if (f.rec !== undefined || f.members.size > 0) this.#frags.publishNow(f, this.#now);
    this.#announceRole = true;
  }

  /** After a role change, leaf neighbours get our records too (the flag tells them; they ignore the rest). */
  #announceToLeaves(): void {
    this.#announceRole = false;
    for (const [to, n] of this.#neighbours) {
      if (this.#floodsTo(n)) continue;
      for (const rec of this.#frags.records()) this.#enqueueOwn(to, rec);
    }
  }

  /** Queues a record for a neighbour (if still up). */
  #enqueue(to: NodeId, rec: LinkStateRecord, expiresAt: number): void {
    if (this.#neighbours.has(to)) this.#queue.add(to, rec, expiresAt, this.#now);
  }

  /** Sends `rec` to every neighbour records flood to, but `from`. */
  #flood(rec: LinkStateRecord, expiresAt: number, from: NodeId | undefined): void {
    for (const [to, n] of this.#neighbours) if (to !== from && this.#floodsTo(n)) this.#enqueue(to, rec, expiresAt);
  }

  #sample(id: NodeId, n: Neighbour, rttMs: number): void {
    if (!sampleCost(this.#cfg, n, rttMs, this.#now)) return;
    // A leaf's costs choose no path but its own default route (routers give a leaf no outgoing
    // links and announce their stub links with their own costs), and the cost of the only link
    // of a leaf attached to us alone chooses nothing either: the new cost goes out with the next
    // publication, the record is not re-signed and re-flooded for it.
    if (this.#leaf) this.#defaultHop = this.#chooseDefault();
    else if (!this.#onlyWayTo(id, n)) this.#selfLinksChanged(n.frag);
  }

  /** `id` is a leaf whose own record lists us alone: every path to it ends with our stub link, whatever its cost. */
  #onlyWayTo(id: NodeId, n: Neighbour): boolean {
    if (n.role !== 'leaf') return false;
    const links = this.#origins.get(id)?.links;
    return links !== undefined && links.size === 1 && links.has(this.nodeId);
  }

  // -------------------------------------------------------------------------
  // Our own record: fragments

  #selfLinksChanged(frag: number): void {
    this.#selfDirty = true;
    this.#defaultHop = this.#leaf ? this.#chooseDefault() : undefined;
    this.#scheduleSpf();
    if (this.#frags.changed(frag, this.#now)) this.#stats.publishRateLimited++;
  }

  /** A leaf's default route: its cheapest neighbour not known to be a leaf (ties: smaller key). */
  #chooseDefault(): NodeId | undefined {
    let best: NodeId | undefined;
    let bestCost = Infinity;
    for (const [id, n] of this.#neighbours) {
      if (n.role === 'leaf') continue;
      if (n.cost < bestCost || (n.cost === bestCost && idOrderKey(id) < idOrderKey(best!))) [best, bestCost] = [id, n.cost];
    }
    return best;
  }

  #scheduleSpf(): void {
    if (this.#spfAt === undefined) this.#spfAt = Math.max(this.#now + this.#cfg.spfDelayMs, this.#lastSpfAt + this.#cfg.spfMinMs);
  }

  /** Our links: every up neighbour (a router's links to leaves are stubs). */
  #liveLinks(): Link[] {
    const links: Link[] = [];
    for (const [to, n] of this.#neighbours) links.push({ to, cost: n.cost });
    return links;
  }

  #fragmentLinksOf(f: OwnFragment): Link[] {
    const links: Link[] = [];
    for (const to of f.members) {
      const n = this.#neighbours.get(to)!;
      links.push(!this.#leaf && n.role === 'leaf' ? { to, cost: n.cost, stub: true } : { to, cost: n.cost });
    }
    return links;
  }

  /** Publishes the fragments that are due; the others keep their time. */
  #publish(): void {
    let announced = false;
    for (const index of this.#frags.takeDue(this.#now)) if (this.#publishFragment(index) && this.#announceRole) announced = true;
    if (announced) this.#announceToLeaves();
    this.#frags.armRefresh(this.#now, this.#random);
  }

  /** Publishes fragment `index` if it must or its links changed; true if it did. */
  #publishFragment(index: number): boolean {
    const f = this.#frags.at(index)!;
    const must = f.must;
    f.must = false;
    const links = this.#fragmentLinksOf(f);
    // A change undone before it left (a neighbour down and up again) publishes nothing.
    if (!must && f.rec !== undefined && sameLinkSet(f.rec.links, links)) {
      f.held = false;
      return false;
    }
    const rec = this.#sign(index, links, this.#leaf);
    if (rec === undefined) return false;
    this.#frags.published(f, rec, this.#now);
    this.#keepOwn(index, rec);
    return true;
  }

  /** Signs the next version of our fragment `index` (undefined once the sequence space is used up). */
  #sign(index: number, links: Link[], leaf: boolean): LinkStateRecord | undefined {
    if (this.#lastSeq >= MAX_SEQUENCE) return undefined; // 2^64 - 1 reached (only a record we signed can bring us here)
    const seq = this.#lastSeq + 1n;
    const fields = { origin: this.nodeId, fragment: index, leaf, seq, lifetimeMs: this.#cfg.lifetimeMs, links };
    const decoded = decodeRecord(encodeRecord(fields, (d) => this.#signer.sign(d)), MAX_LINKS);
    if (!decoded.ok) throw new Error(`own record does not decode: ${decoded.detail}`);
    this.#lastSeq = seq;
    this.#stats.published++;
    return decoded.value;
  }

  /** Keeps our new fragment in the map and floods it. */
  #keepOwn(index: number, rec: LinkStateRecord): void {
    const expiresAt = this.#now + this.#cfg.lifetimeMs;
    this.#originOf(this.nodeId).put(index, { rec, expiresAt, acceptedAt: this.#now });
    this.#flood(rec, expiresAt, undefined);
  }

  /** Queues our own fragment `rec` for a neighbour, with the expiry of our copy. */
  #enqueueOwn(to: NodeId, rec: LinkStateRecord): void {
    this.#enqueue(to, rec, this.#origins.get(this.nodeId)?.frags.get(rec.fragment)?.expiresAt ?? this.#now + this.#cfg.lifetimeMs);
  }

  #originOf(id: NodeId): Origin {
    let o = this.#origins.get(id);
    if (o === undefined) {
      o = new Origin();
      this.#origins.set(id, o);
    }
    return o;
  }

  // -------------------------------------------------------------------------
  // Receiving records

  #expire(): void {
    const now = this.#now;
    let top = this.#expiry.peek();
    if (top === undefined || top > now) return;
    while (top !== undefined && top <= now) {
      const [at, id, frag] = this.#expiry.pop();
      const o = this.#origins.get(id);
      const s = o?.frags.get(frag);
      if (s !== undefined && s.expiresAt === at && id !== this.nodeId) {
        this.#stats.expiredRecords++;
        this.#store(id, frag, undefined);
      }
      top = this.#expiry.peek();
    }
    if (this.#expiry.size > 2 * this.fragmentCount + 64) {
      const live: [number, NodeId, number][] = [];
      for (const [id, o] of this.#origins) if (id !== this.nodeId) for (const [f, s] of o.frags) live.push([s.expiresAt, id, f]);
      this.#expiry.rebuild(live);
    }
  }

  /** Replaces (or removes) a received fragment and marks what it can change. */
  #store(origin: NodeId, frag: number, stored: Stored | undefined, from: NodeId = origin): void {
    const o = this.#originOf(origin);
    const wasLeaf = o.leaf;
    const before = o.frags.get(frag)?.rec.bytes.length ?? 0;
    const moved = o.put(frag, stored);
    this.#shares.changed(o, (stored?.rec.bytes.length ?? 0) - before, from);
    if (o.frags.size === 0) this.#origins.delete(origin);
    else if (stored !== undefined) this.#expiry.push(stored.expiresAt, origin, frag);
    this.#markDirty(origin);
    // Only neighbours that entered or left the list change the two-way check of their own links.
    for (const to of moved) this.#markDirty(to);
    if (wasLeaf !== o.leaf) for (const to of o.links.keys()) this.#markDirty(to);
  }

  /** Removes every fragment of `origin` to make room for a lighter neighbour's records (record-shares.ts). */
  #evict(origin: NodeId): void {
    const o = this.#origins.get(origin);
    if (o === undefined) return;
    this.#stats.evicted++;
    for (const frag of [...o.frags.keys()]) this.#store(origin, frag, undefined);
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
    const frag = msg.readUInt16BE(off + FRAGMENT_OFFSET);
    const leafRecord = (msg[off + 5]! & RECORD_FLAG_LEAF) !== 0;
    // The neighbour's own record says what it is (the sender is authenticated by its connection).
    if (origin === from) this.#learnRole(from, leafRecord ? 'leaf' : 'router', msg.readBigUInt64BE(off + SEQ_OFFSET));
    if (origin === this.nodeId) return this.#receiveOwn(from, msg.subarray(off, off + len), frag);
    // A leaf keeps no map; a leaf's record travels one hop, to the routers it is attached to.
    if (this.#leaf || (leafRecord && origin !== from)) {
      this.#stats.ignored++;
      return;
    }
    if (frag >= this.#cfg.maxFragments) return this.#drop('oversized');
    const o = this.#origins.get(origin);
    const known = o?.frags.get(frag);
    const key = recordKey(origin, frag);
    if (known !== undefined && !this.#isNewer(from, msg, off, len, known, key)) return;
    const old = known?.rec.bytes.length ?? 0;
    if (!this.#shares.fitsOrigin(o, old, len)) {
      this.#stats.originFull++;
      return;
    }
    // Checked before the signature (cheap), applied after it (a forged record evicts nothing).
    const victims = this.#shares.room(origin, o, old, len, from);
    if (victims === undefined) return this.#drop('tableFull');
    if (remainingMs === 0) return this.#drop('expired');
    if (known !== undefined && this.#now < known.acceptedAt + this.#cfg.minArrivalMs) return this.#wait(from, key, msg.subarray(off, off + len), remainingMs, known.acceptedAt + this.#cfg.minArrivalMs);
    const rec = this.#decodeVerified(msg.subarray(off, off + len));
    if (rec === undefined) return;
    for (const victim of victims) this.#evict(victim);
    const expiresAt = this.#now + Math.min(remainingMs, rec.lifetimeMs, this.#cfg.maxRecordLifetimeMs);
    // A refresh: same links as a version held for a while (a quick new version is a recovery or a correction).
    const refresh =
      known !== undefined && this.#cfg.refreshFloodDelayMs > 0 && this.#now - known.acceptedAt >= REFRESH_AGE_MS && known.rec.leaf === rec.leaf && sameLinkSet(known.rec.links, rec.links);
    this.#store(origin, frag, { rec, expiresAt, acceptedAt: this.#now }, from);
    this.#stats.recordsAccepted++;
    this.#queue.remove(from, key);
    if (rec.leaf) return;
    if (!refresh) return this.#flood(rec, expiresAt, from);
    // Nothing changed but the number: let copies from other neighbours arrive first.
    const at = this.#now + this.#cfg.refreshFloodDelayMs * this.#random();
    this.#delayed.set(key, { rec, expiresAt, at, have: new Set([from]) });
  }

  /** Floods the delayed refreshes that are due, to the neighbours that did not send them to us. */
  #floodDelayed(): void {
    for (const d of this.#delayed.takeDue(this.#now)) {
      // A newer version may have replaced it meanwhile (flooded on its own).
      const held = this.#origins.get(d.rec.origin)?.frags.get(d.rec.fragment);
      if (held?.rec !== d.rec) continue;
      for (const [to, n] of this.#neighbours) if (!d.have.has(to) && this.#floodsTo(n)) this.#enqueue(to, d.rec, d.expiresAt);
    }
  }

  /** Whether the record at `off` is newer than the one we hold (an older one is answered with ours). */
  #isNewer(from: NodeId, msg: Buffer, off: number, len: number, known: Stored, key: string): boolean {
    // Big-endian sequence numbers compare as bytes (no BigInt on this hot path).
    const k = known.rec.bytes;
    const order = msg.compare(k, SEQ_OFFSET, SEQ_OFFSET + 8, off + SEQ_OFFSET, off + SEQ_OFFSET + 8);
    if (order < 0) {
      // The neighbour is behind: hand it our newer copy (this is also how a
      // restarted origin learns the number it must jump above).
      this.#enqueue(from, known.rec, known.expiresAt);
      this.#drop('replayed');
      return false;
    }
    if (order === 0) {
      if (len === k.length && msg.compare(k, 0, len, off, off + len) === 0) {
        this.#stats.duplicates++;
        this.#delayed.get(key)?.have.add(from);
        if (this.#queue.holds(from, key, known.rec)) this.#queue.remove(from, key);
      } else {
        this.#drop('replayed');
      }
      return false;
    }
    return true;
  }

  /** The neighbour's own record says its role; an older record than one already read says nothing. */
  #learnRole(from: NodeId, role: NodeRole, seq: bigint): void {
    const n = this.#neighbours.get(from);
    if (n === undefined || seq < n.roleSeq) return;
    n.roleSeq = seq;
    if (n.role !== role) this.#setRole(from, n, role);
  }

  /** Keeps the newest version that came too soon; it is taken when the arrival interval is over. */
  #wait(from: NodeId, key: string, buf: Buffer, remainingMs: number, at: number): void {
    const w = this.#waiting.get(key);
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
    this.#waiting.set(key, { from, bytes: Buffer.from(buf), remainingMs, arrivedAt: this.#now, at });
  }

  /** Takes the waiting versions whose arrival interval is over, as if they arrived now. */
  #acceptWaiting(): void {
    const now = this.#now;
    for (const w of this.#waiting.takeDue(now)) {
      const left = w.remainingMs - (now - w.arrivedAt);
      // If its sender went away meanwhile, it is flooded to every neighbour (no one to skip).
      if (left > 0) this.#receive(w.from, w.bytes, 0, w.bytes.length, left);
    }
  }

  /** Our own id on a record from the network: an old copy, or proof that an earlier run of us got further. */
  #receiveOwn(from: NodeId, buf: Buffer, frag: number): void {
    const seq = buf.readBigUInt64BE(SEQ_OFFSET);
    const mine = this.#frags.at(frag)?.rec;
    if (mine !== undefined) {
      if (seq < mine.seq) {
        this.#enqueueOwn(from, mine);
        return this.#drop('replayed');
      }
      if (seq === mine.seq && buf.equals(mine.bytes)) {
        this.#stats.duplicates++;
        return;
      }
    } else if (frag >= this.#cfg.maxFragments) {
      return this.#drop('oversized');
    }
    // Higher than ours, same number with other content, or a fragment this run never published:
    // only believe it if we really signed it.
    const rec = this.#decodeVerified(buf);
    if (rec === undefined) return;
    if (seq > this.#lastSeq) this.#lastSeq = seq;
    this.#stats.sequenceRecovered++;
    // At once: every copy of that fragment is stale (an unused one goes out empty).
    this.#frags.publishNow(this.#frags.at(this.#frags.grow(frag))!, this.#now);
  }

  #decodeVerified(buf: Buffer): LinkStateRecord | undefined {
    const cached = this.#cache?.get(buf);
    if (cached !== undefined) {
      if (cached.links.length > this.#cfg.maxLinks) return this.#drop('oversized');
      return cached;
    }
    // Copy: the record outlives the message it came in. Its own ArrayBuffer, not a slice of the
    // 8 KiB Buffer pool, which a kept record would pin whole.
    const own = Buffer.allocUnsafeSlow(buf.length);
    buf.copy(own);
    const decoded = decodeRecord(own, this.#cfg.maxLinks);
    if (!decoded.ok) return this.#drop(decoded.reason);
    const verdict = verifyRecord(decoded.value, this.#verify);
    if (verdict !== 'ok') return this.#drop(verdict);
    this.#cache?.add(decoded.value);
    return decoded.value;
  }

  // -------------------------------------------------------------------------
  // Shortest paths

  #markDirty(origin: NodeId): void {
    if (origin === this.nodeId) return;
    this.#dirty.add(origin);
    if (this.#spfAt === undefined) this.#scheduleSpf();
  }

  /**
   * Links of `origin` that count: none for a leaf (never transit); a stub link (a leaf attached
   * to a router) as the router says; any other only if both ends announce it (links towards us:
   * only if the origin is our up neighbour). An origin that one of its link ends calls a leaf
   * (a stub link, or our neighbour's role) has none either.
   */
  #effective(origin: NodeId, o: Origin): readonly Link[] {
    if (o.leaf) return [];
    const out: Link[] = [];
    for (const [to, l] of o.links) {
      if (to === this.nodeId) {
        if (this.#neighbours.get(origin)?.role === 'leaf') return [];
        if (this.#neighbours.has(origin)) out.push({ to, cost: l.cost });
        continue;
      }
      const back = this.#origins.get(to)?.links.get(origin);
      // A router that lists the origin as its stub says the origin is a leaf now (an 'auto' node
      // that left the routers, whose old router fragments may linger elsewhere): no transit.
      if (back?.stub === true) return [];
      if (l.stub || back !== undefined) out.push({ to, cost: l.cost });
    }
    return out;
  }

  #runSpf(): void {
    this.#spfAt = undefined;
    this.#lastSpfAt = this.#now;
    if (this.#paths === undefined) return this.#leafRoutes();
    const paths = this.#paths;
    let changed = false;
    if (this.#selfDirty) {
      this.#selfDirty = false;
      paths.setLinks(this.nodeId, this.#liveLinks());
      changed = true;
    }
    for (const origin of this.#dirty) {
      const o = this.#origins.get(origin);
      const eff = o === undefined ? null : this.#effective(origin, o);
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
    // The table's own change list: O(changed) per recomputation instead of O(routes) (10,000 routes per leaf joining a hub).
    const changes = this.#pathsFresh ? undefined : paths.changes?.();
    this.#pathsFresh = false;
    if (changes === undefined) this.#diffRoutes(paths.routes());
    else this.#applyChanges(changes, paths);
  }

  /** Records routes-changed entries for the destinations whose next hop moved or vanished (a cost change alone is no event). */
  #applyChanges(changes: readonly PathChange[], paths: PathComputer): void {
    const hops = this.#nextHops;
    const out = this.#routeChanges;
    for (const c of changes) {
      if (c.dest === this.nodeId) continue;
      const before = hops.get(c.dest);
      if (c.nextHop === before) continue;
      if (c.nextHop === undefined) {
        hops.delete(c.dest);
        out.push({ dest: c.dest, nextHop: undefined, previousNextHop: before });
      } else {
        hops.set(c.dest, c.nextHop);
        const path = paths.path(c.dest);
        out.push({ dest: c.dest, nextHop: c.nextHop, previousNextHop: before, cost: c.cost, hops: path === undefined ? undefined : path.length - 1 });
      }
    }
  }

  /** A leaf's routes: its neighbours (everything else goes by the default route). */
  #leafRoutes(): void {
    this.#dirty.clear();
    if (!this.#selfDirty) return;
    this.#selfDirty = false;
    this.#stats.spfRuns++;
    this.#diffRoutes(this.routes());
  }

  /** Records routes-changed entries against the previous next hops. */
  #diffRoutes(routes: readonly Route[]): void {
    const previous = this.#nextHops;
    const next = new Map<NodeId, NodeId>();
    const out = this.#routeChanges;
    for (const r of routes) {
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
