/** ops/routes: every node the node reaches, through which neighbour, at what cost. */
import type { OpsContext, OpsHandler } from './context.js';
import type { RouteReply } from './wire.js';

export function routesHandler({ node }: OpsContext): OpsHandler {
  return (): RouteReply[] => node.routes().map(({ nodeId, nextHop, cost, hops }) => ({ nodeId, nextHop, cost, hops }));
}
