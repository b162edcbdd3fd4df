// A lost hello (docs/ROUTING.md): a peer becomes a routing neighbour once both ends said hello on
// the routing channel. Under load a hello's stream can be refused; the end that lost it must not
// stay a stranger until the next record (30 min). The end still waiting says hello again (3 s,
// then doubling), and a neighbour that hears a hello again answers, at most once per 2 s, so two
// nodes never echo each other. Real nodes over loopback; the leaf's first routing messages (its
// hello and its record) are dropped on purpose.
import t from 'tap';
import { createNode } from '../src/index.js';
import type { NodeId, PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { until } from './fixtures/node-channels.js';

t.setTimeout(60_000);

/** Counts the hellos `node` sends (routing messages of at most one byte); drops its routing messages to `to` until `lostUntil()` says stop. */
function tapHellos(node: PnetNode, to: () => NodeId, lostUntil: () => boolean): { sent: number; lost: number } {
  const neighbours = nodeServices(node).neighbours as unknown as { send(to: NodeId, bytes: Uint8Array): void };
  const original = neighbours.send.bind(neighbours);
  const counts = { sent: 0, lost: 0 };
  neighbours.send = (dest, bytes) => {
    if (bytes.length <= 1) counts.sent++;
    if (dest === to() && lostUntil()) {
      counts.lost++;
      return; // lost on the way
    }
    original(dest, bytes);
  };
  return counts;
}

t.test("a leaf's lost hello: the hub says hello again, the leaf answers, the hub takes it as a neighbour; then both stay quiet", async (t) => {
  const hub = await createNode({ h2: false, routing: { role: 'router' } });
  const leaf = await createNode({ h2: false, routing: { role: 'leaf' } });
  t.teardown(() => Promise.all([hub, leaf].map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  // The leaf's hello and its first record (the other way a hub learns a neighbour) are lost.
  let losing = true;
  const leafHellos = tapHellos(leaf, () => hub.id, () => losing);
  const hubHellos = tapHellos(hub, () => leaf.id, () => false);
  await leaf.dial(hub.address);
  const hubKnowsLeaf = (): boolean => nodeServices(hub).neighbours.router.neighbourRole(leaf.id) !== undefined;
  await until(() => nodeServices(leaf).neighbours.router.neighbourRole(hub.id) !== undefined, 5000);
  await new Promise((resolve) => setTimeout(resolve, 500));
  losing = false;
  t.ok(leafHellos.lost >= 2, `the leaf's hello and record were lost (${leafHellos.lost} messages)`);
  t.notOk(hubKnowsLeaf(), "the leaf took the hub for a neighbour (it heard the hub's hello); the hub did not");
  await until(hubKnowsLeaf, 15_000);
  t.ok(hubKnowsLeaf(), 'the hub took the leaf as a neighbour after saying hello again');
  await until(() => hub.routes().some((route) => route.nodeId === leaf.id), 10_000);
  t.ok(hub.routes().some((route) => route.nodeId === leaf.id), 'the hub routes to the leaf');
  const settled = { hub: hubHellos.sent, leaf: leafHellos.sent };
  await new Promise((resolve) => setTimeout(resolve, 7000));
  t.same({ hub: hubHellos.sent, leaf: leafHellos.sent }, settled, `no hello in the 7 s after (hub said ${settled.hub}, leaf ${settled.leaf}): no echo`);
  t.ok(settled.hub >= 2, `the hub said hello again (${settled.hub} in all)`);
  t.ok(settled.hub <= 3 && settled.leaf <= 3, 'a few hellos in all');
});
