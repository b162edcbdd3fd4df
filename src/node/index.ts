export { PnetNode } from './node.js';
export type { FanoutOptions, FanoutResult, FanoutStats, FanoutLimits } from './fanout.js';
export type {
  BootstrapResult,
  HandleOptions,
  HandleRequestOptions,
  DialStats,
  ListenAddress,
  NodeEvents,
  NodeOptions,
  OpenStreamOptions,
  PeerInfo,
  PnetStream,
  RequestHandler,
  RequestOptions,
  StreamHandler,
  Topology,
  RouteInfo,
  RouteEvent,
} from './node.js';
import { PnetNode } from './node.js';
import type { NodeOptions } from './node.js';

/** Starts a node: loads or makes its identity, binds QUIC, dials the bootstrap peers. */
export function createNode(options: NodeOptions = {}): Promise<PnetNode> {
  return PnetNode.create(options);
}
