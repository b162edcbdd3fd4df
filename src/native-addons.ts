/**
 * Where pnet's two native addons are found, for both loaders (routing table, UDP socket) and the
 * install script: a local build first (build/Release, made by cmake-js or node-gyp), then a
 * prebuild shipped in the package, prebuilds/<platform>-<arch>/<addon>.<tags>.node, chosen by
 * node-gyp-build's own tag rules (runtime, napi, libc, armv). Imports no layer.
 * $PNET_PREBUILD=<dir> looks under <dir> instead of the package (node-gyp-build's <NAME>_PREBUILD,
 * kept under pnet's prefix; tests point it at an empty folder to see pnet without its addons).
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addons pnet builds (binding.gyp targets). */
export type NativeAddonName = 'pnet_routing' | 'pnet_udp';

/** Where an addon was found: a local build, or a prebuild shipped in the package. */
export interface NativeAddonLocation {
  readonly source: 'build' | 'prebuild';
  /** Absolute path of the .node file. */
  readonly path: string;
}

/** The part of node-gyp-build's tag matcher used here (exported by node-gyp-build 4.x). */
interface PrebuildTags {
  readonly file: string;
}
interface NodeGypBuild {
  parseTags(file: string): PrebuildTags | undefined;
  matchTags(runtime: string, abi: string): (tags: PrebuildTags | undefined) => boolean;
  compareTags(runtime: string): (a: PrebuildTags, b: PrebuildTags) => number;
}

/** The package root: this file is src/native-addons.ts or dist/native-addons.js. */
const packageRoot = fileURLToPath(new URL('../', import.meta.url));
const searchRoot = (): string => process.env['PNET_PREBUILD'] || packageRoot;
const require = createRequire(import.meta.url);
/** The tuple node-gyp-build looks under; npm_config_* as node-gyp-build reads them. */
export const prebuildTuple = `${process.env['npm_config_platform'] ?? platform()}-${process.env['npm_config_arch'] ?? arch()}`;

/** A local build of `name`: cmake-js puts the UDP addon in build/Release/udp, node-gyp in both. */
function findBuild(name: NativeAddonName): string | undefined {
  const release = join(searchRoot(), 'build', 'Release');
  return [join(release, `${name}.node`), join(release, 'udp', `${name}.node`)].find((path) => existsSync(path));
}

/** The most specific prebuild of `name` for this runtime, as node-gyp-build would pick it. */
function findPrebuild(name: NativeAddonName): string | undefined {
  const dir = join(searchRoot(), 'prebuilds', prebuildTuple);
  if (!existsSync(dir)) return undefined;
  const gyp = require('node-gyp-build') as NodeGypBuild;
  // Both addons share the folder; the name is one more tag that node-gyp-build ignores.
  const candidates = readdirSync(dir)
    .filter((file) => file.startsWith(`${name}.`))
    .map((file) => gyp.parseTags(file))
    .filter(gyp.matchTags('node', process.versions.modules)) as PrebuildTags[];
  const winner = candidates.sort(gyp.compareTags('node'))[0];
  return winner === undefined ? undefined : join(dir, winner.file);
}

/** Where `name` would be loaded from, or undefined when there is neither a build nor a prebuild. */
export function findNativeAddon(name: NativeAddonName): NativeAddonLocation | undefined {
  const build = findBuild(name);
  if (build !== undefined) return { source: 'build', path: build };
  const prebuild = findPrebuild(name);
  return prebuild === undefined ? undefined : { source: 'prebuild', path: prebuild };
}

/** Loads `name` (its exports, unchecked: each loader checks its ABI); throws when none is found or it fails to load. */
export function loadNativeAddon(name: NativeAddonName): unknown {
  const found = findNativeAddon(name);
  if (found === undefined) {
    throw new Error(`no ${name}.node in build/Release and no prebuild for ${prebuildTuple} (node ${process.versions.node}, abi ${process.versions.modules}) under ${searchRoot()}`);
  }
  return require(found.path) as unknown;
}
