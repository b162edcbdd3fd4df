/**
 * pnet: QUIC-first peer-to-peer networking for Node.js.
 * The public API is what this file exports; each layer's folder has one door (its index.ts).
 */
export { PnetError } from './errors.js';
export type { PnetErrorCode } from './errors.js';
export {
  Identity,
  loadOrCreateIdentity,
  saveIdentity,
  nodeIdFromPublicKey,
  parseNodeId,
  isNodeId,
  verifySignature,
  verifyPeerCertificate,
} from './identity/index.js';
export type { NodeId } from './identity/index.js';
export { QuicTransport, ALPN, H2Transport, H2_ALPN, parseAddress, formatAddress } from './transport/index.js';
export type { Connection, Stream, Transport, SocketAddress, QuicTransportOptions, QuicDropStats, H2TransportOptions, DialOptions, CloseOptions, TransportKind, UdpImplementation } from './transport/index.js';
export { nativeUdpError } from './transport/index.js';
export { ChannelRejectedError } from './channel/index.js';
export type { ChannelRequestInfo, AuthoriseHook, AuthoriseVerdict, Metadata, NegotiationStats, NegotiationOutcome } from './channel/index.js';
export { NEGOTIATION_OUTCOMES } from './channel/index.js';
export type { RelayStats, DatagramRelayStats, ForwarderStats, EndpointStats } from './relay/index.js';
export type { RouterStats } from './routing/index.js';
export { createNode, PnetNode } from './node/index.js';
export type {
  HandleOptions,
  HandleRequestOptions,
  DialStats,
  ListenAddress,
  BootstrapResult,
  BootstrapEvent,
  BootstrapRedialOptions,
  BootstrapStats,
  NodeEvents,
  NodeOptions,
  OpenStreamOptions,
  PeerInfo,
  PnetStream,
  RequestHandler,
  RequestOptions,
  RequestLimits,
  RotationStats,
  StreamTurnStats,
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
} from './node/index.js';
