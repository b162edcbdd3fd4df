import t from 'tap';
import { createNode } from '../src/index.js';
import type { PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { helloRole } from '../src/node/neighbours.js';

// Roles on real QUIC nodes on loopback: the hello's role byte, 'auto', and what a leaf sees.

const base = { quic: { idleTimeoutMs: 3000 }, routing: { rttSampleMs: 200, neighbourHoldDownMs: 50 } };

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const router = (node: PnetNode) => nodeServices(node).neighbours.router;

t.test('hello role byte: 0 router, 1 leaf; empty or unknown says nothing', async (t) => {
  t.equal(helloRole(Uint8Array.of(0)), 'router');
  t.equal(helloRole(Uint8Array.of(1)), 'leaf');
  t.equal(helloRole(new Uint8Array(0)), undefined, 'a hello without the byte (older nodes): learnt from records');
  t.equal(helloRole(Uint8Array.of(7)), undefined, 'an unknown value: learnt from records');
});

t.test('a hub learns its leaves from their hello: it never sends them the map', async (t) => {
  const hub = await createNode(base);
  const leaves = [await createNode({ ...base, routing: { ...base.routing, role: 'leaf' } }), await createNode({ ...base, routing: { ...base.routing, role: 'leaf' } })];
  t.teardown(() => Promise.all([hub, ...leaves].map((n) => n.close({ timeoutMs: 200 }))).then(() => undefined));
  for (const leaf of leaves) await leaf.dial(hub.address);
  await until('hub routes to both leaves', () => hub.routes().length === 2);
  await until('leaves have their default route', () => leaves.every((leaf) => router(leaf).defaultRoute === hub.id));
  t.same(router(hub).neighbours().map((n) => n.role), ['leaf', 'leaf'], 'roles known');
  t.equal(router(hub).stats().messagesSent, 0, 'the hub sent its leaves nothing (with no hint it sends each its map at neighbourUp)');
  t.same(
    leaves.map((leaf) => router(leaf).neighbours()[0]!.role),
    ['router', 'router'],
    "each leaf knows its hub's role from the hello",
  );
  leaves[1]!.handleRequest('whoami', () => leaves[1]!.id);
  t.equal((await leaves[0]!.request(leaves[1]!.id, 'whoami', 'x')).toString(), leaves[1]!.id, 'leaf to leaf goes up to the hub and down');
});

t.test("role 'auto' on real nodes: the node others dial becomes the router, the hosts stay leaves", async (t) => {
  const auto = { ...base, routing: { ...base.routing, role: 'auto' as const } };
  const hub = await createNode(auto);
  const hosts = [await createNode(auto), await createNode(auto), await createNode(auto)];
  t.teardown(() => Promise.all([hub, ...hosts].map((n) => n.close({ timeoutMs: 200 }))).then(() => undefined));
  t.equal(router(hub).role, 'leaf', 'a node with no neighbour starts as a leaf');
  for (const host of hosts) await host.dial(hub.address);
  await until('the hub routes to every host', () => hub.routes().length === hosts.length);
  await until('every host defaults to the hub', () => hosts.every((h) => router(h).defaultRoute === hub.id)).catch((error: Error) => {
    t.comment(JSON.stringify(hosts.map((h) => [router(h).role, router(h).defaultRoute === hub.id, router(h).neighbours()]), null, 1));
    throw error;
  });
  t.equal(router(hub).role, 'router', 'the hub: inbound neighbours');
  t.same(hosts.map((h) => router(h).role), ['leaf', 'leaf', 'leaf'], 'the hosts: one outbound neighbour');
  t.same(router(hub).neighbours().map((n) => n.role), ['leaf', 'leaf', 'leaf']);
  hosts[2]!.handleRequest('whoami', () => hosts[2]!.id);
  t.equal((await hosts[0]!.request(hosts[2]!.id, 'whoami', 'x')).toString(), hosts[2]!.id, 'host to host through the hub');
});

t.test("what a leaf sees and does: routes() its neighbours, fanout('all') expanded by its hub", async (t) => {
  const hub = await createNode(base);
  const leafOptions = { ...base, routing: { ...base.routing, role: 'leaf' as const } };
  const leaves = await Promise.all(Array.from({ length: 4 }, () => createNode(leafOptions)));
  const all = [hub, ...leaves];
  t.teardown(() => Promise.all(all.map((n) => n.close({ timeoutMs: 200 }))).then(() => undefined));
  for (const node of all) node.handleRequest('whoami', () => node.id);
  for (const leaf of leaves) await leaf.dial(hub.address);
  await until('the hub routes to every leaf', () => hub.routes().length === leaves.length);
  await until('every leaf defaults to the hub', () => leaves.every((l) => router(l).defaultRoute === hub.id));
  const leaf = leaves[0]!;
  // The leaf publishes its own record a little after the link comes up (publishDelayMs).
  await until("the leaf's record lists its hub", () => leaf.topology().links.length > 0);
  t.same(leaf.routes().map((r) => r.nodeId), [hub.id], 'routes(): its neighbours only (no map)');
  t.equal(leaf.path(leaves[1]!.id), undefined, 'no path beyond its first hop');
  t.same(leaf.topology().links.map((l) => l.to), [hub.id], 'topology(): its own record');
  t.equal(router(leaf).nextHop(leaves[3]!.id), hub.id, 'every other node: by the default route');
  const answers = new Map<string, string>();
  for await (const result of leaf.fanout('all', 'whoami', 'x', { deadlineMs: 5000 })) {
    answers.set(result.nodeId, result.ok ? result.data.toString() : result.error.code);
  }
  t.same([...answers.keys()].sort(), all.map((n) => n.id).sort(), "fanout('all') from a leaf reaches every node of the hub's map, itself included");
  t.ok([...answers].every(([id, answer]) => id === answer), 'every target answered itself');
  t.equal(nodeServices(hub).fanouts.stats.legsServed > 0, true, 'the hub served the leg that expanded the list');
  const named: string[] = [];
  for await (const result of leaf.fanout([leaves[2]!.id, leaves[3]!.id], 'whoami', 'x')) if (result.ok) named.push(result.data.toString());
  t.same(named.sort(), [leaves[2]!.id, leaves[3]!.id].sort(), 'named targets go by the default route too');
});
