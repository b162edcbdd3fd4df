/**
 * Records waiting to be sent, per neighbour, and flood pacing (docs/ROUTING.md, Flooding):
 * records leave at once unless a batch left less than floodPacingMs ago; then they wait and
 * leave together, one message per neighbour. A newer version of a record replaces the older
 * one in the queue.
 */
import type { NodeId } from '../../identity/index.js';
import { encodeMessage, packMessages, type LinkStateRecord, type MessageEntry } from './codec.js';
import { recordKey } from './origins.js';
import type { RouterAction, RouterStats } from './types.js';

interface Outgoing {
  readonly rec: LinkStateRecord;
  readonly expiresAt: number;
}

export class FloodQueue {
  readonly #out = new Map<NodeId, Map<string, Outgoing>>();
  #queued = 0;
  #flushAt: number | undefined;
  #lastFlushAt = -Infinity;

  constructor(
    private readonly pacingMs: number,
    private readonly maxMessageBytes: number,
    private readonly stats: Pick<RouterStats, 'messagesSent' | 'recordsSent'>,
  ) {}

  /** When the next batch leaves (undefined: nothing queued). */
  get flushAt(): number | undefined {
    return this.#flushAt;
  }

  /** Queues a record for a neighbour; it leaves at the next flush (at once unless one happened less than the pacing ago). */
  add(to: NodeId, rec: LinkStateRecord, expiresAt: number, now: number): void {
    let q = this.#out.get(to);
    if (q === undefined) {
      q = new Map();
      this.#out.set(to, q);
    }
    const before = q.size;
    q.set(recordKey(rec.origin, rec.fragment), { rec, expiresAt });
    this.#queued += q.size - before;
    if (this.#flushAt === undefined) this.#flushAt = Math.max(now, this.#lastFlushAt + this.pacingMs);
  }

  /** The neighbour holds the record `key` (it sent it to us): no need to send it. */
  remove(to: NodeId, key: string): void {
    const q = this.#out.get(to);
    if (q !== undefined && q.delete(key)) this.#queued--;
  }

  /** Whether exactly this version of `key` waits for `to`. */
  holds(to: NodeId, key: string, rec: LinkStateRecord): boolean {
    return this.#queued > 0 && this.#out.get(to)?.get(key)?.rec === rec;
  }

  /** Forgets everything queued for `to` (gone, or a leaf). */
  drop(to: NodeId): void {
    const q = this.#out.get(to);
    if (q !== undefined) {
      this.#queued -= q.size;
      this.#out.delete(to);
    }
  }

  /** Forgets everything queued. */
  clear(): void {
    this.#out.clear();
    this.#queued = 0;
  }

  /** Sends every queue: one message per neighbour (more if over maxMessageBytes). */
  flush(now: number): RouterAction[] {
    this.#flushAt = undefined;
    this.#lastFlushAt = now;
    const actions: RouterAction[] = [];
    // A record flooded alone goes to every neighbour but one in the same message: encode it once.
    let single: Outgoing | undefined;
    let singleMessage: Uint8Array | undefined;
    for (const [to, queue] of this.#out) {
      if (queue.size === 0) continue;
      this.stats.recordsSent += queue.size;
      if (queue.size === 1) {
        const q: Outgoing = queue.values().next().value!;
        if (single === undefined || q.rec !== single.rec || q.expiresAt !== single.expiresAt) {
          single = q;
          singleMessage = encodeMessage([{ remainingMs: Math.max(1, q.expiresAt - now), record: q.rec.bytes }]);
        }
        actions.push({ type: 'send', to, bytes: singleMessage! });
        this.stats.messagesSent++;
      } else {
        const entries: MessageEntry[] = [];
        for (const q of queue.values()) entries.push({ remainingMs: Math.max(1, q.expiresAt - now), record: q.rec.bytes });
        for (const bytes of packMessages(entries, this.maxMessageBytes)) {
          actions.push({ type: 'send', to, bytes });
          this.stats.messagesSent++;
        }
      }
      queue.clear();
    }
    this.#queued = 0;
    return actions;
  }
}
