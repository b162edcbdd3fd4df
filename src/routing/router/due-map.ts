/**
 * Entries by key, each due at a time: the router's records held for later (a version that came
 * too soon, a refresh whose flood waits for other copies). One owner of "when is the next one".
 */
export class DueMap<V extends { readonly at: number }> {
  readonly #entries = new Map<string, V>();
  #nextAt = Infinity;

  get size(): number {
    return this.#entries.size;
  }

  /** The earliest `at` (Infinity: empty). */
  get nextAt(): number {
    return this.#nextAt;
  }

  get(key: string): V | undefined {
    return this.#entries.get(key);
  }

  set(key: string, value: V): void {
    this.#entries.set(key, value);
    if (value.at < this.#nextAt) this.#nextAt = value.at;
  }

  clear(): void {
    this.#entries.clear();
    this.#nextAt = Infinity;
  }

  /** Removes and returns the entries due at `now`, in insertion order. */
  takeDue(now: number): V[] {
    const due: V[] = [];
    let next = Infinity;
    for (const [key, v] of this.#entries) {
      if (v.at > now) {
        if (v.at < next) next = v.at;
        continue;
      }
      this.#entries.delete(key);
      due.push(v);
    }
    this.#nextAt = next;
    return due;
  }
}
