/**
 * One-process routing simulation: many Router instances (the same code real
 * nodes run), virtual links with delay and loss, a virtual clock driven by an
 * event queue, link cut/restore and node kill/restart. Deterministic for a
 * given seed (keys included).
 *
 * Messages on a link are delivered in order after the link's delay (like a
 * stream), or lost with the link's loss probability. A cut or a kill drops
 * what is in flight; the routers at the ends hear neighbourDown after
 * detectDelayMs (the transport's liveness deadline). Routers' timers run as
 * TICK events at their nextDeadline().
 *
 * Cost: keys are imported from seeds (~0.35 ms each); all routers share one
 * SharedRecordCache, so each record version is decoded and Ed25519-verified
 * once in the whole simulation rather than once per router.
 */
import { createPrivateKey, createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { Buffer } from 'node:buffer';
import { nodeIdFromPublicKey, type NodeId } from '../../identity/index.js';
import { Router, type NeighbourHint, type NodeRole, type RoleOption, type RecordSigner, type RouteChange, type RouterAction, type RouterOptions } from './router.js';
import { SharedRecordCache } from './record-cache.js';
import { idOrderKey } from './codec.js';

/** Seeded PRNG (mulberry32): uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A RecordSigner from a 32-byte Ed25519 seed (no certificate: cheap, for simulations and tests). */
export function simulationSigner(seed: Uint8Array): RecordSigner & { readonly privateKey: KeyObject } {
  if (seed.length !== 32) throw new RangeError('an Ed25519 seed is 32 bytes');
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  const nodeId = nodeIdFromPublicKey(Buffer.from(jwk.x as string, 'base64url'));
  return { nodeId, privateKey, sign: (data: Uint8Array) => cryptoSign(null, data, privateKey) };
}

/** Deterministic signer number `index` of a simulation seeded with `seed`. */
export function seededSigner(seed: number, index: number): RecordSigner & { readonly privateKey: KeyObject } {
  const s = Buffer.alloc(32);
  s.write('pnet-sim', 0, 'latin1');
  s.writeUInt32BE(seed >>> 0, 20);
  s.writeUInt32BE(index >>> 0, 24);
  return simulationSigner(s);
}

/**
 * A random connected graph on n nodes: a random recursive tree (node i joins
 * a random earlier node) plus random extra edges up to n * avgDegree / 2
 * edges. Returns index pairs, no duplicates or self-loops.
 */
export function randomConnectedGraph(n: number, avgDegree: number, random: () => number): [number, number][] {
  const edges: [number, number][] = [];
  const seen = new Set<number>();
  const add = (a: number, b: number): boolean => {
    if (a === b) return false;
    const k = a < b ? a * n + b : b * n + a;
    if (seen.has(k)) return false;
    seen.add(k);
    edges.push([a, b]);
    return true;
  };
  for (let i = 1; i < n; i++) add(i, Math.floor(random() * i));
  const target = Math.min(Math.floor((n * avgDegree) / 2), (n * (n - 1)) / 2);
  while (edges.length < target) add(Math.floor(random() * n), Math.floor(random() * n));
  return edges;
}

export interface SimulationOptions {
  /** Seeds the PRNG (loss, jitter, keys). Default 1. */
  seed?: number;
  /** Options for every router (signer excluded; random and recordCache are set by the simulation). */
  router?: Omit<Partial<RouterOptions>, 'signer'>;
  /** Default one-way link delay, ms (default 5). */
  delayMs?: number;
  /** Default probability that a message is lost (default 0). */
  lossRate?: number;
  /** Time from a cut or kill until the ends hear neighbourDown (default 0). */
  detectDelayMs?: number;
  /** Feed every up link an RTT sample this often (0 = only at link up; default 0). */
  rttSampleIntervalMs?: number;
  /** Relative RTT noise of those samples, e.g. 0.1 = +-10% (default 0). */
  rttJitter?: number;
  /** Tell each router its neighbour's role at neighbourUp (as the node glue's hello would; default true). */
  roleHints?: boolean;
  /** Called for every routes-changed action. */
  onRoutesChanged?: (node: NodeId, changed: readonly RouteChange[], now: number) => void;
}

export interface SimLinkOptions {
  delayMs?: number;
  lossRate?: number;
  /** The end that opened the connection: the other end is told the neighbour is inbound (role 'auto' reads it). */
  dialer?: NodeId;
}

interface SimLink {
  readonly a: SimNode;
  readonly b: SimNode;
  readonly delayMs: number;
  lossRate: number;
  /** The end that dialled, if the test said. */
  readonly dialer: NodeId | undefined;
  /** Not cut by the test. */
  admin: boolean;
  up: boolean;
  epoch: number;
}

/** Routing bytes and messages one node sent and received (virtual links, payload bytes only). */
export interface NodeTraffic {
  bytesSent: number;
  bytesReceived: number;
  messagesSent: number;
  messagesReceived: number;
}

interface SimNode {
  readonly id: NodeId;
  readonly signer: RecordSigner;
  /** The role option ('auto': the router's current role counts). */
  role: RoleOption;
  router: Router | undefined;
  readonly traffic: NodeTraffic;
  readonly links: Map<NodeId, SimLink>;
  tickAt: number;
  generation: number;
  /** Guard against a router whose deadline does not advance. */
  lastTick: number;
  sameTimeTicks: number;
}

const DELIVER = 0;
const TICK = 1;
const DOWN = 2;
const CALL = 3;
const RTT = 4;

type SimEvent =
  | { kind: typeof DELIVER; time: number; link: SimLink; epoch: number; from: SimNode; to: SimNode; bytes: Uint8Array }
  | { kind: typeof TICK; time: number; node: SimNode; generation: number }
  | { kind: typeof DOWN; time: number; link: SimLink; epoch: number; node: SimNode; peer: NodeId }
  | { kind: typeof CALL; time: number; fn: () => void }
  | { kind: typeof RTT; time: number };

/**
 * Event queue ordered by (time, insertion): a heap of distinct times, each
 * with a FIFO bucket. Link delays are whole milliseconds in practice, so most
 * events share a time with others and cost O(1) to queue.
 */
class EventQueue {
  #times: number[] = [];
  #buckets = new Map<number, { events: SimEvent[]; next: number }>();

  peekTime(): number | undefined {
    return this.#times[0];
  }

  push(ev: SimEvent): void {
    const b = this.#buckets.get(ev.time);
    if (b !== undefined) {
      b.events.push(ev);
      return;
    }
    this.#buckets.set(ev.time, { events: [ev], next: 0 });
    const h = this.#times;
    const t = ev.time;
    let i = h.length;
    h.push(t);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]! <= t) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = t;
  }

  pop(): SimEvent | undefined {
    const t = this.#times[0];
    if (t === undefined) return undefined;
    const b = this.#buckets.get(t)!;
    const ev = b.events[b.next++]!;
    if (b.next === b.events.length) {
      this.#buckets.delete(t);
      this.#popTime();
    }
    return ev;
  }

  #popTime(): void {
    const h = this.#times;
    const last = h.pop()!;
    const n = h.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && h[c + 1]! < h[c]!) c++;
      if (h[c]! >= last) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
  }
}

export interface SimulationCounters {
  events: number;
  messagesSent: number;
  messagesDelivered: number;
  messagesLost: number;
  /** Sends to a neighbour over a link the simulation already knows is down. */
  messagesUndeliverable: number;
  bytesSent: number;
  routeChanges: number;
  ticks: number;
}

export interface RouteMismatch {
  readonly node: NodeId;
  readonly dest: NodeId;
  readonly expected: NodeId | undefined;
  readonly actual: NodeId | undefined;
}

export interface PathMismatch {
  readonly source: NodeId;
  readonly dest: NodeId;
  /** Infinity: no path. */
  readonly expectedCost: number;
  /** undefined: the walk did not arrive. */
  readonly actualCost: number | undefined;
  readonly hops: number;
}

export interface PathCheck {
  checked: number;
  mismatches: number;
  /** The first 100 mismatches. */
  examples: PathMismatch[];
}

export interface RouteCheck {
  /** (router, destination) pairs compared. */
  readonly checked: number;
  readonly mismatches: number;
  /** The first 100 mismatches. */
  readonly examples: RouteMismatch[];
}

/** The many-router simulation. */
export class RoutingSimulation {
  readonly random: () => number;
  readonly recordCache = new SharedRecordCache();
  readonly counters: SimulationCounters = {
    events: 0,
    messagesSent: 0,
    messagesDelivered: 0,
    messagesLost: 0,
    messagesUndeliverable: 0,
    bytesSent: 0,
    routeChanges: 0,
    ticks: 0,
  };
  #now = 0;
  readonly #seed: number;
  readonly #options: SimulationOptions;
  readonly #queue = new EventQueue();
  readonly #nodes = new Map<NodeId, SimNode>();
  readonly #order: SimNode[] = [];
  /** Events other than ticks and RTT samples waiting in the queue. */
  #busy = 0;
  #rttScheduled = false;
  #lossRate: number;

  constructor(options: SimulationOptions = {}) {
    this.#options = options;
    this.#seed = options.seed ?? 1;
    this.random = seededRandom(this.#seed);
    this.#lossRate = options.lossRate ?? 0;
  }

  get now(): number {
    return this.#now;
  }

  /** All node ids ever added, in order of addition. */
  get nodeIds(): NodeId[] {
    return this.#order.map((n) => n.id);
  }

  isAlive(id: NodeId): boolean {
    return this.#node(id).router !== undefined;
  }

  /** Adds a node (alive, no links). The signer defaults to a deterministic one. */
  addNode(signer?: RecordSigner, options?: Omit<Partial<RouterOptions>, 'signer'>): NodeId {
    const s = signer ?? seededSigner(this.#seed, this.#order.length);
    if (this.#nodes.has(s.nodeId)) throw new Error(`node ${s.nodeId} already in the simulation`);
    const role = options?.role ?? this.#options.router?.role ?? 'router';
    const traffic = { bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0 };
    const node: SimNode = { id: s.nodeId, signer: s, role, router: undefined, traffic, links: new Map(), tickAt: Infinity, generation: 0, lastTick: -1, sameTimeTicks: 0 };
    this.#nodes.set(node.id, node);
    this.#order.push(node);
    node.router = this.#makeRouter(node, options);
    return node.id;
  }

  addNodes(count: number, options?: Omit<Partial<RouterOptions>, 'signer'>): NodeId[] {
    const out: NodeId[] = [];
    for (let i = 0; i < count; i++) out.push(this.addNode(undefined, options));
    return out;
  }

  /** The node's role (its router's, or the one it will restart with). */
  role(id: NodeId): NodeRole {
    return roleOf(this.#node(id));
  }

  /** Routing traffic of one node since it was added or since resetTraffic() (a copy). */
  traffic(id: NodeId): NodeTraffic {
    return { ...this.#node(id).traffic };
  }

  resetTraffic(): void {
    for (const n of this.#order) {
      const t = n.traffic;
      t.bytesSent = t.bytesReceived = t.messagesSent = t.messagesReceived = 0;
    }
  }

  router(id: NodeId): Router {
    const r = this.#node(id).router;
    if (r === undefined) throw new Error(`node ${id} is dead`);
    return r;
  }

  /** Adds a link; it comes up now if both ends are alive. */
  connect(a: NodeId, b: NodeId, options: SimLinkOptions = {}): void {
    const na = this.#node(a);
    const nb = this.#node(b);
    if (a === b || na.links.has(b)) throw new Error('duplicate link or self-link');
    const link: SimLink = {
      a: na,
      b: nb,
      delayMs: options.delayMs ?? this.#options.delayMs ?? 5,
      lossRate: options.lossRate ?? this.#lossRate,
      dialer: options.dialer,
      admin: true,
      up: false,
      epoch: 0,
    };
    na.links.set(b, link);
    nb.links.set(a, link);
    this.#maybeUp(link);
    this.#ensureRttSampling();
  }

  /** Cuts a link (both ends hear neighbourDown after detectDelayMs). */
  cut(a: NodeId, b: NodeId): void {
    const link = this.#link(a, b);
    link.admin = false;
    if (link.up) this.#down(link);
  }

  restore(a: NodeId, b: NodeId): void {
    const link = this.#link(a, b);
    link.admin = true;
    this.#maybeUp(link);
  }

  /** Sets the loss probability of every link (and of links added later). */
  setLossRate(lossRate: number): void {
    this.#lossRate = lossRate;
    for (const n of this.#order) for (const l of n.links.values()) l.lossRate = lossRate;
  }

  /** Live links as [a, b] pairs (both ends alive, not cut). */
  upLinks(): [NodeId, NodeId][] {
    const out: [NodeId, NodeId][] = [];
    for (const n of this.#order) for (const [peer, l] of n.links) if (l.a === n && l.up) out.push([n.id, peer]);
    return out;
  }

  /** Stops a node: its router is discarded, in-flight messages lost, neighbours hear neighbourDown after detectDelayMs. */
  kill(id: NodeId): void {
    const node = this.#node(id);
    if (node.router === undefined) return;
    node.router = undefined;
    node.generation++;
    node.tickAt = Infinity;
    for (const link of node.links.values()) if (link.up) this.#down(link);
  }

  /** Starts a killed node again with a fresh router (same key; its sequence number starts over unless given). */
  restart(id: NodeId, options?: Omit<Partial<RouterOptions>, 'signer'>): void {
    const node = this.#node(id);
    if (node.router !== undefined) throw new Error(`node ${id} is alive`);
    if (options?.role !== undefined) node.role = options.role;
    node.router = this.#makeRouter(node, options);
    for (const link of node.links.values()) this.#maybeUp(link);
  }

  /** Hands `bytes` to `to`'s router now as if they came from neighbour `from` (for attack tests). */
  inject(from: NodeId, to: NodeId, bytes: Uint8Array): readonly RouterAction[] {
    const node = this.#node(to);
    const actions = this.router(to).recordReceived(from, bytes, this.#now);
    this.#apply(node, actions);
    return actions;
  }

  /** Runs fn at virtual time `at` (>= now). */
  at(at: number, fn: () => void): void {
    this.#queue.push({ kind: CALL, time: Math.max(at, this.#now), fn });
    this.#busy++;
  }

  /** Processes every event up to and including time `until`, then sets the clock to it. */
  runUntil(until: number): void {
    for (;;) {
      const t = this.#queue.peekTime();
      if (t === undefined || t > until) break;
      this.#step();
    }
    if (until > this.#now) this.#now = until;
  }

  runFor(ms: number): void {
    this.runUntil(this.#now + ms);
  }

  /**
   * Runs until nothing is in flight and no router has a publication or a
   * route computation pending (refresh and expiry timers do not count), or
   * until maxMs of virtual time passed. Returns whether it became idle.
   */
  runUntilIdle(maxMs = 600_000): boolean {
    const deadline = this.#now + maxMs;
    for (;;) {
      if (this.#busy === 0 && this.#settled()) return true;
      const t = this.#queue.peekTime();
      if (t === undefined || t > deadline) return false;
      this.#step();
    }
  }

  /**
   * Compares every router's next hops with shortest paths computed globally
   * (reverse Dijkstra from each destination over the live links, link costs as
   * each router announces them, ties to the smallest next-hop id in key-byte
   * order, see idOrderKey), and checks
   * no router keeps a route to an unreachable or dead node. `sources` limits
   * which routers are checked (default all alive); every destination is.
   */
  checkRoutes(sources?: readonly NodeId[]): RouteCheck {
    const graph = this.#liveGraph();
    const { alive, index, n } = graph;
    // Leaves route by default through their routers: checkPaths covers them.
    const srcIdx = (sources ?? alive.filter((x) => roleOf(x) === 'router').map((x) => x.id)).map((id) => {
      const i = index.get(id);
      if (i === undefined) throw new Error(`node ${id} is not alive`);
      return i;
    });
    const reachable = new Int32Array(n);
    // Destinations in blocks: distances of a block to every node, then each
    // router is checked against the whole block (its tables stay in cache).
    const BLOCK = 128;
    const dist = new Float64Array(BLOCK * n);
    const heap = new PairHeap();
    const result = { checked: 0, mismatches: 0, examples: [] as RouteMismatch[] };
    for (let d0 = 0; d0 < n; d0 += BLOCK) {
      const dEnd = Math.min(n, d0 + BLOCK);
      dist.fill(Infinity);
      for (let d = d0; d < dEnd; d++) reverseDijkstra(graph, d, dist, (d - d0) * n, heap);
      for (const s of srcIdx) checkBlock(graph, s, d0, dEnd, dist, reachable, result);
    }
    for (const s of srcIdx) {
      const r = alive[s]!.router!;
      if (r.routeCount !== reachable[s]) {
        result.mismatches++;
        if (result.examples.length < 100) result.examples.push({ node: alive[s]!.id, dest: alive[s]!.id, expected: undefined, actual: undefined });
      }
    }
    return result;
  }

  /**
   * Follows next hops from each source to its destination (leaves by their default route) and
   * compares the cost of the walk with the global shortest path (Dijkstra over the live links,
   * costs as each node announces them, leaves never transit). Unreachable pairs must have no
   * walk that arrives. For large networks: give a sample of pairs.
   */
  checkPaths(pairs: readonly (readonly [NodeId, NodeId])[]): PathCheck {
    const g = this.#liveGraph();
    const bySource = new Map<number, number[]>();
    for (const [a, b] of pairs) {
      const s = g.index.get(a);
      const d = g.index.get(b);
      if (s === undefined || d === undefined) throw new Error('checkPaths: both ends must be alive');
      let list = bySource.get(s);
      if (list === undefined) bySource.set(s, (list = []));
      list.push(d);
    }
    const dist = new Float64Array(g.n);
    const heap = new PairHeap();
    const result: PathCheck = { checked: 0, mismatches: 0, examples: [] };
    for (const [s, dests] of bySource) {
      forwardDijkstra(g, s, dist, heap);
      for (const d of dests) {
        result.checked++;
        const walk = walkNextHops(g, s, d);
        const want = dist[d]!;
        const ok = want === Infinity ? walk.arrived === false : walk.arrived && walk.cost === want;
        if (ok) continue;
        result.mismatches++;
        if (result.examples.length < 100) result.examples.push({ source: g.alive[s]!.id, dest: g.alive[d]!.id, expectedCost: want, actualCost: walk.arrived ? walk.cost : undefined, hops: walk.hops });
      }
    }
    return result;
  }

  /** The live nodes, numbered, with out-links (costs as each router announces them) and in-links. */
  #liveGraph(): LiveGraph {
    const alive = this.#order.filter((n) => n.router !== undefined);
    const order = alive.map((x) => idOrderKey(x.id));
    const index = new Map<NodeId, number>();
    alive.forEach((n, i) => index.set(n.id, i));
    const n = alive.length;
    const leaf = Uint8Array.from(alive, (x) => (roleOf(x) === 'leaf' ? 1 : 0));
    const graph: LiveGraph = { alive, order, index, n, leaf, outTo: [], outCost: [], inFrom: [], inCost: [] };
    for (let i = 0; i < n; i++) {
      graph.outTo.push([]);
      graph.outCost.push([]);
      graph.inFrom.push([]);
      graph.inCost.push([]);
    }
    for (let i = 0; i < n; i++) {
      const node = alive[i]!;
      for (const [peer, link] of node.links) {
        if (!link.up) continue;
        const j = index.get(peer);
        const cost = node.router!.neighbourCost(peer);
        if (j === undefined || cost === undefined) continue;
        graph.outTo[i]!.push(j);
        graph.outCost[i]!.push(cost);
        graph.inFrom[j]!.push(i);
        graph.inCost[j]!.push(cost);
      }
    }
    return graph;
  }

  // -------------------------------------------------------------------------

  #node(id: NodeId): SimNode {
    const n = this.#nodes.get(id);
    if (n === undefined) throw new Error(`unknown node ${id}`);
    return n;
  }

  #link(a: NodeId, b: NodeId): SimLink {
    const l = this.#node(a).links.get(b);
    if (l === undefined) throw new Error('no such link');
    return l;
  }

  #makeRouter(node: SimNode, options?: Omit<Partial<RouterOptions>, 'signer'>): Router {
    const seed = Math.floor(this.random() * 2 ** 32);
    return new Router({
      ...this.#options.router,
      ...options,
      role: node.role,
      signer: node.signer,
      random: seededRandom(seed),
      recordCache: this.recordCache,
    });
  }

  #rtt(link: SimLink): number {
    const j = this.#options.rttJitter ?? 0;
    return 2 * link.delayMs * (j > 0 ? 1 + j * (2 * this.random() - 1) : 1);
  }

  #maybeUp(link: SimLink): void {
    if (link.up || !link.admin || link.a.router === undefined || link.b.router === undefined) return;
    link.up = true;
    link.epoch++;
    const rtt = this.#rtt(link);
    // The hellos cross before either end takes the other as a neighbour: each says its role of now.
    const hintA = this.#hint(link, link.b);
    const hintB = this.#hint(link, link.a);
    this.#apply(link.a, link.a.router.neighbourUp(link.b.id, this.#now, rtt, hintA));
    if (link.b.router !== undefined) this.#apply(link.b, link.b.router.neighbourUp(link.a.id, this.#now, rtt, hintB));
  }

  /** What the other end is told of `about` at neighbourUp: its role (unless roleHints is false) and whether it dialled. */
  #hint(link: SimLink, about: SimNode): NeighbourHint | undefined {
    const inbound = link.dialer === undefined ? undefined : link.dialer === about.id;
    const role = this.#options.roleHints === false ? undefined : roleOf(about);
    if (inbound === undefined && role === undefined) return undefined;
    return { ...(role === undefined ? {} : { role }), ...(inbound === undefined ? {} : { inbound }) };
  }

  #down(link: SimLink): void {
    link.up = false;
    const epoch = ++link.epoch;
    const detect = this.#options.detectDelayMs ?? 0;
    for (const [node, peer] of [
      [link.a, link.b.id],
      [link.b, link.a.id],
    ] as const) {
      if (node.router === undefined) continue;
      if (detect <= 0) {
        this.#apply(node, node.router.neighbourDown(peer, this.#now));
      } else {
        this.#queue.push({ kind: DOWN, time: this.#now + detect, link, epoch, node, peer });
        this.#busy++;
      }
    }
  }

  #ensureRttSampling(): void {
    const every = this.#options.rttSampleIntervalMs ?? 0;
    if (every > 0 && !this.#rttScheduled) {
      this.#rttScheduled = true;
      this.#queue.push({ kind: RTT, time: this.#now + every });
    }
  }

  #apply(node: SimNode, actions: readonly RouterAction[]): void {
    const c = this.counters;
    for (const a of actions) {
      if (a.type === 'send') {
        const link = node.links.get(a.to);
        if (link === undefined || !link.up) {
          c.messagesUndeliverable++;
          continue;
        }
        c.messagesSent++;
        c.bytesSent += a.bytes.length;
        node.traffic.messagesSent++;
        node.traffic.bytesSent += a.bytes.length;
        if (link.lossRate > 0 && this.random() < link.lossRate) {
          c.messagesLost++;
          continue;
        }
        const to = link.a === node ? link.b : link.a;
        this.#queue.push({ kind: DELIVER, time: this.#now + link.delayMs, link, epoch: link.epoch, from: node, to, bytes: a.bytes });
        this.#busy++;
      } else {
        c.routeChanges += a.changed.length;
        this.#options.onRoutesChanged?.(node.id, a.changed, this.#now);
      }
    }
    this.#reschedule(node);
  }

  #reschedule(node: SimNode): void {
    const r = node.router;
    if (r === undefined) return;
    const d = r.nextDeadline();
    if (d !== undefined && d < node.tickAt) {
      node.tickAt = Math.max(d, this.#now);
      this.#queue.push({ kind: TICK, time: node.tickAt, node, generation: node.generation });
    }
  }

  /** A node that had pending work at the last look: asked first, so a busy network costs O(1) per step. */
  #pendingHint: SimNode | undefined;

  #settled(): boolean {
    if (this.#pendingHint?.router?.hasPendingWork()) return false;
    for (const n of this.#order) {
      if (n.router?.hasPendingWork()) {
        this.#pendingHint = n;
        return false;
      }
    }
    this.#pendingHint = undefined;
    return true;
  }

  #step(): void {
    const ev = this.#queue.pop()!;
    if (ev.time > this.#now) this.#now = ev.time;
    this.counters.events++;
    switch (ev.kind) {
      case DELIVER: {
        this.#busy--;
        const r = ev.to.router;
        if (ev.link.epoch !== ev.epoch || !ev.link.up || r === undefined) {
          this.counters.messagesLost++;
          return;
        }
        this.counters.messagesDelivered++;
        ev.to.traffic.messagesReceived++;
        ev.to.traffic.bytesReceived += ev.bytes.length;
        this.#apply(ev.to, r.recordReceived(ev.from.id, ev.bytes, this.#now));
        return;
      }
      case TICK: {
        const node = ev.node;
        if (node.router === undefined || node.generation !== ev.generation || node.tickAt !== ev.time) return;
        node.tickAt = Infinity;
        this.counters.ticks++;
        if (node.lastTick === this.#now) {
          if (++node.sameTimeTicks > 1000) throw new Error(`router ${node.id} keeps asking for a tick at ${this.#now}`);
        } else {
          node.lastTick = this.#now;
          node.sameTimeTicks = 0;
        }
        this.#apply(node, node.router.tick(this.#now));
        return;
      }
      case DOWN: {
        this.#busy--;
        const r = ev.node.router;
        if (r !== undefined && ev.link.epoch === ev.epoch) this.#apply(ev.node, r.neighbourDown(ev.peer, this.#now));
        return;
      }
      case CALL:
        this.#busy--;
        ev.fn();
        return;
      case RTT: {
        for (const n of this.#order) {
          for (const link of n.links.values()) {
            if (link.a !== n || !link.up) continue;
            const rtt = this.#rtt(link);
            this.#apply(link.a, link.a.router!.rttSample(link.b.id, rtt, this.#now));
            this.#apply(link.b, link.b.router!.rttSample(link.a.id, rtt, this.#now));
          }
        }
        this.#queue.push({ kind: RTT, time: this.#now + (this.#options.rttSampleIntervalMs ?? 1000) });
        return;
      }
    }
  }
}

interface LiveGraph {
  readonly alive: SimNode[];
  /** idOrderKey of each node: the tie-break order. */
  readonly order: string[];
  readonly index: Map<NodeId, number>;
  readonly n: number;
  /** 1 for a leaf: it starts and ends paths, never carries them. */
  readonly leaf: Uint8Array;
  readonly outTo: number[][];
  readonly outCost: number[][];
  readonly inFrom: number[][];
  readonly inCost: number[][];
}

/** Reverse Dijkstra: dist[base + u] = shortest distance from u to d. */
/** A node's role now: its router's (an 'auto' node's changes), or the one it will restart with. */
function roleOf(node: SimNode): NodeRole {
  return node.router?.role ?? (node.role === 'auto' ? 'leaf' : node.role);
}

function reverseDijkstra(g: LiveGraph, d: number, dist: Float64Array, base: number, heap: PairHeap): void {
  dist[base + d] = 0;
  heap.clear();
  heap.push(0, d);
  while (heap.size > 0) {
    const dv = heap.keys[0]!;
    const v = heap.vals[0]!;
    heap.pop();
    if (dv > dist[base + v]!) continue;
    const from = g.inFrom[v]!;
    const cost = g.inCost[v]!;
    for (let k = 0; k < from.length; k++) {
      const u = from[k]!;
      const nd = dv + cost[k]!;
      if (nd < dist[base + u]!) {
        dist[base + u] = nd;
        // A leaf can start a path to d but never be in the middle of one.
        if (g.leaf[u] === 0) heap.push(nd, u);
      }
    }
  }
}

/** dist[v] = shortest distance from s to v; leaves other than s are not expanded. */
function forwardDijkstra(g: LiveGraph, s: number, dist: Float64Array, heap: PairHeap): void {
  dist.fill(Infinity);
  dist[s] = 0;
  heap.clear();
  heap.push(0, s);
  while (heap.size > 0) {
    const du = heap.keys[0]!;
    const u = heap.vals[0]!;
    heap.pop();
    if (du > dist[u]! || (u !== s && g.leaf[u] === 1)) continue;
    const to = g.outTo[u]!;
    const cost = g.outCost[u]!;
    for (let k = 0; k < to.length; k++) {
      const v = to[k]!;
      const nd = du + cost[k]!;
      if (nd < dist[v]!) {
        dist[v] = nd;
        heap.push(nd, v);
      }
    }
  }
}

/** Follows nextHop() from s to d over live links; the cost of the walk as the nodes announce it. */
function walkNextHops(g: LiveGraph, s: number, d: number): { arrived: boolean; cost: number; hops: number } {
  const dest = g.alive[d]!.id;
  let cur = g.alive[s]!;
  let cost = 0;
  let hops = 0;
  while (cur.id !== dest && hops < 64) {
    const hop = cur.router!.nextHop(dest);
    const link = hop === undefined ? undefined : cur.links.get(hop);
    const c = hop === undefined ? undefined : cur.router!.neighbourCost(hop);
    if (link === undefined || !link.up || c === undefined) return { arrived: false, cost, hops };
    cost += c;
    hops++;
    cur = link.a === cur ? link.b : link.a;
  }
  return { arrived: cur.id === dest, cost, hops };
}

/** Compares router s's next hops for destinations d0..dEnd-1 with the block's distances. */
function checkBlock(
  g: LiveGraph,
  s: number,
  d0: number,
  dEnd: number,
  dist: Float64Array,
  reachable: Int32Array,
  result: { checked: number; mismatches: number; examples: RouteMismatch[] },
): void {
  const router = g.alive[s]!.router!;
  const to = g.outTo[s]!;
  const cost = g.outCost[s]!;
  for (let d = d0; d < dEnd; d++) {
    if (s === d) continue;
    const base = (d - d0) * g.n;
    result.checked++;
    let best = -1;
    const ds = dist[base + s]!;
    if (ds !== Infinity) {
      reachable[s]!++;
      for (let k = 0; k < to.length; k++) {
        const nb = to[k]!;
        if (g.leaf[nb] === 1 && nb !== d) continue;
        if (cost[k]! + dist[base + nb]! === ds && (best < 0 || g.order[nb]! < g.order[best]!)) best = nb;
      }
    }
    const expected = best < 0 ? undefined : g.alive[best]!.id;
    const destId = g.alive[d]!.id;
    const actual = router.nextHop(destId);
    if (actual !== expected) {
      result.mismatches++;
      if (result.examples.length < 100) result.examples.push({ node: g.alive[s]!.id, dest: destId, expected, actual });
    }
  }
}

/** Binary min-heap of (key, value) pairs in two arrays; stale entries are skipped by the caller. */
class PairHeap {
  keys: number[] = [];
  vals: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  clear(): void {
    this.keys.length = 0;
    this.vals.length = 0;
  }

  push(key: number, val: number): void {
    const k = this.keys;
    const v = this.vals;
    let i = k.length;
    k.push(key);
    v.push(val);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (k[p]! <= key) break;
      k[i] = k[p]!;
      v[i] = v[p]!;
      i = p;
    }
    k[i] = key;
    v[i] = val;
  }

  /** Removes the smallest pair; read topKey/topVal first. */
  pop(): void {
    const k = this.keys;
    const v = this.vals;
    const lk = k.pop()!;
    const lv = v.pop()!;
    const n = k.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && k[c + 1]! < k[c]!) c++;
      if (k[c]! >= lk) break;
      k[i] = k[c]!;
      v[i] = v[c]!;
      i = c;
    }
    k[i] = lk;
    v[i] = lv;
  }
}
