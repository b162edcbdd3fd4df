/** ops/info: what the node is (id, address, version, uptime, counts, allowed commands). */
import { readVersion } from '../version.js';
import { reachableAddresses } from '../addresses.js';
import type { OpsContext, OpsHandler } from './context.js';
import type { InfoReply } from './wire.js';

/** The asker's own connection (a short-lived CLI node) is left out of the peer count. */
export function infoHandler({ node, config }: OpsContext): OpsHandler {
  const started = Date.now();
  const version = readVersion();
  const addresses = reachableAddresses(node.address);
  return (_request, from): InfoReply => ({
    nodeId: node.id,
    address: addresses[0]!,
    addresses,
    listen: node.address,
    version,
    uptimeMs: Date.now() - started,
    peers: node.peers().filter((peer) => peer.nodeId !== from).length,
    nodes: node.routes().length + 1,
    commands: Object.keys(config.commands).sort(),
    allowShell: config.allowShell,
  });
}
