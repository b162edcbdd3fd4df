export type {
  CloseOptions,
  Connection,
  ConnectionEvents,
  DialOptions,
  SocketAddress,
  Stream,
  Transport,
  TransportEvents,
  TransportKind,
} from './types.js';
export { QuicTransport, ALPN } from './quic/transport.js';
export type { QuicTransportOptions } from './quic/transport.js';
export { parseAddress, formatAddress } from './address.js';
