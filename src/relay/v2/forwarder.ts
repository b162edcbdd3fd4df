import { numberOption } from '../../options.js';
import { Budget, type BudgetRates } from './budget.js';
import { KeyTable } from './key-table.js';
import {
  DEFAULT_HOP_LIMIT,
  DST_OFFSET,
  ERROR_BYTES,
  HOP_LIMIT_OFFSET,
  KIND_DATA,
  SRC_OFFSET,
  headerProblem,
  sameKey,
  writeErrorReport,
  type DropReason,
  type RelayErrorCode,
} from './header.js';

export interface ForwarderOptions {
  /** Datagrams per second one inbound neighbour may have forwarded or delivered (default 400,000). */
  datagramsPerSecond?: number;
  /** Bytes per second one inbound neighbour may have forwarded or delivered (default 512 MiB). */
  bytesPerSecond?: number;
  /** Burst: the buckets hold this many milliseconds of their rate (default 100). */
  burstMs?: number;
  /** Error reports this node sends per second, all neighbours together (default 100; 0: never). */
  errorsPerSecond?: number;
  /** Hop limit of the error reports this node sends (default 16). */
  hopLimit?: number;
  /** Inbound neighbours with a budget at once; a datagram from one more is over budget (default 65,536). */
  maxNeighbours?: number;
}

/** What the forwarder needs from the node: its key, its routes, its links, its policy. */
export interface ForwarderHost<N> {
  /** This node's 32 key bytes. */
  readonly selfKey: Uint8Array;
  /** The up neighbour to forward to for the destination key at `bytes[offset..offset+32]`, or undefined. */
  nextHop(bytes: Uint8Array, offset: number): N | undefined;
  /** Largest relayed datagram the link to `neighbour` carries now (its DATAGRAM room; 0 if none). */
  room(neighbour: N): number;
  /** Policy: may this node forward `datagram` (not for itself) that came from `from`? Default yes. */
  allow?(from: N, datagram: Uint8Array): boolean;
}

/**
 * What to do with one datagram. The forwarder owns the objects and reuses them: read an action
 * before the next call. `datagram` is the caller's buffer (hop limit already decremented for a
 * forward); `reply` is the forwarder's own buffer, to be sent (copied) before the next call.
 */
export type ForwardAction<N> =
  | { readonly kind: 'deliver'; readonly datagram: Uint8Array }
  | { readonly kind: 'forward'; readonly to: N; readonly datagram: Uint8Array }
  | { readonly kind: 'drop'; readonly reason: DropReason; readonly reply: Uint8Array | undefined; readonly replyTo: N | undefined };

/** Every counter of a forwarder: what came in, where it went, why it was dropped. */
export interface ForwarderStats extends Record<DropReason, number> {
  received: number;
  receivedBytes: number;
  delivered: number;
  forwarded: number;
  forwardedBytes: number;
  /** Forwarded with no route of our own, the way the destination's own datagrams came (WAY_BACK_MS). */
  forwardedBack: number;
  /** Ways back not learnt: their neighbour held its share (WAYS_BACK_PER_NEIGHBOUR). */
  waysBackRefused: number;
  /** Error reports sent back towards a source. */
  errorsSent: number;
  /** Error reports not sent: over the errorsPerSecond budget. */
  errorsSuppressed: number;
}

type Resolved = BudgetRates & { errorsPerSecond: number; hopLimit: number; maxNeighbours: number };

/**
 * How long the way back to a source this node has no route to stays usable: the neighbour its
 * last datagram came from. Routes come back after a link returns only when both ends' records
 * are out again, up to the routing's publication hold (1 s, doubling to 5 s under churn); the
 * far end's answers went nowhere meanwhile (requests timed out at 3 s after a first hop's redial).
 */
export const WAY_BACK_MS = 10_000;
/** Sources remembered with a way back at once (all forgotten at the cap: each is relearnt by its next datagram). */
const MAX_WAYS_BACK = 4096;
/** Ways back one neighbour may hold (an eighth), so that one peer's made-up sources cannot keep clearing the others'. */
const WAYS_BACK_PER_NEIGHBOUR = MAX_WAYS_BACK / 8;

function resolveOptions(options: ForwarderOptions): Resolved {
  const where = 'relay forwarder option';
  return {
    datagramsPerSecond: numberOption(where, 'datagramsPerSecond', options.datagramsPerSecond, 400_000, { min: 0, above: true }),
    bytesPerSecond: numberOption(where, 'bytesPerSecond', options.bytesPerSecond, 512 * 1024 * 1024, { min: 0, above: true }),
    burstMs: numberOption(where, 'burstMs', options.burstMs, 100, { min: 1, max: 60_000 }),
    errorsPerSecond: numberOption(where, 'errorsPerSecond', options.errorsPerSecond, 100, { max: 1_000_000 }),
    hopLimit: numberOption(where, 'hopLimit', options.hopLimit, DEFAULT_HOP_LIMIT, { min: 1, max: 255, integer: true }),
    maxNeighbours: numberOption(where, 'maxNeighbours', options.maxNeighbours, 65_536, { min: 1, integer: true }),
  };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type DeliverAction = Mutable<Extract<ForwardAction<unknown>, { kind: 'deliver' }>>;
type SendAction<N> = Mutable<Extract<ForwardAction<N>, { kind: 'forward' }>>;
type DropAction<N> = Mutable<Extract<ForwardAction<N>, { kind: 'drop' }>>;

/**
 * The hop of relay v2, sans-IO: fed each relayed datagram with the neighbour it came from, it
 * answers deliver, forward (to the next hop for the destination, hop limit decremented in place)
 * or drop (counted, maybe with an error report for the source). It keeps no state per flow, only
 * a budget per inbound neighbour and the way back to sources it has no route to, and allocates
 * nothing per datagram.
 */
export class Forwarder<N> {
  readonly stats: ForwarderStats = {
    received: 0,
    receivedBytes: 0,
    delivered: 0,
    forwarded: 0,
    forwardedBytes: 0,
    forwardedBack: 0,
    waysBackRefused: 0,
    malformed: 0,
    overBudget: 0,
    refused: 0,
    hopLimit: 0,
    noRoute: 0,
    loop: 0,
    tooBig: 0,
    errorsSent: 0,
    errorsSuppressed: 0,
  };
  private readonly host: ForwarderHost<N>;
  private readonly options: Resolved;
  private readonly budgets = new Map<N, Budget>();
  /** Source key → the neighbour its last datagram came from, for sources with no route here (WAY_BACK_MS). */
  private readonly waysBack = new KeyTable<{ hop: N; at: number }>();
  /** Ways back held per neighbour (their share). */
  private readonly waysBackHeld = new Map<N, number>();
  private readonly errorBudget: Budget | undefined;
  private readonly errorReport = Buffer.alloc(ERROR_BYTES);
  private readonly deliverAction: DeliverAction = { kind: 'deliver', datagram: this.errorReport };
  private readonly forwardAction: SendAction<N>;
  private readonly dropAction: DropAction<N> = { kind: 'drop', reason: 'malformed', reply: undefined, replyTo: undefined };

  constructor(host: ForwarderHost<N>, options: ForwarderOptions = {}, now = 0) {
    if (host.selfKey.length !== 32) throw new RangeError('selfKey must be 32 bytes');
    this.host = host;
    this.options = resolveOptions(options);
    const { errorsPerSecond, burstMs } = this.options;
    this.errorBudget = errorsPerSecond > 0 ? new Budget({ datagramsPerSecond: errorsPerSecond, bytesPerSecond: errorsPerSecond * ERROR_BYTES, burstMs: Math.max(burstMs, 1000 / errorsPerSecond) }, now) : undefined;
    this.forwardAction = { kind: 'forward', to: undefined as N, datagram: this.errorReport };
  }

  /** Budgets held (one per inbound neighbour seen since it last went down): the forwarder's only map. */
  get neighbourCount(): number {
    return this.budgets.size;
  }

  /** A neighbour connection closed: forget its budget. */
  neighbourDown(neighbour: N): void {
    this.budgets.delete(neighbour);
    this.waysBackHeld.delete(neighbour);
  }

  /** One relayed datagram from `from` at `now` (ms). The action is valid until the next call. */
  handleDatagram(from: N, datagram: Uint8Array, now: number): ForwardAction<N> {
    const stats = this.stats;
    const length = datagram.length;
    stats.received++;
    stats.receivedBytes += length;
    // The budget is charged first: garbage costs the sender as much as anything else.
    const budget = this.budgetOf(from, now);
    if (budget === undefined || !budget.take(length, now)) return this.drop('overBudget');
    if (headerProblem(datagram) !== undefined) return this.drop('malformed');
    const self = this.host.selfKey;
    if (sameKey(datagram, DST_OFFSET, self, 0)) {
      stats.delivered++;
      this.deliverAction.datagram = datagram;
      return this.deliverAction;
    }
    // Our own datagram came back: a loop through us (the route changed under it).
    if (sameKey(datagram, SRC_OFFSET, self, 0)) return this.drop('loop');
    if (this.host.allow !== undefined && !this.host.allow(from, datagram)) return this.fail('refused', 'RELAY_REFUSED', from, datagram, now);
    const hopLimit = datagram[HOP_LIMIT_OFFSET]!;
    if (hopLimit <= 1) return this.fail('hopLimit', 'HOP_LIMIT', from, datagram, now);
    // No route to the source (its links' records not out yet): its datagrams' way in is the way back.
    if (this.host.nextHop(datagram, SRC_OFFSET) === undefined) this.learnWayBack(datagram, from, now);
    let next = this.host.nextHop(datagram, DST_OFFSET);
    if (next === undefined) {
      next = this.wayBack(datagram, now);
      if (next === undefined) return this.fail('noRoute', 'UNREACHABLE', from, datagram, now);
      this.stats.forwardedBack++;
    }
    // Back where it came from: two routers disagree (link-state not yet converged).
    if (next === from) return this.drop('loop');
    const room = this.host.room(next);
    // A next link with no datagrams at all (HTTP/2): say so, the opener falls back to the stream relay.
    if (room === 0) return this.fail('tooBig', 'RELAY_REFUSED', from, datagram, now);
    if (length > room) return this.drop('tooBig');
    datagram[HOP_LIMIT_OFFSET] = hopLimit - 1;
    stats.forwarded++;
    stats.forwardedBytes += length;
    const action = this.forwardAction;
    action.to = next;
    action.datagram = datagram;
    return action;
  }

  private learnWayBack(datagram: Uint8Array, from: N, now: number): void {
    const known = this.waysBack.get(datagram, SRC_OFFSET);
    if (known !== undefined && known.hop === from) {
      known.at = now;
      return;
    }
    const held = this.waysBackHeld.get(from) ?? 0;
    if (held >= WAYS_BACK_PER_NEIGHBOUR) {
      this.stats.waysBackRefused++;
      return;
    }
    if (known !== undefined) {
      this.heldBy(known.hop, -1);
      known.hop = from;
      known.at = now;
    } else {
      if (this.waysBack.size >= MAX_WAYS_BACK) {
        this.waysBack.clear();
        this.waysBackHeld.clear();
      }
      this.waysBack.set(datagram.subarray(SRC_OFFSET, SRC_OFFSET + 32), { hop: from, at: now });
    }
    this.heldBy(from, 1);
  }

  private heldBy(neighbour: N, change: 1 | -1): void {
    const held = (this.waysBackHeld.get(neighbour) ?? 0) + change;
    if (held > 0) this.waysBackHeld.set(neighbour, held);
    else this.waysBackHeld.delete(neighbour);
  }

  /** The neighbour the destination's own datagrams came from lately, if its link is up. */
  private wayBack(datagram: Uint8Array, now: number): N | undefined {
    const known = this.waysBack.get(datagram, DST_OFFSET);
    if (known === undefined || now - known.at > WAY_BACK_MS || this.host.room(known.hop) === 0) return undefined;
    return known.hop;
  }

  /** The neighbour's budget, made on its first datagram; undefined past maxNeighbours (refused, nothing stored). */
  private budgetOf(neighbour: N, now: number): Budget | undefined {
    let budget = this.budgets.get(neighbour);
    if (budget === undefined && this.budgets.size < this.options.maxNeighbours) {
      budget = new Budget(this.options, now);
      this.budgets.set(neighbour, budget);
    }
    return budget;
  }

  private drop(reason: DropReason): DropAction<N> {
    this.stats[reason]++;
    const action = this.dropAction;
    action.reason = reason;
    action.reply = undefined;
    action.replyTo = undefined;
    return action;
  }

  /** A drop the source should hear about: an error report back through `from`, if allowed. */
  private fail(reason: DropReason, code: RelayErrorCode, from: N, datagram: Uint8Array, now: number): ForwardAction<N> {
    const action = this.drop(reason);
    const report = this.report(code, datagram, now);
    if (report === undefined) return action;
    action.reply = report;
    action.replyTo = from;
    return action;
  }

  /**
   * An error report about `datagram` for its source (to send back the way it came), or undefined:
   * only DATA gets one (never an error about an error), never larger than itself, within errorsPerSecond.
   * The endpoint's UNKNOWN_CONNECTION (a delivered packet of no connection here) comes through it too.
   */
  report(code: RelayErrorCode, datagram: Uint8Array, now: number): Uint8Array | undefined {
    if (datagram[0] !== KIND_DATA || datagram.length < ERROR_BYTES) return undefined;
    if (this.errorBudget === undefined || !this.errorBudget.take(ERROR_BYTES, now)) {
      this.stats.errorsSuppressed++;
      return undefined;
    }
    writeErrorReport(this.errorReport, this.options.hopLimit, this.host.selfKey, code, datagram);
    this.stats.errorsSent++;
    return this.errorReport;
  }
}

