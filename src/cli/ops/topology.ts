/** ops/topology: the network map as the node knows it. */
import type { NodeId } from '../../index.js';
import type { OpsContext, OpsHandler } from './context.js';
import type { TopologyReply } from './wire.js';

/** The map without one-way links: a short-lived operator connection announced by one side only is not part of it. */
export function topologyHandler({ node }: OpsContext): OpsHandler {
  return (): TopologyReply => {
    const { links } = node.topology();
    const announced = new Set(links.map((link) => `${link.from} ${link.to}`));
    const kept = links.filter((link) => announced.has(`${link.to} ${link.from}`));
    const nodes = new Set<NodeId>([node.id]);
    for (const route of node.routes()) nodes.add(route.nodeId);
    for (const link of kept) {
      nodes.add(link.from);
      nodes.add(link.to);
    }
    return { self: node.id, nodes: [...nodes], links: kept };
  };
}
