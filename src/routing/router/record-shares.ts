/**
 * Who filled the link-state map: each received origin is charged, in record bytes, to the
 * neighbour that brought its first record. When the map is full (origins or bytes), the neighbour
 * that brought the most gives back its oldest origins to one that brought less; a neighbour that
 * brought the most is refused. Keys are free, so a per-neighbour cap alone would not hold
 * (docs/LIMITS.md, rule 2); origins must still be signed, so this bounds what one neighbour's
 * minted keys can push out. Sans-IO: the router asks and applies.
 */
import type { NodeId } from '../../identity/index.js';

interface OriginAccount {
  readonly by: NodeId;
  bytes: number;
  readonly frags: Map<number, number>;
}

interface NeighbourAccount {
  bytes: number;
  /** In the order they were brought (oldest first). */
  readonly origins: Set<NodeId>;
}

/** Map bounds: origins (the router's own included), bytes of received records, bytes per origin. */
export interface ShareLimits {
  readonly maxRecords: number;
  readonly maxTableBytes: number;
  readonly maxOriginBytes: number;
}

export class RecordShares {
  #bytes = 0;
  readonly #origins = new Map<NodeId, OriginAccount>();
  readonly #neighbours = new Map<NodeId, NeighbourAccount>();
  /** The neighbour holding the most, kept while accounts only grow (a full map's refusals stay O(1)). */
  #max: NodeId | undefined;
  #maxValid = true;

  constructor(private readonly limits: ShareLimits) {}

  /** Bytes of received records held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The neighbour an origin is charged to, if it is held. */
  broughtBy(origin: NodeId): NodeId | undefined {
    return this.#origins.get(origin)?.by;
  }

  /** Whether fragment `frag` of `len` bytes keeps its origin within maxOriginBytes. */
  fitsOrigin(origin: NodeId, frag: number, len: number): boolean {
    const o = this.#origins.get(origin);
    return (o?.bytes ?? 0) - (o?.frags.get(frag) ?? 0) + len <= this.limits.maxOriginBytes;
  }

  /**
   * The origins to evict so that fragment `frag` of `origin` (`len` bytes, from `from`) fits, given
   * `held` origins in the map now; [] when it fits; undefined when it is refused (the neighbour it
   * is charged to brought the most). Changes nothing.
   */
  room(origin: NodeId, frag: number, len: number, from: NodeId, held: number): NodeId[] | undefined {
    const o = this.#origins.get(origin);
    const payer = o?.by ?? from;
    let origins = held + (o === undefined ? 1 : 0);
    let bytes = this.#bytes - (o?.frags.get(frag) ?? 0) + len;
    const payerHolds = (this.#neighbours.get(payer)?.bytes ?? 0) - (o?.frags.get(frag) ?? 0) + len;
    const victims: NodeId[] = [];
    if (origins <= this.limits.maxRecords && bytes <= this.limits.maxTableBytes) return victims;
    if (this.#heaviestId() === payer) return undefined;
    // The heaviest other neighbour gives back its oldest origins while it holds more than the payer would.
    const taken = new Map<NodeId, number>();
    const picks = new Map<NodeId, Iterator<NodeId>>();
    while (origins > this.limits.maxRecords || bytes > this.limits.maxTableBytes) {
      const heaviest = this.#heaviest(payer, taken);
      if (heaviest === undefined || heaviest.bytes <= payerHolds) return undefined;
      let pick = picks.get(heaviest.id);
      if (pick === undefined) picks.set(heaviest.id, (pick = heaviest.account.origins.values()));
      let victim = pick.next();
      if (!victim.done && victim.value === origin) victim = pick.next();
      if (victim.done) return undefined;
      const cost = this.#origins.get(victim.value)!.bytes;
      taken.set(heaviest.id, (taken.get(heaviest.id) ?? 0) + cost);
      victims.push(victim.value);
      origins--;
      bytes -= cost;
    }
    return victims;
  }

  /** Fragment `frag` of `origin` is now `len` bytes (undefined: removed); a new origin is charged to `from`. */
  set(origin: NodeId, frag: number, len: number | undefined, from: NodeId): void {
    let o = this.#origins.get(origin);
    if (o === undefined) {
      if (len === undefined) return;
      this.#origins.set(origin, (o = { by: from, bytes: 0, frags: new Map() }));
      let n = this.#neighbours.get(from);
      if (n === undefined) this.#neighbours.set(from, (n = { bytes: 0, origins: new Set() }));
      n.origins.add(origin);
    }
    const n = this.#neighbours.get(o.by)!;
    const delta = (len ?? 0) - (o.frags.get(frag) ?? 0);
    if (len === undefined) o.frags.delete(frag);
    else o.frags.set(frag, len);
    o.bytes += delta;
    n.bytes += delta;
    this.#bytes += delta;
    this.#track(o.by, n, delta);
    if (o.frags.size > 0) return;
    this.#origins.delete(origin);
    n.origins.delete(origin);
    if (n.origins.size > 0) return;
    this.#neighbours.delete(o.by);
    if (this.#max === o.by) this.#maxValid = false;
  }

  #track(id: NodeId, n: NeighbourAccount, delta: number): void {
    if (!this.#maxValid) return;
    if (delta < 0 && this.#max === id) this.#maxValid = false;
    else if (delta > 0 && (this.#max === undefined || n.bytes > (this.#neighbours.get(this.#max)?.bytes ?? -1))) this.#max = id;
  }

  #heaviestId(): NodeId | undefined {
    if (!this.#maxValid) {
      this.#max = undefined;
      let most = -1;
      for (const [id, account] of this.#neighbours) {
        if (account.bytes > most) {
          most = account.bytes;
          this.#max = id;
        }
      }
      this.#maxValid = true;
    }
    return this.#max;
  }

  /** Forgets everything (a router that became a leaf keeps no map). */
  clear(): void {
    this.#bytes = 0;
    this.#origins.clear();
    this.#neighbours.clear();
    this.#max = undefined;
    this.#maxValid = true;
  }

  /** The neighbour other than `payer` holding the most, less what `taken` already takes from it. */
  #heaviest(payer: NodeId, taken: ReadonlyMap<NodeId, number>): { id: NodeId; account: NeighbourAccount; bytes: number } | undefined {
    let best: { id: NodeId; account: NeighbourAccount; bytes: number } | undefined;
    for (const [id, account] of this.#neighbours) {
      if (id === payer) continue;
      const bytes = account.bytes - (taken.get(id) ?? 0);
      if (best === undefined || bytes > best.bytes) best = { id, account, bytes };
    }
    return best;
  }
}
