/** ops/peers: the node's direct connections. */
import type { OpsContext, OpsHandler } from './context.js';
import type { PeerReply } from './wire.js';

/** The asker's own connection (a short-lived CLI node) is left out. */
export function peersHandler({ node }: OpsContext): OpsHandler {
  return (_request, from): PeerReply[] =>
    node.peers().filter((peer) => peer.nodeId !== from).map((peer) => ({
      nodeId: peer.nodeId,
      address: peer.address,
      transport: peer.transport,
      direction: peer.direction,
      rttMs: peer.rttMs,
      streams: peer.streams,
    }));
}
