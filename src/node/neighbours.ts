/**
 * The IO glue around the sans-IO router: who is a routing neighbour (hold-down and hello), RTT
 * samples, link-state messages on the routing channel, the router's timer, route events, and the
 * routing-table questions the rest of the node asks.
 */
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { Identity, NodeId } from '../identity/index.js';
import type { Connection } from '../transport/index.js';
import { openChannel } from '../channel/index.js';
import { KEY_BYTES, Router, SharedRecordCache, keyBytesOf, nodeIdAt } from '../routing/index.js';
import type { NextHopShare, NodeRole, RouteChange, RouterAction, RouterOptions } from '../routing/index.js';
import { clearUnrefTimer } from '../timers.js';
import { readAll } from './read-all.js';
import type { RouteEvent, RouteInfo, Topology } from './types.js';

/** Reserved channel carrying link-state messages between neighbours. */
export const ROUTING_CHANNEL = 'pnet/routing';
/**
 * Hello: "take me as a neighbour", one byte on the routing channel saying the sender's role
 * (0 router, 1 leaf; docs/PROTOCOL.md). A link-state message is never that short (its header
 * is 4 bytes). An empty hello (nodes before the role byte) or an unknown value leaves the role
 * to be learnt from the peer's records.
 */
const HELLO_ROLE: Readonly<Record<NodeRole, Uint8Array>> = { router: Uint8Array.of(0), leaf: Uint8Array.of(1) };
const HELLO_MAX_BYTES = 1;
/** A link whose cost chooses no path is sampled once in this many rounds (30 s at the 1 s default). */
const SELDOM_ROUNDS = 30;

/** The role a hello says (undefined: it does not say, or says something this version does not know). */
export function helloRole(hello: Uint8Array): NodeRole | undefined {
  if (hello.length !== 1) return undefined;
  return hello[0] === 0 ? 'router' : hello[0] === 1 ? 'leaf' : undefined;
}
/**
 * Verified link-state records shared by every node of this process: N nodes in one process
 * (tests, simulations, the demo) would otherwise verify every record N times. A hit needs the
 * exact same bytes, so the answer is the one a fresh verification would give.
 */
const processRecordCache = new SharedRecordCache(1 << 15);

/** What the neighbour glue needs from its node. */
export interface NeighbourHost {
  /** The connection to a peer if it takes new streams. */
  live(nodeId: NodeId): Connection | undefined;
  /** Every peer's kept connection. */
  entries(): Iterable<[NodeId, Connection]>;
  route(change: RouteEvent): void;
  /** The router's route changes as it gave them (relay v2's next-hop table), before the route events. */
  routesChanged?(changes: readonly RouteChange[]): void;
  /** A leaf's default route (the router it sends everything else to), after every router step. */
  defaultRoute?(hop: NodeId | undefined): void;
  report(error: Error): void;
}

export interface NeighbourSettings {
  readonly rttSampleMs: number;
  readonly neighbourHoldDownMs: number;
  readonly router: Omit<RouterOptions, 'signer' | 'verify' | 'recordCache' | 'random' | 'pathComputer'>;
}

/**
 * A peer that has not said hello HELLO_RESEND_FIRST_MS after ours hears it again, then at doubling
 * gaps up to HELLO_RESEND_MAX_MS while it stays connected: a hello can be lost (its stream refused
 * under load), and the peer, a neighbour already at its end, would not say it again by itself.
 */
const HELLO_RESEND_FIRST_MS = 3000;
const HELLO_RESEND_MAX_MS = 60_000;
/**
 * A neighbour that says hello again has not heard ours: it gets one back, unless we said hello to
 * it this recently (so two nodes that both answer never echo each other for good).
 */
const HELLO_REPLY_GAP_MS = 2000;

/** Slots of one shared RTT sampling interval: a node samples in its own random slot (phases stay spread). */
const RTT_SLOTS = 8;

/**
 * One timer per process (per sampling interval) drives every node's RTT sampling: 10,000 nodes of
 * one process each with its own setInterval cost ~5 % of the main thread in the 10,000-node
 * fan-out bench. A tick runs one slot's nodes, so each node is still sampled once per interval.
 */
class RttTicker {
  private static readonly byInterval = new Map<number, RttTicker>();
  private readonly slots: Array<Set<Neighbours>> = Array.from({ length: RTT_SLOTS }, () => new Set());
  private readonly timer: NodeJS.Timeout;
  private members = 0;
  private tick = 0;

  private constructor(private readonly intervalMs: number) {
    this.timer = setInterval(() => this.run(), intervalMs / RTT_SLOTS);
    this.timer.unref();
  }

  static join(intervalMs: number, member: Neighbours): () => void {
    let ticker = RttTicker.byInterval.get(intervalMs);
    if (ticker === undefined) RttTicker.byInterval.set(intervalMs, (ticker = new RttTicker(intervalMs)));
    const slot = ticker.slots[Math.floor(Math.random() * RTT_SLOTS)]!;
    slot.add(member);
    ticker.members++;
    const joined = ticker;
    return () => {
      if (!slot.delete(member)) return;
      if (--joined.members > 0) return;
      clearInterval(joined.timer);
      RttTicker.byInterval.delete(joined.intervalMs);
    };
  }

  private run(): void {
    for (const member of this.slots[this.tick++ % RTT_SLOTS]!) member.sampleRtt();
  }
}

export class Neighbours {
  readonly router: Router;
  private routerTimer: NodeJS.Timeout | undefined;
  /** The router deadline routerTimer is set for. */
  private routerTimerAt: number | undefined;
  /** Counts RTT sampling rounds from a random start (nodes of one process do not all read in the same round). */
  private sampleRound = Math.floor(Math.random() * SELDOM_ROUNDS);
  /** RTT sampling rounds run, and reads taken in them (each calls into the QUIC binding). */
  readonly rttStats = { rounds: 0, samples: 0 };
  /** Peers that are not routing neighbours yet. */
  private readonly pending = new Map<NodeId, Pending>();
  /** When we last said hello to each connected peer (performance.now()). */
  private readonly saidHello = new Map<NodeId, number>();
  private readonly leaveRttTicker: () => void;
  private closed = false;
  /** The role our hellos said so far (an 'auto' router's role may change). */
  private saidRole: NodeRole;

  constructor(
    private readonly identity: Identity,
    private readonly settings: NeighbourSettings,
    private readonly host: NeighbourHost,
  ) {
    // A restarted node starts above its old sequence numbers (it would recover them from the network anyway).
    this.router = new Router({ initialSequence: BigInt(Date.now()), ...settings.router, signer: identity, recordCache: processRecordCache });
    this.saidRole = this.router.role;
    this.leaveRttTicker = RttTicker.join(settings.rttSampleMs, this);
  }

  /** A new peer: after the hold-down (a connection that lives a moment never disturbs the map) we say hello. */
  connected(id: NodeId): void {
    const pending: Pending = { timer: setTimeout(() => this.holdDownEnded(id), this.settings.neighbourHoldDownMs), heard: false, role: undefined, resend: undefined, resendMs: HELLO_RESEND_FIRST_MS };
    pending.timer!.unref();
    this.pending.set(id, pending);
  }

  /** The peer's last connection closed. */
  disconnected(id: NodeId): void {
    this.saidHello.delete(id);
    const pending = this.pending.get(id);
    if (pending !== undefined) {
      clearPending(pending);
      this.pending.delete(id);
    } else if (!this.closed) {
      this.apply(this.router.neighbourDown(id, performance.now()));
    }
  }

  /** Serves one stream on the routing channel: a hello, or link-state records. */
  receive(stream: Duplex, from: NodeId): void {
    readAll(stream, this.router.maxMessageBytes, 'ERR_ROUTING_MESSAGE_TOO_LARGE').then(
      (bytes) => {
        stream.end();
        if (this.closed) return;
        if (bytes.length <= HELLO_MAX_BYTES) return this.heardHello(from, helloRole(bytes));
        this.neighbourReady(from);
        this.apply(this.router.recordReceived(from, bytes, performance.now()));
      },
      (error: unknown) => {
        stream.destroy();
        // Only the peer's fault is news; a stream that died with its connection is not.
        if (error instanceof PnetError && error.code === 'ERR_ROUTING_MESSAGE_TOO_LARGE') {
          this.host.report(new PnetError(error.code, `${from} sent a routing message over ${this.router.maxMessageBytes} bytes`, { cause: error }));
        }
      },
    );
  }

  /** Stops the timers; nothing is sent or applied any more (the node is closing). */
  close(): void {
    this.closed = true;
    this.leaveRttTicker();
    for (const pending of this.pending.values()) clearPending(pending);
    this.pending.clear();
    clearUnrefTimer(this.routerTimer);
    this.routerTimer = undefined;
  }

  nextHop(nodeId: NodeId): NodeId | undefined {
    return this.router.nextHop(nodeId);
  }

  routes(): RouteInfo[] {
    return this.router.routes().map((route) => ({ nodeId: route.dest, nextHop: route.nextHop, cost: route.cost, hops: route.hops }));
  }

  path(nodeId: NodeId): NodeId[] | undefined {
    return this.router.path(nodeId);
  }

  topology(): Topology {
    const nodes = new Set<NodeId>([this.identity.nodeId]);
    const links: Topology['links'] = [];
    for (const [origin, record] of this.router.records()) {
      nodes.add(origin);
      for (const link of record.links) {
        nodes.add(link.to);
        links.push({ from: origin, to: link.to, cost: link.cost });
      }
    }
    return { nodes: [...nodes], links };
  }

  /** Every node of the map, this one first, as packed keys (a fan-out to 'all'). */
  allNodes(): Buffer {
    return Buffer.concat([keyBytesOf(this.identity.nodeId), ...this.router.routes().map((route) => keyBytesOf(route.dest))]);
  }

  /** Where a fan-out to 'all' goes to be expanded: a leaf's default route (it has no map); undefined for a router. */
  allVia(): NodeId | undefined {
    return this.router.role === 'leaf' ? this.router.defaultRoute : undefined;
  }

  /** Targets by next hop in one routing-table call; a connected peer the map does not know yet is its own next hop. */
  groupByNextHop(packed: Uint8Array): NextHopShare[] {
    return connectedAsNextHop(this.router.groupByNextHop(packed), (id) => this.host.live(id) !== undefined);
  }

  /**
   * After the hold-down a node says hello (an empty message on the routing channel); a peer is a
   * routing neighbour once both ends said it. A peer that never speaks routing (a CLI's
   * short-lived node) never becomes one, so it never shows up as a link in the map.
   */
  private holdDownEnded(id: NodeId): void {
    const pending = this.pending.get(id);
    if (pending === undefined || this.closed) return;
    pending.timer = undefined;
    // The role at this moment; a node whose role changes later says so in its records.
    this.sayHello(id);
    if (pending.heard) this.neighbourReady(id);
    else this.scheduleResend(id, pending);
  }

  private sayHello(id: NodeId): void {
    this.saidHello.set(id, performance.now());
    this.send(id, HELLO_ROLE[this.router.role]);
  }

  /** Our hello again while the peer has not said its own (ours may have been lost). */
  private scheduleResend(id: NodeId, pending: Pending): void {
    pending.resend = setTimeout(() => {
      pending.resend = undefined;
      if (this.closed || this.pending.get(id) !== pending || pending.heard) return;
      this.sayHello(id);
      pending.resendMs = Math.min(HELLO_RESEND_MAX_MS, pending.resendMs * 2);
      this.scheduleResend(id, pending);
    }, pending.resendMs);
    pending.resend.unref();
  }

  private heardHello(id: NodeId, role: NodeRole | undefined): void {
    const pending = this.pending.get(id);
    if (pending === undefined) {
      // A neighbour says hello again: it has not heard ours (lost), or its role changed before it
      // heard ours ('auto'). An unknown role is left to its records (a hello that lost the race with them is no news).
      const known = this.router.neighbourRole(id);
      if (role !== undefined && known !== undefined && known !== role) this.apply(this.router.neighbourHint(id, { role }, performance.now()));
      const said = this.saidHello.get(id);
      if (said !== undefined && performance.now() - said >= HELLO_REPLY_GAP_MS && this.host.live(id) !== undefined) this.sayHello(id);
      return;
    }
    pending.heard = true;
    pending.role = role;
    if (pending.timer === undefined) this.neighbourReady(id);
  }

  /**
   * The peer becomes a routing neighbour: both ends said hello, or it sent link-state records
   * (it took us for a neighbour first; the router drops records from non-neighbours, and its
   * first message is the whole map, which would otherwise be lost until each origin refreshes).
   */
  private neighbourReady(id: NodeId): void {
    const pending = this.pending.get(id);
    if (pending === undefined) return;
    clearPending(pending);
    this.pending.delete(id);
    // The peer may be on another connection by now (a duplicate won): it is still a neighbour.
    const current = this.host.live(id);
    // The hello's role spares a leaf the map it would drop (without it the router learns the role from the peer's records).
    // Inbound: the peer chose us as an attachment (role 'auto' becomes a router).
    if (current === undefined || this.closed) return;
    const hint = { inbound: current.direction === 'inbound', ...(pending.role === undefined ? {} : { role: pending.role }) };
    this.apply(this.router.neighbourUp(id, performance.now(), current.rttMs(), hint));
  }

  /**
   * Our role changed ('auto'): peers that heard our hello but are not neighbours yet would take
   * the old role, so they hear a new one (neighbours learn it from our next record).
   */
  private roleChanged(): void {
    this.saidRole = this.router.role;
    for (const [id, pending] of this.pending) if (pending.timer === undefined) this.sayHello(id);
  }

  /**
   * Samples every link whose cost can choose a path, and the others (a leaf's link to its one
   * router, a hub's stub link to a leaf attached to it alone) one round in SELDOM_ROUNDS, each
   * link in its own round: a read builds a ~15-field object in the QUIC binding (~5 us), and a
   * hub holds thousands of such links whose cost only rides on its next publication.
   */
  /** Called by the process's RttTicker once per rttSampleMs. */
  sampleRtt(): void {
    const now = performance.now();
    const round = this.sampleRound++ % SELDOM_ROUNDS;
    this.rttStats.rounds++;
    let position = 0;
    let sampled = false;
    for (const [id, connection] of this.host.entries()) {
      if (connection.closing) continue;
      if (position++ % SELDOM_ROUNDS !== round && !this.router.costChoosesPath(id)) continue;
      sampled = true;
      this.rttStats.samples++;
      const actions = this.router.rttSample(id, connection.rttMs(), now);
      if (actions.length > 0) this.apply(actions);
    }
    // A sample may move the default route or the router's next deadline without an action: once per round.
    if (sampled) this.apply([]);
  }

  /** Carries out what the router asked for, and wakes it when it next has work. */
  private apply(actions: readonly RouterAction[]): void {
    for (const action of actions) {
      if (action.type === 'send') this.send(action.to, action.bytes);
      else {
        this.host.routesChanged?.(action.changed);
        for (const change of action.changed) this.host.route({ nodeId: change.dest, nextHop: change.nextHop, previousNextHop: change.previousNextHop });
      }
    }
    this.host.defaultRoute?.(this.router.defaultRoute);
    if (this.closed) return;
    if (this.router.role !== this.saidRole) this.roleChanged();
    const deadline = this.router.nextDeadline();
    // The same deadline (the usual case: a 30-minute refresh) keeps its timer.
    if (this.routerTimer !== undefined && deadline === this.routerTimerAt) return;
    clearUnrefTimer(this.routerTimer);
    this.routerTimer = undefined;
    this.routerTimerAt = deadline;
    if (deadline !== undefined) {
      this.routerTimer = setTimeout(() => {
        this.routerTimer = undefined;
        this.apply(this.router.tick(performance.now()));
      }, Math.max(0, deadline - performance.now()));
      this.routerTimer.unref();
    }
  }

  private send(to: NodeId, bytes: Uint8Array): void {
    const connection = this.host.live(to);
    if (!connection) return; // the router republishes; a lost message is repaired by refresh
    connection.openStream().then(
      (stream) => {
        const negotiated = openChannel(stream, ROUTING_CHANNEL);
        negotiated.accepted.catch(() => undefined);
        stream.on('error', () => undefined);
        stream.resume();
        stream.end(bytes);
      },
      () => undefined,
    );
  }
}

/** Shares without a next hop give their targets that are connected peers a share of their own (key-byte arithmetic). */
function connectedAsNextHop(shares: NextHopShare[], connected: (nodeId: NodeId) => boolean): NextHopShare[] {
  const unreachable = shares.find((share) => share.hop === undefined);
  if (unreachable === undefined) return shares;
  const rest = shares.filter((share) => share !== unreachable);
  const keys = Buffer.from(unreachable.ids.buffer, unreachable.ids.byteOffset, unreachable.ids.byteLength);
  const slice = (i: number): Buffer => keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES);
  const left: number[] = [];
  unreachable.indexes.forEach((index, i) => {
    const id = nodeIdAt(keys, i * KEY_BYTES);
    if (connected(id)) rest.push({ hop: id, ids: slice(i), indexes: Uint32Array.of(index) });
    else left.push(i);
  });
  if (left.length > 0) {
    rest.push({ hop: undefined, ids: Buffer.concat(left.map(slice)), indexes: Uint32Array.from(left, (i) => unreachable.indexes[i]!) });
  }
  return rest;
}

/**
 * A peer that is not a routing neighbour yet: `timer` runs its hold-down (undefined once it ended
 * and we said hello), `heard` is set when it said hello, `role` is what its hello said, `resend`
 * our next hello while it has not said its own.
 */
interface Pending {
  timer: NodeJS.Timeout | undefined;
  heard: boolean;
  role: NodeRole | undefined;
  resend: NodeJS.Timeout | undefined;
  resendMs: number;
}

function clearPending(pending: Pending): void {
  clearTimeout(pending.timer);
  clearTimeout(pending.resend);
}
