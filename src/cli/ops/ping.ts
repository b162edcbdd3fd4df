/** ops/ping: round trips from the node to a target over its route (one stream, COUNT tries). */
import { intField, parseObject, targetOf } from './context.js';
import type { OpsContext, OpsHandler } from './context.js';
import { probe } from './probe.js';
import type { PingReply } from './wire.js';

export function pingHandler({ node }: OpsContext): OpsHandler {
  return async (request): Promise<PingReply> => {
    const body = parseObject(request);
    const target = targetOf(body['target']);
    const count = intField(body, 'count', 3, 1, 100);
    const intervalMs = intField(body, 'intervalMs', 200, 0, 10_000);
    const timeoutMs = intField(body, 'timeoutMs', 2000, 1, 60_000);
    const { setupMs, tries } = await probe(node, target, count, intervalMs, timeoutMs);
    return { from: node.id, target, ...(setupMs !== undefined ? { setupMs } : {}), tries };
  };
}
