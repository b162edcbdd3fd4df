// `npm run prebuilds` (and `npm pack`, through prepack; not "prebuild", which npm would run before
// every `npm run build`, so in every clone's install): builds both native addons with the same
// CMake build as the install (cmake-js, Node-API mode, no download) into build/prebuild, checks
// that each loads, and copies them to node-gyp-build's layout, which goes into the tarball:
//   prebuilds/<platform>-<arch>/pnet_routing.node.napi[.glibc|.musl].node
//   prebuilds/<platform>-<arch>/pnet_udp.node.napi[.glibc|.musl].node
// Run it on each platform that should get prebuilds, then pack there (or copy its prebuilds/<tuple>
// folder next to the others before packing).
//   --clean   rebuild from scratch (default: incremental, as fast as nothing changed)
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const out = join(root, 'build', 'prebuild');
const ADDONS = [
  { name: 'pnet_routing', built: join(out, 'Release', 'pnet_routing.node') },
  { name: 'pnet_udp', built: join(out, 'Release', 'udp', 'pnet_udp.node') },
];

function fail(message) {
  process.stderr.write(`prebuild: ${message}\n`);
  process.exit(1);
}

/** The libc tag node-gyp-build matches on Linux ($LIBC overrides, as it does there). */
function libcTag() {
  if (platform() !== 'linux') return undefined;
  if (process.env.LIBC) return process.env.LIBC;
  return process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
}

/** node-gyp-build's file name: addon name (a tag it ignores), runtime, napi, then libc/armv. */
function prebuildName(name) {
  const armv = arch() === 'arm' ? `armv${process.config.variables.arm_version}` : undefined;
  return [name, 'node', 'napi', libcTag(), armv, 'node'].filter(Boolean).join('.');
}

function build() {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const command = process.argv.includes('--clean') ? 'rebuild' : 'compile';
  const run = spawnSync(process.execPath, [cmakeJs, command, '--directory', root, '--out', out, '--log-level', 'warn'], { cwd: root, stdio: 'inherit' });
  if (run.error) fail(run.error.message);
  if (run.status !== 0) fail(`cmake-js ${command} exited with ${run.status ?? run.signal}`);
}

/** A prebuild that does not load, or a UDP stub on Linux, must not ship: it would stop the install from compiling. */
function check({ name, built }) {
  if (!existsSync(built)) fail(`the build made no ${built}`);
  const addon = require(built);
  if (typeof addon.abiVersion !== 'number') fail(`${built} has no abiVersion`);
  if (name === 'pnet_udp' && platform() === 'linux' && !addon.supported) fail(`${built} is the stub (no uv.h at build time?): not shipping it`);
}

build();
const tuple = `${platform()}-${arch()}`;
const dir = join(root, 'prebuilds', tuple);
mkdirSync(dir, { recursive: true });
for (const addon of ADDONS) {
  check(addon);
  for (const old of readdirSync(dir).filter((file) => file.startsWith(`${addon.name}.`))) rmSync(join(dir, old));
  const target = join(dir, prebuildName(addon.name));
  copyFileSync(addon.built, target);
  process.stdout.write(`prebuild: ${target.slice(root.length)} (${Math.round(statSync(target).size / 1024)} KiB)\n`);
}
