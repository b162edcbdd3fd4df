import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

// `npm pack` gives a tarball (with prebuilt addons, made by prepack) that installs into an empty
// project and imports with its types; with no compiler on the PATH it still runs both addons
// natively, with or without install scripts; where no prebuild matches it compiles, or falls back.
const NAME = 'quicpeer';
const root = new URL('..', import.meta.url).pathname;
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
// Packing builds dist/ and the prebuilds, and one case compiles: minutes on a busy 2-core machine.
t.setTimeout(15 * 60_000);

const work = mkdtempSync(join(tmpdir(), 'quicpeer-pack-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
execFileSync(npm, ['pack', '--pack-destination', work, '--silent'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], timeout: 10 * 60_000 });
const tarball = join(work, readdirSync(work).find((name) => name.endsWith('.tgz')) ?? 'missing.tgz');

/** A bin folder with node, npm, sh and a few basics, and no cmake or C/C++ compiler. */
function bareBin(): string {
  const bin = join(work, 'bare-bin');
  if (existsSync(bin)) return bin;
  mkdirSync(bin);
  const which = (tool: string): string => execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
  symlinkSync(process.execPath, join(bin, 'node'));
  for (const tool of ['npm', 'sh', 'env', 'which', 'ls', 'cat', 'mkdir', 'rm', 'cp', 'mv', 'chmod', 'uname', 'tar', 'gzip']) {
    symlinkSync(realpathSync(which(tool)), join(bin, tool));
  }
  return bin;
}

interface Consumer {
  dir: string;
  env: NodeJS.ProcessEnv;
  installOutput: string;
  seconds: number;
}

/** An empty project with the tarball installed (stdout/stderr of install scripts kept). */
function install(name: string, opts: { bare?: boolean; ignoreScripts?: boolean; env?: NodeJS.ProcessEnv; extra?: string[] } = {}): Consumer {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }));
  // Not the outer npm's settings (`npx tap` sets npm_config_local_prefix and friends to this repo).
  const outer = Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) && key !== 'INIT_CWD');
  const env: NodeJS.ProcessEnv = { ...Object.fromEntries(outer), ...opts.env, npm_config_update_notifier: 'false' };
  if (opts.bare) env['PATH'] = bareBin();
  // --engine-strict: the tarball's dependency tree must accept this Node (20 on the CI machine).
  const args = ['install', '--engine-strict', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', ...(opts.ignoreScripts ? ['--ignore-scripts'] : []), tarball, ...(opts.extra ?? [])];
  const started = process.hrtime.bigint();
  const run = spawnSync(opts.bare ? join(bareBin(), 'npm') : npm, args, { cwd: dir, env, encoding: 'utf8', timeout: 8 * 60_000 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (run.status !== 0) throw new Error(`npm install failed (${run.status ?? run.signal}):\n${run.stdout}\n${run.stderr}`);
  return { dir, env, installOutput: `${run.stdout}${run.stderr}`, seconds };
}

// Which routing table and UDP socket the installed package gets, and where its addons come from.
const REPORT = `
import { nativeUdpError } from '${NAME}';
const pkg = new URL('./node_modules/${NAME}/', import.meta.url);
const { routingImplementation } = await import(new URL('dist/routing/index.js', pkg).href);
const { findNativeAddon } = await import(new URL('dist/native-addons.js', pkg).href);
const where = (name) => { const found = findNativeAddon(name); return found && { source: found.source, file: found.path.slice(pkg.pathname.length) }; };
console.log(JSON.stringify({ routing: routingImplementation(), udp: nativeUdpError() === undefined ? 'native' : 'node', routingAddon: where('pnet_routing'), udpAddon: where('pnet_udp') }));
`;
// Two nodes and one request; PNET_ROUTING / PNET_UDP = 'native' make them throw without the addons.
const RUN = `
import { createNode } from '${NAME}';
const a = await createNode();
const b = await createNode();
b.handleRequest('upper', (req) => req.toString().toUpperCase());
const id = await a.dial(b.address);
const reply = await a.request(id, 'upper', 'packed');
console.log(reply.toString());
await Promise.all([a.close(), b.close()]);
`;

function report(consumer: Consumer, env: NodeJS.ProcessEnv = {}): { routing: string; udp: string; routingAddon?: { source: string; file: string }; udpAddon?: { source: string; file: string } } {
  writeFileSync(join(consumer.dir, 'report.mjs'), REPORT);
  return JSON.parse(execFileSync(process.execPath, ['report.mjs'], { cwd: consumer.dir, env: { ...consumer.env, ...env }, encoding: 'utf8', timeout: 60_000 }));
}

function runNodes(consumer: Consumer, env: NodeJS.ProcessEnv): string {
  writeFileSync(join(consumer.dir, 'run.mjs'), RUN);
  return execFileSync(process.execPath, ['run.mjs'], { cwd: consumer.dir, env: { ...consumer.env, ...env }, encoding: 'utf8', timeout: 60_000 }).trim();
}

const PREBUILT = { source: 'prebuild' };
const native = { PNET_ROUTING: 'native', PNET_UDP: 'native' };

t.test('the tarball holds both prebuilt addons for this platform, not a local build', async (t) => {
  const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
  const tuple = `${process.platform}-${process.arch}`;
  t.ok(listing.includes(`package/prebuilds/${tuple}/pnet_routing.node.napi.glibc.node`), 'routing prebuild');
  t.ok(listing.includes(`package/prebuilds/${tuple}/pnet_udp.node.napi.glibc.node`), 'UDP prebuild');
  t.notOk(listing.some((file) => file.startsWith('package/build/')), 'no build/ folder');
  t.comment(`tarball ${Math.round(statSync(tarball).size / 1024)} KiB, ${listing.filter(Boolean).length} files`);
});

t.test('the packed tarball installs, imports and type-checks in an empty project', async (t) => {
  const consumer = install('typed', { extra: [join(root, 'node_modules', '@types', 'node')] });
  writeFileSync(join(consumer.dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
    include: ['use.ts'],
  }));
  writeFileSync(join(consumer.dir, 'use.ts'), [
    `import { createNode, PnetError, type NodeId, type PnetStream } from '${NAME}';`,
    'const node = await createNode();',
    'const id: NodeId = node.id;',
    "node.handle('echo', (stream: PnetStream) => { stream.pipe(stream); });",
    "const error: PnetError = new PnetError('ERR_NODE_CLOSED', 'x');",
    'console.log(id.length, error.code);',
    'await node.close();',
    '',
  ].join('\n'));
  t.equal(runNodes(consumer, {}), 'PACKED');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const typecheck = execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: consumer.dir, encoding: 'utf8' });
  t.equal(typecheck.trim(), '', 'the consumer type-checks against the shipped .d.ts');
  writeFileSync(join(consumer.dir, 'bad.ts'), `import { createNode } from '${NAME}';\nconst n: number = await createNode();\n`);
  t.throws(
    () => execFileSync(process.execPath, [tsc, '--noEmit', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', 'bad.ts'], { cwd: consumer.dir, stdio: 'pipe' }),
    'a type error against the shipped types is caught',
  );
});

t.test('with no compiler on the PATH, both addons load natively from the prebuilds', async (t) => {
  const which = spawnSync(join(bareBin(), 'sh'), ['-c', 'which c++ g++ gcc cc clang cmake make'], { env: { PATH: bareBin() }, encoding: 'utf8' });
  t.not(which.status, 0, 'which fails for the compilers and cmake in that environment');
  t.equal(which.stdout.trim(), '', 'none of them is found');
  const consumer = install('bare', { bare: true });
  t.match(consumer.installOutput, /quicpeer: prebuilt native addons, nothing to compile/, 'the install script says it took the prebuilt path');
  t.notOk(existsSync(join(consumer.dir, 'node_modules', NAME, 'build')), 'nothing was compiled');
  const got = report(consumer);
  t.match(got, { routing: 'native', udp: 'native', routingAddon: PREBUILT, udpAddon: PREBUILT }, 'native routing table and UDP socket, both prebuilt');
  t.equal(runNodes(consumer, native), 'PACKED', 'two nodes talk with PNET_ROUTING=native PNET_UDP=native');
  t.comment(`install with no compiler: ${consumer.seconds.toFixed(1)} s`);
});

t.test('with --ignore-scripts and no compiler, both addons still load natively', async (t) => {
  const consumer = install('no-scripts', { bare: true, ignoreScripts: true });
  t.notMatch(consumer.installOutput, /quicpeer:/, 'the install script did not run');
  t.match(report(consumer), { routing: 'native', udp: 'native', routingAddon: PREBUILT, udpAddon: PREBUILT });
  t.equal(runNodes(consumer, native), 'PACKED');
});

t.test('where no prebuild matches (a musl host, simulated with LIBC=musl) the install compiles', async (t) => {
  const consumer = install('compiled', { env: { LIBC: 'musl' } });
  t.match(consumer.installOutput, /quicpeer: compiling the native addons with cmake-js \(pnet_routing: no build and no prebuild/, 'it says why it compiles');
  t.match(consumer.installOutput, /quicpeer: compiled native addons: pnet_routing \(build\/Release\/pnet_routing\.node\), pnet_udp/, 'and that it compiled both');
  t.match(report(consumer, { LIBC: 'musl' }), { routing: 'native', udp: 'native', routingAddon: { source: 'build' }, udpAddon: { source: 'build' } });
  t.comment(`install that compiles: ${consumer.seconds.toFixed(1)} s`);
});

t.test('where no prebuild matches and nothing can compile, the TypeScript twin and node:dgram', async (t) => {
  const consumer = install('fallback', { bare: true, env: { LIBC: 'musl' } });
  t.match(consumer.installOutput, /quicpeer: native addons not built \(.*\); fallback: the TypeScript routing twin and node:dgram/, 'the install says it fell back');
  t.match(report(consumer, { LIBC: 'musl' }), { routing: 'ts', udp: 'node' });
  t.equal(runNodes(consumer, { LIBC: 'musl', PNET_ROUTING: 'ts' }), 'PACKED', 'and the package still works');
});
