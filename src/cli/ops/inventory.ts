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
/** A new host's facts are asked this long after it appeared (new hosts come in bursts). */
const FACTS_DELAY_MS = 1000;
const FACTS_DEADLINE_MS = 5000;

export interface InventoryTracker {
  stop(): void;
}

/** Keeps `inventory` current from `node`'s map; `changed` is called after each update (the daemon saves). */
export function trackInventory(node: PnetNode, inventory: Inventory, changed: () => void = () => undefined): InventoryTracker {
  let factsTimer: NodeJS.Timeout | undefined;
  let asking = false;
  const sweep = (): void => {
    inventory.seen([node.id, ...node.routes().map((route) => route.nodeId)]);
    changed();
    scheduleFacts(FACTS_DELAY_MS);
  };
  const scheduleFacts = (delayMs: number): void => {
    if (factsTimer !== undefined || asking || node.closed) return;
    factsTimer = setTimeout(() => {
      factsTimer = undefined;
      void askFacts();
    }, delayMs);
    factsTimer.unref();
  };
  const askFacts = async (): Promise<void> => {
    const reachable = new Set([node.id, ...node.routes().map((route) => route.nodeId)]);
    const targets = inventory.stale(FACTS_MAX_AGE_MS).filter((id) => reachable.has(id));
    if (targets.length === 0 || node.closed) return;
    asking = true;
    try {
      for await (const result of node.fanout(targets, OPS_CHANNELS.facts, '{}', { deadlineMs: FACTS_DEADLINE_MS })) {
        if (!result.ok) continue;
        const facts = factsOf(result.data);
        if (facts && facts.nodeId === result.nodeId) inventory.learned(result.nodeId, facts);
      }
      changed();
    } catch {
      // The node closed mid-way: nothing to keep.
    } finally {
      asking = false;
    }
  };
  const onRoute = (change: { nodeId: NodeId; nextHop?: NodeId }): void => {
    if (change.nextHop === undefined) return;
    inventory.seen([change.nodeId]);
    scheduleFacts(FACTS_DELAY_MS);
  };
  node.on('route', onRoute);
  const timer = setInterval(sweep, SWEEP_MS);
  timer.unref();
  sweep();
  return {
    stop() {
      clearInterval(timer);
      clearTimeout(factsTimer);
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

/** ops/inventory: every host remembered, whether it is reachable now, its facts. */
export function inventoryHandler({ node }: OpsContext, inventory: Inventory): OpsHandler {
  return (): InventoryReply => {
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
