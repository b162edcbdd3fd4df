import t from 'tap';
import type { NodeId } from '../src/identity/index.js';
import { RoutingSimulation, randomConnectedGraph } from '../src/routing/testing.js';

// Thousands of routers in one process: slow on a loaded 2-core machine, so a generous file timeout.
t.setTimeout(600_000);

const ms = (since: number): string => `${Math.round(performance.now() - since)} ms`;

t.test('1,000-node random mesh converges to global shortest paths, and again after 50 link cuts', async (t) => {
  const N = 1000;
  let start = performance.now();
  const sim = new RoutingSimulation({ seed: 2024 });
  const ids = sim.addNodes(N);
  t.comment(`1,000 keys: ${ms(start)}`);
  const edges = randomConnectedGraph(N, 4, sim.random);
  t.equal(edges.length, 2000, 'average degree 4');
  // Link delays of 1..3 ms: costs 3, 5 or 7, so equal-cost ties are common.
  for (const [a, b] of edges) sim.connect(ids[a]!, ids[b]!, { delayMs: 1 + Math.floor(sim.random() * 3) });

  start = performance.now();
  t.ok(sim.runUntilIdle(60_000), 'converges');
  const convergedAt = sim.now;
  t.comment(`converged in ${convergedAt} ms of virtual time, ${ms(start)} wall; ${sim.counters.messagesSent} messages`);
  for (const id of [ids[0]!, ids[499]!, ids[999]!]) t.equal(sim.router(id).records().size, N, 'full map');

  start = performance.now();
  // Every router is checked against every destination (no sampling).
  const check = sim.checkRoutes();
  t.comment(`global check of ${check.checked} (router, destination) pairs: ${ms(start)}`);
  t.equal(check.checked, N * (N - 1));
  t.equal(check.mismatches, 0, 'every next hop equals the global shortest path (ties to the smaller id)');
  if (check.mismatches > 0) t.comment(JSON.stringify(check.examples.slice(0, 5)));

  // 50 random link cuts, one every 10 ms (partitions allowed: the check expects "unreachable" then).
  const up = sim.upLinks();
  const cuts: [NodeId, NodeId][] = [];
  for (let i = 0; i < 50; i++) cuts.push(up.splice(Math.floor(sim.random() * up.length), 1)[0]!);
  cuts.forEach(([a, b], i) => sim.at(sim.now + 10 * i, () => sim.cut(a, b)));
  start = performance.now();
  const sentBefore = sim.counters.messagesSent;
  const cutStart = sim.now;
  t.ok(sim.runUntilIdle(60_000), 'converges after the cuts');
  t.comment(`re-converged ${sim.now - cutStart - 490} ms (virtual) after the last cut, ${ms(start)} wall; ${sim.counters.messagesSent - sentBefore} messages`);
  start = performance.now();
  const check2 = sim.checkRoutes();
  t.equal(check2.mismatches, 0, 'every next hop still equals the global shortest path');
  if (check2.mismatches > 0) t.comment(JSON.stringify(check2.examples.slice(0, 5)));
  t.comment(`second check: ${ms(start)}`);
  const dropped = ids.map((id) => sim.router(id).stats().dropped).reduce((n, d) => n + d.forged + d.unsigned + d.malformed + d.oversized, 0);
  t.equal(dropped, 0, 'no honest record was ever refused');
});

t.test('lossy links, RTT jitter, slow failure detection, kills and restarts', async (t) => {
  const N = 150;
  const start = performance.now();
  const sim = new RoutingSimulation({
    seed: 77,
    lossRate: 0.03,
    rttJitter: 0.1,
    rttSampleIntervalMs: 500,
    detectDelayMs: 300,
    router: { recordLifetimeMs: 20_000, refreshIntervalMs: 2000 },
  });
  const ids = sim.addNodes(N);
  for (const [a, b] of randomConnectedGraph(N, 4, sim.random)) sim.connect(ids[a]!, ids[b]!, { delayMs: 1 + Math.floor(sim.random() * 10) });
  // Whatever the loss dropped is repaired by the next refresh: stop the loss, give every
  // node one refresh period (2 s), then every table must be exact.
  const settle = (): void => {
    t.ok(sim.runUntilIdle(60_000));
    sim.setLossRate(0);
    sim.runFor(2100);
    t.ok(sim.runUntilIdle(60_000));
  };
  sim.runFor(3000);
  settle();
  t.ok(sim.counters.messagesLost > 0, `${sim.counters.messagesLost} messages lost`);
  t.equal(sim.checkRoutes().mismatches, 0, 'converged despite loss');

  const victims = [ids[3]!, ids[40]!, ids[41]!, ids[99]!, ids[120]!];
  sim.setLossRate(0.03);
  for (const v of victims) sim.kill(v);
  sim.runFor(2000);
  settle(); // well within the 20 s lifetime of the victims' records
  t.equal(sim.checkRoutes().mismatches, 0, 'killed nodes vanish from every route table (two-way check, before expiry)');
  for (const v of victims) t.equal(sim.router(ids[0]!).nextHop(v), undefined);
  // The network may still hold the victims' last records: restarted routers (sequence 1 again) must jump above them.
  const held = victims.map((v) => sim.router(ids[0]!).records().get(v)?.seq);
  t.ok(held.some((x) => x !== undefined && x > 1n), `stale records held: ${held.join(', ')}`);
  sim.setLossRate(0.03);
  for (const v of victims) sim.restart(v);
  sim.runFor(3000);
  settle();
  t.equal(sim.checkRoutes().mismatches, 0, 'restarted nodes reachable again');
  victims.forEach((v, i) => {
    if (held[i] !== undefined) t.ok(sim.router(v).sequence > held[i]!, `sequence number recovered: ${sim.router(v).sequence} > ${held[i]}`);
  });
  // Every router holds each restarted node's current record.
  for (const v of victims) {
    const seq = sim.router(v).sequence;
    t.ok(ids.every((id) => sim.router(id).records().get(v)?.seq === seq), 'new record everywhere');
  }
  t.comment(`${N} lossy nodes, ${Math.round(sim.now / 1000)} s virtual: ${ms(start)} wall`);
});

t.test('routes-changed actions follow the changes and only them', async (t) => {
  const changes = new Map<NodeId, number>();
  const sim = new RoutingSimulation({
    seed: 5,
    delayMs: 2,
    router: { recordLifetimeMs: 60_000, refreshIntervalMs: 20_000 },
    onRoutesChanged: (node, changed) => changes.set(node, (changes.get(node) ?? 0) + changed.length),
  });
  const ids = sim.addNodes(30);
  for (let i = 0; i < 30; i++) sim.connect(ids[i]!, ids[(i + 1) % 30]!);
  t.ok(sim.runUntilIdle());
  t.equal(sim.checkRoutes().mismatches, 0);
  changes.clear();
  // Refreshes with identical links move no next hop: silence.
  sim.runFor(45_000);
  t.ok(sim.runUntilIdle());
  t.equal(changes.size, 0, 'no routes-changed from refreshes');
  t.ok(sim.router(ids[0]!).sequence >= 3n, 'refreshes happened');
  sim.cut(ids[0]!, ids[1]!);
  t.ok(sim.runUntilIdle());
  t.ok((changes.get(ids[0]!) ?? 0) > 0, 'a cut does report');
  t.equal(sim.checkRoutes().mismatches, 0);
});
