import t from 'tap';
import { Buffer } from 'node:buffer';
import type { NodeId } from '../src/identity/index.js';
import { Router, decodeMessage, decodeRecord, encodeMessage, encodeRecord, type Link, type RouterAction, type RouterOptions } from '../src/routing/router/index.js';
import { RoutingSimulation, seededSigner } from '../src/routing/testing.js';

// Timers and rates of a protocol that runs at scale: defaults, rate limits, cost hysteresis.

const SIGNERS = Array.from({ length: 12 }, (_, i) => seededSigner(777, i));
const ID = SIGNERS.map((s) => s.nodeId);

function router(i: number, options: Omit<RouterOptions, 'signer'> = {}): Router {
  return new Router({ ...options, signer: SIGNERS[i]! });
}

function sends(actions: readonly RouterAction[]): { to: NodeId; bytes: Uint8Array }[] {
  return actions.flatMap((a) => (a.type === 'send' ? [{ to: a.to, bytes: a.bytes }] : []));
}

function message(i: number, seq: bigint, links: Link[], lifetimeMs = 3_600_000): Uint8Array {
  const record = encodeRecord({ origin: ID[i]!, seq, lifetimeMs, links }, (d) => SIGNERS[i]!.sign(d));
  return encodeMessage([{ remainingMs: lifetimeMs, record }]);
}

/** Runs a router's timers up to `until` (the glue's job). */
function runTimers(r: Router, until: number, out: RouterAction[] = []): RouterAction[] {
  for (let d = r.nextDeadline(); d !== undefined && d <= until; d = r.nextDeadline()) out.push(...r.tick(d));
  return out;
}

t.test('defaults: records live an hour and are refreshed every 27-30 minutes', async (t) => {
  const r = router(0);
  r.neighbourUp(ID[1]!, 0, 2);
  const out = sends(runTimers(r, 100));
  t.equal(out.length, 1, 'published once, 50 ms after the change');
  const entries = decodeMessage(out[0]!.bytes, 1 << 16);
  t.ok(entries.ok);
  const rec = entries.ok ? decodeRecord(entries.value[0]!.record!) : undefined;
  t.equal(rec?.ok && rec.value.lifetimeMs, 3_600_000);
  const refresh = r.nextDeadline()!;
  t.ok(refresh >= 50 + 27 * 60_000 && refresh <= 50 + 30 * 60_000, `refresh at ${refresh} ms`);
  runTimers(r, 4 * 3_600_000);
  t.ok(r.sequence >= 8n && r.sequence <= 10n, `${r.sequence} publications in 4 h`);
});

t.test('origination rate limit: backoff from 1 s to one publication per 5 s under churn, fast again after quiet', async (t) => {
  const r = router(0);
  r.neighbourUp(ID[1]!, 0, 2);
  runTimers(r, 100);
  t.equal(r.sequence, 1n, 'first change: published after 50 ms');
  const times: number[] = [];
  // A new neighbour every second for a minute.
  const more = Array.from({ length: 60 }, (_, i) => seededSigner(778, i).nodeId);
  for (let s = 1; s <= 60; s++) {
    const before = r.sequence;
    r.neighbourUp(more[s - 1]!, s * 1000, 2);
    runTimers(r, s * 1000 + 999);
    if (r.sequence > before) times.push(r.record(ID[0]!)!.expiresAt - 3_600_000);
  }
  t.same(times.slice(0, 4), [1050, 3050, 7050, 12_050], 'holds of 1, 2, 4, then 5 s');
  const gaps = times.slice(1).map((x, i) => x - times[i]!);
  t.ok(gaps.slice(3).every((g) => g >= 5000), `then at most one per 5 s (${times.length} publications for 60 changes)`);
  t.ok(r.stats().publishRateLimited >= 10, 'held publications are counted');
  // Quiet for 5 s: the next change goes out within the publish delay again.
  runTimers(r, 80_000);
  const seq = r.sequence;
  r.neighbourUp(ID[3]!, 90_000, 2);
  runTimers(r, 90_050);
  t.equal(r.sequence, seq + 1n, 'after a quiet interval, 50 ms again');
  // A change undone before it leaves publishes nothing.
  r.neighbourDown(ID[3]!, 100_000);
  r.neighbourUp(ID[3]!, 100_010, 2);
  runTimers(r, 110_000);
  t.equal(r.sequence, seq + 1n, 'down and up again within the publish delay: no new version');
});

t.test('acceptance rate limit: versions within 1 s wait, the newest is taken, nothing is lost', async (t) => {
  const r = router(0, { publishDelayMs: 0, minPublishIntervalMs: 0, floodPacingMs: 0, spfDelayMs: 0, spfMinIntervalMs: 0 });
  r.neighbourUp(ID[1]!, 0, 2);
  r.neighbourUp(ID[2]!, 0, 2);
  runTimers(r, 10);
  const flooded = (actions: readonly RouterAction[]) => sends(actions).filter((s) => s.to === ID[2]);
  t.equal(flooded(r.recordReceived(ID[1]!, message(5, 1n, [{ to: ID[1]!, cost: 3 }]), 100)).length, 1, 'first version flooded at once');
  t.same(flooded(r.recordReceived(ID[1]!, message(5, 2n, [{ to: ID[1]!, cost: 4 }]), 300)), [], 'second waits');
  t.same(flooded(r.recordReceived(ID[1]!, message(5, 3n, [{ to: ID[1]!, cost: 5 }]), 400)), [], 'third replaces it');
  t.same(flooded(r.recordReceived(ID[1]!, message(5, 3n, [{ to: ID[1]!, cost: 5 }]), 500)), [], 'a copy of the waiting one is a duplicate');
  t.equal(r.record(ID[5]!)!.seq, 1n);
  t.equal(r.nextDeadline(), 1100);
  const later = flooded(runTimers(r, 1100));
  t.equal(r.record(ID[5]!)!.seq, 3n, 'the newest is accepted when the second is over');
  t.equal(later.length, 1, 'and flooded');
  const s = r.stats();
  t.equal(s.arrivalRateLimited, 2);
  t.equal(s.arrivalSuperseded, 1);
  t.equal(s.recordsAccepted, 2, 'version 2 was never verified nor stored');
});

t.test('cost hysteresis: a busy event loop does not re-flood, a lasting change does', async (t) => {
  const r = router(0);
  r.neighbourUp(ID[1]!, 0, 2);
  runTimers(r, 100);
  const seq = r.sequence;
  // 10 minutes of 1 s RTT samples around 2 ms, with a 10-second stall of 50-80 ms every minute.
  let now = 1000;
  for (let i = 0; i < 600; i++, now += 1000) {
    const stalled = i % 60 < 10;
    r.rttSample(ID[1]!, stalled ? 50 + (i % 3) * 15 : 2 + (i % 2), now);
    runTimers(r, now);
  }
  t.equal(r.sequence, seq, 'no re-publication from RTT noise and stalls');
  t.equal(r.neighbourCost(ID[1]!), 3);
  // The path really got slower: 40 ms for a minute.
  for (let i = 0; i < 60; i++, now += 1000) {
    r.rttSample(ID[1]!, 40, now);
    runTimers(r, now);
  }
  runTimers(r, now + 10_000);
  t.equal(r.sequence, seq + 1n, 'one re-publication');
  t.ok(r.neighbourCost(ID[1]!)! > 30, `cost now ${r.neighbourCost(ID[1]!)}`);
});

// ---------------------------------------------------------------------------
// Fragments, leaves and routers, in the simulation (virtual time, the real Router code).

/** Hubs in a ring (plus chords when more than 3), each with `leaves` single-homed leaves. */
function hubsAndLeaves(sim: RoutingSimulation, hubs: number, leaves: number): { hubIds: NodeId[]; leafIds: NodeId[][] } {
  const hubIds = sim.addNodes(hubs);
  for (let i = 0; i < hubs && hubs > 1; i++) if (hubs > 2 || i === 0) sim.connect(hubIds[i]!, hubIds[(i + 1) % hubs]!, { delayMs: 3 });
  const half = Math.floor(hubs / 2);
  for (let i = 0; half > 1 && i < half; i += 2) sim.connect(hubIds[i]!, hubIds[i + half]!, { delayMs: 4 });
  const leafIds = hubIds.map((hub) => {
    const ids = sim.addNodes(leaves, { role: 'leaf' });
    for (const leaf of ids) sim.connect(hub, leaf, { delayMs: 1 + Math.floor(sim.random() * 3) });
    return ids;
  });
  return { hubIds, leafIds };
}

function samplePairs(sim: RoutingSimulation, ids: NodeId[], count: number): [NodeId, NodeId][] {
  const pairs: [NodeId, NodeId][] = [];
  while (pairs.length < count) {
    const a = ids[Math.floor(sim.random() * ids.length)]!;
    const b = ids[Math.floor(sim.random() * ids.length)]!;
    if (a !== b) pairs.push([a, b]);
  }
  return pairs;
}

t.test('a hub with 1,100 leaves: fragments, routes to all of them, one fragment per leaf change', async (t) => {
  const sim = new RoutingSimulation({ seed: 31, delayMs: 2 });
  const [hub, other] = sim.addNodes(2);
  sim.connect(hub!, other!);
  const leaves = sim.addNodes(1100, { role: 'leaf' });
  for (const leaf of leaves) sim.connect(hub!, leaf);
  t.ok(sim.runUntilIdle(60_000), 'converges');
  const h = sim.router(hub!);
  t.equal(h.routeCount, 1101, 'the hub routes to all of its 1,101 neighbours (no 1,024 cap)');
  const rec = sim.router(other!).record(hub!)!;
  t.equal(rec.fragments, Math.ceil(1101 / 64), 'the hub announces its links in 64-link fragments');
  t.equal(rec.links.length, 1101);
  t.equal(rec.links.filter((l) => l.stub).length, 1100, 'links to leaves are stubs');
  t.equal(sim.router(other!).routeCount, 1101, 'the other router reaches every leaf through the hub');
  t.equal(sim.checkRoutes().mismatches, 0);
  t.equal(sim.checkPaths(samplePairs(sim, leaves, 300)).mismatches, 0, 'leaf to leaf: up to the hub and down');
  // One leaf leaves: the other router receives one fragment, not the hub's whole record.
  sim.runFor(10_000);
  sim.resetTraffic();
  sim.kill(leaves[500]!);
  t.ok(sim.runUntilIdle(60_000));
  const got = sim.traffic(other!);
  t.equal(got.messagesReceived, 1);
  t.ok(got.bytesReceived < 2600, `${got.bytesReceived} bytes re-flooded for one leaf leaving`);
  t.equal(sim.router(other!).nextHop(leaves[500]!), undefined, 'gone from the map');
  t.equal(sim.checkRoutes().mismatches, 0);
});

t.test('leaves and routers: leaves hold no map, get no flood, route by default; routers carry them', async (t) => {
  const sim = new RoutingSimulation({ seed: 32 });
  const { hubIds, leafIds } = hubsAndLeaves(sim, 6, 40);
  const all = leafIds.flat();
  // Two dual-homed leaves.
  sim.connect(all[0]!, hubIds[3]!, { delayMs: 1 });
  sim.connect(all[41]!, hubIds[5]!, { delayMs: 9 });
  t.ok(sim.runUntilIdle(60_000), 'converges');
  t.equal(sim.checkRoutes().mismatches, 0, 'routers: exact next hops');
  // A dual-homed leaf sends everything to its cheaper router (it has no map to choose per
  // destination), so exact shortest paths are checked from single-homed sources; towards the
  // dual-homed ones routers pick the better attachment.
  const dual = new Set([all[0]!, all[41]!]);
  const paths = sim.checkPaths(samplePairs(sim, all, 2000).filter(([a]) => !dual.has(a)));
  t.equal(paths.mismatches, 0, `${paths.checked} leaf-to-leaf paths are global shortest paths`);
  if (paths.mismatches > 0) t.comment(JSON.stringify(paths.examples.slice(0, 3)));
  const fromDual = sim.checkPaths(all.slice(100, 140).flatMap((b) => [[all[0]!, b] as const, [all[41]!, b] as const]));
  t.ok(fromDual.examples.every((e) => e.actualCost !== undefined), 'a dual-homed leaf reaches everyone through its default router');
  const leaf = sim.router(all[7]!);
  t.equal(leaf.records().size, 1, 'a leaf holds its own record only');
  t.equal(leaf.defaultRoute, hubIds[0], 'default route: its hub');
  t.equal(leaf.nextHop(all[200]!), hubIds[0]);
  t.equal(leaf.nextHop(hubIds[0]!), hubIds[0]);
  t.same(leaf.routes().map((r) => r.dest), [hubIds[0]], 'routes(): its neighbours');
  t.same(leaf.path(all[200]!), undefined, 'paths beyond its neighbours are the routers\' business');
  t.same(leaf.path(hubIds[0]!), [all[7], hubIds[0]]);
  t.equal(sim.router(hubIds[1]!).record(all[7]!), undefined, 'a leaf\'s record stays with its own routers');
  t.ok(sim.router(hubIds[0]!).record(all[7]!)?.leaf, 'its router holds it');
  t.equal(sim.router(all[0]!).defaultRoute, hubIds[3], 'a dual-homed leaf defaults to its cheaper router');
  // At rest for two hours: leaves receive nothing, send their refreshes only.
  sim.resetTraffic();
  sim.runFor(2 * 3_600_000);
  const leafIn = all.reduce((n, id) => n + sim.traffic(id).bytesReceived, 0);
  const leafOut = all.reduce((n, id) => n + sim.traffic(id).bytesSent, 0) / all.length / 7200;
  t.equal(leafIn, 0, 'no flood reaches a leaf');
  t.ok(leafOut < 1, `a leaf sends ${leafOut.toFixed(3)} B/s at rest`);
  t.equal(sim.checkRoutes().mismatches, 0, 'refreshes keep everything');
});

t.test('a hub restart: its leaves and the other routers reconverge within seconds', async (t) => {
  const sim = new RoutingSimulation({ seed: 33, detectDelayMs: 500 });
  const { hubIds, leafIds } = hubsAndLeaves(sim, 4, 150);
  const all = leafIds.flat();
  t.ok(sim.runUntilIdle(60_000));
  sim.runFor(600_000);
  const hub = hubIds[1]!;
  sim.kill(hub);
  // Its leaves go too (a smaller set comes back), so the old run's last fragments go stale.
  for (const leaf of leafIds[1]!.slice(100)) sim.kill(leaf);
  t.ok(sim.runUntilIdle(60_000));
  t.equal(sim.checkPaths(samplePairs(sim, all.filter((id) => sim.isAlive(id)), 500)).mismatches, 0, 'the others route around the dead hub');
  const back = sim.now;
  sim.restart(hub);
  t.ok(sim.runUntilIdle(60_000));
  const last = sim.now;
  t.ok(last - back <= 10_000, `idle ${last - back} ms (virtual) after the hub came back`);
  t.ok(sim.router(hub).stats().sequenceRecovered >= 1, 'the hub jumped above its old sequence numbers');
  const alive = all.filter((id) => sim.isAlive(id));
  t.equal(sim.checkRoutes().mismatches, 0);
  t.equal(sim.checkPaths(samplePairs(sim, alive, 1000)).mismatches, 0, 'every sampled leaf pair routes on a shortest path again');
  const seen = sim.router(hubIds[0]!).record(hub)!;
  t.equal(sim.router(hub).neighbours().length, 2 + 100);
  t.same(seen.links.map((l) => l.to).sort(), sim.router(hub).neighbours().map((n) => n.nodeId).sort(), 'the others hold exactly its live links (stale fragments withdrawn)');
});

t.test('without role hints, routers learn roles from the records themselves', async (t) => {
  const sim = new RoutingSimulation({ seed: 34, roleHints: false });
  const { leafIds } = hubsAndLeaves(sim, 3, 20);
  t.ok(sim.runUntilIdle(60_000));
  t.equal(sim.checkRoutes().mismatches, 0);
  t.equal(sim.checkPaths(samplePairs(sim, leafIds.flat(), 300)).mismatches, 0);
  const leaf = sim.router(leafIds[0]![0]!);
  t.ok(leaf.neighbours().every((n) => n.role === 'router'), 'the leaf knows its hub is a router');
});

t.test('RTT noise on every link (±30 %, a sample per second) re-publishes nothing at rest', async (t) => {
  const sim = new RoutingSimulation({ seed: 35, rttSampleIntervalMs: 1000, rttJitter: 0.3 });
  const { hubIds, leafIds } = hubsAndLeaves(sim, 3, 50);
  const all = [...hubIds, ...leafIds.flat()];
  t.ok(sim.runUntilIdle(60_000));
  sim.runFor(60_000);
  const published = () => all.reduce((n, id) => n + sim.router(id).stats().published, 0);
  const before = published();
  sim.resetTraffic();
  sim.runFor(10 * 60_000);
  t.equal(published() - before, 0, 'no publication in 10 minutes of noisy samples (refresh is at 27-30 min)');
  const hubBytes = hubIds.reduce((n, id) => n + sim.traffic(id).bytesSent + sim.traffic(id).bytesReceived, 0);
  t.equal(hubBytes, 0, 'no routing traffic at all');
  t.equal(sim.checkRoutes().mismatches, 0);
});

t.test('a refresh is flooded after a short random delay, so copies from other routers cancel ours', async (t) => {
  const bytesAtRest = (delay: number): number => {
    const sim = new RoutingSimulation({ seed: 36, router: { recordLifetimeMs: 360_000, refreshIntervalMs: 120_000, refreshFloodDelayMs: delay } });
    const ids = sim.addNodes(8);
    for (let i = 0; i < 8; i++) for (let j = i + 1; j < 8; j++) sim.connect(ids[i]!, ids[j]!, { delayMs: 2 + ((i * 7 + j) % 5) });
    t.ok(sim.runUntilIdle(60_000));
    sim.runFor(60_000);
    const before = sim.counters.bytesSent;
    sim.runFor(1_200_000);
    t.equal(sim.checkRoutes().mismatches, 0);
    return sim.counters.bytesSent - before;
  };
  const plain = bytesAtRest(0);
  const delayed = bytesAtRest(2000);
  t.ok(delayed < 0.7 * plain, `a full mesh of 8 routers at rest: ${delayed} bytes with the delay, ${plain} without`);
});
