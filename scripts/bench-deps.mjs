// Run by `npm run bench` before the benchmark: installs the js-libp2p QUIC baseline when missing.
// @chainsafe/libp2p-quic 2.x declares Node >= 22, so it cannot be a devDependency while
// `npm install --engine-strict` must pass on Node 20; the bench runs it on Node 20 anyway (with the
// Promise.withResolvers polyfill in bench/systems/libp2p.mjs). Installed unsaved: package.json and
// package-lock.json do not change, and the next plain `npm install` removes it again.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const BASELINE = '@chainsafe/libp2p-quic@2.1.1';
// Its exports map hides package.json from require.resolve: look for the folder npm makes.
if (!existsSync(new URL('../node_modules/@chainsafe/libp2p-quic/package.json', import.meta.url))) {
  process.stdout.write(`bench: installing the js-libp2p QUIC baseline ${BASELINE} (not saved; it declares Node >= 22)\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const run = spawnSync(npm, ['install', '--no-save', '--no-audit', '--no-fund', '--prefer-offline', '--engine-strict=false', BASELINE], {
    cwd: new URL('..', import.meta.url),
    stdio: 'inherit',
  });
  // The bench reports the libp2p-quic rows as failed rather than not running at all.
  if (run.status !== 0) process.stderr.write(`bench: could not install ${BASELINE}; the libp2p-quic system will fail\n`);
}
