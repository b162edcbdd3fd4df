/**
 * ops/inventory, ops/forget and ops/facts, and the tracker that keeps the inventory current:
 * every host of the map is marked reachable as routes come and on a sweep, and the facts (name,
 * labels) of hosts not asked yet, or not for a while, are read with one fan-out of ops/facts.
 */
import { PnetError } from '../../index.js';
import type { NodeId, PnetNode } from '../../index.js';
import type { Inventory } from '../inventory.js';
import { readVersion } from '../version.js';
import { parseObject, targetOf } from './context.js';
import type { OpsContext, OpsHandler } from './context.js';
import { OPS_CHANNELS } from './wire.js';
import type { FactsReply, ForgetReply, InventoryReply } from './wire.js';

/** How often every host of the map is marked reachable (route events do it between sweeps). */
const SWEEP_MS = 5000;
/** Facts older than this are read again. */
const FACTS_MAX_AGE_MS = 5 * 60_000;
const FACTS_DEADLINE_MS = 5000;

export interface InventoryTracker {
  /** Reads the facts of reachable hosts not asked yet, or not for FACTS_MAX_AGE_MS (one fan-out; concurrent calls share it). */
  refreshFacts(): Promise<void>;
  stop(): void;
}

/**
 * Keeps `inventory` current from `node`'s map; `changed` is called after each update (the daemon
 * saves). Facts are read only when the inventory is asked for (an operator's `hosts` or `exec`),
 * so a network of daemons nobody asks does not fan out to every node of it.
 */
export function trackInventory(node: PnetNode, inventory: Inventory, changed: () => void = () => undefined): InventoryTracker {
  let asking: Promise<void> | undefined;
  const sweep = (): void => {
    inventory.seen([node.id, ...node.routes().map((route) => route.nodeId)]);
    changed();
  };
  const askFacts = async (): Promise<void> => {
    const reachable = new Set([node.id, ...node.routes().map((route) => route.nodeId)]);
    const targets = inventory.stale(FACTS_MAX_AGE_MS).filter((id) => reachable.has(id));
    if (targets.length === 0 || node.closed) return;
    try {
      for await (const result of node.fanout(targets, OPS_CHANNELS.facts, '{}', { deadlineMs: FACTS_DEADLINE_MS })) {
        if (!result.ok) continue;
        const facts = factsOf(result.data);
        if (facts && facts.nodeId === result.nodeId) inventory.learned(result.nodeId, facts);
      }
      changed();
    } catch {
      // The node closed mid-way: nothing to keep.
    }
  };
  const onRoute = (change: { nodeId: NodeId; nextHop?: NodeId }): void => {
    if (change.nextHop === undefined) return;
    inventory.seen([change.nodeId]);
    changed();
  };
  node.on('route', onRoute);
  const timer = setInterval(sweep, SWEEP_MS);
  timer.unref();
  sweep();
  return {
    refreshFacts() {
      asking ??= askFacts().finally(() => (asking = undefined));
      return asking;
    },
    stop() {
      clearInterval(timer);
      node.off('route', onRoute);
    },
  };
}

function factsOf(data: Buffer): FactsReply | undefined {
  try {
    const body = JSON.parse(data.toString('utf8')) as FactsReply;
    return typeof body.nodeId === 'string' && typeof body.labels === 'object' && body.labels !== null ? body : undefined;
  } catch {
    return undefined;
  }
}

/** ops/facts: this host's name and labels (served to operators and every node of the map). */
export function factsHandler({ node, config }: OpsContext): OpsHandler {
  const version = readVersion();
  return (): FactsReply => ({ nodeId: node.id, ...(config.name === undefined ? {} : { name: config.name }), labels: { ...(config.labels ?? {}) }, version });
}

/**
 * ops/inventory: every host remembered, whether it is reachable now, its facts (read first where
 * missing or old). `{ "facts": false }`: the facts known now, none read for this answer (`exec
 * --targets all` needs only the ids: at 2,000 hosts the first read cost ~1 s before the exec).
 */
export function inventoryHandler({ node }: OpsContext, inventory: Inventory, tracker: InventoryTracker): OpsHandler {
  return async (request): Promise<InventoryReply> => {
    const body = parseObject(request);
    if (body['facts'] !== undefined && typeof body['facts'] !== 'boolean') throw new PnetError('ERR_BAD_OPTION', '"facts" must be true or false');
    if (body['facts'] !== false) await tracker.refreshFacts();
    const reachable = new Set([node.id, ...node.routes().map((route) => route.nodeId)]);
    inventory.seen(reachable);
    const hosts = inventory
      .list()
      .map((host) => ({
        nodeId: host.nodeId,
        ...(host.name === undefined ? {} : { name: host.name }),
        labels: host.labels,
        reachable: reachable.has(host.nodeId),
        lastReachable: new Date(host.lastReachable).toISOString(),
        firstSeen: new Date(host.firstSeen).toISOString(),
      }))
      .sort((a, b) => Number(b.reachable) - Number(a.reachable) || (a.name ?? '').localeCompare(b.name ?? '') || a.nodeId.localeCompare(b.nodeId));
    return { self: node.id, hosts, evicted: inventory.evicted };
  };
}

/** ops/forget: drop a host from the inventory (one still in the map comes back at the next sweep). */
export function forgetHandler({ node }: OpsContext, inventory: Inventory): OpsHandler {
  return (request): ForgetReply => {
    const nodeId = targetOf(parseObject(request)['nodeId']);
    if (nodeId === node.id) throw new PnetError('ERR_BAD_OPTION', 'a node does not forget itself');
    const forgotten = inventory.forget(nodeId);
    return { nodeId, forgotten, reachable: node.path(nodeId) !== undefined };
  };
}
