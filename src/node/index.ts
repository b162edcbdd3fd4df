export { PnetNode } from './node.js';
export type {
  BootstrapResult,
  BootstrapEvent,
  BootstrapRedialOptions,
  BootstrapStats,
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
  FanoutOptions,
  FanoutResult,
  FanoutStats,
  FanoutLimits,
  NodeStats,
  HandshakeCounts,
  LimitTrips,
  RotationStats,
  StreamTurnStats,
} from './types.js';
export type { RequestLimits } from './request-budget.js';
import { PnetNode } from './node.js';
import type { NodeOptions } from './types.js';

/** Starts a node: loads or makes its identity, binds QUIC, dials the bootstrap peers. */
export function createNode(options: NodeOptions = {}): Promise<PnetNode> {
  return PnetNode.create(options);
}
