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
export type { QuicTransportOptions, QuicTransportStats, QuicDropStats } from './quic/transport.js';
export type { QuicConnection, DatagramPath } from './quic/connection.js';
export { nativeUdpError } from './quic/udp.js';
export type { UdpImplementation } from './quic/udp.js';
export { H2Transport, H2_ALPN } from './h2/transport.js';
export type { H2TransportOptions } from './h2/transport.js';
export { parseAddress, formatAddress } from './address.js';
export type { TransportOptions } from './limits.js';
export { listenTransports, LISTEN_ATTEMPTS } from './listen.js';
export type { ListenTransportsOptions } from './listen.js';
