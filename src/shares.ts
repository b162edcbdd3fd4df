/**
 * Fair eviction's one question (docs/LIMITS.md): at a full table, which holder other than the
 * newcomer holds the most. Every per-peer table with eviction asks it (node, relay, routing).
 */

/** The group of `groups` other than `except`'s with the greatest `weight`, its key and weight; undefined when there is none. */
export function heaviestOther<K, V>(groups: ReadonlyMap<K, V>, except: K | undefined, weight: (group: V, key: K) => number): { key: K; group: V; weight: number } | undefined {
  let heaviest: { key: K; group: V; weight: number } | undefined;
  for (const [key, group] of groups) {
    if (key === except) continue;
    const w = weight(group, key);
    if (heaviest === undefined || w > heaviest.weight) heaviest = { key, group, weight: w };
  }
  return heaviest;
}
