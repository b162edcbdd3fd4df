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
// The QUIC machine and its driver, for paths other than the UDP endpoint (relay v2 drives one
// machine over a relayed DatagramPath).
export { QuicConnection, ROTATE_AFTER_STREAMS } from './quic/connection.js';
export type { DatagramPath, QuicEndpoint, QuicConnectionInit } from './quic/connection.js';
export { QuicMachine, Transmit, READ_POOL_SIZE } from './quic/machine.js';
export type { MachineEvent, MachineOptions, MachineCloseOptions, ReadPool, WriteResult } from './quic/machine.js';
export { Scheduler } from './quic/scheduler.js';
export { ForeignQuic, FOREIGN_CID_LENGTH } from './quic/foreign.js';
export type { ForeignQuicOptions } from './quic/foreign.js';
export { makeQuicConfig } from './quic/config.js';
export type { QuicConfigOptions } from './quic/config.js';
export { classifyQuicheError } from './quic/quiche-errors.js';
export type { QuicheError } from './quic/quiche-errors.js';
export { nativeUdpError } from './quic/udp.js';
export type { UdpImplementation } from './quic/udp.js';
export { H2Transport, H2_ALPN } from './h2/transport.js';
export type { H2TransportOptions } from './h2/transport.js';
export { parseAddress, formatAddress } from './address.js';
export { secureContextFor } from './tls-context.js';
export { HandshakeAdmission } from './admission.js';
export type { TransportOptions } from './limits.js';
export { listenTransports, LISTEN_ATTEMPTS } from './listen.js';
export type { ListenTransportsOptions } from './listen.js';
