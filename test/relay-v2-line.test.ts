// Relay v2 end to end in virtual time: simulated nodes, each with a Forwarder and a RelayEndpoint,
// joined by in-memory links (test/fixtures/relay-v2-sim.ts) and fixed next-hop tables.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { nodeIdAt } from '../src/routing/index.js';
import { HEADER_BYTES, INNER_DATAGRAM_SIZE, KeyTable, encodeData, type RelayFlow } from '../src/relay/v2/index.js';
import { Sim, line, type SimNode } from './fixtures/relay-v2-sim.js';

/** A QUIC v1 Initial-looking packet (opens a flow at the far end). */
function initial(size = INNER_DATAGRAM_SIZE): Buffer {
  const packet = randomBytes(size);
  packet[0] = 0xc0;
  packet[5] = 16;
  return packet;
}
/** A short-header packet with a random body. */
function packetOf(size: number): Buffer {
  const packet = randomBytes(size);
  packet[0] = 0x40 | (packet[0]! & 0x3f);
  return packet;
}
const sizes = (count: number): number[] => Array.from({ length: count }, (_, i) => 1 + ((i * 7919) % INNER_DATAGRAM_SIZE));

t.test('a line of 6 nodes (5 links, 4 relaying hops) carries datagrams byte-exact both ways', async (t) => {
  const sim = line(6);
  const [a, , , , , e] = sim.nodes as [SimNode, SimNode, SimNode, SimNode, SimNode, SimNode];
  const flow = a.endpoint.open(e.id, sim.now, 5);
  const forth = [initial(), ...sizes(200).map(packetOf), packetOf(INNER_DATAGRAM_SIZE)];
  for (const packet of forth) t.equal(flow.send(packet), true);
  sim.run();
  t.same(e.got.get(a.id), forth, 'every packet arrived at the far end, byte-exact, in order');
  t.equal(e.lastHopLimit, 16 - 4, 'four hops decremented the hop limit');
  const back = e.endpoint.flow(a.id)!;
  t.ok(back, 'the far end has a flow back to the opener');
  const answers = sizes(150).map((s) => packetOf(INNER_DATAGRAM_SIZE + 1 - s));
  for (const packet of answers) back.send(packet);
  sim.run();
  t.same(a.got.get(e.id), answers, 'and back');
  for (const hop of sim.nodes.slice(1, 5)) t.equal(hop.forwarder.stats.forwarded, forth.length + answers.length, `hop ${hop.index} forwarded all`);
  const drops = sim.nodes.map((n) => n.forwarder.stats.malformed + n.forwarder.stats.noRoute + n.forwarder.stats.loop + n.forwarder.stats.overBudget);
  t.same(drops, [0, 0, 0, 0, 0, 0], 'no drops');
  t.equal(a.endpoint.stats.sentBytes, forth.reduce((sum, p) => sum + HEADER_BYTES + p.length, 0));
});

t.test('hop limit: the opener refuses a route that is too long; a hop that runs out reports HOP_LIMIT', async (t) => {
  const sim = line(6, { endpoint: (i) => (i === 0 ? { hopLimit: 4 } : {}) });
  const [a, , , , hop4, e] = sim.nodes as [SimNode, SimNode, SimNode, SimNode, SimNode, SimNode];
  t.throws(() => a.endpoint.open(e.id, 0, 5), { code: 'HOP_LIMIT' }, 'known before sending');
  const flow = a.endpoint.open(e.id, 0); // route length unknown: the hops find out
  flow.send(initial());
  sim.run();
  t.equal(hop4.forwarder.stats.hopLimit, 1, 'dropped at the fourth link');
  t.equal(e.got.size, 0);
  t.equal(a.errors.length, 1, 'the opener heard about it');
  t.equal(a.errors[0]?.code, 'HOP_LIMIT');
  t.match(a.errors[0]?.message, hop4.id, 'from the hop that dropped it');
});

t.test('no route mid-path reports UNREACHABLE, a refusing hop RELAY_REFUSED', async (t) => {
  const sim = line(6);
  const [a, , hop2, hop3, , e] = sim.nodes as [SimNode, SimNode, SimNode, SimNode, SimNode, SimNode];
  hop3.routes.delete(e.key);
  const flow = a.endpoint.open(e.id, 0);
  flow.send(initial());
  sim.run();
  t.equal(hop3.forwarder.stats.noRoute, 1);
  t.equal(a.errors.shift()?.code, 'UNREACHABLE');
  hop2.allow = false;
  flow.send(packetOf(1000));
  sim.run();
  t.equal(hop2.forwarder.stats.refused, 1);
  t.equal(a.errors.shift()?.code, 'RELAY_REFUSED');
  hop2.allow = true;
  sim.computeRoutes();
  flow.send(initial());
  sim.run();
  t.equal(e.got.get(a.id)?.length, 1, 'delivered once the path is whole again');
});

t.test('over budget at a hop: dropped and counted, never queued; the budget refills with time', async (t) => {
  const sim = line(4, { forwarder: (i) => (i === 2 ? { datagramsPerSecond: 1000, burstMs: 10 } : {}) });
  const [a, , hop2, d] = sim.nodes as [SimNode, SimNode, SimNode, SimNode];
  const flow = a.endpoint.open(d.id, 0);
  flow.send(initial());
  for (let i = 0; i < 99; i++) flow.send(packetOf(500));
  sim.run();
  t.equal(d.got.get(a.id)?.length, 10, 'a burst of 10 ms at 1,000/s passed');
  t.equal(hop2.forwarder.stats.overBudget, 90);
  t.equal(a.errors.length, 0, 'no error report for congestion');
  sim.now += 1000;
  for (let i = 0; i < 5; i++) flow.send(packetOf(500));
  sim.run();
  t.equal(d.got.get(a.id)?.length, 15, 'a second later, more passes');
});

t.test('a route change mid-stream: datagrams take the new next hop, the flow goes on', async (t) => {
  // 0-1-2-3-4-5 with a bypass 1-6-3: routes go through 2 until 2 dies.
  const sim = new Sim(7, [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [1, 6], [6, 3]]);
  const a = sim.nodes[0]!;
  const e = sim.nodes[5]!;
  const flow = a.endpoint.open(e.id, 0);
  const sent = [initial(), ...sizes(999).map(packetOf)];
  for (let i = 0; i < sent.length; i++) {
    flow.send(sent[i]!);
    if (i % 10 === 9) {
      sim.run();
      sim.now += 1;
    }
    if (i === 500) {
      sim.down.add(2); // the hop dies; the router converges a moment later
      sim.computeRoutes();
    }
  }
  sim.run();
  const got = e.got.get(a.id) ?? [];
  t.equal(sim.nodes[2]!.forwarder.stats.forwarded > 0, true, 'hop 2 carried the first half');
  t.equal(sim.nodes[6]!.forwarder.stats.forwarded > 0, true, 'the bypass the rest');
  t.equal(got.length + sim.lost, sent.length, 'only what was in flight through the dead hop was lost');
  t.same(got.slice(-400), sent.slice(-400), 'after the change every datagram arrived, byte-exact');
  t.equal(e.endpoint.flowCount, 1, 'the same flow throughout');
  t.equal(e.endpoint.stats.unknownFlow, 0);
});

t.test('a micro-loop while routers disagree is caught where it turns back', async (t) => {
  const sim = new Sim(7, [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [1, 6], [6, 3]]);
  const [a, hop1, , , , e, hop6] = sim.nodes as SimNode[] as [SimNode, SimNode, SimNode, SimNode, SimNode, SimNode, SimNode];
  hop1.routes.set(e.key, 6); // hop 1 already moved to the bypass...
  hop6.routes.set(e.key, 1); // ...hop 6 still points back through 1
  const flow = a.endpoint.open(e.id, 0);
  flow.send(initial());
  sim.run();
  t.equal(hop6.forwarder.stats.loop, 1, 'dropped at 6: its next hop is where the datagram came from');
  t.equal(a.errors.length, 0, 'no report: a loop is a moment of convergence, QUIC resends');
  sim.computeRoutes();
  flow.send(initial());
  sim.run();
  t.equal(e.got.get(a.id)?.length, 1, 'delivered once routes agree');
});

t.test('10,000 flows through one hop cost the hop no memory per flow', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const sim = line(3, {
    // Budgets out of the way: this test is about memory, the budget test above about budgets.
    forwarder: () => ({ datagramsPerSecond: 1e12, bytesPerSecond: 1e15 }),
    endpoint: (i) => (i === 2 ? { maxFlows: 20_000, maxPendingFlows: 20_000, maxPendingFlowsPerHop: 20_000 } : {}),
  });
  const [, hop, d] = sim.nodes as [SimNode, SimNode, SimNode];
  const datagrams = Array.from({ length: 10_000 }, () => encodeData(16, d.key, randomBytes(32), initial(1200)));
  // Warm up with a datagram of one flow, so the measured pass compiles nothing new.
  const warm = encodeData(16, d.key, randomBytes(32), initial(1200));
  for (let i = 0; i < 20_000; i++) {
    warm[1] = 16;
    hop.forwarder.handleDatagram(0, warm, 0);
  }
  gc();
  const before = process.memoryUsage().heapUsed;
  let forwarded = 0;
  for (let round = 0; round < 3; round++) {
    for (const datagram of datagrams) {
      datagram[1] = 16;
      if (hop.forwarder.handleDatagram(0, datagram, 0).kind === 'forward') forwarded++;
    }
  }
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  t.equal(forwarded, 30_000, 'every datagram of every flow forwarded');
  t.comment(`hop heap growth after 10,000 flows x 3 datagrams: ${grown} bytes (${(grown / 10_000).toFixed(1)} B per flow)`);
  t.ok(grown < 2 * 1024 * 1024, 'well under 2 KiB per flow (the hop keeps none)');
  t.equal(hop.forwarder.neighbourCount, 1, 'its only map holds one budget per inbound neighbour');
  const collections = Object.values(hop.forwarder).filter((v) => v instanceof Map || v instanceof Set || v instanceof KeyTable);
  const sizes = collections.map((c) => (c as { size: number }).size);
  t.equal(sizes.length, 3, 'two other collections in the forwarder: the ways back and how many each neighbour holds');
  // This hop has no route to the 10,000 random sources, so it learns their way back, up to one neighbour's share, 512 (forwarder.ts WAY_BACK_MS).
  t.ok(sizes[1]! <= 512, `ways back bounded by the neighbour's share (${sizes[1]})`);
  t.equal(hop.forwarder.stats.waysBackRefused > 0, true, 'the rest refused, counted');
  // The far end does keep a flow each (it runs their QUIC connections).
  let created = 0;
  for (const datagram of datagrams) {
    datagram[1] = 16;
    const action = hop.forwarder.handleDatagram(0, datagram, 1);
    if (action.kind === 'forward' && d.forwarder.handleDatagram(1, action.datagram, 1).kind === 'deliver') {
      if (d.endpoint.receive(datagram, 1).kind === 'packet') created++;
    }
  }
  t.equal(created, 10_000);
  t.equal(d.endpoint.flowCount, 10_000);
});

t.test('the opener side learns UNREACHABLE from its own routes before sending anything', async (t) => {
  const sim = line(3);
  const stranger = nodeIdAt(randomBytes(32), 0);
  t.throws(() => sim.nodes[0]!.endpoint.open(stranger, 0), { code: 'UNREACHABLE' });
  t.equal(sim.nodes[0]!.endpoint.stats.sent, 0);
  const flows: RelayFlow[] = [];
  flows.push(sim.nodes[0]!.endpoint.open(sim.nodes[2]!.id, 0));
  t.equal(flows.length, 1);
});
