/**
 * The router's store of received link-state records: per origin, its fragments (each a signed
 * record with its own sequence number) and the union of their links, which the two-way check
 * and the shortest-path input read. Plus the expiry heap over (origin, fragment).
 */
import type { NodeId } from '../../identity/index.js';
import type { LinkStateRecord } from './codec.js';

export interface Stored {
  readonly rec: LinkStateRecord;
  readonly expiresAt: number;
  /** When we accepted it (the acceptance rate limit counts from here). */
  readonly acceptedAt: number;
}

/** One link of an origin, from whichever of its fragments lists it. */
export interface MergedLink {
  readonly cost: number;
  readonly stub: boolean;
  readonly frag: number;
}

/** Key of one record (origin, fragment) in queues and maps: fragment 0, by far the most common, is the bare id. */
export function recordKey(origin: NodeId, fragment: number): string {
  return fragment === 0 ? origin : `${origin}/${fragment}`;
}

export class Origin {
  readonly frags = new Map<number, Stored>();
  /** Links of all fragments by neighbour (a neighbour is normally in one fragment only). */
  readonly links = new Map<NodeId, MergedLink>();
  /** The origin says it is a leaf (its links are never transit). */
  leaf = false;
  /** The neighbour that brought its first record, charged with its bytes (record-shares.ts). */
  by: NodeId | undefined;
  /** Bytes of its fragments together. */
  bytes = 0;

  /** Highest sequence number over the fragments. */
  get seq(): bigint {
    let seq = 0n;
    for (const s of this.frags.values()) if (s.rec.seq > seq) seq = s.rec.seq;
    return seq;
  }

  /**
   * Replaces fragment `frag` (undefined: removes it). Returns the neighbours that entered or
   * left the origin's links, or whose stub flag flipped: their own links towards the origin pass
   * or fail the two-way check now.
   */
  put(frag: number, stored: Stored | undefined): NodeId[] {
    const before = this.frags.get(frag)?.rec;
    const after = stored?.rec;
    if (stored === undefined) this.frags.delete(frag);
    else this.frags.set(frag, stored);
    const moved: NodeId[] = [];
    if (before !== undefined) {
      for (const l of before.links) {
        if (after !== undefined && after.linkCost.has(l.to)) continue;
        if (this.links.get(l.to)?.frag === frag) {
          this.links.delete(l.to);
          this.#relist(l.to);
        }
        if (!this.links.has(l.to)) moved.push(l.to);
      }
    }
    if (after !== undefined) {
      for (const l of after.links) {
        const m = this.links.get(l.to);
        // A stub flag that flips changes the two-way check of the far end's links too.
        if (m === undefined || m.stub !== (l.stub === true)) moved.push(l.to);
        if (m === undefined || m.frag === frag || m.cost !== l.cost || m.stub !== (l.stub === true)) {
          this.links.set(l.to, { cost: l.cost, stub: l.stub === true, frag });
        }
      }
      this.leaf = after.leaf;
    }
    return moved;
  }

  /** `to` left fragment `frag`: another fragment may still list it (a restart's stale fragment). */
  #relist(to: NodeId): void {
    if (this.frags.size < 2) return;
    for (const [f, s] of this.frags) {
      const cost = s.rec.linkCost.get(to);
      if (cost === undefined) continue;
      const stub = s.rec.links.find((l) => l.to === to)?.stub === true;
      this.links.set(to, { cost, stub, frag: f });
      return;
    }
  }
}

/** Min-heap of (time, origin, fragment), lazy deletion by the caller. */
export class ExpiryHeap {
  #at: number[] = [];
  #id: NodeId[] = [];
  #frag: number[] = [];

  get size(): number {
    return this.#at.length;
  }

  peek(): number | undefined {
    return this.#at[0];
  }

  push(at: number, id: NodeId, frag: number): void {
    const a = this.#at;
    const d = this.#id;
    const f = this.#frag;
    let i = a.length;
    a.push(at);
    d.push(id);
    f.push(frag);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= at) break;
      a[i] = a[p]!;
      d[i] = d[p]!;
      f[i] = f[p]!;
      i = p;
    }
    a[i] = at;
    d[i] = id;
    f[i] = frag;
  }

  pop(): [number, NodeId, number] {
    const a = this.#at;
    const d = this.#id;
    const f = this.#frag;
    const top: [number, NodeId, number] = [a[0]!, d[0]!, f[0]!];
    const at = a.pop()!;
    const id = d.pop()!;
    const frag = f.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && a[c + 1]! < a[c]!) c++;
        if (a[c]! >= at) break;
        a[i] = a[c]!;
        d[i] = d[c]!;
        f[i] = f[c]!;
        i = c;
      }
      a[i] = at;
      d[i] = id;
      f[i] = frag;
    }
    return top;
  }

  /** Rebuilds from the live entries. */
  rebuild(entries: Iterable<[number, NodeId, number]>): void {
    this.#at = [];
    this.#id = [];
    this.#frag = [];
    for (const [at, id, frag] of entries) this.push(at, id, frag);
  }
}
