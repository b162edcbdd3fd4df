/**
 * pnet routing, sans-IO link-state router. This file is the only public door
 * of src/routing/router; see docs/ROUTING.md.
 */
export {
  Router,
  type RouterOptions,
  type CostOptions,
  type RecordSigner,
  type RouterAction,
  type RouteChange,
  type RouterStats,
  type NeighbourInfo,
  type RecordInfo,
} from './router.js';
export { TablePathComputer, tablePathComputer, type PathComputer, type PathComputerFactory, type Link, type Route, type NextHopShare } from './path-computer.js';
export {
  encodeRecord,
  decodeRecord,
  verifyRecord,
  encodeMessage,
  decodeMessage,
  packMessages,
  recordBytes,
  maxRecordBytes,
  MAX_LINKS,
  MAX_COST,
  MAX_SEQUENCE,
  MIN_RECORD_BYTES,
  RECORD_HEADER_BYTES,
  LINK_BYTES,
  SIGNATURE_BYTES,
  MESSAGE_HEADER_BYTES,
  ENTRY_HEADER_BYTES,
  MESSAGE_TYPE_RECORDS,
  idOrderKey,
  keyBytesOf,
  nodeIdAt,
  KEY_BYTES,
  type LinkStateRecord,
  type RecordFields,
  type MessageEntry,
  type DecodedEntry,
  type DecodeResult,
  type DropReason,
  type VerifyFn,
} from './codec.js';
export { SharedRecordCache, type RecordCache } from './record-cache.js';
