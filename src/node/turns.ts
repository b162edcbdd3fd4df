/**
 * Per-peer fairness of the streams a node takes up (docs/LIMITS.md, issue 15 item 8).
 */
import type { Duplex } from 'node:stream';
import type { NodeId } from '../identity/index.js';

/** New streams of one peer taken up per turn of the event loop (negotiated, then served), while another peer is active. */
export const STREAMS_PER_TURN = 1;
/** A peer counts as active for this many turns after its last new stream (a one-request peer comes back a round trip later). */
const ACTIVE_TURNS = 64;
/**
 * While another peer is active, a peer with streams waiting takes one up every this many turns.
 * A one-request peer needs two turns per request (its stream in, its answer out: measured), so a
 * busy peer then gets about one stream per request of the light one: equal shares of starts. A
 * turn with nothing to do is short, so beside idle peers a busy one loses little. Not the number
 * of active peers: a hub with 2,000 of them would take up one stream in 2,000 turns.
 */
export const BACKLOG_SPACING = 2;

/**
 * Turns per peer: each peer gets at most `perTurn` of its new streams taken up per turn of the
 * event loop (the first as they arrive, the rest in the check phase, after the loop's I/O); its
 * others wait unread, in arrival order, their bytes held back by its flow control. A turn's work
 * is then bounded per peer, so a stream from another peer, which arrives with the next I/O, waits
 * for at most a few of a busy peer's streams, not for all it has in flight. What a stream does
 * once taken up (a slow handler, a long transfer) runs side by side with the rest: only starts
 * are paced. A peer's waiting streams are taken up every BACKLOG_SPACING turns, so a busy
 * peer's work between two requests of a one-request peer (two turns each: its stream in, its
 * answer out) is about one of its streams; a stream with none of its peer's waiting is taken up
 * at once (the first of its peer this turn), so a one-request peer never waits.
 */
export class PeerTurns {
  waited = 0;
  private readonly peers = new Map<NodeId, { started: number; lastActive: number; lastStart: number; readonly waiting: Array<() => void> }>();
  private turnScheduled = false;
  private turnNumber = 0;

  constructor(
    private readonly perTurn: number,
    private readonly spacing = BACKLOG_SPACING,
  ) {}

  /** true once `peer`'s stream may be taken up (at once within its turn); false if it closed while waiting. */
  acquire(peer: NodeId, stream: Duplex): true | Promise<boolean> {
    let share = this.peers.get(peer);
    if (share === undefined) this.peers.set(peer, (share = { started: 0, lastActive: this.turnNumber, lastStart: -Infinity, waiting: [] }));
    share.lastActive = this.turnNumber;
    this.scheduleTurn();
    // Alone, a peer is not paced: turns share the node between peers, they do not slow one down.
    const alone = this.peers.size === 1;
    // A stream with none of its peer's waiting is taken up at once (its first this turn): a peer with one request at a time never waits.
    if ((alone || share.started < this.perTurn) && share.waiting.length === 0) {
      share.started++;
      share.lastStart = this.turnNumber;
      return true;
    }
    this.waited++;
    const waiting = share.waiting;
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

  /** A waiting stream: within its peer's share of this turn, and `spacing` turns after its peer's last start. */
  private mayStart(share: { started: number; lastStart: number }): boolean {
    return share.started < this.perTurn && this.turnNumber - share.lastStart >= this.spacing;
  }

  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(() => this.turn());
  }

  /** A new turn: every peer whose spacing allows takes up to `perTurn` of its waiting streams; idle peers are forgotten. */
  private turn(): void {
    this.turnScheduled = false;
    this.turnNumber++;
    const alone = this.peers.size === 1;
    for (const [peer, share] of this.peers) {
      share.started = 0;
      while ((alone || this.mayStart(share)) && share.waiting.length > 0) {
        share.started++;
        share.lastStart = this.turnNumber;
        share.waiting.shift()!();
      }
      if (share.started > 0) share.lastActive = this.turnNumber;
      if (this.turnNumber - share.lastActive > ACTIVE_TURNS) this.peers.delete(peer);
      else this.scheduleTurn();
    }
  }
}

