/**
 * The routing layer: the sans-IO link-state router (router/) over the routing table (table/,
 * native addon with a TypeScript twin). This file is the only public door of src/routing; the
 * simulation that tests and benchmarks use has its own entry, ./testing.ts (package export
 * "quicpeer/testing"), so it stays off the production surface.
 */
export { Router, TablePathComputer, tablePathComputer, keyBytesOf, nodeIdAt, KEY_BYTES } from './router/index.js';
export { SharedRecordCache } from './router/index.js';
export { createRoutingTable, routingImplementation } from './table/index.js';
export type { RoutingTable } from './table/index.js';
export type {
  RouterOptions,
  NodeRole,
  RoleOption,
  NeighbourHint,
  CostOptions,
  RouterAction,
  RouteChange,
  RouterStats,
  NeighbourInfo,
  RecordInfo,
  PathComputer,
  PathComputerFactory,
  Route,
  Link,
  NextHopShare,
} from './router/index.js';
