/**
 * One node's share of one fan-out (docs/FANOUT.md): the legs it sent, the targets outstanding on
 * each, retries of a failed leg's subtree, the deadline. The origin and every hop run one.
 */
import type { Identity, NodeId } from '../identity/index.js';
import { KEY_BYTES, keyBytesOf, nodeIdAt } from '../routing/index.js';
import type { NextHopShare } from '../routing/index.js';
import {
  FRAME_EXPECT,
  LEG_EXPAND,
  RESULT_HOPS_OFFSET,
  SIGNATURE_BYTES,
  STATUS_HOP_ERROR,
  decodeErrorBody,
  encodeErrorBody,
  encodeLeg,
  encodeResult,
  envelopeIsTicketed,
  parseResult,
  type Envelope,
  type ResultFrame,
  type UpFrame,
} from './fanout-codec.js';
import type { FanoutStats } from './types.js';
import { LINK_HEADER_BYTES, type LegHandle, type LegSink } from './fanout-link.js';

/** What a spread needs from the fan-out service it belongs to. */
export interface SpreadOwner {
  readonly host: {
    readonly identity: Identity;
    groupByNextHop(packed: Uint8Array): NextHopShare[];
  };
  readonly stats: FanoutStats;
  /** Sends a leg (`bytes`: LINK_HEADER_BYTES of room, then the leg) to a neighbour: on its v2 link, or a v1 stream of its own. */
  sendLeg(hop: NodeId, bytes: Buffer, maxFrameBytes: number, sink: LegSink): LegHandle;
  /** Answers here: a signed result frame. */
  deliver(envelope: Envelope, ticket: Buffer | undefined, deadlineAt: number): Promise<Buffer>;
}

/** Tries per target per node when legs fail (the deadline usually ends them first). */
const MAX_ATTEMPTS = 6;
/** Answers of "no way on" from a hop believed: the first may be a route still settling, the second is not. */
const MAX_NO_ROUTE = 2;
/** Wait before the first retry, doubling after each (to 2 s): routers need a moment to absorb a loss. */
const RETRY_DELAY_MS = 250;
const MAX_RETRY_DELAY_MS = 2000;
const EMPTY = Buffer.alloc(0);

/**
 * Spreads' deadlines share one timer per SLOT_MS slot, due at the slot's start (never after a
 * deadline in it): a hub's thousands of legs, or thousands of nodes in one process, cost a Set
 * entry each instead of a timer inserted and cleared per leg.
 */
const SLOT_MS = 50;
class DeadlineSlots {
  private readonly slots = new Map<number, Set<Spread>>();

  add(spread: Spread, deadlineAt: number): number {
    const slot = Math.floor(deadlineAt / SLOT_MS);
    let members = this.slots.get(slot);
    if (members === undefined) {
      this.slots.set(slot, (members = new Set()));
      const timer = setTimeout(() => this.due(slot), Math.max(0, slot * SLOT_MS - performance.now()));
      timer.unref();
    }
    members.add(spread);
    return slot;
  }

  remove(spread: Spread, slot: number): void {
    this.slots.get(slot)?.delete(spread);
  }

  private due(slot: number): void {
    const members = this.slots.get(slot);
    this.slots.delete(slot);
    if (members !== undefined) for (const spread of members) spread.slotDue();
  }
}
const deadlineSlots = new DeadlineSlots();
const retryDelay = (attempts: number): number => Math.min(MAX_RETRY_DELAY_MS, RETRY_DELAY_MS * 2 ** (attempts - 1));

interface Leg {
  readonly hop: NodeId;
  handle: LegHandle | undefined;
  /** Waiting for an EXPECT frame (an expanding leg). */
  expecting: boolean;
  failed: boolean;
  /** Outstanding targets on this leg: a leg that ends with none (the usual end) costs no scan of the fan-out's targets. */
  pending: number;
}

interface Outstanding {
  readonly ticket: Buffer | undefined;
  attempts: number;
  /** Hops that answered UNREACHABLE or HOP_LIMIT for it. */
  noRoute: number;
  leg: Leg | undefined;
  /** A result's verdict is awaited (Sink.result gave a promise). */
  checking?: boolean;
}

/** Moves a target to another leg (or none), keeping each leg's count of outstanding targets. */
function setLeg(entry: Outstanding, leg: Leg | undefined): void {
  if (entry.leg !== undefined) entry.leg.pending--;
  entry.leg = leg;
  if (leg !== undefined) leg.pending++;
}

export interface Sink {
  /**
   * A result for an outstanding target; false: rejected (forged), keep waiting. A promise: the
   * verdict comes later (a signature checked off the main thread); the target stays outstanding.
   */
  result(frame: ResultFrame, fromLeg: boolean): boolean | Promise<boolean>;
  expect?(targets: Buffer): void;
  /** Nothing outstanding any more. */
  idle(): void;
}

/**
 * One node's share of one fan-out: sends targets down legs or answers them here, tracks what
 * is outstanding on each leg, retries a failed leg's targets once, and fails what is left at
 * the deadline. Used by the origin and by every hop.
 */
export class Spread {
  private readonly outstanding = new Map<string, Outstanding>();
  private readonly legs = new Set<Leg>();
  private readonly retry = new Set<string>();
  private retryTimer: NodeJS.Timeout | undefined;
  /** The precise timer, armed only when the deadline's slot came with the spread still busy. */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly slot: number;
  private ended = false;
  private ownKey: string | undefined;

  constructor(
    private readonly service: SpreadOwner,
    private readonly envelope: Envelope,
    private readonly deadlineAt: number,
    private readonly hopLimit: number,
    private readonly sink: Sink,
    /** Overrides the routing table (the origin's `via`). */
    private readonly route?: (packed: Buffer) => NextHopShare[],
    /** The node this share came from: never sent back there (a loop while routes settle). */
    private readonly parent?: NodeId,
  ) {
    this.slot = deadlineSlots.add(this, deadlineAt);
  }

  get busy(): boolean {
    return this.outstanding.size > 0 || [...this.legs].some((leg) => leg.expecting);
  }

  /** Delivers `targets` (packed keys, with their tickets when the envelope lists targets). */
  add(targets: Buffer, tickets: Buffer | undefined): void {
    if (this.ended) return;
    const keys: string[] = [];
    for (let i = 0; i < targets.length; i += KEY_BYTES) {
      const key = targets.toString('latin1', i, i + KEY_BYTES);
      if (this.outstanding.has(key)) continue; // listed twice: answered once
      const ticket = tickets?.subarray((i / KEY_BYTES) * SIGNATURE_BYTES, (i / KEY_BYTES + 1) * SIGNATURE_BYTES);
      this.outstanding.set(key, { ticket, attempts: 0, noRoute: 0, leg: undefined });
      keys.push(key);
    }
    this.distribute(keys);
  }

  /** Asks `hop` to deliver to every node it knows (it answers with whom to expect). */
  expandThrough(hop: NodeId): void {
    this.sendLeg(hop, [], true);
  }

  private distribute(keys: readonly string[]): void {
    if (keys.length === 0) return;
    // A leg for this node alone (what a leaf gets): no routing-table call.
    if (keys.length === 1 && this.route === undefined && keys[0] === this.selfKey()) return this.deliverHere(keys[0]);
    const packed = Buffer.from(keys.join(''), 'latin1');
    const shares = this.route ? this.route(packed) : this.service.host.groupByNextHop(packed);
    const self = this.service.host.identity.nodeId;
    for (const share of shares) {
      const shareKeys = Array.from(share.indexes, (i) => keys[i]!);
      if (share.hop === undefined) {
        for (const key of shareKeys) this.fail(key, 'UNREACHABLE', `no route to ${nodeIdAt(Buffer.from(key, 'latin1'), 0)} from ${self}`);
      } else if (share.hop === self) {
        for (const key of shareKeys) this.deliverHere(key);
      } else if (this.hopLimit <= 0) {
        for (const key of shareKeys) this.fail(key, 'HOP_LIMIT', `fan-out hop limit reached at ${self}`);
      } else if (share.hop === this.parent) {
        // The parent itself is a destination, not a loop (a leaf's 'all' expanded by its router).
        const parentKey = shareKeys.find((key) => nodeIdAt(Buffer.from(key, 'latin1'), 0) === share.hop);
        if (parentKey !== undefined) this.sendLeg(share.hop, [parentKey], false);
        // Routes are changing (ours or the parent's are stale): try again here once they settle, while the deadline allows.
        for (const key of shareKeys) if (key !== parentKey) this.backToParent(key, share.hop);
      } else {
        this.sendLeg(share.hop, shareKeys, false);
      }
    }
  }

  private selfKey(): string {
    return (this.ownKey ??= keyBytesOf(this.service.host.identity.nodeId).toString('latin1'));
  }

  private backToParent(key: string, parent: NodeId): void {
    const entry = this.outstanding.get(key)!;
    entry.attempts++;
    if (this.canRetry(entry)) this.scheduleRetry([key]);
    else this.fail(key, 'UNREACHABLE', `${this.service.host.identity.nodeId} routes it back to ${parent}: routes are changing`);
  }

  private deliverHere(key: string): void {
    const entry = this.outstanding.get(key)!;
    entry.attempts++;
    this.service.deliver(this.envelope, entry.ticket, this.deadlineAt).then(
      (frame) => this.onResult(parseResult(frame), undefined),
      () => this.fail(key, 'ERR_HANDLER_FAILED', 'local delivery failed'),
    );
  }

  private sendLeg(hop: NodeId, keys: readonly string[], expand: boolean): void {
    const leg: Leg = { hop, handle: undefined, expecting: expand, failed: false, pending: 0 };
    this.legs.add(leg);
    const ticketed = envelopeIsTicketed(this.envelope.bytes);
    const targets = Buffer.allocUnsafe(keys.length * KEY_BYTES);
    const tickets = ticketed ? Buffer.allocUnsafe(keys.length * SIGNATURE_BYTES) : EMPTY;
    for (let i = 0; i < keys.length; i++) {
      const entry = this.outstanding.get(keys[i]!)!;
      setLeg(entry, leg);
      entry.attempts++;
      targets.write(keys[i]!, i * KEY_BYTES, 'latin1');
      if (ticketed) entry.ticket!.copy(tickets, i * SIGNATURE_BYTES);
    }
    const remaining = this.deadlineAt - performance.now();
    // The subtree reports its own timeouts a little before ours, so they arrive in time.
    const budgetMs = remaining - Math.min(100, remaining / 10);
    const bytes = encodeLeg({ flags: expand ? LEG_EXPAND : 0, hopLimit: this.hopLimit - 1, budgetMs, envelope: this.envelope.bytes, targets, tickets }, LINK_HEADER_BYTES);
    this.service.stats.legsSent++;
    leg.handle = this.service.sendLeg(hop, bytes, this.envelope.maxReplyBytes + 256 + SIGNATURE_BYTES, {
      frames: (frames) => this.onFrames(leg, frames),
      closed: (cause) => this.legFailed(leg, cause),
    });
  }

  private onFrames(leg: Leg, frames: readonly UpFrame[]): void {
    if (this.ended || leg.failed) return;
    for (const frame of frames) {
      if (frame.type === FRAME_EXPECT) {
        this.onExpect(leg, frame.targets);
        continue;
      }
      const key = frame.target.toString('latin1');
      const entry = this.outstanding.get(key);
      if (entry?.leg !== leg) continue;
      if (frame.status === STATUS_HOP_ERROR && this.retriable(entry, frame)) {
        setLeg(entry, undefined);
        this.scheduleRetry([key]);
        continue;
      }
      frame.frame[RESULT_HOPS_OFFSET] = Math.min(255, frame.hops + 1);
      this.onResult({ ...frame, hops: Math.min(255, frame.hops + 1) }, leg);
    }
  }

  private onExpect(leg: Leg, targets: Buffer): void {
    if (!leg.expecting || !this.sink.expect) return;
    leg.expecting = false;
    for (let i = 0; i < targets.length; i += KEY_BYTES) {
      const key = targets.toString('latin1', i, i + KEY_BYTES);
      if (this.outstanding.has(key)) continue;
      const entry: Outstanding = { ticket: undefined, attempts: MAX_ATTEMPTS, noRoute: 0, leg: undefined };
      setLeg(entry, leg);
      this.outstanding.set(key, entry);
    }
    this.sink.expect(targets);
    this.checkIdle();
  }

  private onResult(frame: ResultFrame, leg: Leg | undefined): void {
    const key = frame.target.toString('latin1');
    const entry = this.outstanding.get(key);
    if (this.ended || entry === undefined || entry.leg !== leg || entry.checking) return;
    const verdict = this.sink.result(frame, leg !== undefined);
    if (verdict === true) this.settled(key, entry);
    else if (verdict !== false) this.checkLater(key, entry, leg, verdict);
  }

  private settled(key: string, entry: Outstanding): void {
    setLeg(entry, undefined);
    this.outstanding.delete(key);
    this.checkIdle();
  }

  /**
   * The verdict on a result comes later: the target leaves its leg meanwhile (the leg's normal
   * end does not retry it); a forgery puts it back on the leg, or retries it if the leg is gone.
   */
  private checkLater(key: string, entry: Outstanding, leg: Leg | undefined, verdict: Promise<boolean>): void {
    entry.checking = true;
    setLeg(entry, undefined);
    const decided = (ok: boolean): void => {
      entry.checking = false;
      if (this.ended || this.outstanding.get(key) !== entry) return;
      if (ok) return this.settled(key, entry);
      if (leg !== undefined && !leg.failed) return setLeg(entry, leg);
      if (this.canRetry(entry)) this.scheduleRetry([key]);
      else this.fail(key, 'UNREACHABLE', `the way through ${leg?.hop ?? 'here'} gave no valid answer`);
      this.checkIdle();
    };
    verdict.then(decided, () => decided(false));
  }

  private legFailed(leg: Leg, cause: Error | (() => Error)): void {
    if (leg.failed) return;
    leg.failed = true;
    leg.expecting = false;
    this.legs.delete(leg);
    if (this.ended) return;
    const lost: string[] = [];
    if (leg.pending > 0) for (const [key, entry] of this.outstanding) if (entry.leg === leg) lost.push(key);
    const error = lost.length === 0 ? undefined : typeof cause === 'function' ? cause() : cause;
    const again: string[] = [];
    for (const key of lost) {
      const entry = this.outstanding.get(key)!;
      setLeg(entry, undefined);
      if (this.canRetry(entry)) again.push(key);
      else this.fail(key, 'UNREACHABLE', `the way through ${leg.hop} failed: ${error!.message}`);
    }
    this.scheduleRetry(again);
    this.checkIdle();
  }

  private canRetry(entry: Outstanding): boolean {
    return entry.attempts < MAX_ATTEMPTS && this.deadlineAt - performance.now() > retryDelay(entry.attempts) + RETRY_DELAY_MS;
  }

  /** A subtree that found no way on (its routes may be stale) gets one more try once routes settle; a second such answer is final. */
  private retriable(entry: Outstanding, frame: ResultFrame): boolean {
    const code = decodeErrorBody(frame.body).code;
    if (code !== 'UNREACHABLE' && code !== 'HOP_LIMIT') return false;
    entry.noRoute++;
    return entry.noRoute < MAX_NO_ROUTE && this.canRetry(entry);
  }

  private scheduleRetry(keys: readonly string[]): void {
    for (const key of keys) this.retry.add(key);
    if (this.retry.size === 0 || this.retryTimer !== undefined) return;
    // A "no route" answer waits the first step only: there is one retry left for it.
    const step = (key: string): number => {
      const entry = this.outstanding.get(key);
      return entry === undefined || entry.noRoute > 0 ? 1 : entry.attempts;
    };
    const attempts = Math.min(...[...this.retry].map(step));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      // Only targets still outstanding and not on a leg: one answered or failed meanwhile is done.
      const due = [...this.retry].filter((key) => { const entry = this.outstanding.get(key); return entry !== undefined && entry.leg === undefined && !entry.checking; });
      this.retry.clear();
      this.service.stats.retried += due.length;
      this.distribute(due);
      this.checkIdle();
    }, retryDelay(attempts));
    this.retryTimer.unref();
  }

  /** Reports `key` failed here (unsigned: a hop cannot speak for the target). */
  private fail(key: string, code: 'UNREACHABLE' | 'HOP_LIMIT' | 'ERR_HANDLER_FAILED' | 'ERR_REQUEST_TIMEOUT', message: string): void {
    const frame = encodeResult(undefined, this.envelope.requestId, Buffer.from(key, 'latin1'), STATUS_HOP_ERROR, encodeErrorBody(code, message));
    setLeg(this.outstanding.get(key)!, undefined);
    this.onResult(parseResult(frame), undefined);
  }

  /** Its deadline's slot began (at most SLOT_MS before the deadline): the rest is timed exactly. */
  slotDue(): void {
    if (this.ended) return;
    const left = this.deadlineAt - performance.now();
    if (left <= 0) return this.expire();
    this.deadlineTimer = setTimeout(() => this.expire(), left);
    this.deadlineTimer.unref();
  }

  private expire(): void {
    if (this.ended) return;
    for (const leg of this.legs) leg.expecting = false;
    const self = this.service.host.identity.nodeId;
    for (const key of [...this.outstanding.keys()]) this.fail(key, 'ERR_REQUEST_TIMEOUT', `no answer by the deadline (seen from ${self})`);
    this.checkIdle();
  }

  private checkIdle(): void {
    if (!this.ended && !this.busy && this.retryTimer === undefined) this.sink.idle();
  }

  /** Stops: timers cleared, legs torn down, nothing more reported. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    deadlineSlots.remove(this, this.slot);
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const leg of this.legs) leg.handle?.cancel();
    this.legs.clear();
  }
}
