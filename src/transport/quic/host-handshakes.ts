/**
 * Inbound handshakes in progress by host (source IP, no port), for fair eviction at a full
 * `maxPendingHandshakes` (docs/LIMITS.md, rule 2): the newcomer takes the oldest handshake of the
 * host holding the most, when that host holds more than the newcomer's would. O(1) per change:
 * hosts are kept in buckets by how many they hold, so the heaviest is the top bucket's first.
 */
export class HostHandshakes<T> {
  /** Host → its handshakes, oldest first (a Set keeps insertion order). */
  private readonly byHost = new Map<string, Set<T>>();
  /** n → the hosts holding exactly n (only non-empty buckets). */
  private readonly byCount = new Map<number, Set<string>>();
  /** The largest n with a bucket (0 when empty). */
  private most = 0;

  /** Handshakes `host` holds. */
  count(host: string): number {
    return this.byHost.get(host)?.size ?? 0;
  }

  /** How many hosts hold any. */
  get hosts(): number {
    return this.byHost.size;
  }

  add(host: string, item: T): void {
    let items = this.byHost.get(host);
    if (items === undefined) {
      items = new Set();
      this.byHost.set(host, items);
    }
    const before = items.size;
    items.add(item);
    if (items.size === before) return;
    this.move(host, before, before + 1);
  }

  delete(host: string, item: T): void {
    const items = this.byHost.get(host);
    if (items === undefined || !items.delete(item)) return;
    if (items.size === 0) this.byHost.delete(host);
    this.move(host, items.size + 1, items.size);
  }

  /**
   * The handshake a newcomer from `host` takes the slot of: the oldest of the host holding the
   * most, if it holds more than `host` would with the newcomer (else undefined: refuse the
   * newcomer; a tie would only swap slots back and forth).
   */
  victimFor(host: string): T | undefined {
    if (this.most <= this.count(host) + 1) return undefined;
    // Every host of the top bucket holds more than `host`, so none of them is `host`.
    const heaviest = this.byCount.get(this.most)!.values().next().value!;
    return this.byHost.get(heaviest)!.values().next().value;
  }

  /** `host` went from holding `from` to `to` (they differ by one). */
  private move(host: string, from: number, to: number): void {
    if (from > 0) {
      const bucket = this.byCount.get(from)!;
      bucket.delete(host);
      if (bucket.size === 0) {
        this.byCount.delete(from);
        if (this.most === from && to < from) this.most = to;
      }
    }
    if (to > 0) {
      let bucket = this.byCount.get(to);
      if (bucket === undefined) {
        bucket = new Set();
        this.byCount.set(to, bucket);
      }
      bucket.add(host);
      if (to > this.most) this.most = to;
    }
  }
}
