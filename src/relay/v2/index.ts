/**
 * Relay v2, sans-IO: the relayed datagram header, the hop (Forwarder), both ends (RelayEndpoint,
 * a flow per far node, a RelayPath (the transport's DatagramPath) per connection) and the framing of datagrams on an HTTP/2 link stream. This file
 * is the only door of src/relay/v2; docs/RELAY.md describes the wire format and the rules.
 */
export {
  KIND_DATA,
  KIND_ERROR,
  HEADER_BYTES,
  DST_OFFSET,
  SRC_OFFSET,
  HOP_LIMIT_OFFSET,
  DEFAULT_HOP_LIMIT,
  DATAGRAM_FRAME_OVERHEAD,
  OUTER_DATAGRAM_SIZE,
  DATAGRAM_ROOM,
  INNER_DATAGRAM_SIZE,
  MIN_INNER_DATAGRAM_SIZE,
  MAX_INNER_DATAGRAM_SIZE,
  MAX_RELAYED_BYTES,
  ERROR_BYTES,
  QUOTE_BYTES,
  ERROR_CODES,
  encodeData,
  writeDataHeader,
  writeErrorReport,
  decodeRelayed,
  headerProblem,
  type RelayedDatagram,
  type RelayErrorCode,
  type DropReason,
  type DecodeResult,
} from './header.js';
export { KeyTable } from './key-table.js';
export { NextHopTable } from './next-hops.js';
export { Budget, type BudgetRates } from './budget.js';
export { Forwarder, WAY_BACK_MS, type ForwarderHost, type ForwarderOptions, type ForwardAction, type ForwarderStats } from './forwarder.js';
export { RelayPath, pathAddress, type RelayFlow, type PacketSource } from './flow.js';
export {
  RelayEndpoint,
  type EndpointHost,
  type EndpointOptions,
  type EndpointEvent,
  type EndpointDropReason,
  type EndpointStats,
} from './endpoint.js';
export { DatagramStreamReader, frameDatagram, writeLengthPrefix, LENGTH_PREFIX_BYTES } from './link-framing.js';
