import t from 'tap';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNode, Identity, saveIdentity } from '../src/index.js';
import type { NodeId, PnetNode } from '../src/index.js';
import { runCli, serveOps, validateConfig, validateOpsConfig } from '../src/cli/index.js';
import type { OpsService } from '../src/cli/index.js';
import { Inventory, inventoryFileFor, loadInventory, parseSelector, saveInventory } from '../src/cli/inventory.js';
import { collector } from './fixtures/cli-io.js';

// The inventory (issue 17 item 1): `--targets all` is every host the daemon has seen, so a host
// that dropped out of the map is reported and fails the exit code.
t.setTimeout(120_000);


async function until(check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

t.test('unit: bounded, evictions counted, persisted, selectors', async (t) => {
  const ids = await Promise.all(Array.from({ length: 4 }, async () => (await Identity.generate()).nodeId));
  const inventory = new Inventory(3);
  ids.forEach((id, i) => inventory.seen([id], 1000 + i));
  t.equal(inventory.size, 3);
  t.equal(inventory.evicted, 1, 'the host unreachable the longest went');
  t.notOk(inventory.get(ids[0]!));
  inventory.learned(ids[1]!, { name: 'web-1', labels: { role: 'web' } });
  t.same(inventory.select({ role: 'web' }).map((h) => h.nodeId), [ids[1]]);
  t.same(inventory.select({ name: 'web-1' }).map((h) => h.nodeId), [ids[1]]);
  const dir = await mkdtemp(join(tmpdir(), 'pnet-inventory-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = inventoryFileFor(join(dir, 'node.key'));
  t.equal(file, join(dir, 'node.hosts.json'), 'next to the key');
  await saveInventory(inventory, file);
  t.equal((await stat(file)).mode & 0o777, 0o600);
  const loaded = await loadInventory(file);
  t.same(loaded.list(), inventory.list(), 'read back as written');
  t.same(parseSelector('role=web,dc=ams'), { role: 'web', dc: 'ams' });
  t.equal(parseSelector('all'), undefined);
});

t.test('config: name, labels and routing.role are checked', async (t) => {
  const config = validateConfig({ name: 'web-1', labels: { role: 'web' }, routing: { role: 'leaf' } });
  t.equal(config.name, 'web-1');
  t.same(config.labels, { role: 'web' });
  t.equal(config.role, 'leaf');
  t.throws(() => validateConfig({ routing: { role: 'hub' } }), /routing\.role: must be one of router, leaf, auto/);
  t.throws(() => validateConfig({ labels: { role: 3 } }), /labels\.role/);
});

t.test('exec --targets all reports a host that left the map; --reachable-only skips it; labels select; forget drops it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-inventory-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const operator = await Identity.generate();
  const key = join(dir, 'operator.key');
  await saveIdentity(operator, key);
  const names = ['hub', 'web-1', 'db-1'];
  const roles = ['hub', 'web', 'db'];
  const nodes: PnetNode[] = [];
  const services: OpsService[] = [];
  for (let i = 0; i < 3; i++) {
    const node = await createNode({ routing: { rttSampleMs: 60_000 } });
    const ops = validateOpsConfig({ operators: [operator.nodeId], commands: { hello: { argv: ['echo', 'hi'] } } });
    services.push(serveOps(node, { ...ops, name: names[i]!, labels: { role: roles[i]! } }));
    nodes.push(node);
  }
  t.teardown(async () => {
    for (const service of services) await service.close();
    await Promise.all(nodes.map((node) => node.close({ timeoutMs: 100 })));
  });
  const [hub, web, db] = nodes as [PnetNode, PnetNode, PnetNode];
  await web.dial(hub.address);
  await db.dial(hub.address);
  await until(() => hub.routes().length === 2 && web.routes().length === 2 && db.routes().length === 2);
  const cli = async (...args: string[]): Promise<{ code: number; out: string; err: string }> => {
    const out = collector();
    const err = collector();
    const code = await runCli([args[0]!, '--node', hub.address, '--key', key, ...args.slice(1)], { stdout: out, stderr: err, env: {} });
    return { code, out: out.text, err: err.text };
  };
  t.equal(services[0]!.inventory.list().filter((host) => host.factsAt !== undefined).length, 0, 'no facts read before anyone asks');

  const first = await cli('exec', '--targets', 'all', '--json', '--', 'hello');
  t.equal(first.code, 0, first.err);
  t.equal(JSON.parse(first.out).ok, 3, 'every host ran it');
  t.equal(services[0]!.inventory.list().filter((host) => host.factsAt !== undefined).length, 0, '--targets all needs only the ids: no facts read for it');

  const web1 = await cli('exec', '--targets', 'role=web', '--json', '--', 'hello');
  t.same((JSON.parse(web1.out) as { results: Array<{ nodeId: NodeId }> }).results.map((r) => r.nodeId), [web.id], 'role=web selects web-1 only');
  t.equal(services[0]!.inventory.list().filter((host) => host.factsAt !== undefined).length, 3, 'a selector read every host\'s facts first');

  await services[2]!.close();
  await db.close({ timeoutMs: 0 });
  await until(() => hub.routes().length === 1);
  const started = performance.now();
  const missing = await cli('exec', '--targets', 'all', '--json', '--', 'hello');
  const ms = performance.now() - started;
  t.equal(missing.code, 1, 'a missing host fails the exit code');
  const body = JSON.parse(missing.out) as { targets: number; ok: number; results: Array<{ nodeId: NodeId; status: string; reason: string; error?: { code: string } }> };
  t.equal(body.targets, 3, 'all: every known host, the gone one included');
  const gone = body.results.find((r) => r.nodeId === db.id);
  t.equal(gone?.error?.code, 'UNREACHABLE');
  t.match(gone?.reason, /db-1 not in the map, last reachable/);
  t.ok(ms < 5000, `reported in ${Math.round(ms)} ms`);

  const reachable = await cli('exec', '--targets', 'all', '--reachable-only', '--json', '--', 'hello');
  t.equal(reachable.code, 0, '--reachable-only: exit 0');
  const reachableBody = JSON.parse(reachable.out) as { ok: number; skipped: Array<{ nodeId: NodeId; name: string }> };
  t.equal(reachableBody.ok, 2);
  t.same(reachableBody.skipped.map((s) => s.name), ['db-1'], 'the gone host is listed as skipped');

  const hosts = await cli('hosts', '--json');
  const listed = JSON.parse(hosts.out) as { hosts: Array<{ nodeId: NodeId; reachable: boolean; name?: string }> };
  t.same(listed.hosts.map((h) => [h.name, h.reachable]), [['hub', true], ['web-1', true], ['db-1', false]]);
  const table = await cli('hosts');
  t.match(table.out, /db-1.*NO/);

  const forget = await cli('forget', db.id, '--json');
  t.same(JSON.parse(forget.out), { nodeId: db.id, forgotten: true, reachable: false });
  const after = await cli('exec', '--targets', 'all', '--json', '--', 'hello');
  t.equal(after.code, 0, 'forgotten: no longer a target');
  t.equal(JSON.parse(after.out).targets, 2);
});

t.test('unit: sweeps mark the inventory for saving at most once a minute; a new host at once', async (t) => {
  const [a, b] = await Promise.all([Identity.generate(), Identity.generate()]);
  const inventory = new Inventory();
  inventory.seen([a.nodeId], 1_000_000);
  t.ok(inventory.dirty, 'a new host');
  inventory.dirty = false;
  inventory.seen([a.nodeId], 1_005_000);
  t.notOk(inventory.dirty, 'the same host 5 s later: not yet');
  t.equal(inventory.get(a.nodeId)!.lastReachable, 1_005_000, 'though the time is kept in memory');
  inventory.seen([a.nodeId], 1_061_000);
  t.ok(inventory.dirty, 'a minute later');
  inventory.dirty = false;
  inventory.seen([a.nodeId, b.nodeId], 1_062_000);
  t.ok(inventory.dirty, 'another new host');
});

t.test('unit: ops/inventory with { facts: false } answers from what it knows and reads no facts; by default it reads them first', async (t) => {
  const { inventoryHandler } = await import('../src/cli/ops/inventory.js');
  const [self, a] = await Promise.all([Identity.generate(), Identity.generate()]);
  const inventory = new Inventory();
  inventory.seen([self.nodeId, a.nodeId]);
  let reads = 0;
  const tracker = {
    refreshFacts: async () => {
      reads++;
      inventory.learned(a.nodeId, { name: 'web-1', labels: { role: 'web' } });
    },
    stop: () => undefined,
  };
  const node = { id: self.nodeId, routes: () => [{ nodeId: a.nodeId }] } as unknown as PnetNode;
  const handler = inventoryHandler({ node, config: validateOpsConfig({}), logger: undefined }, inventory, tracker);
  const quick = (await handler(Buffer.from('{"facts":false}'), self.nodeId)) as { hosts: Array<{ nodeId: NodeId; name?: string; reachable: boolean }> };
  t.equal(reads, 0, 'no facts read');
  t.same(quick.hosts.map((h) => [h.nodeId, h.reachable, h.name]).sort(), [[self.nodeId, true, undefined], [a.nodeId, true, undefined]].sort(), 'every host, reachable, no name yet');
  const full = (await handler(Buffer.from('{}'), self.nodeId)) as { hosts: Array<{ nodeId: NodeId; name?: string }> };
  t.equal(reads, 1, 'the default reads the facts first');
  t.equal(full.hosts.find((h) => h.nodeId === a.nodeId)?.name, 'web-1');
  t.equal(((await handler(Buffer.from('{"facts":false}'), self.nodeId)) as typeof full).hosts.find((h) => h.nodeId === a.nodeId)?.name, 'web-1', 'facts learnt once are kept');
  await t.rejects(async () => handler(Buffer.from('{"facts":"no"}'), self.nodeId), { code: 'ERR_BAD_OPTION' });
});
