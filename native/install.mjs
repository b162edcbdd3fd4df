// `npm install` hook: builds the native addons with cmake-js in Node-API mode (no download:
// headers come from the node-api-headers package and Node's own include folder):
//   build/Release/pnet_routing.node   routing table (without it: the TypeScript twin, one warning)
//   build/Release/udp/pnet_udp.node   batched UDP for QUIC, Linux (without it: node:dgram)
// It never fails the install.
//   PNET_SKIP_NATIVE=1  skip the build
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const fallback = 'pnet: native routing addon not built; pnet will use the TypeScript twin';

function giveUp(reason, output) {
  if (output) process.stderr.write(output.split('\n').slice(-25).join('\n') + '\n');
  process.stderr.write(`${fallback} (${reason})\n`);
  process.exit(0);
}

if (process.env.PNET_SKIP_NATIVE === '1') giveUp('PNET_SKIP_NATIVE=1');
if (!existsSync(new URL('../CMakeLists.txt', import.meta.url))) giveUp('no CMakeLists.txt');

let cmakeJs;
try {
  cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
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
process.stdout.write('pnet: native routing addon built (build/Release/pnet_routing.node)\n');
if (existsSync(new URL('../build/Release/udp/pnet_udp.node', import.meta.url))) {
  process.stdout.write('pnet: native UDP addon built (build/Release/udp/pnet_udp.node)\n');
} else {
  process.stderr.write('pnet: native UDP addon not built; QUIC will use node:dgram\n');
}
