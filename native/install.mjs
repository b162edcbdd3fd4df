// `npm install` hook for quicpeer's two native addons (routing table; batched UDP for QUIC, Linux).
// It takes one of three paths and says which on one line (npm shows install output with
// --foreground-scripts; `node native/install.mjs --check` says it again later, without building):
//   prebuilt  a prebuild in prebuilds/<platform>-<arch>/ loads here (the tarball ships linux-x64 glibc):
//             nothing to compile, no compiler needed
//   compiled  no prebuild matches (or a local build exists, as in a clone): cmake-js builds both in
//             Node-API mode, no download (headers from node-api-headers and Node's include folder)
//   fallback  the build failed: the TypeScript routing twin and node:dgram (same API, slower)
// It never fails the install.
//   PNET_SKIP_NATIVE=1                             compile nothing (a matching prebuild still loads)
//   PNET_BUILD_FROM_SOURCE=1, --build-from-source  compile even when a prebuild matches
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const NAME = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).name;
const ADDONS = ['pnet_routing', 'pnet_udp'];
const FALLBACK = 'the TypeScript routing twin and node:dgram';

const say = (line) => process.stdout.write(`${NAME}: ${line}\n`);

/**
 * dist/native-addons.js, the loaders' own lookup. A fresh clone has no dist/ yet (it is built after
 * install) and no prebuilds (they are made at pack time): there, only build/Release can hold addons.
 */
async function lookup() {
  const module = new URL('../dist/native-addons.js', import.meta.url);
  if (existsSync(module)) return import(module.href);
  const build = (name) => [`build/Release/${name}.node`, `build/Release/udp/${name}.node`].map((path) => fileURLToPath(new URL(`../${path}`, import.meta.url))).find(existsSync);
  return { prebuildTuple: 'this clone (no dist/ yet)', findNativeAddon: (name) => (build(name) ? { source: 'build', path: build(name) } : undefined) };
}

/**
 * Each addon's location and whether it loads here: { name, source, path, error, stub }. Before a
 * compile, local builds are not loaded: the compile may rewrite a file this process has mapped.
 */
async function probe({ loadBuilds }) {
  const addons = await lookup();
  return ADDONS.map((name) => {
    const found = addons.findNativeAddon(name);
    if (found === undefined) return { name, error: `no build and no prebuild for ${addons.prebuildTuple}` };
    if (found.source === 'build' && !loadBuilds) return { ...found, name };
    try {
      const loaded = require(found.path);
      return { ...found, name, stub: name === 'pnet_udp' && !loaded.supported };
    } catch (error) {
      return { ...found, name, error: error.message.split('\n')[0] };
    }
  });
}

const where = (addon) => `${addon.name} (${relative(root, addon.path)})`;

/** One line per addon that did not load natively; the UDP stub (not Linux) is expected there. */
function sayWhatRuns(addons) {
  for (const addon of addons) {
    if (addon.error !== undefined) say(`${addon.name}: not available (${addon.error}): ${addon.name === 'pnet_udp' ? 'QUIC uses node:dgram' : 'routing uses the TypeScript twin'}`);
    else if (addon.stub) say(`${addon.name}: built without batching (not Linux): QUIC uses node:dgram`);
  }
}

function giveUp(reason, output) {
  if (output) process.stderr.write(output.split('\n').slice(-25).join('\n') + '\n');
  say(`native addons not built (${reason}); fallback: ${FALLBACK}`);
  process.exit(0);
}

function compile() {
  if (!existsSync(new URL('../CMakeLists.txt', import.meta.url))) giveUp('no CMakeLists.txt');
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  } catch {
    giveUp('cmake-js is not installed');
  }
  const run = spawnSync(process.execPath, [cmakeJs, 'compile', '--directory', root, '--log-level', 'warn'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 10 * 60_000,
  });
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim();
  if (run.error) giveUp(run.error.message, output);
  if (run.status !== 0) giveUp(`cmake-js exited with ${run.status ?? run.signal}`, output);
  if (!existsSync(new URL('../build/Release/pnet_routing.node', import.meta.url))) giveUp('no build/Release/pnet_routing.node', output);
}

const fromSource = process.env.PNET_BUILD_FROM_SOURCE === '1' || process.env.npm_config_build_from_source === 'true' || process.argv.includes('--build-from-source');

if (process.argv.includes('--check')) {
  const addons = await probe({ loadBuilds: true });
  for (const addon of addons) if (addon.error === undefined && !addon.stub) say(`${where(addon)}: native, ${addon.source === 'build' ? 'compiled here' : 'prebuilt'}`);
  sayWhatRuns(addons);
  process.exit(0);
}
const before = await probe({ loadBuilds: false });
if (!fromSource && before.every((addon) => addon.source === 'prebuild' && addon.error === undefined)) {
  say(`prebuilt native addons, nothing to compile: ${before.map(where).join(', ')}`);
  sayWhatRuns(before);
  process.exit(0);
}
if (process.env.PNET_SKIP_NATIVE === '1') giveUp('PNET_SKIP_NATIVE=1');
const unusable = before.filter((addon) => addon.source !== 'build' && addon.error !== undefined).map((addon) => `${addon.name}: ${addon.error}`);
const why = fromSource ? 'building from source as asked' : unusable.length > 0 ? unusable.join('; ') : 'a local build exists: keeping it current';
say(`compiling the native addons with cmake-js (${why})`);
compile();
const after = await probe({ loadBuilds: true });
say(`compiled native addons: ${after.filter((addon) => addon.source === 'build').map(where).join(', ')}`);
sayWhatRuns(after);
