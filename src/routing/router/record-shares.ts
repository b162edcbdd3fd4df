/**
 * Who filled the link-state map: each received origin is charged, in record bytes, to the
 * neighbour that brought its first record. When the map is full (origins or bytes), the neighbour
 * that brought the most gives back its oldest origins to one that brought less; a neighbour that
 * brought the most is refused. Keys are free, so a per-neighbour cap alone would not hold
 * (docs/LIMITS.md, rule 2); origins must still be signed, so this bounds what one neighbour's
 * minted keys can push out. Sans-IO: the router asks and applies. Per origin it costs two fields
 * of the router's Origin (a 100,100-node simulation holds 100 routers' maps in one process).
 */
import type { NodeId } from '../../identity/index.js';
import type { Origin } from './origins.js';
import { heaviestOther } from '../../shares.js';

/** Map bounds: origins (the router's own included), bytes of received records, bytes per origin. */
export interface ShareLimits {
  readonly maxRecords: number;
  readonly maxTableBytes: number;
  readonly maxOriginBytes: number;
}

export class RecordShares {
  #bytes = 0;
  /** Bytes charged to each neighbour that brought an origin still held. */
  readonly #charged = new Map<NodeId, number>();
  /** The neighbour charged the most, kept while charges only grow (a full map's refusals stay O(1)). */
  #max: NodeId | undefined;
  #maxValid = true;

  /** `origins`: the router's map, oldest first (insertion order), for the victims' scan. */
  constructor(
    private readonly limits: ShareLimits,
    private readonly origins: ReadonlyMap<NodeId, Origin>,
  ) {}

  /** Bytes of received records held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether a fragment of `len` bytes replacing one of `old` keeps its origin within maxOriginBytes. */
  fitsOrigin(o: Origin | undefined, old: number, len: number): boolean {
    return (o?.bytes ?? 0) - old + len <= this.limits.maxOriginBytes;
  }

  /**
   * The origins to evict so that a fragment of `origin` (`len` bytes replacing `old`, from `from`)
   * fits; [] when it fits; undefined when it is refused (the neighbour it is charged to brought
   * the most). Changes nothing.
   */
  room(origin: NodeId, o: Origin | undefined, old: number, len: number, from: NodeId): NodeId[] | undefined {
    const payer = o?.by ?? from;
    let count = this.origins.size + (o === undefined ? 1 : 0);
    let bytes = this.#bytes - old + len;
    const victims: NodeId[] = [];
    if (count <= this.limits.maxRecords && bytes <= this.limits.maxTableBytes) return victims;
    if (this.#heaviestId() === payer) return undefined;
    const payerHolds = (this.#charged.get(payer) ?? 0) - old + len;
    const taken = new Map<NodeId, number>();
    const scans = new Map<NodeId, Iterator<[NodeId, Origin]>>();
    // The heaviest other neighbour gives back its oldest origins while it holds more than the payer would.
    while (count > this.limits.maxRecords || bytes > this.limits.maxTableBytes) {
      const heaviest = heaviestOther(this.#charged, payer, (charged, id) => charged - (taken.get(id) ?? 0));
      if (heaviest === undefined || heaviest.weight <= payerHolds) return undefined;
      let scan = scans.get(heaviest.key);
      if (scan === undefined) scans.set(heaviest.key, (scan = this.origins.entries()));
      const victim = oldestOf(scan, heaviest.key, origin);
      if (victim === undefined) return undefined;
      taken.set(heaviest.key, (taken.get(heaviest.key) ?? 0) + victim[1].bytes);
      victims.push(victim[0]);
      count--;
      bytes -= victim[1].bytes;
    }
    return victims;
  }

  /** A received fragment of `o` changed by `delta` bytes (after the change); a new origin is charged to `from`. */
  changed(o: Origin, delta: number, from: NodeId): void {
    const by = (o.by ??= from);
    o.bytes += delta;
    this.#bytes += delta;
    const charged = (this.#charged.get(by) ?? 0) + delta;
    if (o.frags.size === 0 && charged <= 0) {
      this.#charged.delete(by);
      if (this.#max === by) this.#maxValid = false;
      return;
    }
    this.#charged.set(by, charged);
    if (!this.#maxValid) return;
    if (delta < 0 && this.#max === by) this.#maxValid = false;
    else if (delta > 0 && (this.#max === undefined || charged > (this.#charged.get(this.#max) ?? -1))) this.#max = by;
  }

  /** Forgets everything (a router that became a leaf keeps no map). */
  clear(): void {
    this.#bytes = 0;
    this.#charged.clear();
    this.#max = undefined;
    this.#maxValid = true;
  }

  #heaviestId(): NodeId | undefined {
    if (!this.#maxValid) {
      this.#max = undefined;
      let most = -1;
      for (const [id, bytes] of this.#charged) {
        if (bytes > most) {
          most = bytes;
          this.#max = id;
        }
      }
      this.#maxValid = true;
    }
    return this.#max;
  }
}

/** The next origin in `scan` charged to `by`, other than `except`. */
function oldestOf(scan: Iterator<[NodeId, Origin]>, by: NodeId, except: NodeId): [NodeId, Origin] | undefined {
  for (let next = scan.next(); !next.done; next = scan.next()) {
    if (next.value[1].by === by && next.value[0] !== except && next.value[1].bytes > 0) return next.value;
  }
  return undefined;
}
