/**
 * Per-peer fairness of the streams a node takes up (docs/LIMITS.md, issue 15 item 8).
 */
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { NodeId } from '../identity/index.js';

/** New streams of one peer taken up per turn of the event loop (negotiated, then served), while another peer is active. */
export const STREAMS_PER_TURN = 1;
/**
 * Another peer counts as active for this long (ms) after its last stream taken up. Clocks in
 * time, not turns: turns spun in microseconds while a busy peer waited, so any count of turns
 * passed within a one-request peer's round trip on a quiet machine (docs/LIMITS.md). Long enough
 * for a loaded machine's stalls: with 50, a one-request peer's stalls at load 15 let the busy
 * peer's whole backlog through in 3 of 5 windows (test/fairness.test.ts); the cost is that a busy
 * peer stays paced (by idle time) this long after the others left.
 */
export const ACTIVE_MS = 250;
/** Generations of the last-start memory (turns each). */
const MEMORY_TURNS = 64;
/**
 * While another peer is active, a peer's waiting streams are taken up at least this many turns
 * apart. A one-request peer needs two turns per request (its stream in, its answer out: measured).
 */
export const BACKLOG_SPACING = 2;
/**
 * Starts of other peers a busy peer waits for between two of its own waiting streams. Three, not
 * one (equal starts) or two: a busy peer's request costs the node more than a one-request peer's
 * (its waiting streams' intake and ACKs come on top) and its own process takes CPU from the
 * others; bench/fairness.mjs (3 processes, same run): the light peer kept 0.44 of its rate with
 * two, 0.64 with three, 0.65 with four, and the busy peer's rate hardly moved (1,130 / 1,014 /
 * 918 req/s: the light peer's faster requests bring it more starts).
 */
export const OTHERS_PER_BACKLOG_START = 3;
/**
 * ... or once the event loop idled this long (ms) since the peer's last start: the node has time
 * the others leave unused (work-conserving beside a slow or remote peer), and a loaded node,
 * whose loop does not idle, gives it none. Idle time, not wall time: a wall-clock wait of 2 ms
 * let the busy peer through about once per light round trip at load 8 (docs/LIMITS.md).
 */
export const BACKLOG_IDLE_MS = 1;
/** ... or after this long (ms) whatever happens: a waiting stream's worst wait while another peer is active. */
export const MAX_BACKLOG_WAIT_MS = 20;

/** A clock in ms. */
export type Clock = () => number;

/** The knobs of PeerTurns (the defaults are the constants above; tests and bench/fairness.mjs set others). */
export interface PeerTurnsOptions {
  spacing?: number;
  othersPerStart?: number;
  idleWait?: number;
  maxWait?: number;
  activeFor?: number;
  /** Wall clock (ms). */
  now?: Clock;
  /** The event loop's idle time so far (ms). */
  idle?: Clock;
}

const wallClock: Clock = () => performance.now();
const loopIdle: Clock = () => performance.eventLoopUtilization().idle;

/** A peer with streams waiting for their turn. */
interface Backlog {
  readonly waiting: Array<() => void>;
  /** The node's start count just after this peer's last start: the others' starts since are `starts - mark`. */
  mark: number;
  /** Turn of this peer's last start. */
  lastStart: number;
  /** Clock at this peer's last start. */
  lastStartAt: number;
  /** The loop's idle time at this peer's last start. */
  idleAt: number;
}

/** A peer's last start: the start count after it, its turn, its clock. */
interface LastStart {
  mark: number;
  turn: number;
  at: number;
}

/**
 * Turns per peer: each peer gets at most `perTurn` of its new streams taken up per turn of the
 * event loop (the first as they arrive, the rest in the check phase, after the loop's I/O); its
 * others wait unread, in arrival order, their bytes held back by its flow control. While another
 * peer is active (a start in the last `activeFor` ms), a peer's waiting streams are taken up one
 * at a time, at least `spacing` turns apart, once `othersPerStart` streams of other peers were
 * taken up since its last, or the loop idled `idleWait` ms, or `maxWait` ms passed: a busy peer
 * gets about one start per three requests of a one-request peer, however long that peer's round
 * trip, and the time nobody else uses. A stream with none of its peer's waiting is taken up at
 * once (the first of its peer this turn), so a one-request peer never waits. What a stream does
 * once taken up (a slow handler, a long transfer) runs side by side with the rest: only starts
 * are paced. A peer alone is not paced. Waiting costs nothing: a turn comes with a new stream or
 * a timer, never spun (spun turns took a core from the peers' processes and left the loop no
 * idle time: docs/LIMITS.md). A turn's work is O(peers with streams waiting), never O(peers).
 */
export class PeerTurns {
  /** Streams that waited for their turn (node.stats().limits.streamPeerTurn). */
  waited = 0;
  /** Why waiting streams were taken up: other peers' starts, the loop idled, `maxWait` passed, no other peer active. */
  readonly released = { others: 0, idle: 0, maxWait: 0, alone: 0 };
  private readonly backlogs = new Map<NodeId, Backlog>();
  /** Per peer with a stream taken up this turn: how many (cleared each turn: as large as the turn's work). */
  private readonly startedNow = new Map<NodeId, number>();
  private turnScheduled = false;
  private turnNumber = 0;
  /** The timer for the earliest clock at which a waiting stream may be due, and that clock. */
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = Infinity;
  /** Peers with streams waiting for their turn (a turn's work is proportional to these). */
  get backloggedPeers(): number {
    return this.backlogs.size;
  }

  /** Streams taken up so far, all peers. */
  private starts = 0;
  /** The peer whose stream was taken up last, and the last other one (with their clocks): who else is active, in O(1). */
  private latest: NodeId | undefined;
  private latestAt = -Infinity;
  private previousOtherAt = -Infinity;

  /** Each peer's last start, two generations of MEMORY_TURNS turns: as many as the peers active lately. */
  private recent = new Map<NodeId, LastStart>();
  private older = new Map<NodeId, LastStart>();
  private generationStart = 0;

  private readonly spacing: number;
  private readonly othersPerStart: number;
  private readonly idleWait: number;
  private readonly maxWait: number;
  private readonly activeFor: number;
  private readonly now: Clock;
  private readonly idle: Clock;

  constructor(
    private readonly perTurn: number,
    options: PeerTurnsOptions = {},
  ) {
    this.spacing = options.spacing ?? BACKLOG_SPACING;
    this.othersPerStart = options.othersPerStart ?? OTHERS_PER_BACKLOG_START;
    this.idleWait = options.idleWait ?? BACKLOG_IDLE_MS;
    this.maxWait = options.maxWait ?? MAX_BACKLOG_WAIT_MS;
    this.activeFor = options.activeFor ?? ACTIVE_MS;
    this.now = options.now ?? wallClock;
    this.idle = options.idle ?? loopIdle;
  }

  /** true once `peer`'s stream may be taken up (at once within its turn); false if it closed while waiting. */
  acquire(peer: NodeId, stream: Duplex): true | Promise<boolean> {
    // The next turn clears this turn's shares and looks at the backlogs, which a start here may have made due.
    this.scheduleTurn();
    const now = this.now();
    let backlog = this.backlogs.get(peer);
    // A stream with none of its peer's waiting is taken up at once (its first this turn): a peer with one request at a time never waits.
    if (backlog === undefined && (this.alone(peer, now) || this.startedThisTurn(peer) < this.perTurn)) {
      this.noteStart(peer, now);
      return true;
    }
    this.waited++;
    if (backlog === undefined) {
      // It had one taken up this turn (else it would not wait): its turn counts from that one.
      const last = this.recent.get(peer) ?? this.older.get(peer);
      backlog = { waiting: [], mark: last?.mark ?? this.starts, lastStart: last?.turn ?? this.turnNumber, lastStartAt: last?.at ?? now, idleAt: this.idle() };
      this.backlogs.set(peer, backlog);
    }
    const waiting = backlog.waiting;
    return new Promise<boolean>((resolve) => {
      const closed = (): void => {
        waiting.splice(waiting.indexOf(start), 1);
        resolve(false);
      };
      const start = (): void => {
        stream.off('close', closed);
        resolve(true);
      };
      stream.once('close', closed);
      waiting.push(start);
    });
  }

  /** Clock of the last start of a peer other than `peer`. */
  private otherAt(peer: NodeId): number {
    return this.latest !== peer ? this.latestAt : this.previousOtherAt;
  }

  /** No other peer had a stream taken up in the last `activeFor` ms. */
  private alone(peer: NodeId, now: number): boolean {
    return now - this.otherAt(peer) > this.activeFor;
  }

  private startedThisTurn(peer: NodeId): number {
    return this.startedNow.get(peer) ?? 0;
  }

  private noteStart(peer: NodeId, now: number): void {
    const mark = ++this.starts;
    this.startedNow.set(peer, this.startedThisTurn(peer) + 1);
    const last = this.recent.get(peer);
    if (last === undefined) this.recent.set(peer, { mark, turn: this.turnNumber, at: now });
    else {
      last.mark = mark;
      last.turn = this.turnNumber;
      last.at = now;
    }
    if (this.latest !== peer) {
      this.previousOtherAt = this.latestAt;
      this.latest = peer;
    }
    this.latestAt = now;
  }

  /** Why `peer`'s next waiting stream is due, another peer active: `othersPerStart` other starts since its last, `idleWait` ms of idle loop, or `maxWait` ms. */
  private due(backlog: Backlog, now: number, idle: number): 'others' | 'idle' | 'maxWait' | undefined {
    if (this.starts - backlog.mark >= this.othersPerStart) return 'others';
    if (idle - backlog.idleAt >= this.idleWait) return 'idle';
    return now - backlog.lastStartAt >= this.maxWait ? 'maxWait' : undefined;
  }

  /** A due stream still waits for a later turn: its peer's share of this turn is taken, or its last start is under `spacing` turns ago. */
  private held(peer: NodeId, backlog: Backlog): boolean {
    return this.startedThisTurn(peer) >= this.perTurn || this.turnNumber - backlog.lastStart < this.spacing;
  }

  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(this.turn);
  }

  /** A new turn: every peer with streams waiting takes up what its share allows; then a next turn if one is due but held, else a timer for the earliest it may be due. */
  private readonly turn = (): void => {
    this.turnScheduled = false;
    this.turnNumber++;
    this.startedNow.clear();
    if (this.turnNumber - this.generationStart >= MEMORY_TURNS) {
      this.older = this.recent;
      this.recent = new Map();
      this.generationStart = this.turnNumber;
    }
    if (this.backlogs.size === 0) return; // the usual turn: no clock read (the loop's idle time allocates)
    const now = this.now();
    const idle = this.idle();
    for (const [peer, backlog] of this.backlogs) {
      this.takeUp(peer, backlog, now, idle);
      if (backlog.waiting.length === 0) this.backlogs.delete(peer);
    }
    // After every peer's starts (a later peer's may have made an earlier one due).
    let wake = Infinity;
    for (const [peer, backlog] of this.backlogs) {
      if (this.due(backlog, now, idle) !== undefined) this.scheduleTurn();
      // Due by idle time at the earliest if the loop idles from now on.
      else wake = Math.min(wake, backlog.lastStartAt + this.maxWait, now + this.idleWait - (idle - backlog.idleAt), this.otherAt(peer) + this.activeFor);
    }
    if (!this.turnScheduled && wake < Infinity) this.wakeAt(wake, now);
  };

  /** `peer`'s waiting streams this turn: all of them if it is alone, else one when due and not held. */
  private takeUp(peer: NodeId, backlog: Backlog, now: number, idle: number): void {
    while (backlog.waiting.length > 0) {
      const reason = this.alone(peer, now) ? 'alone' : this.held(peer, backlog) ? undefined : this.due(backlog, now, idle);
      if (reason === undefined) return;
      this.released[reason]++;
      this.noteStart(peer, now);
      backlog.mark = this.starts;
      backlog.lastStart = this.turnNumber;
      backlog.lastStartAt = now;
      backlog.idleAt = idle;
      backlog.waiting.shift()!();
    }
  }

  /** One timer, for the earliest clock a waiting stream may be due at (rounded up: a timer may fire up to a millisecond early). */
  private wakeAt(at: number, now: number): void {
    if (this.timer !== undefined && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.wake, Math.max(1, Math.ceil(at - now))).unref();
  }

  private readonly wake = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    this.scheduleTurn();
  };
}
