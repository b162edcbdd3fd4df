import t from 'tap';
import type { NodeId } from '../src/identity/index.js';
import { Router, encodeMessage, encodeRecord } from '../src/routing/router/index.js';
import { seededSigner } from '../src/routing/testing.js';

// What a 10,000-node fan-out in one process showed (bench/fanout.mjs): a loaded event loop
// moves RTT samples for longer than the cost hold, and every leaf re-signed and re-sent its
// record for it (17,259 records during three fan-outs), which its hub verified. A leaf's costs
// choose no path but its own default route, so a cost move re-chooses that and publishes nothing.

/** Feeds `rtt` samples every second from `from` to `to` (ms); returns the send actions seen. */
function samples(r: Router, peer: NodeId, rtt: number, from: number, to: number): number {
  let sends = 0;
  for (let now = from; now <= to; now += 1000) {
    for (const action of r.rttSample(peer, rtt, now)) if (action.type === 'send') sends++;
    for (const action of r.tick(now)) if (action.type === 'send') sends++;
  }
  return sends;
}

for (const role of ['leaf', 'router'] as const) {
  t.test(`a ${role} whose link cost moves`, async (t) => {
    const [me, a, b] = [seededSigner(77, 0), seededSigner(77, 1), seededSigner(77, 2)];
    const r = new Router({ signer: me, role });
    r.neighbourUp(a.nodeId, 0, 10, { role: 'router' });
    r.neighbourUp(b.nodeId, 0, 30, { role: 'router' });
    samples(r, a.nodeId, 10, 1000, 10_000);
    samples(r, b.nodeId, 30, 1000, 10_000);
    const published = r.stats().published;
    t.ok(published >= 1, 'published its links');
    if (role === 'leaf') t.equal(r.defaultRoute, a.nodeId, 'defaults to the faster router');
    // a slows down for well over the cost hold (30 s).
    let sends = 0;
    for (let now = 11_000; now <= 80_000; now += 1000) {
      sends += samples(r, a.nodeId, 200, now, now);
      sends += samples(r, b.nodeId, 30, now, now);
    }
    if (role === 'leaf') {
      t.equal(r.defaultRoute, b.nodeId, 'the default route follows the cost');
      t.equal(r.stats().published, published, 'nothing re-published for a cost');
      t.equal(sends, 0, 'nothing sent');
    } else {
      t.ok(r.stats().published > published, 'a router announces its new cost');
    }
  });
}

t.test("a hub whose link to a leaf moves: nothing for a leaf attached to it alone, a new cost for a dual-homed one", async (t) => {
  for (const dual of [false, true]) {
    const [hub, leaf, other] = [seededSigner(78, 0), seededSigner(78, 1), seededSigner(78, 2)];
    const r = new Router({ signer: hub });
    r.neighbourUp(leaf.nodeId, 0, 10, { role: 'leaf' });
    const links = [{ to: hub.nodeId, cost: 11 }, ...(dual ? [{ to: other.nodeId, cost: 11 }] : [])];
    const record = encodeRecord({ origin: leaf.nodeId, seq: 1n, leaf: true, lifetimeMs: 3_600_000, links }, (d) => leaf.sign(d));
    r.recordReceived(leaf.nodeId, encodeMessage([{ remainingMs: 3_600_000, record }]), 100);
    samples(r, leaf.nodeId, 10, 1000, 10_000);
    const published = r.stats().published;
    samples(r, leaf.nodeId, 200, 11_000, 80_000);
    if (dual) t.ok(r.stats().published > published, 'dual-homed: the new cost is announced (it chooses between the leaf\'s routers)');
    else t.equal(r.stats().published, published, 'single-homed: nothing re-published');
  }
});

// Which links need a per-second RTT sample (issue 14: a hub's per-connection cost): only those
// whose cost can choose a path. The node glue reads the others once in 30 rounds.
t.test('costChoosesPath: a leaf with one router, a hub and its single-homed leaf: no; two routers, a dual-homed leaf, a router link: yes', async (t) => {
  const [me, a, b, l] = [seededSigner(79, 0), seededSigner(79, 1), seededSigner(79, 2), seededSigner(79, 3)];
  const leaf = new Router({ signer: me, role: 'leaf' });
  t.equal(leaf.costChoosesPath(a.nodeId), false, 'not a neighbour');
  leaf.neighbourUp(a.nodeId, 0, 10, { role: 'router' });
  leaf.neighbourUp(l.nodeId, 0, 10, { role: 'leaf' });
  t.equal(leaf.costChoosesPath(a.nodeId), false, 'a leaf with one router: nothing to choose');
  leaf.neighbourUp(b.nodeId, 0, 10, { role: 'router' });
  t.equal(leaf.costChoosesPath(a.nodeId), true, 'two routers: the cost chooses the default route');
  t.equal(leaf.costChoosesPath(l.nodeId), false, 'a link to another leaf never carries a route');
  for (const dual of [false, true]) {
    const hub = new Router({ signer: me });
    hub.neighbourUp(a.nodeId, 0, 10, { role: 'router' });
    hub.neighbourUp(l.nodeId, 0, 10, { role: 'leaf' });
    t.equal(hub.costChoosesPath(a.nodeId), true, 'a link between routers');
    t.equal(hub.costChoosesPath(l.nodeId), true, 'a leaf whose record is not in yet: sampled');
    const links = [{ to: me.nodeId, cost: 11 }, ...(dual ? [{ to: b.nodeId, cost: 11 }] : [])];
    const record = encodeRecord({ origin: l.nodeId, seq: 1n, leaf: true, lifetimeMs: 3_600_000, links }, (d) => l.sign(d));
    hub.recordReceived(l.nodeId, encodeMessage([{ remainingMs: 3_600_000, record }]), 100);
    t.equal(hub.costChoosesPath(l.nodeId), dual, dual ? 'a dual-homed leaf: its stub cost is announced' : 'a leaf attached to this hub alone');
  }
});
