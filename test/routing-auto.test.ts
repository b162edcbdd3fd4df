import t from 'tap';
import type { NodeId } from '../src/identity/index.js';
import { Router, encodeMessage, encodeRecord } from '../src/routing/router/index.js';
import { RoutingSimulation, seededSigner } from '../src/routing/testing.js';

// Role 'auto' in virtual time (the real Router code in the routing simulation): a node is a leaf
// until a neighbour attaches to it (inbound) or two of its neighbours are routers; it becomes a
// leaf again only after that has stopped for the demotion hold (5 min, doubling).

function samplePairs(sim: RoutingSimulation, ids: readonly NodeId[], count: number): [NodeId, NodeId][] {
  const pairs: [NodeId, NodeId][] = [];
  while (pairs.length < count) {
    const a = ids[Math.floor(sim.random() * ids.length)]!;
    const b = ids[Math.floor(sim.random() * ids.length)]!;
    if (a !== b) pairs.push([a, b]);
  }
  return pairs;
}

function allPairs(ids: readonly NodeId[]): [NodeId, NodeId][] {
  return ids.flatMap((a) => ids.filter((b) => b !== a).map((b) => [a, b] as [NodeId, NodeId]));
}

t.test('option: auto is accepted, starts as a leaf; anything else is refused', async (t) => {
  const r = new Router({ signer: seededSigner(5, 0), role: 'auto' });
  t.equal(r.role, 'leaf');
  t.equal(new Router({ signer: seededSigner(5, 1) }).role, 'router', 'the Router default stays router');
  t.throws(() => new Router({ signer: seededSigner(5, 2), role: 'hub' as 'auto' }), { code: 'ERR_BAD_OPTION' });
});

t.test('a hub and 200 hosts, all auto, hosts dial the hub: the hub becomes the router, hosts stay leaves', async (t) => {
  const sim = new RoutingSimulation({ seed: 41, router: { role: 'auto' } });
  const [hub, other] = sim.addNodes(2);
  sim.connect(other!, hub!, { delayMs: 3, dialer: other! });
  const hosts = sim.addNodes(200);
  for (const h of hosts) sim.connect(h, sim.random() < 0.5 ? hub! : other!, { delayMs: 1 + Math.floor(sim.random() * 3), dialer: h });
  t.ok(sim.runUntilIdle(60_000), 'converges');
  t.equal(sim.role(hub!), 'router');
  t.equal(sim.role(other!), 'router', 'a second hub dialling the first: both routers (inbound leaves)');
  t.ok(hosts.every((h) => sim.role(h) === 'leaf'), 'every host is a leaf');
  t.equal(sim.router(hub!).stats().roleChanges, 1, 'the hub changed role once');
  t.ok(hosts.every((h) => sim.router(h).stats().roleChanges === 0), 'hosts never changed');
  t.ok(hosts.every((h) => sim.router(h).records().size === 1), 'hosts hold no map');
  t.equal(sim.checkRoutes().mismatches, 0, 'routers: exact next hops');
  t.equal(sim.checkPaths(samplePairs(sim, hosts, 2000)).mismatches, 0, 'host to host: shortest paths');
  sim.resetTraffic();
  sim.runFor(3_600_000);
  t.ok(hosts.every((h) => sim.traffic(h).bytesReceived === 0), 'no flood reaches a host at rest');
  t.ok(hosts.every((h) => sim.role(h) === 'leaf') && sim.role(hub!) === 'router', 'roles hold at rest');
});

t.test('a line where each node dials the previous one: the far end is a leaf, every pair reachable', async (t) => {
  const sim = new RoutingSimulation({ seed: 42, router: { role: 'auto' } });
  const ids = sim.addNodes(6);
  for (let i = 1; i < ids.length; i++) sim.connect(ids[i]!, ids[i - 1]!, { delayMs: 2, dialer: ids[i]! });
  t.ok(sim.runUntilIdle(60_000));
  t.same(ids.map((id) => sim.role(id)), ['router', 'router', 'router', 'router', 'router', 'leaf']);
  t.equal(sim.checkRoutes().mismatches, 0);
  t.equal(sim.checkPaths(allPairs(ids)).mismatches, 0, 'all 30 pairs on shortest paths');
});

t.test('a node that only dials out but joins two routers becomes a router (it is the only way between them)', async (t) => {
  const sim = new RoutingSimulation({ seed: 43, router: { role: 'auto' } });
  const [a, b, c] = sim.addNodes(3);
  const leavesA = sim.addNodes(5, { role: 'leaf' });
  const leavesC = sim.addNodes(5, { role: 'leaf' });
  for (const l of leavesA) sim.connect(l, a!, { delayMs: 1, dialer: l });
  for (const l of leavesC) sim.connect(l, c!, { delayMs: 1, dialer: l });
  t.ok(sim.runUntilIdle(60_000));
  t.same([sim.role(a!), sim.role(b!), sim.role(c!)], ['router', 'leaf', 'router'], 'hubs routers, b alone a leaf');
  sim.connect(b!, a!, { delayMs: 2, dialer: b! });
  sim.connect(b!, c!, { delayMs: 2, dialer: b! });
  t.ok(sim.runUntilIdle(60_000));
  t.equal(sim.role(b!), 'router', 'b joined two routers: router');
  t.equal(sim.checkRoutes().mismatches, 0);
  t.equal(sim.checkPaths(allPairs([...leavesA, ...leavesC])).mismatches, 0, 'leaves of a reach leaves of c through b');
});

t.test('no flapping: a neighbour that comes and goes changes the role at most once per (doubling) hold', async (t) => {
  const run = (autoDemoteMs: number): { changes: number; sim: RoutingSimulation; x: NodeId; visitor: NodeId; leaves: NodeId[] } => {
    const sim = new RoutingSimulation({ seed: 44, router: { role: 'auto', autoDemoteMs } });
    const [hub, x, visitor] = sim.addNodes(3);
    const leaves = sim.addNodes(4, { role: 'leaf' });
    for (const l of leaves) sim.connect(l, hub!, { delayMs: 1, dialer: l });
    sim.connect(x!, hub!, { delayMs: 2, dialer: x! });
    sim.connect(visitor!, x!, { delayMs: 2, dialer: visitor! });
    t.ok(sim.runUntilIdle(60_000));
    // The visitor's link is up one minute in every 6.5, for four hours.
    for (let k = 0; k < 37; k++) {
      sim.runFor(60_000);
      sim.cut(visitor!, x!);
      sim.runFor(330_000);
      sim.restore(visitor!, x!);
    }
    t.ok(sim.runUntilIdle(60_000));
    return { changes: sim.router(x!).stats().roleChanges, sim, x: x!, visitor: visitor!, leaves };
  };
  const held = run(300_000);
  const unheld = run(1_000);
  t.ok(held.changes <= 6, `with the 5 min hold (doubling): ${held.changes} role changes in 4 h`);
  t.ok(unheld.changes >= 60, `with a 1 s hold: ${unheld.changes}`);
  t.equal(held.sim.role(held.x), 'router', 'the visitor is attached now: x routes');
  t.equal(held.sim.checkRoutes().mismatches, 0);
  t.equal(held.sim.checkPaths(allPairs([held.visitor, ...held.leaves])).mismatches, 0, 'the visitor reaches the hub leaves through x');
  t.equal(unheld.sim.checkRoutes().mismatches, 0, 'routes are right after every change, too');
});

t.test('a router that becomes a leaf: its old router records elsewhere carry no transit', async (t) => {
  const sim = new RoutingSimulation({ seed: 45, router: { role: 'auto' }, detectDelayMs: 500 });
  // r1 - r2 - r3 routers (fixed); x (auto) dials r1 and r3, with cheap links: the shortest way between r1 and r3.
  const [r1, r2, r3] = sim.addNodes(3, { role: 'router' });
  sim.connect(r1!, r2!, { delayMs: 20 });
  sim.connect(r2!, r3!, { delayMs: 20 });
  const x = sim.addNode();
  sim.connect(x, r1!, { delayMs: 1, dialer: x });
  sim.connect(x, r3!, { delayMs: 1, dialer: x });
  const leaves = [r1!, r3!].map((r) => {
    const l = sim.addNode(undefined, { role: 'leaf' });
    sim.connect(l, r, { delayMs: 1, dialer: l });
    return l;
  });
  // A leaf that x dialled: x announces it as a stub while x is a router.
  const lx = sim.addNode(undefined, { role: 'leaf' });
  sim.connect(x, lx, { delayMs: 1, dialer: x });
  t.ok(sim.runUntilIdle(60_000));
  t.equal(sim.role(x), 'router');
  t.same(sim.router(r1!).path(r3!), [r1, x, r3], 'x carries transit');
  sim.cut(x, r3!);
  sim.runFor(10_000);
  t.equal(sim.role(x), 'router', 'still a router during the hold');
  sim.runFor(300_000);
  t.ok(sim.runUntilIdle(60_000));
  t.equal(sim.role(x), 'leaf', 'a leaf after the hold');
  t.equal(sim.router(x).records().size, 1, 'it dropped the map');
  t.equal(sim.router(r2!).record(x)?.leaf, false, "r2 still holds x's last router record (a leaf's record travels one hop)");
  t.ok(sim.router(r2!).record(x)!.links.some((l) => l.to === lx && l.stub), 'which still lists lx as its stub');
  t.equal(sim.router(r2!).nextHop(lx), undefined, 'r2 does not route to lx through x (x is a leaf now: no transit)');
  t.ok(sim.router(r1!).record(r1!)!.links.some((l) => l.to === x && l.stub), 'r1 announces x as a stub');
  t.equal(sim.checkRoutes().mismatches, 0, 'no router routes through x');
  t.equal(sim.checkPaths(allPairs([...leaves, x, lx])).mismatches, 0);
  t.equal(sim.router(x).defaultRoute, r1, 'x defaults to r1');
});

t.test("a neighbour's own records outrank its hello, and an older record says nothing of its role", async (t) => {
  const [me, peer] = [seededSigner(46, 0), seededSigner(46, 1)];
  const r = new Router({ signer: me });
  const own = (seq: bigint, leaf: boolean): Uint8Array =>
    encodeMessage([{ remainingMs: 3_600_000, record: encodeRecord({ origin: peer.nodeId, seq, leaf, lifetimeMs: 3_600_000, links: [{ to: me.nodeId, cost: 2 }] }, (d) => peer.sign(d)) }]);
  r.neighbourUp(peer.nodeId, 0, 1, { role: 'leaf' });
  r.neighbourHint(peer.nodeId, { role: 'router' }, 10);
  t.equal(r.neighbourRole(peer.nodeId), 'router', 'before any record, a second hello updates the role');
  r.recordReceived(peer.nodeId, own(5n, true), 2_000);
  t.equal(r.neighbourRole(peer.nodeId), 'leaf', 'its record says leaf');
  r.neighbourHint(peer.nodeId, { role: 'router' }, 3_000);
  t.equal(r.neighbourRole(peer.nodeId), 'leaf', 'a hello that its records overtook changes nothing');
  r.recordReceived(peer.nodeId, own(3n, false), 4_000);
  t.equal(r.neighbourRole(peer.nodeId), 'leaf', 'an older record changes nothing');
  r.recordReceived(peer.nodeId, own(7n, false), 6_000);
  t.equal(r.neighbourRole(peer.nodeId), 'router', 'a newer record does');
});
