/**
 * Our own record's fragments: which neighbours each lists, and when each is due to be
 * published. The timing lives here (publication delay, origination backoff, refresh); signing
 * and flooding stay with the router.
 */
import type { NodeId } from '../../identity/index.js';
import type { LinkStateRecord } from './codec.js';

/** One of our own fragments. */
export interface OwnFragment {
  readonly members: Set<NodeId>;
  /** When it is due (undefined: nothing to publish). */
  publishAt: number | undefined;
  /** Publish even if the links did not change (refresh, sequence recovery). */
  must: boolean;
  lastPublishAt: number;
  /** How long the next change waits after lastPublishAt (origination backoff). */
  hold: number;
  /** The pending publication waits for the hold (so it does not start the backoff over). */
  held: boolean;
  rec: LinkStateRecord | undefined;
}

/** The timers of our publications, in ms (from RouterSettings). */
export interface PublishTimers {
  readonly publishDelayMs: number;
  readonly minPublishMs: number;
  readonly backoffMs: number;
  readonly refreshMs: number;
  readonly refreshJitter: number;
}

export class OwnFragments {
  readonly #list: OwnFragment[] = [];
  readonly #timers: PublishTimers;
  readonly #perFragment: number;
  /** Earliest publishAt of the fragments. */
  #publishAt: number | undefined;
  #refreshAt = Infinity;

  constructor(timers: PublishTimers, linksPerFragment: number) {
    this.#timers = timers;
    this.#perFragment = linksPerFragment;
  }

  get length(): number {
    return this.#list.length;
  }

  get publishAt(): number | undefined {
    return this.#publishAt;
  }

  get refreshAt(): number {
    return this.#refreshAt;
  }

  at(index: number): OwnFragment | undefined {
    return this.#list[index];
  }

  [Symbol.iterator](): IterableIterator<OwnFragment> {
    return this.#list.values();
  }

  /** Our fragments' records, as published. */
  *records(): IterableIterator<LinkStateRecord> {
    for (const f of this.#list) if (f.rec !== undefined) yield f.rec;
  }

  /** Lists `id` in the lowest fragment with room for one more link; returns its index. */
  assign(id: NodeId): number {
    let index = this.#list.findIndex((x) => x.members.size < this.#perFragment);
    if (index < 0) index = this.grow(this.#list.length);
    this.#list[index]!.members.add(id);
    return index;
  }

  /** Adds empty fragments up to index `index`; returns `index`. */
  grow(index: number): number {
    while (this.#list.length <= index) {
      this.#list.push({ members: new Set(), publishAt: undefined, must: false, lastPublishAt: -Infinity, hold: 0, held: false, rec: undefined });
    }
    return index;
  }

  /**
   * Fragment `index`'s links changed: due after the publication delay, or after its backoff
   * hold if that ends later. Returns true if the hold delays it (a rate-limited origination).
   */
  changed(index: number, now: number): boolean {
    const f = this.#list[index]!;
    const soonest = now + this.#timers.publishDelayMs;
    const at = Math.max(soonest, f.lastPublishAt + f.hold);
    const held = f.publishAt === undefined && at > soonest;
    if (held) f.held = true;
    if (f.publishAt === undefined || at < f.publishAt) f.publishAt = at;
    this.#due(f.publishAt);
    return held;
  }

  /** Fragment `f` is due now, whatever its links (refresh, sequence recovery, role change). */
  publishNow(f: OwnFragment, now: number): void {
    f.must = true;
    f.publishAt = now;
    this.#due(now);
  }

  /** The refresh timer fired: every published fragment is due now. */
  refresh(now: number): void {
    this.#refreshAt = Infinity;
    for (const f of this.#list) if (f.rec !== undefined) this.publishNow(f, now);
  }

  /** The indices due at `now`, taken off the schedule (the others keep their time). */
  takeDue(now: number): number[] {
    const due: number[] = [];
    let next: number | undefined;
    this.#list.forEach((f, i) => {
      if (f.publishAt === undefined) return;
      if (f.publishAt > now) {
        if (next === undefined || f.publishAt < next) next = f.publishAt;
        return;
      }
      f.publishAt = undefined;
      due.push(i);
    });
    this.#publishAt = next;
    return due;
  }

  /** Fragment `f` went out as `rec`: quiet for the whole interval starts the backoff over, churn doubles the hold up to the interval. */
  published(f: OwnFragment, rec: LinkStateRecord, now: number): void {
    const t = this.#timers;
    const quiet = !f.held && now - f.lastPublishAt >= t.minPublishMs;
    f.rec = rec;
    f.hold = quiet ? t.backoffMs : Math.min(t.minPublishMs, Math.max(t.backoffMs, 2 * f.hold));
    f.held = false;
    f.lastPublishAt = now;
  }

  /** Starts the refresh timer once something is published (`random` in [0, 1) for the jitter). */
  armRefresh(now: number, random: () => number): void {
    if (this.#refreshAt !== Infinity || !this.#list.some((f) => f.rec !== undefined)) return;
    this.#refreshAt = now + this.#timers.refreshMs * (1 - this.#timers.refreshJitter * random());
  }

  #due(at: number): void {
    if (this.#publishAt === undefined || at < this.#publishAt) this.#publishAt = at;
  }
}
