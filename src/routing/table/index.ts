/**
 * The routing table: topology graph, shortest paths from the local node, next hops, in batches.
 * The door of src/routing/table. Native addon (native/, built at install) or its TypeScript twin;
 * see docs/ROUTING-TABLE.md.
 */
import { loadNativeRouting, NativeBackend, nativeRoutingError } from './native.js';
import { RoutingTable } from './table.js';
import { TsBackend } from './twin.js';
import { NODE_ID_BYTES, type RoutingImplementation } from './types.js';

export { RoutingTable } from './table.js';
export { loadNativeRouting, nativeRoutingError } from './native.js';
export type { NativeRoutingAddon, NativeTableHandle } from './native.js';
export { MAX_LINK_COST, NODE_ID_BYTES, NO_ROUTE } from './types.js';
export type {
  Link,
  NextHopGroup,
  PackedRoutes,
  RecomputeResult,
  Route,
  RouteChange,
  RoutingImplementation,
} from './types.js';

export interface RoutingTableOptions {
  /**
   * 'native' requires the addon (throws if it is not built); 'ts' uses the twin; 'auto' (default)
   * follows the environment variable PNET_ROUTING ('ts' or 'native') and otherwise uses the addon
   * when it loads, else the twin with one process warning.
   */
  readonly implementation?: RoutingImplementation | 'auto';
}

let warned = false;

/** Which implementation `createRoutingTable()` picks by default here (no warning emitted). */
export function routingImplementation(): RoutingImplementation {
  const env = process.env['PNET_ROUTING'];
  if (env === 'ts') return 'ts';
  if (env === 'native') return 'native';
  return loadNativeRouting() === null ? 'ts' : 'native';
}

/** A routing table whose local node is `localId` (32 bytes; pnet: the raw Ed25519 public key). */
export function createRoutingTable(localId: Uint8Array, options: RoutingTableOptions = {}): RoutingTable {
  if (!(localId instanceof Uint8Array) || localId.length !== NODE_ID_BYTES) {
    throw new TypeError(`createRoutingTable: the local id must be ${NODE_ID_BYTES} bytes`);
  }
  let want = options.implementation ?? 'auto';
  if (want === 'auto') {
    const env = process.env['PNET_ROUTING'];
    if (env === 'ts' || env === 'native') want = env;
    else if (env !== undefined && env !== '' && env !== 'auto') throw new RangeError(`PNET_ROUTING must be 'native', 'ts' or 'auto', got '${env}'`);
  }
  if (want === 'ts') return new RoutingTable(new TsBackend(localId), localId);
  const addon = loadNativeRouting();
  if (addon !== null) return new RoutingTable(new NativeBackend(addon, localId), localId);
  if (want === 'native') {
    throw new Error(`pnet: the native routing addon is not available: ${nativeRoutingError()?.message ?? 'unknown reason'}`);
  }
  if (!warned) {
    warned = true;
    process.emitWarning(
      `native routing addon not available (${(nativeRoutingError()?.message ?? 'unknown reason').split('\n')[0]}); using the TypeScript twin`,
      { code: 'PNET_ROUTING_TS_FALLBACK', detail: 'Build it with `npm run build:native` (needs cmake and a C++17 compiler), or set PNET_ROUTING=ts to choose the twin silently.' },
    );
  }
  return new RoutingTable(new TsBackend(localId), localId);
}
