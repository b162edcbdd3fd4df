/**
 * The daemon's inventory: every host it has seen in the network map, when it was last reachable,
 * and its name and labels (its "facts", asked with ops/facts). `exec --targets all` means every
 * host here, so one that dropped out of the map is reported instead of silently missing.
 * Bounded (the host unreachable the longest goes first, counted) and persisted as JSON.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, basename, extname, join } from 'node:path';
import { isNodeId } from '../index.js';
import type { NodeId } from '../index.js';

/** Hosts remembered at most; past it the one unreachable the longest is forgotten (`evicted`). */
export const MAX_HOSTS = 10_000;
/** A host's last-reachable time is saved again once it moved this much. */
const SAVE_PRECISION_MS = 60_000;

export interface HostFacts {
  readonly name?: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface HostRecord extends HostFacts {
  readonly nodeId: NodeId;
  /** Epoch ms it was first seen. */
  readonly firstSeen: number;
  /** Epoch ms it was last in the map (reachable). */
  readonly lastReachable: number;
  /** Epoch ms its facts were last read (undefined: never). */
  readonly factsAt?: number;
}

/** A `--targets` selector: every pair must match (`name=` the host's name, any other key a label). */
export type Selector = Readonly<Record<string, string>>;

export class Inventory {
  private readonly hosts = new Map<NodeId, HostRecord>();
  /** Hosts forgotten because the inventory was full. */
  evicted = 0;
  /** Something changed since the last save. */
  dirty = false;
  private markedAt = 0;

  constructor(private readonly maxHosts = MAX_HOSTS) {}

  get size(): number {
    return this.hosts.size;
  }

  get(nodeId: NodeId): HostRecord | undefined {
    return this.hosts.get(nodeId);
  }

  list(): HostRecord[] {
    return [...this.hosts.values()];
  }

  /** These hosts are in the map now. */
  seen(nodeIds: Iterable<NodeId>, now = Date.now()): void {
    for (const nodeId of nodeIds) {
      const known = this.hosts.get(nodeId);
      this.hosts.set(nodeId, known ? { ...known, lastReachable: now } : { nodeId, firstSeen: now, lastReachable: now, labels: {} });
      if (!known) {
        this.evictOverflow();
        this.dirty = true;
      }
    }
    // Last-reachable times are saved to the minute: a sweep every few seconds need not rewrite the file.
    if (now - this.markedAt >= SAVE_PRECISION_MS) {
      this.markedAt = now;
      this.dirty = true;
    }
  }

  /** The facts a host answered with. */
  learned(nodeId: NodeId, facts: HostFacts, now = Date.now()): void {
    const known = this.hosts.get(nodeId);
    if (!known) return;
    this.hosts.set(nodeId, { ...known, labels: { ...facts.labels }, ...(facts.name === undefined ? {} : { name: facts.name }), factsAt: now });
    this.dirty = true;
  }

  forget(nodeId: NodeId): boolean {
    const had = this.hosts.delete(nodeId);
    if (had) this.dirty = true;
    return had;
  }

  /** Hosts whose facts are missing or older than `maxAgeMs`. */
  stale(maxAgeMs: number, now = Date.now()): NodeId[] {
    return this.list()
      .filter((host) => host.factsAt === undefined || now - host.factsAt > maxAgeMs)
      .map((host) => host.nodeId);
  }

  select(selector: Selector): HostRecord[] {
    return this.list().filter((host) => matches(host, selector));
  }

  private evictOverflow(): void {
    while (this.hosts.size > this.maxHosts) {
      let oldest: HostRecord | undefined;
      for (const host of this.hosts.values()) if (oldest === undefined || host.lastReachable < oldest.lastReachable) oldest = host;
      this.hosts.delete(oldest!.nodeId);
      this.evicted++;
    }
  }

  toJSON(): { version: 1; hosts: HostRecord[] } {
    return { version: 1, hosts: this.list() };
  }

  /** Takes the hosts of a saved inventory; malformed entries are skipped. */
  static from(raw: unknown, maxHosts = MAX_HOSTS): Inventory {
    const inventory = new Inventory(maxHosts);
    const hosts = typeof raw === 'object' && raw !== null && Array.isArray((raw as { hosts?: unknown }).hosts) ? (raw as { hosts: unknown[] }).hosts : [];
    for (const entry of hosts) {
      const host = hostOf(entry);
      if (host) inventory.hosts.set(host.nodeId, host);
    }
    inventory.evictOverflow();
    return inventory;
  }
}

export function matches(host: HostFacts, selector: Selector): boolean {
  return Object.entries(selector).every(([key, value]) => (key === 'name' ? host.name === value : host.labels[key] === value));
}

function hostOf(entry: unknown): HostRecord | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined;
  const e = entry as Record<string, unknown>;
  if (typeof e['nodeId'] !== 'string' || !isNodeId(e['nodeId']) || typeof e['firstSeen'] !== 'number' || typeof e['lastReachable'] !== 'number') return undefined;
  const labels = typeof e['labels'] === 'object' && e['labels'] !== null ? Object.fromEntries(Object.entries(e['labels']).filter(([, v]) => typeof v === 'string')) : {};
  return {
    nodeId: e['nodeId'],
    firstSeen: e['firstSeen'],
    lastReachable: e['lastReachable'],
    labels: labels as Record<string, string>,
    ...(typeof e['name'] === 'string' ? { name: e['name'] } : {}),
    ...(typeof e['factsAt'] === 'number' ? { factsAt: e['factsAt'] } : {}),
  };
}

/** Where a daemon keeps its inventory: next to its key, `node.key` → `node.hosts.json`. */
export function inventoryFileFor(keyFile: string): string {
  return join(dirname(keyFile), `${basename(keyFile, extname(keyFile))}.hosts.json`);
}

/** The saved inventory, or an empty one when the file is missing or unreadable. */
export async function loadInventory(file: string): Promise<Inventory> {
  try {
    return Inventory.from(JSON.parse(await readFile(file, 'utf8')));
  } catch {
    return new Inventory();
  }
}

/** Writes atomically (a temporary file renamed over the old one), mode 0600. */
export async function saveInventory(inventory: Inventory, file: string): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(inventory), { mode: 0o600 });
  await rename(temporary, file);
  inventory.dirty = false;
}

/** "role=web,dc=ams" → { role: 'web', dc: 'ams' }; undefined when `spec` is not a selector. */
export function parseSelector(spec: string): Selector | undefined {
  if (!spec.includes('=') || spec.startsWith('@')) return undefined;
  const selector: Record<string, string> = {};
  for (const part of spec.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    selector[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return Object.keys(selector).length > 0 ? selector : undefined;
}
