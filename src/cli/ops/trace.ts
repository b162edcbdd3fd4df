/** ops/trace: the hop path from the node to a target, with the round trip to each hop. */
import { PnetError } from '../../index.js';
import { intField, parseObject, targetOf } from './context.js';
import type { OpsContext, OpsHandler } from './context.js';
import { probe } from './probe.js';
import type { TraceHop, TraceReply } from './wire.js';

export function traceHandler({ node }: OpsContext): OpsHandler {
  return async (request): Promise<TraceReply> => {
    const body = parseObject(request);
    const target = targetOf(body['target']);
    const count = intField(body, 'count', 1, 1, 10);
    const timeoutMs = intField(body, 'timeoutMs', 2000, 1, 60_000);
    const path = node.path(target);
    if (path === undefined) throw new PnetError('UNREACHABLE', `${node.id} has no route to ${target}`);
    const costs = new Map(node.routes().map((route) => [route.nodeId, route.cost]));
    // Every hop is probed end to end over the path, like traceroute (RTT grows with distance);
    // all at once, so a trace takes one probe's time whatever the path length.
    const hops = await Promise.all(
      path.map(async (nodeId, hop): Promise<TraceHop> => {
        if (hop === 0) return { hop, nodeId, cost: 0, ms: 0, tries: [] };
        const { tries } = await probe(node, nodeId, count, 0, timeoutMs);
        const times = tries.flatMap((x) => (x.ms !== undefined ? [x.ms] : []));
        return { hop, nodeId, cost: costs.get(nodeId) ?? NaN, ...(times.length > 0 ? { ms: Math.min(...times) } : {}), tries };
      }),
    );
    return { from: node.id, target, hops };
  };
}
