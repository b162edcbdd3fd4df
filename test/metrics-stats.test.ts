import t from 'tap';
import type { Test } from 'tap';
import dgram from 'node:dgram';
import { createNode } from '../src/index.js';
import type { NodeStats, PnetNode } from '../src/index.js';
import { collect, until } from './fixtures/node-channels.js';

// node.stats(): one snapshot of every layer's counters (docs/METRICS.md).

const options = { quic: { idleTimeoutMs: 3000 }, routing: { rttSampleMs: 200 } };

/** A line of nodes; the first speaks HTTP/2 only and has relay v2 off, so its relayed streams take the stream relay. */
async function line(t: Test, size: number): Promise<PnetNode[]> {
  const nodes: PnetNode[] = [];
  for (let i = 0; i < size; i++) {
    const node = await createNode(i === 0 ? { ...options, quic: false, relay: { datagrams: false } } : options);
    node.handle('echo', (stream) => void collect(stream).then((data) => stream.end(data)));
    node.handleRequest('hello', (request) => Buffer.concat([Buffer.from('hi '), request]));
    nodes.push(node);
  }
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  for (let i = 0; i + 1 < size; i++) await nodes[i]!.dial(nodes[i + 1]!.address);
  return nodes;
}

/** Every number in a snapshot, by dotted path (for monotonicity checks). */
function flatten(value: unknown, prefix = '', out = new Map<string, number>()): Map<string, number> {
  if (typeof value === 'number') out.set(prefix, value);
  else if (typeof value === 'object' && value !== null) for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, out);
  return out;
}

const GAUGES = new Set(['handshakes.pending', 'connections.quic', 'connections.h2', 'peers', 'streams', 'relay.active', 'negotiations.pending', 'negotiations.pendingPeers']);

t.test('a fresh node: every counter is zero and the snapshot is a plain object', async (t) => {
  const node = await createNode();
  t.teardown(() => node.close());
  const stats = node.stats();
  t.same(JSON.parse(JSON.stringify(stats)), stats, 'survives JSON');
  t.same(stats.connections, { quic: 0, h2: 0 });
  t.equal(stats.peers, 0);
  t.equal(stats.streams, 0);
  for (const [path, value] of flatten(stats)) if (!path.startsWith('routing.')) t.equal(value, 0, path);
  t.not(node.stats(), stats, 'each call is a new snapshot');
});

t.test('a line of three: connections, handshakes, negotiations, relay flows and bytes, routing, fan-out', async (t) => {
  const [a, b, c] = await line(t, 3);
  await until(() => a!.path(c!.id) !== undefined && c!.path(a!.id) !== undefined, 15_000);
  const before = b!.stats();
  t.same(a!.stats().connections, { quic: 0, h2: 1 }, 'a holds one HTTP/2 connection');
  t.same(b!.stats().connections, { quic: 1, h2: 1 }, 'b holds one of each');
  t.equal(before.peers, 2, 'b has two peers');
  t.same(a!.stats().handshakes.completed.h2, { inbound: 0, outbound: 1 });
  t.same(before.handshakes.completed, { quic: { inbound: 0, outbound: 1 }, h2: { inbound: 1, outbound: 0 } });
  t.same(a!.stats().handshakes.started, { quic: 0, h2: 1, fallbacks: 0, remembered: 0, refused: 0, quicRetries: 0, quicRecovered: 0, rememberedEvicted: 0 }, 'one HTTP/2 handshake started by a');
  t.equal(b!.stats().handshakes.started.quic, 1, 'one QUIC handshake started by b');
  t.ok(before.routing.recordsAccepted > 0, 'b accepted routing records');
  t.ok(before.routing.spfRuns > 0, 'b ran SPF');

  // A stream from a to c crosses b's relay.
  const stream = await a!.openStream(c!.id, 'echo');
  const payload = Buffer.alloc(64 * 1024, 7);
  const echoed = collect(stream);
  stream.end(payload);
  t.same((await echoed).length, payload.length, 'the echo came back through the relay');
  await until(() => b!.stats().relay.active === 0, 10_000);
  const relayed = b!.stats();
  t.equal(relayed.relay.flows - before.relay.flows, 1, 'b spliced one relayed flow');
  t.ok(relayed.relay.bytes - before.relay.bytes > 2 * payload.length, 'b forwarded both directions (plus TLS)');
  t.ok(relayed.negotiations.accepted > before.negotiations.accepted, 'b accepted the relay negotiation');
  t.ok(c!.stats().negotiations.accepted >= 1, 'c accepted the tunnelled echo negotiation');

  // A fan-out to every node: b serves a leg.
  const results = [];
  for await (const result of a!.fanout('all', 'hello', 'x')) results.push(result);
  t.equal(results.filter((result) => result.ok).length, 3, 'every node answered the fan-out');
  t.ok(a!.stats().fanout.legsSent >= 1, 'a sent a leg');
  t.ok(b!.stats().fanout.legsServed >= 1, 'b served a leg');

  // Counters never go down between snapshots.
  const after = flatten(b!.stats());
  for (const [path, value] of flatten(before)) {
    if (GAUGES.has(path) || path === 'negotiations.peakPending') continue;
    t.ok((after.get(path) ?? -1) >= value, `${path} is monotonic`);
  }
});

t.test('QUIC datagrams dropped by reason, and limits counted', async (t) => {
  const node = await createNode();
  t.teardown(() => node.close());
  const socket = dgram.createSocket('udp4');
  t.teardown(() => socket.close());
  const port = Number(node.address.split(':').pop());
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => socket.send(Buffer.from([0x40, 1, 2]), port, '127.0.0.1', () => resolve()));
  await until(() => (node.stats().datagramsDropped?.tooShort ?? 0) >= 3, 5000);
  const stats: NodeStats = node.stats();
  t.ok((stats.datagramsDropped?.tooShort ?? 0) >= 3, 'short datagrams counted as tooShort');
  t.equal(stats.limits.quicConnectionRefused, stats.datagramsDropped?.refused, 'the limit view reads the same counter');
});

t.test('an HTTP/2-only node counts its connections under h2', async (t) => {
  const a = await createNode({ quic: false });
  const b = await createNode({ quic: false });
  t.teardown(() => Promise.all([a.close(), b.close()]).then(() => undefined));
  await a.dial(b.address);
  await until(() => b.stats().connections.h2 === 1, 5000);
  t.same(a.stats().connections, { quic: 0, h2: 1 });
  t.same(a.stats().handshakes.completed.h2, { inbound: 0, outbound: 1 });
  t.equal(a.stats().handshakes.started.h2, 1);
  t.equal(a.stats().datagramsDropped, undefined, 'no QUIC: no drop counters');
});

t.test('relay v2: the middle node forwards datagrams, the ends count their relayed connection', async (t) => {
  const nodes: PnetNode[] = [];
  for (let i = 0; i < 3; i++) {
    const node = await createNode(options);
    node.handleRequest('hello', (request) => Buffer.concat([Buffer.from('hi '), request]));
    nodes.push(node);
  }
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  const [a, b, c] = nodes as [PnetNode, PnetNode, PnetNode];
  await a.dial(b.address);
  await b.dial(c.address);
  await until(() => a.path(c.id) !== undefined && c.path(a.id) !== undefined, 15_000);
  t.same((await a.request(c.id, 'hello', 'there')).toString(), 'hi there');
  const middle = b.stats().datagramRelay;
  t.ok(middle !== undefined, 'relay v2 runs by default');
  t.ok(middle!.forwarder.forwarded > 0 && middle!.forwarder.forwardedBytes > 0, 'b forwarded datagrams and bytes for others');
  t.equal(b.stats().limits.datagramRelayOverBudget, middle!.forwarder.overBudget, 'its limits read the forwarder');
  t.ok(a.stats().datagramRelay!.endpoint.sentBytes > 0, 'a sent on its relayed flow');
  t.ok(a.stats().datagramRelay!.connections >= 1, 'a holds a relayed connection');

  const off = await createNode({ relay: { datagrams: false } });
  t.teardown(() => off.close());
  t.equal(off.stats().datagramRelay, undefined, 'relay.datagrams false: no relay v2 counters');
  t.equal(off.stats().limits.datagramRelayOverBudget, 0);
});
