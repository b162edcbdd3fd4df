import t from 'tap';
import { createNode } from '../src/index.js';
import type { PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

// A hub's per-connection cost (issue 14): an RTT read builds an object in the QUIC binding
// (~5 us), so links whose cost chooses no path (a leaf's link to its one hub, the hub's stub
// link to it) are read once in 30 sampling rounds; a link between routers every round.

const base = { h2: false, quic: { idleTimeoutMs: 5000 }, routing: { rttSampleMs: 20, neighbourHoldDownMs: 50 } };

async function until(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const neighbours = (node: PnetNode) => nodeServices(node).neighbours;

t.test('RTT reads: every round between routers, once in 30 rounds on a single-homed leaf link', async (t) => {
  const hubs = [await createNode(base), await createNode(base)];
  const leaf = await createNode({ ...base, routing: { ...base.routing, role: 'leaf' } });
  t.teardown(() => Promise.all([...hubs, leaf].map((n) => n.close({ timeoutMs: 200 }))).then(() => undefined));
  await hubs[1]!.dial(hubs[0]!.address);
  await leaf.dial(hubs[0]!.address);
  await until('hub 1 routes to the leaf', () => hubs[1]!.routes().some((r) => r.nodeId === leaf.id));
  await until('the leaf defaults to hub 0', () => neighbours(leaf).router.defaultRoute === hubs[0]!.id);
  t.equal(neighbours(hubs[0]!).router.costChoosesPath(leaf.id), false, "the hub's stub link to a leaf attached to it alone");
  t.equal(neighbours(hubs[0]!).router.costChoosesPath(hubs[1]!.id), true, 'the link between the hubs');
  t.equal(neighbours(leaf).router.costChoosesPath(hubs[0]!.id), false, "the leaf's link to its one hub");
  // Counted in rounds, not time: a loaded machine runs fewer rounds, never more reads per round.
  const from = [hubs[0]!, leaf].map((n) => ({ ...neighbours(n).rttStats }));
  await until('90 sampling rounds on both', () => [hubs[0]!, leaf].every((n, i) => neighbours(n).rttStats.rounds - from[i]!.rounds >= 90), 60_000);
  const [hub, leafStats] = [hubs[0]!, leaf].map((n, i) => ({ rounds: neighbours(n).rttStats.rounds - from[i]!.rounds, samples: neighbours(n).rttStats.samples - from[i]!.samples }));
  t.ok(leafStats!.samples <= Math.ceil(leafStats!.rounds / 30) + 1, `the leaf read its one link ${leafStats!.samples} times in ${leafStats!.rounds} rounds`);
  t.ok(leafStats!.samples >= 1, 'but it is still read');
  // The hub: its router link every round, its leaf link once in 30.
  t.ok(hub!.samples >= hub!.rounds, `the hub read ${hub!.samples} times in ${hub!.rounds} rounds (its router link every round)`);
  t.ok(hub!.samples <= hub!.rounds + Math.ceil(hub!.rounds / 30) + 1, 'and its leaf link seldom');
});
