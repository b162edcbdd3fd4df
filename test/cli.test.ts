import t from 'tap';
import type { Test } from 'tap';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNode, isNodeId } from '../src/index.js';
import type { NodeId, PnetNode } from '../src/index.js';
import {
  OPS_CHANNELS,
  decodeReply,
  loadConfig,
  parseTargets,
  percentile,
  runCli,
  runCommand,
  serveOps,
  toDot,
  validateConfig,
  validateOpsConfig,
  commandFromFlag,
} from '../src/cli/index.js';
import type { ExecResult, InfoReply, PingReply, TopologyReply } from '../src/cli/index.js';
import { childEnv } from './fixtures/child-env.js';
import { collector } from './fixtures/cli-io.js';

// Several daemons and a dozen CLI processes on 2 shared cores: generous, but bounded.
t.setTimeout(300_000);

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = new URL('../src/cli/main.ts', import.meta.url).pathname;

const children = new Set<ChildProcess>();
t.teardown(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
});

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `pnet ARGS` in its own process (bounded: SIGKILL after timeoutMs). */
function cli(args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      reject(new Error(`pnet ${args.join(' ')} still running after ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The CLI reads PNET_* defaults from the environment: tests pass everything explicitly. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = childEnv();
  for (const key of Object.keys(env)) if (key.startsWith('PNET_')) delete env[key];
  return env;
}

type LogLine = Record<string, unknown> & { event?: string };

interface Daemon {
  name: string;
  id: NodeId;
  address: string;
  child: ChildProcess;
  lines: LogLine[];
  /** Resolves with the first log line matching, within timeoutMs. */
  waitFor(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<number | null>;
}

async function startDaemon(dir: string, name: string, config: Record<string, unknown>): Promise<Daemon> {
  const file = join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify(config, null, 2));
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'node', '--config', file], { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const lines: LogLine[] = [];
  const waiters = new Set<() => void>();
  let partial = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  child.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const part of parts) if (part.trim() !== '') lines.push(JSON.parse(part) as LogLine);
    for (const wake of waiters) wake();
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => (children.delete(child), resolve(code))));
  const waitFor = (match: (line: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = lines.find(match);
        if (found) {
          cleanup();
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`daemon ${name}: no matching log line within ${timeoutMs} ms\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const started = await waitFor((line) => line.event === 'started', 60_000);
  return { name, id: started['nodeId'] as NodeId, address: started['address'] as string, child, lines, waitFor, exited };
}

/** True while `pid` is a live process (a zombie waiting for a reaper counts as dead). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

// ---- unit: config ----------------------------------------------------------------

t.test('config: a valid file is normalised with defaults and paths resolved from its directory', async (t) => {
  const operator = (await createIdentityId());
  const config = validateConfig(
    {
      listen: '127.0.0.1:7400',
      keyFile: 'keys/node.key',
      bootstrap: ['10.0.0.1:7300'],
      operators: [operator.toUpperCase()],
      commands: { uptime: { argv: ['uptime'] }, logs: { argv: ['journalctl', '-n', '50'], allowArgs: true, timeoutMs: 5000, maxOutputBytes: 1000, cwd: 'work' } },
    },
    'test.json',
    '/etc/pnet',
  );
  t.equal(config.keyFile, '/etc/pnet/keys/node.key');
  t.same(config.operators, [operator], 'operator ids are parsed to canonical form');
  t.same(config.bootstrap, ['10.0.0.1:7300']);
  t.equal(config.allowShell, false);
  t.equal(config.maxConcurrentExec, 8);
  t.same(config.commands['uptime'], { allowArgs: false, timeoutMs: 30_000, maxOutputBytes: 65_536, argv: ['uptime'] });
  t.same(config.commands['logs'], { allowArgs: true, timeoutMs: 5000, maxOutputBytes: 1000, cwd: '/etc/pnet/work', argv: ['journalctl', '-n', '50'] });
  t.equal(validateConfig({}).listen, '0.0.0.0:7300', 'default listen');
});

t.test('config: every problem is reported at once with its path (ERR_CONFIG)', async (t) => {
  const bad = {
    listen: 'nowhere',
    operators: ['abc'],
    shell: true,
    bootstrap: 'x',
    commands: {
      empty: { argv: [] },
      both: { argv: ['a'], script: 'b' },
      sh: { script: 'rm -rf /' },
      slow: { argv: ['sleep'], timeoutMs: 0 },
      'bad name!': { argv: ['x'] },
      typo: { argv: ['x'], allowArg: true },
      none: {},
    },
  };
  const error = (() => {
    try {
      validateConfig(bad, 'bad.json');
    } catch (e) {
      return e as Error & { code: string };
    }
    return undefined;
  })();
  t.equal(error?.code, 'ERR_CONFIG');
  const message = error?.message ?? '';
  t.match(message, /invalid config bad\.json/);
  for (const fragment of [
    'listen:',
    'operators[0]:',
    'shell: unknown key (use "script"',
    'bootstrap: must be an array',
    'commands.empty.argv: must be a non-empty array',
    'commands.both: has both',
    'commands.sh.script: shell scripts are off',
    'commands.slow.timeoutMs: must be an integer',
    'commands.bad name!: a command name',
    'commands.typo.allowArg: unknown key',
    'commands.none: needs "argv"',
  ]) {
    t.ok(message.includes(fragment), `mentions ${fragment}`);
  }
  t.throws(() => validateConfig([], 'x'), { code: 'ERR_CONFIG' });
  // shell scripts are fine when allowed
  t.equal(validateConfig({ allowShell: true, commands: { s: { script: 'echo hi' } } }).commands['s']?.script, 'echo hi');
  t.same(commandFromFlag('disk=df  -h'), ['disk', { argv: ['df', '-h'] }]);
  t.same(commandFromFlag('uptime'), ['uptime', { argv: ['uptime'] }]);
  t.throws(() => validateOpsConfig({ operators: ['nope'] }), { code: 'ERR_CONFIG' });
});

t.test('config: unreadable and non-JSON files are ERR_CONFIG', async (t) => {
  const dir = await tempDir(t);
  await t.rejects(loadConfig(join(dir, 'missing.json')), { code: 'ERR_CONFIG', message: /cannot read config/ });
  await writeFile(join(dir, 'broken.json'), '{ "listen": ');
  await t.rejects(loadConfig(join(dir, 'broken.json')), { code: 'ERR_CONFIG', message: /not valid JSON/ });
  await writeFile(join(dir, 'ok.json'), JSON.stringify({ keyFile: 'n.key' }));
  t.equal((await loadConfig(join(dir, 'ok.json'))).keyFile, join(dir, 'n.key'));
});

// ---- unit: exec runner ---------------------------------------------------------------

t.test('exec runner: exit codes, output, truncation, spawn failure', async (t) => {
  const ok = await runCommand({ file: 'sh', args: ['-c', 'echo out; echo err >&2', 'name'], timeoutMs: 10_000, maxOutputBytes: 1000 });
  t.match(ok, { exitCode: 0, signal: null, stdout: 'out\n', stderr: 'err\n', truncated: false, timedOut: false });
  t.ok(ok.ms >= 0);
  const failed = await runCommand({ file: 'sh', args: ['-c', 'exit 3'], timeoutMs: 10_000, maxOutputBytes: 1000 });
  t.equal(failed.exitCode, 3);
  const big = await runCommand({ file: process.execPath, args: ['-e', 'process.stdout.write("x".repeat(200000))'], timeoutMs: 20_000, maxOutputBytes: 100 });
  t.equal(big.exitCode, 0, 'a child writing past the cap is drained, not blocked');
  t.equal(big.stdout, 'x'.repeat(100));
  t.equal(big.truncated, true);
  const missing = await runCommand({ file: '/nonexistent/program', args: [], timeoutMs: 1000, maxOutputBytes: 10 });
  t.equal(missing.exitCode, null);
  t.match(missing.spawnError, /ENOENT/);
});

t.test('exec runner: a timeout kills the whole process group', async (t) => {
  const dir = await tempDir(t);
  const pidFile = join(dir, 'grandchild.pid');
  const result = await runCommand({ file: 'sh', args: ['-c', `sleep 30 & echo $! > ${pidFile}; echo started; sleep 30`], timeoutMs: 500, maxOutputBytes: 1000, killGraceMs: 500 });
  t.equal(result.timedOut, true);
  t.equal(result.exitCode, null);
  t.equal(result.signal, 'SIGTERM');
  t.equal(result.stdout, 'started\n', 'output before the kill is kept');
  t.ok(result.ms >= 500 && result.ms < 5000, `stopped near the timeout (${result.ms} ms)`);
  const grandchild = Number(await readFile(pidFile, 'utf8'));
  t.ok(await until(() => !alive(grandchild), 3000), 'the background grandchild died with its group');
  // A process ignoring SIGTERM gets SIGKILL after the grace period.
  const stubborn = await runCommand({ file: 'sh', args: ['-c', "trap '' TERM; sleep 30"], timeoutMs: 300, maxOutputBytes: 10, killGraceMs: 300 });
  t.equal(stubborn.timedOut, true);
  t.ok(stubborn.ms < 5000, `SIGKILL after the grace (${stubborn.ms} ms)`);
  // Aborting (daemon shutdown) stops the run the same way.
  const abort = new AbortController();
  const running = runCommand({ file: 'sleep', args: ['30'], timeoutMs: 60_000, maxOutputBytes: 10 }, abort.signal);
  setTimeout(() => abort.abort(), 100);
  const aborted = await running;
  t.equal(aborted.signal, 'SIGTERM');
  t.equal(aborted.timedOut, false, 'an abort is not reported as a timeout');
});

// ---- unit: targets, DOT, percentiles -------------------------------------------------

t.test('targets: all, lists, @file with comments; bad ids are usage errors', async (t) => {
  const dir = await tempDir(t);
  const [a, b] = [await createIdentityId(), await createIdentityId()];
  t.equal(await parseTargets('all'), 'all');
  t.same(await parseTargets(` ${a}, ${b},${a}`), [a, b], 'trimmed, deduplicated');
  await writeFile(join(dir, 'hosts'), `# web\n${a}\n\n${b}  # db\n`);
  t.same(await parseTargets(`@${join(dir, 'hosts')}`), [a, b]);
  await t.rejects(parseTargets('nope'), /bad target "nope"/);
  await t.rejects(parseTargets(`@${join(dir, 'missing')}`), /cannot read targets file/);
  await t.rejects(parseTargets(','), /no targets/);
});

t.test('DOT output and percentiles', async (t) => {
  const [a, b, c] = [await createIdentityId(), await createIdentityId(), await createIdentityId()];
  const dot = toDot({ self: a, nodes: [a, b, c], links: [{ from: a, to: b, cost: 3 }, { from: b, to: a, cost: 3 }, { from: b, to: c, cost: 2 }, { from: c, to: b, cost: 5 }] });
  const parsed = parseDot(dot);
  t.equal(parsed.kind, 'graph');
  t.same(new Set(parsed.nodes), new Set([a, b, c]));
  t.same(parsed.edges.map((e) => [e.a, e.b].sort().join('-')).sort(), [[a, b].sort().join('-'), [b, c].sort().join('-')].sort());
  t.match(dot, /label="3"/);
  t.match(dot, /label="2 \/ 5"|label="5 \/ 2"/, 'asymmetric costs show both');
  t.equal(percentile([], 50), undefined);
  t.equal(percentile([5, 1, 3, 2, 4], 50), 3);
  t.equal(percentile([5, 1, 3, 2, 4], 99), 5);
});

// ---- in-process: the ops service ------------------------------------------------------

t.test('ops service in process: refusals, shell scripts with $1, limits, unauthorised callers', async (t) => {
  const host = await createNode();
  const operator = await createNode();
  const stranger = await createNode();
  t.teardown(() => Promise.all([host.close(), operator.close(), stranger.close()]).then(() => undefined));
  const events: Array<Record<string, unknown>> = [];
  const logger = { info: (f: Record<string, unknown>) => void events.push(f), warn: (f: Record<string, unknown>) => void events.push(f), error: (f: Record<string, unknown>) => void events.push(f) };
  const ops = serveOps(
    host,
    validateOpsConfig({
      operators: [operator.id],
      allowShell: true,
      maxConcurrentExec: 1,
      commands: { date: { argv: ['date'] }, greet: { script: 'echo "hi $1-$2"', allowArgs: true }, nap: { argv: ['sleep', '30'], timeoutMs: 60_000 } },
    }),
    logger,
  );
  t.teardown(() => ops.close());
  await operator.dial(host.address);
  await stranger.dial(host.address);
  t.ok(await until(() => host.peers().length === 2, 5000), 'the host sees both connections');
  const call = async <T>(channel: string, body: unknown, from: PnetNode = operator): Promise<T> => decodeReply<T>(await from.request(host.id, channel, JSON.stringify(body), { timeoutMs: 20_000 }));

  const info = await call<InfoReply>(OPS_CHANNELS.info, {});
  t.equal(info.nodeId, host.id);
  t.same(info.commands, ['date', 'greet', 'nap']);
  t.equal(info.peers, 1, 'the stranger is a peer; the asker itself is not counted');
  await t.rejects(call(OPS_CHANNELS.info, {}, stranger), { code: 'UNAUTHORIZED' });
  t.ok(events.some((e) => e['event'] === 'ops:denied' && e['nodeId'] === stranger.id), 'the refusal is logged with the caller id');

  const greeted = await call<ExecResult>(OPS_CHANNELS.exec, { command: 'greet', args: ['a b', '$(id)'] });
  t.equal(greeted.stdout, 'hi a b-$(id)\n', 'arguments reach the script as $1.. and are never re-parsed by the shell');
  await t.rejects(call(OPS_CHANNELS.exec, { command: 'date', args: ['-s', 'yesterday'] }), { code: 'ERR_COMMAND_REFUSED', message: /takes no arguments/ });
  await t.rejects(call(OPS_CHANNELS.exec, { command: 'rm' }), { code: 'ERR_COMMAND_REFUSED', message: /not allow-listed.*allowed: date, greet, nap/ });
  await t.rejects(call(OPS_CHANNELS.exec, { command: 'toString' }), { code: 'ERR_COMMAND_REFUSED' }, 'no prototype keys');
  await t.rejects(call(OPS_CHANNELS.exec, { args: [] }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(decodeReplyOf(operator, host.id, OPS_CHANNELS.exec, 'not json'), { code: 'BAD_FRAME' });

  // One command at a time on this host: a second is OVERLOADED while the first runs.
  const napping = call<ExecResult>(OPS_CHANNELS.exec, { command: 'nap', timeoutMs: 1500 });
  await until(() => ops.running === 1, 5000);
  await t.rejects(call(OPS_CHANNELS.exec, { command: 'date' }), { code: 'OVERLOADED' });
  const napped = await napping;
  t.equal(napped.timedOut, true, 'the operator asked for a shorter timeout than the host allows');
  t.ok(events.some((e) => e['event'] === 'exec:done' && e['command'] === 'nap' && e['timedOut'] === true && e['operator'] === operator.id));

  const self = await call<PingReply>(OPS_CHANNELS.ping, { target: host.id, count: 2 });
  t.same(self.tries.map((x) => x.ms), [0, 0]);
  // The operator node serves no ops/echo: every try fails with the REJECT's code, none hangs.
  const toOperator = await call<PingReply>(OPS_CHANNELS.ping, { target: operator.id, count: 2, intervalMs: 0 });
  t.same(toOperator.tries.map((x) => x.error?.code), ['UNKNOWN_CHANNEL', 'UNKNOWN_CHANNEL']);
});

async function decodeReplyOf(from: PnetNode, to: NodeId, channel: string, raw: string): Promise<unknown> {
  return decodeReply(await from.request(to, channel, raw, { timeoutMs: 10_000 }));
}

async function createIdentityId(): Promise<NodeId> {
  const { Identity } = await import('../src/index.js');
  return (await Identity.generate()).nodeId;
}

/** A small structural DOT check: header, node statements, edge statements, closing brace. */
function parseDot(dot: string): { kind: string; nodes: string[]; edges: Array<{ a: string; b: string }> } {
  const lines = dot.trim().split('\n').map((line) => line.trim());
  const header = /^(strict\s+)?(graph|digraph)\s+("[^"]*"|[A-Za-z_][\w]*)?\s*\{$/.exec(lines[0] ?? '');
  if (!header) throw new Error(`bad DOT header: ${lines[0]}`);
  if (lines.at(-1) !== '}') throw new Error('DOT does not end with }');
  const op = header[2] === 'digraph' ? '->' : '--';
  const nodes: string[] = [];
  const edges: Array<{ a: string; b: string }> = [];
  let depth = 0;
  for (const ch of dot.replace(/"[^"]*"/g, '')) depth += ch === '{' ? 1 : ch === '}' ? -1 : 0;
  if (depth !== 0) throw new Error('unbalanced braces');
  for (const line of lines.slice(1, -1)) {
    if ((line.match(/"/g) ?? []).length % 2 !== 0) throw new Error(`unbalanced quotes: ${line}`);
    const edge = new RegExp(`^"([^"]+)"\\s*${op}\\s*"([^"]+)"\\s*(\\[.*\\])?;$`).exec(line);
    if (edge) {
      edges.push({ a: edge[1]!, b: edge[2]! });
      continue;
    }
    const node = /^"([^"]+)"\s*(\[.*\])?;$/.exec(line);
    if (node) {
      nodes.push(node[1]!);
      continue;
    }
    if (!/^(graph|node|edge)\s*\[.*\];$/.test(line)) throw new Error(`unexpected DOT statement: ${line}`);
  }
  for (const edge of edges) if (!nodes.includes(edge.a) || !nodes.includes(edge.b)) throw new Error('edge to an undeclared node');
  return { kind: header[2]!, nodes, edges };
}

// ---- in-process CLI: keygen, usage errors -----------------------------------------------


t.test('runCli: keygen writes a 0600 key and refuses to overwrite; usage errors exit 2', async (t) => {
  const dir = await tempDir(t);
  const out = collector();
  const err = collector();
  const io = { stdout: out, stderr: err, env: {} };
  const key = join(dir, 'k', 'node.key');
  t.equal(await runCli(['keygen', '--out', key], io), 0);
  const id = out.text.trim();
  t.ok(isNodeId(id), `prints a node id (${id})`);
  t.equal((await stat(key)).mode & 0o777, 0o600);
  t.equal(await runCli(['keygen', '--out', key], io), 2, 'an existing key is not replaced');
  t.match(err.text, /exists; pass --force/);
  const again = collector();
  t.equal(await runCli(['id', '--key', key, '--json'], { ...io, stdout: again }), 0);
  t.same(JSON.parse(again.text), { nodeId: id, keyFile: key });
  const forced = collector();
  t.equal(await runCli(['keygen', '--out', key, '--force', '--json'], { ...io, stdout: forced }), 0);
  t.not(JSON.parse(forced.text).nodeId, id, 'with --force: a new identity');
  t.equal(await runCli(['frobnicate'], io), 2, 'unknown command');
  t.equal(await runCli(['ping', 'not-an-id'], io), 2, 'bad node id argument');
  t.equal(await runCli(['ping', id, '--count', 'many'], io), 2, 'bad number');
  t.equal(await runCli(['--help'], io), 0);
  t.match(out.text, /Usage: pnet/);
  const json = collector();
  t.equal(await runCli(['id', '--key', join(dir, 'none.key'), '--json'], { ...io, stdout: json }), 2, 'missing key file');
  t.equal(JSON.parse(json.text).error.code, 'ERR_KEY_FILE');
});

// ---- end to end: three daemon processes in a line A - B - C ------------------------------

t.test('end to end: three daemons on loopback, operated through the CLI', async (t) => {
  const dir = await tempDir(t);
  const operatorKey = join(dir, 'operator.key');
  const keygen = await cli(['keygen', '--out', operatorKey]);
  t.equal(keygen.code, 0, keygen.stderr);
  const operatorId = keygen.stdout.trim();
  t.ok(isNodeId(operatorId), 'keygen prints a valid node id');
  t.match(keygen.stderr, /mode 0600/);

  const config = (name: string, bootstrap: string[]): Record<string, unknown> => ({
    listen: '127.0.0.1:0',
    keyFile: `${name}.key`,
    bootstrap,
    operators: [operatorId],
    name: `host-${name}`,
    labels: { role: name === 'c' ? 'db' : 'web' },
    commands: {
      hello: { argv: ['echo', 'hello', 'from', name] },
      echo: { argv: ['echo'], allowArgs: true },
      // Leaves a background grandchild in its process group: a timeout must kill it too.
      slow: { argv: ['sh', '-c', `sleep 30 & echo $! > ${join(dir, `${name}.grandchild`)}; sleep 30`], timeoutMs: 1000 },
    },
  });
  const a = await startDaemon(dir, 'a', config('a', []));
  const b = await startDaemon(dir, 'b', config('b', [a.address]));
  const c = await startDaemon(dir, 'c', config('c', [b.address]));
  t.teardown(async () => {
    for (const d of [a, b, c]) if (d.child.exitCode === null && d.child.pid !== undefined) process.kill(d.child.pid, 'SIGTERM');
    await Promise.race([Promise.all([a.exited, b.exited, c.exited]), new Promise((resolve) => setTimeout(resolve, 10_000))]);
  });
  // Converged when the ends route to each other (through B).
  await a.waitFor((l) => l.event === 'route' && l['nodeId'] === c.id && l['nextHop'] === b.id);
  await c.waitFor((l) => l.event === 'route' && l['nodeId'] === a.id && l['nextHop'] === b.id);
  t.ok(b.lines.some((l) => l.event === 'peer:up' && l['nodeId'] === c.id), 'B logs peer:up for C');
  t.match(c.lines.find((l) => l.event === 'started'), { name: 'host-c', labels: { role: 'db' } }, "the config's name and labels reach the daemon");
  t.ok(b.lines.some((l) => l.event === 'bootstrap:connected' && l['nodeId'] === a.id), 'B logs its bootstrap');
  const op = ['--key', operatorKey];

  await t.test('peers and routes (--json)', async (t) => {
    const [peers, routes] = await Promise.all([cli(['peers', '--node', b.address, ...op, '--json']), cli(['routes', '--node', a.address, '--node-id', a.id, ...op, '--json'])]);
    t.equal(peers.code, 0, peers.stderr);
    const list = JSON.parse(peers.stdout) as Array<{ nodeId: string; direction: string; address: string }>;
    t.match(list.find((p) => p.nodeId === a.id), { nodeId: a.id, address: a.address, direction: 'outbound', transport: 'quic' }, 'B dialed A');
    t.match(list.find((p) => p.nodeId === c.id), { nodeId: c.id, direction: 'inbound' }, 'C dialed B');
    t.notOk(list.some((p) => p.nodeId === operatorId), "the CLI's own connection is not listed");
    t.equal(routes.code, 0, routes.stderr);
    const table = JSON.parse(routes.stdout) as Array<{ nodeId: string; nextHop: string; hops: number; cost: number }>;
    t.equal(table.length, 2, 'A routes to B and C only (the CLI never joins the map)');
    t.match(table.find((r) => r.nodeId === b.id), { nextHop: b.id, hops: 1 });
    t.match(table.find((r) => r.nodeId === c.id), { nextHop: b.id, hops: 2 });
    t.ok(table.every((r) => r.cost > 0));
  });

  await t.test('trace and ping to the far node', async (t) => {
    const [trace, ping] = await Promise.all([cli(['trace', c.id, '--node', a.address, ...op, '--json']), cli(['ping', c.id, '--count', '3', '--interval', '50', '--node', a.address, ...op])]);
    t.equal(trace.code, 0, trace.stderr);
    const reply = JSON.parse(trace.stdout) as { from: string; hops: Array<{ hop: number; nodeId: string; ms?: number }> };
    t.same(reply.hops.map((h) => h.nodeId), [a.id, b.id, c.id], 'the path has 3 nodes: A, B, C');
    t.same(reply.hops.map((h) => h.hop), [0, 1, 2]);
    t.ok(reply.hops.every((h) => typeof h.ms === 'number' && h.ms >= 0), 'an RTT for every hop');
    t.equal(ping.code, 0, ping.stderr);
    t.equal((ping.stdout.match(/seq=\d time=[\d.]+ ms/g) ?? []).length, 3, 'an RTT per try');
    t.match(ping.stdout, /3 sent, 3 received, 0% loss/);
  });

  await t.test('topology as DOT and JSON', async (t) => {
    const [dot, json] = await Promise.all([cli(['topology', '--format', 'dot', '--node', b.address, ...op]), cli(['topology', '--node', b.address, ...op])]);
    t.equal(dot.code, 0, dot.stderr);
    const parsed = parseDot(dot.stdout);
    t.same(new Set(parsed.nodes), new Set([a.id, b.id, c.id]), 'every node id, nothing else');
    t.same(parsed.edges.map((e) => [e.a, e.b].sort().join('-')).sort(), [[a.id, b.id].sort().join('-'), [b.id, c.id].sort().join('-')].sort(), 'edges A-B and B-C');
    t.equal(json.code, 0, json.stderr);
    const map = JSON.parse(json.stdout) as TopologyReply;
    t.equal(map.self, b.id);
    t.equal(map.links.length, 4, 'two links, each announced by both ends');
  });

  await t.test('exec on all nodes: every node answers once, exit 0', async (t) => {
    const run = await cli(['exec', '--targets', 'all', '--node', a.address, ...op, '--json', '--', 'echo', 'hello', 'pnet']);
    t.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { targets: number; ok: number; results: Array<{ nodeId: string; status: string; hops: number; result: ExecResult }> };
    t.equal(report.targets, 3);
    t.equal(report.ok, 3);
    t.same(report.results.map((r) => r.nodeId).sort(), [a.id, b.id, c.id].sort(), 'each node exactly once');
    t.ok(report.results.every((r) => r.result.stdout === 'hello pnet\n' && r.result.exitCode === 0));
    t.same(Object.fromEntries(report.results.map((r) => [r.nodeId, r.hops])), { [a.id]: 1, [b.id]: 2, [c.id]: 3 }, 'hops from the CLI through A');
    await c.waitFor((l) => l.event === 'exec:done' && l['operator'] === operatorId && l['command'] === 'echo' && l['exitCode'] === 0);
    // Human output: the summary table and per-host output on request.
    const human = await cli(['exec', '--targets', `${b.id},${c.id}`, '--node', a.address, ...op, '--output', '--', 'hello']);
    t.equal(human.code, 0, human.stderr);
    t.match(human.stdout, /targets.*ok.*failed.*timed out.*p50 ms.*p99 ms/s);
    t.match(human.stdout, /hello from b/);
    t.match(human.stdout, /hello from c/);
    t.notMatch(human.stdout, /hello from a/, 'only the listed targets ran it');
  });

  await t.test('a command not on the allow-list is refused on every node, exit 1', async (t) => {
    const run = await cli(['exec', '--targets', 'all', '--node', a.address, ...op, '--', 'rm', '-rf', '/tmp/nothing']);
    t.equal(run.code, 1);
    t.equal((run.stdout.match(/ERR_COMMAND_REFUSED: command "rm" is not allow-listed/g) ?? []).length, 3, 'a clear message per node');
    await b.waitFor((l) => l.event === 'exec:refused' && l['command'] === 'rm' && l['operator'] === operatorId);
  });

  await t.test('an operator not in the config is refused with UNAUTHORIZED', async (t) => {
    const strangerKey = join(dir, 'stranger.key');
    const [exec, peers, all] = await Promise.all([
      cli(['exec', '--targets', [a.id, b.id, c.id].join(','), '--node', a.address, '--key', strangerKey, '--json', '--', 'hello']),
      cli(['peers', '--node', a.address, '--key', strangerKey]),
      cli(['exec', '--targets', 'all', '--node', a.address, '--key', strangerKey, '--json', '--', 'hello']),
    ]);
    // 'all': the daemon refuses the stranger's inventory read, and no host ran anything: its error.
    t.equal(all.code, 1);
    t.equal(JSON.parse(all.stdout).error.code, 'UNAUTHORIZED');
    t.equal(exec.code, 1);
    const report = JSON.parse(exec.stdout) as { ok: number; results: Array<{ error?: { code: string } }> };
    t.equal(report.ok, 0);
    t.equal(report.results.length, 3);
    t.ok(report.results.every((r) => r.error?.code === 'UNAUTHORIZED'), 'every node refuses');
    t.match(exec.stderr + peers.stderr + all.stderr, /created operator key/, 'a missing operator key is created and its id shown');
    t.equal(peers.code, 1);
    t.match(peers.stderr, /UNAUTHORIZED/);
    t.match(peers.stderr, /not in its "operators"/);
    t.notOk(c.lines.some((l) => l.event === 'exec:start' && l['operator'] !== operatorId), 'nothing ran for the stranger');
  });

  await t.test('a command past its timeout is killed with its process tree and reported timed out', async (t) => {
    const run = await cli(['exec', '--targets', c.id, '--node', a.address, ...op, '--json', '--', 'slow']);
    t.equal(run.code, 1);
    const report = JSON.parse(run.stdout) as { timedOut: number; results: Array<{ status: string; result: ExecResult }> };
    t.equal(report.timedOut, 1);
    t.match(report.results[0], { status: 'timeout', result: { timedOut: true, exitCode: null } });
    const grandchild = Number(await readFile(join(dir, 'c.grandchild'), 'utf8'));
    t.ok(await until(() => !alive(grandchild), 5000), 'the background grandchild was killed too');
    await c.waitFor((l) => l.event === 'exec:done' && l['command'] === 'slow' && l['timedOut'] === true);
  });

  await t.test('exit 3 when the node cannot be reached or is not the pinned id', async (t) => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    t.teardown(() => silent.close());
    const [nobody, wrongId] = await Promise.all([
      cli(['peers', '--node', `127.0.0.1:${silent.address().port}`, '--connect-timeout', '1000', ...op, '--json']),
      cli(['peers', '--node', a.address, '--node-id', b.id, ...op]),
    ]);
    t.equal(nobody.code, 3, nobody.stderr);
    // Its TCP port number refuses and QUIC stays silent: refused in ~0.5 s, not the connect timeout.
    t.match(JSON.parse(nobody.stdout), { error: { code: 'ERR_CONNECTION_REFUSED' } });
    t.equal(wrongId.code, 3, wrongId.stderr);
    t.match(wrongId.stderr, /ERR_PEER_ID_MISMATCH/);
  });

  await t.test('a bad config exits 2 with the problem named; SIGTERM stops a daemon cleanly with 0', async (t) => {
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ listen: '127.0.0.1:0', operators: ['not-an-id'], commands: { sh: { script: 'reboot' } } }));
    const bad = await cli(['node', '--config', join(dir, 'bad.json')]);
    t.equal(bad.code, 2);
    t.match(bad.stderr, /operators\[0\]: invalid node id/);
    t.match(bad.stderr, /commands\.sh\.script: shell scripts are off/);
    process.kill(c.child.pid!, 'SIGTERM');
    t.equal(await c.exited, 0);
    t.ok(c.lines.some((l) => l.event === 'stopping' && l['signal'] === 'SIGTERM'));
    t.equal(c.lines.at(-1)?.event, 'stopped');
    await b.waitFor((l) => l.event === 'peer:down' && l['nodeId'] === c.id);
  });
});
