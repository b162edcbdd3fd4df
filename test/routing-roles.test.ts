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
