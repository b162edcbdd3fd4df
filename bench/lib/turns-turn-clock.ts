// The per-peer turns rule before its clock became time (src/node/turns.ts at 1c253a7, frozen
// here only so bench/fairness.mjs can run it beside today's rule in the same run): a busy peer's
// waiting streams after two other peers' starts or 64 turns, another peer active for 1,024
// turns, and turns spun by setImmediate while any stream waits.
import type { Duplex } from 'node:stream';
import type { NodeId } from '../../src/identity/index.js';

/** New streams of one peer taken up per turn of the event loop (negotiated, then served), while another peer is active. */
export const STREAMS_PER_TURN = 1;
/**
 * Another peer counts as active for this many turns after its last stream taken up. Turns spin
 * fast while a busy peer waits and nothing else happens (microseconds each), so a one-request
 * peer in its own process spans tens of them per round trip: 64 let the busy peer count as alone
 * and take up its whole backlog (bench/fairness.mjs, docs/LIMITS.md).
 */
const ACTIVE_TURNS = 1024;
/** Generations of the last-start memory (turns each). */
const MEMORY_TURNS = 64;
/**
 * While another peer is active, a peer's waiting streams are taken up at least this many turns
 * apart. A one-request peer needs two turns per request (its stream in, its answer out: measured).
 */
export const BACKLOG_SPACING = 2;
/**
 * ... and only once another peer had a stream taken up since its last (equal shares of starts,
 * whatever number of turns the other peer's round trip spans: 5-40 with the peers in their own
 * processes), or after this many turns without one: a busy peer beside a slow or idle one waits
 * for at most this many turns, and a turn with nothing to do is short (work-conserving). 16 let
 * the busy peer through several times per light round trip in the 3-process bench.
 */
export const MAX_BACKLOG_SPACING = 64;
/**
 * Starts of other peers a busy peer waits for between two of its own waiting streams. Two, not
 * one (equal starts): a busy peer's request costs the server more than a one-request peer's (its
 * waiting streams' intake and ACKs come on top), and with one the light peer kept 0.48 of its
 * rate (test/fairness.test.ts, median) against 0.57 with two in the same run (docs/LIMITS.md).
 */
export const OTHERS_PER_BACKLOG_START = 2;

/** A peer with streams waiting for their turn. */
interface Backlog {
  readonly waiting: Array<() => void>;
  /** The node's start count just after this peer's last start: the others' starts since are `starts - mark`. */
  mark: number;
  /** Turn of this peer's last start. */
  lastStart: number;
}

/**
 * Turns per peer: each peer gets at most `perTurn` of its new streams taken up per turn of the
 * event loop (the first as they arrive, the rest in the check phase, after the loop's I/O); its
 * others wait unread, in arrival order, their bytes held back by its flow control. While another
 * peer is active, a peer's waiting streams are taken up one at a time, at least `spacing` turns
 * apart and only after `othersPerStart` streams of other peers were taken up (or `maxSpacing`
 * turns passed), so a busy peer gets about one start per two requests of a one-request peer,
 * however long that peer's round trip. A stream with none of its peer's waiting is taken up at once (the first of its peer
 * this turn), so a one-request peer never waits. What a stream does once taken up (a slow
 * handler, a long transfer) runs side by side with the rest: only starts are paced. A peer alone
 * (no other peer's stream taken up in the last ACTIVE_TURNS turns) is not paced. A turn's work is
 * O(peers with streams waiting), never O(peers).
 */
export class TurnClockPeerTurns {
  /** Streams that waited for their turn (node.stats().limits.streamPeerTurn). */
  waited = 0;
  private readonly backlogs = new Map<NodeId, Backlog>();
  /** Per peer with a stream taken up this turn: how many (cleared each turn: as large as the turn's work). */
  private readonly startedNow = new Map<NodeId, number>();
  private turnScheduled = false;
  private turnNumber = 0;
  /** Peers with streams waiting for their turn (a turn's work is proportional to these). */
  get backloggedPeers(): number {
    return this.backlogs.size;
  }

  /** Streams taken up so far, all peers. */
  private starts = 0;
  /** The peer whose stream was taken up last, and the last other one (with their turns): who else is active, in O(1). */
  private latest: NodeId | undefined;
  private latestTurn = -Infinity;
  private previousOtherTurn = -Infinity;

  /** Each peer's last start (the start count after it, its turn), two generations of MEMORY_TURNS turns: as many as the peers active lately. */
  private recent = new Map<NodeId, { mark: number; turn: number }>();
  private older = new Map<NodeId, { mark: number; turn: number }>();
  private generationStart = 0;

  constructor(
    private readonly perTurn: number,
    private readonly spacing = BACKLOG_SPACING,
    private readonly maxSpacing = MAX_BACKLOG_SPACING,
    private readonly othersPerStart = OTHERS_PER_BACKLOG_START,
    private readonly activeTurns = ACTIVE_TURNS,
  ) {}

  /** true once `peer`'s stream may be taken up (at once within its turn); false if it closed while waiting. */
  acquire(peer: NodeId, stream: Duplex): true | Promise<boolean> {
    this.scheduleTurn();
    let backlog = this.backlogs.get(peer);
    // A stream with none of its peer's waiting is taken up at once (its first this turn): a peer with one request at a time never waits.
    if (backlog === undefined && (this.alone(peer) || this.startedThisTurn(peer) < this.perTurn)) {
      this.noteStart(peer);
      return true;
    }
    this.waited++;
    if (backlog === undefined) {
      // It had one taken up this turn (else it would not wait): its turn counts from that one.
      const last = this.recent.get(peer) ?? this.older.get(peer);
      backlog = { waiting: [], mark: last?.mark ?? this.starts, lastStart: last?.turn ?? this.turnNumber };
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

  /** No other peer had a stream taken up in the last ACTIVE_TURNS turns. */
  private alone(peer: NodeId): boolean {
    const otherTurn = this.latest !== peer ? this.latestTurn : this.previousOtherTurn;
    return this.turnNumber - otherTurn > this.activeTurns;
  }

  private startedThisTurn(peer: NodeId): number {
    return this.startedNow.get(peer) ?? 0;
  }

  private noteStart(peer: NodeId): void {
    const mark = ++this.starts;
    this.startedNow.set(peer, this.startedThisTurn(peer) + 1);
    const last = this.recent.get(peer);
    if (last === undefined) this.recent.set(peer, { mark, turn: this.turnNumber });
    else {
      last.mark = mark;
      last.turn = this.turnNumber;
    }
    if (this.latest !== peer) {
      this.previousOtherTurn = this.latestTurn;
      this.latest = peer;
    }
    this.latestTurn = this.turnNumber;
  }

  /** A waiting stream, another peer active: within its peer's share of this turn, `spacing` turns on, after `othersPerStart` other peers' starts (or `maxSpacing` turns on). */
  private mayStart(peer: NodeId, backlog: Backlog): boolean {
    if (this.startedThisTurn(peer) >= this.perTurn) return false;
    const since = this.turnNumber - backlog.lastStart;
    return since >= this.spacing && (this.starts - backlog.mark >= this.othersPerStart || since >= this.maxSpacing);
  }

  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(this.turn);
  }

  /** A new turn: every peer with streams waiting takes up what its share allows; the turns go on while any wait. */
  private readonly turn = (): void => {
    this.turnScheduled = false;
    this.turnNumber++;
    this.startedNow.clear();
    if (this.turnNumber - this.generationStart >= MEMORY_TURNS) {
      this.older = this.recent;
      this.recent = new Map();
      this.generationStart = this.turnNumber;
    }
    for (const [peer, backlog] of this.backlogs) {
      const alone = this.alone(peer);
      while (backlog.waiting.length > 0 && (alone || this.mayStart(peer, backlog))) {
        this.noteStart(peer);
        backlog.mark = this.starts;
        backlog.lastStart = this.turnNumber;
        backlog.waiting.shift()!();
      }
      if (backlog.waiting.length === 0) this.backlogs.delete(peer);
    }
    if (this.backlogs.size > 0) this.scheduleTurn();
  };
}
