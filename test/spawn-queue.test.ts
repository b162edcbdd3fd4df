// The process's spawn queue for ops/exec: a few commands at a time, the rest in order, a full queue refused.
import t from 'tap';
import { SpawnQueue } from '../src/cli/spawn-queue.js';
import { execService } from '../src/cli/ops/exec.js';
import { DEFAULT_MAX_RUNNING, spawnQueue } from '../src/cli/spawn-queue.js';
import { validateOpsConfig } from '../src/cli/config.js';
import type { PnetNode } from '../src/index.js';
import { childEnv } from './fixtures/child-env.js';

/** A task that finishes when told to. */
function gated<T>(value: T): { task: () => Promise<T>; started: boolean; finish: () => void } {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const handle = {
    started: false,
    finish: () => finish(),
    task: async () => {
      handle.started = true;
      await done;
      return value;
    },
  };
  return handle;
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('at most maxRunning at once, the rest in order, counted', async (t) => {
  const queue = new SpawnQueue(2, 10);
  const tasks = Array.from({ length: 5 }, (_, i) => gated(i));
  const order: number[] = [];
  const runs = tasks.map((task, i) => queue.run(task.task).then((v) => (order.push(i), v)));
  await turn();
  t.same(tasks.map((x) => x.started), [true, true, false, false, false]);
  t.match(queue.stats(), { running: 2, queued: 3, waited: 3, peakQueued: 3 });
  tasks[1]!.finish();
  await turn();
  await turn();
  t.same(tasks.map((x) => x.started), [true, true, true, false, false], 'the first waiter takes the freed turn');
  for (const task of tasks) task.finish();
  t.same(await Promise.all(runs), [0, 1, 2, 3, 4]);
  t.equal(order[0], 1);
  t.match(queue.stats(), { running: 0, queued: 0, started: 5, waited: 3, refusedQueueFull: 0 });
});

t.test('a full queue is an OVERLOADED refusal with the figures; a freed slot takes the next', async (t) => {
  const queue = new SpawnQueue(1, 2);
  const tasks = Array.from({ length: 3 }, (_, i) => gated(i));
  const runs = tasks.map((task) => queue.run(task.task));
  await t.rejects(queue.run(async () => 9), { code: 'OVERLOADED', message: /exec queue full: 1 commands running and 2 waiting in this process \(at most 2\)/ });
  t.equal(queue.stats().refusedQueueFull, 1);
  for (const task of tasks) task.finish();
  t.same(await Promise.all(runs), [0, 1, 2]);
  t.equal(await queue.run(async () => 7), 7, 'room again');
});

t.test('a waiter aborted before its turn leaves the queue; a failing task frees its turn', async (t) => {
  const queue = new SpawnQueue(1, 10);
  const first = gated('a');
  const one = queue.run(first.task);
  const abort = new AbortController();
  const two = queue.run(async () => 'b', abort.signal);
  const three = queue.run(async () => {
    throw new Error('boom');
  });
  abort.abort();
  await t.rejects(two, { code: 'ERR_NODE_CLOSED' });
  t.equal(queue.stats().queued, 1);
  first.finish();
  t.equal(await one, 'a');
  await t.rejects(three, /boom/);
  t.equal(await queue.run(async () => 'c'), 'c');
  t.match(queue.stats(), { running: 0, queued: 0 });
});

t.test('the event loop turns between spawns: timers run while 40 real commands go through 2 turns', async (t) => {
  spawnQueue.configure({ maxRunning: 2 });
  t.teardown(() => spawnQueue.configure({ maxRunning: DEFAULT_MAX_RUNNING }));
  const node = { id: 'n'.repeat(52) } as unknown as PnetNode;
  const config = validateOpsConfig({ operators: [], commands: { true: { argv: ['true'] } }, maxConcurrentExec: 100 });
  // 40 nodes of one process, one command each (the bench's 500 per process, smaller).
  const services = Array.from({ length: 40 }, () => execService({ node, config, logger: undefined }));
  let ticks = 0;
  let peak = 0;
  const timer = setInterval(() => ticks++, 1);
  const before = spawnQueue.stats();
  const runs = services.map((service) => service.handler(Buffer.from('{"command":"true"}'), 'op' as never) as Promise<{ exitCode: number }>);
  const watch = setInterval(() => (peak = Math.max(peak, spawnQueue.stats().running)), 1);
  const results = await Promise.all(runs);
  clearInterval(timer);
  clearInterval(watch);
  t.ok(results.every((r) => r.exitCode === 0), 'all 40 ran');
  t.ok(peak <= 2, `never more than 2 at once (peak ${peak})`);
  const after = spawnQueue.stats();
  t.equal(after.started - before.started, 40);
  t.ok(after.waited - before.waited >= 30, 'most waited for a turn');
  t.ok(ticks > 0, 'timers ran meanwhile');
});

t.test('PNET_EXEC_MAX_RUNNING sets the default running limit; a bad value keeps the cores', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const module = new URL('../src/cli/spawn-queue.ts', import.meta.url).href;
  const read = (value: string): string =>
    execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `import(${JSON.stringify(module)}).then((m) => console.log(m.DEFAULT_MAX_RUNNING))`], {
      env: childEnv({ PNET_EXEC_MAX_RUNNING: value }),
      encoding: 'utf8',
    }).trim();
  t.equal(read('8'), '8');
  t.equal(read('0'), String(DEFAULT_MAX_RUNNING), 'out of range: the default');
  t.equal(read('lots'), String(DEFAULT_MAX_RUNNING));
});
