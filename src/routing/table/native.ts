/**
 * Loading the native routing addon (pnet_routing.node: a local build or a shipped prebuild, found
 * by src/native-addons.ts) and the backend over its plain functions. Every function takes the
 * table handle first.
 */
import { loadNativeAddon } from '../../native-addons.js';
import type { RouteArrays, RoutingBackend } from './types.js';

/** An opaque handle to one native table (a Node-API External). */
export type NativeTableHandle = { readonly __pnetRoutingTable: unique symbol };

/** The addon's exports: plain functions, the table handle first, ids as bytes. */
export interface NativeRoutingAddon {
  readonly abiVersion: number;
  create(localId: Uint8Array): NativeTableHandle;
  setLinks(t: NativeTableHandle, id: Uint8Array, targets: Uint8Array, costs: Uint32Array): boolean;
  removeNode(t: NativeTableHandle, id: Uint8Array): boolean;
  recompute(t: NativeTableHandle, full?: boolean): number[];
  nextHop(t: NativeTableHandle, id: Uint8Array): number;
  nextHopBatch(t: NativeTableHandle, ids: Uint8Array, out: Int32Array): void;
  groupByNextHop(t: NativeTableHandle, ids: Uint8Array, indexes: Uint32Array, outIds: Uint8Array): Int32Array;
  distance(t: NativeTableHandle, id: Uint8Array): number;
  path(t: NativeTableHandle, id: Uint8Array): Buffer | null;
  routes(t: NativeTableHandle): RouteArrays;
  changes(t: NativeTableHandle): RouteArrays;
  idOf(t: NativeTableHandle, handle: number): Buffer | null;
  handleOf(t: NativeTableHandle, id: Uint8Array): number;
  links(t: NativeTableHandle, id: Uint8Array): [Buffer, Uint32Array] | null;
  size(t: NativeTableHandle): number[];
}

const ABI_VERSION = 1;

let addon: NativeRoutingAddon | null | undefined;
let loadError: Error | undefined;

/** The native addon, or null when it is not built here (see nativeRoutingError()). */
export function loadNativeRouting(): NativeRoutingAddon | null {
  if (addon !== undefined) return addon;
  try {
    const loaded = loadNativeAddon('pnet_routing') as NativeRoutingAddon;
    if (loaded.abiVersion !== ABI_VERSION) throw new Error(`native routing addon ABI ${String(loaded.abiVersion)}, expected ${ABI_VERSION}: rebuild it (npm run build:native)`);
    addon = loaded;
  } catch (error) {
    loadError = error instanceof Error ? error : new Error(String(error));
    addon = null;
  }
  return addon;
}

/** Why the native addon could not be loaded, if it could not. */
export function nativeRoutingError(): Error | undefined {
  loadNativeRouting();
  return loadError;
}

export class NativeBackend implements RoutingBackend {
  readonly implementation = 'native' as const;
  readonly #a: NativeRoutingAddon;
  readonly #t: NativeTableHandle;

  constructor(a: NativeRoutingAddon, localId: Uint8Array) {
    this.#a = a;
    this.#t = a.create(localId);
  }

  setLinks(id: Uint8Array, targets: Uint8Array, costs: Uint32Array): boolean {
    return this.#a.setLinks(this.#t, id, targets, costs);
  }
  removeNode(id: Uint8Array): boolean {
    return this.#a.removeNode(this.#t, id);
  }
  recompute(full: boolean): number[] {
    return this.#a.recompute(this.#t, full);
  }
  nextHop(id: Uint8Array): number {
    return this.#a.nextHop(this.#t, id);
  }
  nextHopBatch(ids: Uint8Array, out: Int32Array): void {
    this.#a.nextHopBatch(this.#t, ids, out);
  }
  groupByNextHop(ids: Uint8Array, indexes: Uint32Array, outIds: Uint8Array): Int32Array {
    return this.#a.groupByNextHop(this.#t, ids, indexes, outIds);
  }
  distance(id: Uint8Array): number {
    return this.#a.distance(this.#t, id);
  }
  path(id: Uint8Array): Uint8Array | null {
    return this.#a.path(this.#t, id);
  }
  routes(): RouteArrays {
    return this.#a.routes(this.#t);
  }
  changes(): RouteArrays {
    return this.#a.changes(this.#t);
  }
  idOf(handle: number): Uint8Array | null {
    return this.#a.idOf(this.#t, handle);
  }
  handleOf(id: Uint8Array): number {
    return this.#a.handleOf(this.#t, id);
  }
  links(id: Uint8Array): [Uint8Array, Uint32Array] | null {
    return this.#a.links(this.#t, id);
  }
  size(): number[] {
    return this.#a.size(this.#t);
  }
}
