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
 * Turns per peer: each peer gets at most `perTurn` of its new streams taken up per turn of the
 * event loop (the first as they arrive, the rest in the check phase, after the loop's I/O); its
 * others wait unread, in arrival order, their bytes held back by its flow control. A turn's work
 * is then bounded per peer, so a stream from another peer, which arrives with the next I/O, waits
 * for at most a few of a busy peer's streams, not for all it has in flight. What a stream does
 * once taken up (a slow handler, a long transfer) runs side by side with the rest: only starts
 * are paced.
 */
export class PeerTurns {
  waited = 0;
  private readonly peers = new Map<NodeId, { started: number; lastActive: number; readonly waiting: Array<() => void> }>();
  private turnScheduled = false;
  private turnNumber = 0;

  constructor(private readonly perTurn: number) {}

  /** true once `peer`'s stream may be taken up (at once within its turn); false if it closed while waiting. */
  acquire(peer: NodeId, stream: Duplex): true | Promise<boolean> {
    let share = this.peers.get(peer);
    if (share === undefined) this.peers.set(peer, (share = { started: 0, lastActive: this.turnNumber, waiting: [] }));
    share.lastActive = this.turnNumber;
    this.scheduleTurn();
    // Alone, a peer is not paced: turns share the node between peers, they do not slow one down.
    const alone = this.peers.size === 1;
    if ((alone || share.started < this.perTurn) && share.waiting.length === 0) {
      share.started++;
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

  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(() => this.turn());
  }

  /** A new turn: every peer takes up to `perTurn` of its waiting streams; idle peers are forgotten. */
  private turn(): void {
    this.turnScheduled = false;
    this.turnNumber++;
    const alone = this.peers.size === 1;
    for (const [peer, share] of this.peers) {
      share.started = 0;
      while ((alone || share.started < this.perTurn) && share.waiting.length > 0) {
        share.started++;
        share.waiting.shift()!();
      }
      if (share.started > 0) share.lastActive = this.turnNumber;
      if (this.turnNumber - share.lastActive > ACTIVE_TURNS) this.peers.delete(peer);
      else this.scheduleTurn();
    }
  }
}

