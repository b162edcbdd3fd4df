// The spawn helper: ops/exec's forks happen in a small child process, never on the node's event loop.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNode } from '../src/index.js';
import { SpawnHelper, spawnHelper, spawnModeFrom } from '../src/cli/spawn-helper.js';
import { DEFAULT_MAX_QUEUED, DEFAULT_MAX_RUNNING, spawnQueue } from '../src/cli/spawn-queue.js';
import { OPS_CHANNELS, decodeReply, serveOps, validateOpsConfig } from '../src/cli/index.js';
import type { ExecResult } from '../src/cli/index.js';
import { until } from './fixtures/node-channels.js';

const spec = (file: string, args: string[] = [], timeoutMs = 20_000) => ({ file, args, timeoutMs, maxOutputBytes: 1024, killGraceMs: 200 });

t.test('the helper runs commands as runCommand does: exit codes, output, ENOENT, timeout, abort', async (t) => {
  const helper = new SpawnHelper();
  t.teardown(() => helper.close());
  t.match(await helper.run(spec('true')), { exitCode: 0, timedOut: false, stdout: '' });
  t.match(await helper.run(spec('sh', ['-c', 'echo out; echo err >&2; exit 3'])), { exitCode: 3, stdout: 'out\n', stderr: 'err\n' });
  t.match(await helper.run(spec('/nonexistent/pnet-program')), { exitCode: null, spawnError: /ENOENT/ });
  t.match(await helper.run(spec('sleep', ['30'], 300)), { timedOut: true, signal: 'SIGTERM' });
  const abort = new AbortController();
  const aborted = helper.run(spec('sleep', ['30']), abort.signal);
  setTimeout(() => abort.abort(), 200);
  t.match(await aborted, { timedOut: false, signal: 'SIGTERM' }, 'an abort stops the process group, not a timeout');
  t.match(helper.stats(), { helperStarts: 1, helperExits: 0, helperLost: 0, commands: 5 }, 'one helper for all of them');
});

t.test('a helper that dies fails what it was running (counted); the next command starts a new one', async (t) => {
  const helper = new SpawnHelper();
  t.teardown(() => helper.close());
  const pending = helper.run(spec('sleep', ['2']));
  await until(() => helper.pid !== undefined, 5000);
  process.kill(helper.pid!, 'SIGKILL');
  t.match(await pending, { exitCode: null, spawnError: /spawn helper exited/ });
  t.match(helper.stats(), { helperStarts: 1, helperExits: 1, helperLost: 1 });
  t.match(await helper.run(spec('true')), { exitCode: 0 });
  t.equal(helper.stats().helperStarts, 2);
});

t.test('start() forks the helper before the first command, which then uses it', async (t) => {
  const helper = new SpawnHelper();
  t.teardown(() => helper.close());
  helper.start();
  t.ok(helper.pid !== undefined, 'forked at once');
  t.match(await helper.run(spec('true')), { exitCode: 0 });
  t.match(helper.stats(), { helperStarts: 1, commands: 1 });
});

t.test('PNET_EXEC_SPAWN=inline spawns in the process; anything else uses the helper', async (t) => {
  t.equal(spawnModeFrom({ PNET_EXEC_SPAWN: 'inline' }), 'inline');
  t.equal(spawnModeFrom({}), 'helper');
  t.equal(spawnModeFrom({ PNET_EXEC_SPAWN: 'helper' }), 'helper');
});

t.test('ops/exec through the helper: the queue keeps its limits (counted), the node keeps its connection', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-spawn-'));
  const gate = join(dir, 'go');
  // A short idle timeout: a stalled event loop on either side would drop the connection.
  const quic = { idleTimeoutMs: 2000 };
  const host = await createNode({ listen: '127.0.0.1:0', quic });
  const operator = await createNode({ listen: '127.0.0.1:0', quic });
  spawnQueue.configure({ maxRunning: 2, maxQueued: 10 });
  t.teardown(async () => {
    spawnQueue.configure({ maxRunning: DEFAULT_MAX_RUNNING, maxQueued: DEFAULT_MAX_QUEUED });
    await Promise.all([host.close(), operator.close()]);
    await rm(dir, { recursive: true, force: true });
  });
  const ops = serveOps(host, validateOpsConfig({ operators: [operator.id], maxConcurrentExec: 100, commands: { wait: { argv: ['sh', '-c', 'while [ ! -e "$0" ]; do sleep 0.05; done', gate] }, true: { argv: ['true'] } } }));
  t.teardown(() => ops.close());
  let downs = 0;
  for (const node of [host, operator]) node.on('peer:down', () => downs++);
  await operator.dial(host.address);
  const call = async (command: string): Promise<ExecResult> => decodeReply<ExecResult>(await operator.request(host.id, OPS_CHANNELS.exec, JSON.stringify({ command }), { timeoutMs: 60_000 }));
  const before = { queue: spawnQueue.stats(), helper: spawnHelper.stats() };

  // 2 running and 10 waiting fill the queue: 8 of 20 are refused OVERLOADED while the gate holds them.
  const held = Array.from({ length: 20 }, () => call('wait').then((r) => r, (error: { code?: string }) => error.code));
  await until(() => spawnQueue.stats().refusedQueueFull - before.queue.refusedQueueFull === 8, 30_000);
  t.match(spawnQueue.stats(), { running: 2, queued: 10 });
  await writeFile(gate, '');
  const outcomes = await Promise.all(held);
  t.equal(outcomes.filter((o) => o === 'OVERLOADED').length, 8, 'a full queue refuses');
  t.equal(outcomes.filter((o) => typeof o === 'object' && o.exitCode === 0).length, 12, 'the rest ran once the gate opened');

  // 100 more at once through 2 turns (room to wait now): every one answers, the connection stays up.
  spawnQueue.configure({ maxQueued: DEFAULT_MAX_QUEUED });
  const results = await Promise.all(Array.from({ length: 100 }, () => call('true')));
  t.ok(results.every((r) => r.exitCode === 0), 'all 100 ran');
  const after = { queue: spawnQueue.stats(), helper: spawnHelper.stats() };
  t.equal(after.queue.started - before.queue.started, 112);
  t.equal(after.helper.commands - before.helper.commands, 112, "every command went through the process's helper");
  t.ok(after.helper.helperStarts <= before.helper.helperStarts + 1, 'one helper (started at most once here)');
  t.equal(downs, 0, 'no connection lost meanwhile');
  t.equal(host.peers().length, 1);
});

t.teardown(() => spawnHelper.close());
