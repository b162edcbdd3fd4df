// Connection rotation (docs/LIMITS.md, "Streams ever opened on a connection"): quiche keeps the id
// of every stream it finished until its connection closes, so a long-lived connection carrying a
// stream per request grows native memory without bound. A node replaces a QUIC connection it
// dialed after `rotateAfterStreams` streams (both ends keep the fresh one; the old one's open
// streams finish on it), and closes an inbound one at twice the budget when its peer never does.
// Real nodes over loopback.
import t from 'tap';
import type { Test } from 'tap';
import { once } from 'node:events';
import { createNode } from '../src/index.js';
import type { PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { until } from './fixtures/node-channels.js';

t.setTimeout(90_000);
const BUDGET = 64;

function closeAll(nodes: PnetNode[]): Promise<void> {
  return Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined);
}

t.test('the dialer replaces a worn connection: requests both ways all answered, the peer never goes down, a long stream outlives its connection', async (t) => {
  const a = await createNode({ h2: false, rotateAfterStreams: BUDGET });
  const b = await createNode({ h2: false, rotateAfterStreams: BUDGET });
  t.teardown(() => closeAll([a, b]));
  for (const node of [a, b]) node.handleRequest('echo', (request) => request);
  b.handle('pipe', (stream) => stream.pipe(stream));
  const downs: string[] = [];
  a.on('peer:down', () => downs.push('a'));
  b.on('peer:down', () => downs.push('b'));
  await a.dial(b.address);

  // A stream opened on the first connection, used again after it was replaced.
  const long = await a.openStream(b.id, 'pipe');
  long.write('before ');
  const first = nodeServices(a).peers.live(b.id)!;

  const wrong: string[] = [];
  for (let i = 0; i < 3 * BUDGET; i++) if (String(await a.request(b.id, 'echo', `a${i}`)) !== `a${i}`) wrong.push(`a${i}`);
  for (let i = 0; i < 3 * BUDGET; i++) if (String(await b.request(a.id, 'echo', `b${i}`)) !== `b${i}`) wrong.push(`b${i}`);
  t.same(wrong, [], '384 requests, both ways, each answered with its own bytes');

  const rotated = a.stats().rotation.rotated;
  t.ok(rotated >= 4, `the dialer dialed a fresh connection ${rotated} times for 384 streams at a budget of 64`);
  await until(() => b.stats().rotation.replaced >= 4, 10_000);
  t.ok(a.stats().rotation.replaced >= 4 && b.stats().rotation.replaced >= 4, `both ends replaced the worn one (${a.stats().rotation.replaced}, ${b.stats().rotation.replaced})`);
  t.equal(b.stats().rotation.rotated, 0, 'the acceptor dials nothing');
  t.equal(b.stats().limits.connectionStreamBudget, 0, 'no connection closed over budget');
  const kept = nodeServices(a).peers.live(b.id)!;
  t.not(kept, first, 'the kept connection is a fresh one');
  t.ok(kept.streamsUsed < BUDGET + 8, `the kept connection has carried ${kept.streamsUsed} streams`);
  t.same(downs, [], 'the peer never went down at either end');
  t.equal(a.peers().length, 1);
  t.equal(b.peers().length, 1);

  await new Promise((resolve) => setTimeout(resolve, 700)); // past the duplicate's grace: the first connection is draining
  t.ok(first.closing && !first.closed, 'the replaced connection drains: it takes no new streams and stays open while its streams last (or 5 minutes)');
  long.end('after');
  const chunks: Buffer[] = [];
  for await (const chunk of long) chunks.push(chunk as Buffer);
  t.equal(Buffer.concat(chunks).toString(), 'before after', 'the stream opened on the first connection still works after it was replaced');
  await until(() => first.closed, 10_000);
  t.ok(first.closed, 'it closed once its last stream ended');
});

t.test('an inbound connection whose peer never rotates is closed at twice the budget, counted', async (t) => {
  const b = await createNode({ h2: false, rotateAfterStreams: BUDGET });
  // The peer's budget is far away: it never dials a fresh connection.
  const c = await createNode({ h2: false, rotateAfterStreams: 1_000_000 });
  t.teardown(() => closeAll([b, c]));
  b.handleRequest('echo', (request) => request);
  await c.dial(b.address);
  const first = nodeServices(c).peers.live(b.id)!;
  const closed = once(first, 'close');
  let failed = 0;
  for (let i = 0; i < 2 * BUDGET + 16; i++) await c.request(b.id, 'echo', 'x', { timeoutMs: 5000 }).catch(() => failed++);
  await closed;
  t.equal(b.stats().limits.connectionStreamBudget, 1, 'closed once, counted in stats().limits');
  t.equal(b.stats().rotation.overBudgetClosed, 1);
  // Its close is graceful: streams the peer opens before it hears of it are still served (a few, bounded by the close's 5 s).
  t.ok(first.streamsUsed >= 2 * BUDGET && first.streamsUsed <= 3 * BUDGET, `closing began at ${2 * BUDGET} streams; it carried ${first.streamsUsed} in all`);
  t.equal(c.stats().rotation.rotated, 0);
  t.ok(failed <= 1, `requests that failed at the close: ${failed} (the close lets open streams finish)`);
  await c.dial(b.address);
  t.equal(String(await c.request(b.id, 'echo', 'again')), 'again', 'a fresh connection is served');
});

// The node-wide budget (maxStreamIdsHeld): many peers each far under their own rotateAfterStreams
// may together hold more of quiche's memory than the node allows; the most worn go first.
const FAR = 1_000_000;

async function hubWithPeers(t: Test, maxStreamIdsHeld: number): Promise<{ hub: PnetNode; peers: PnetNode[]; downs: string[] }> {
  const hub = await createNode({ h2: false, rotateAfterStreams: FAR, maxStreamIdsHeld });
  const peers = await Promise.all([0, 1, 2].map(() => createNode({ h2: false, rotateAfterStreams: FAR })));
  t.teardown(() => closeAll([hub, ...peers]));
  hub.handleRequest('echo', (request) => request);
  const downs: string[] = [];
  for (const node of [hub, ...peers]) node.on('peer:down', ({ nodeId }) => downs.push(nodeId));
  for (const peer of peers) await peer.dial(hub.address);
  return { hub, peers, downs };
}

t.test('over the node-wide budget the most worn connection is replaced by one the node dials back: its peer never goes down, the others are untouched', async (t) => {
  const { hub, peers, downs } = await hubWithPeers(t, 3000);
  const [heavy, ...light] = peers as [PnetNode, PnetNode, PnetNode];
  for (const peer of light) for (let i = 0; i < 200; i++) await peer.request(hub.id, 'echo', 'x');
  const lightBefore = light.map((peer) => nodeServices(hub).peers.live(peer.id)!);
  const heavyBefore = nodeServices(hub).peers.live(heavy.id)!;
  let sent = 0;
  let wrong = 0;
  for (; hub.stats().rotation.nodeBudgetRetired === 0 && sent < 4000; sent++) if (String(await heavy.request(hub.id, 'echo', `h${sent}`)) !== `h${sent}`) wrong++;
  t.equal(wrong, 0, 'every request answered with its own bytes');
  t.equal(hub.stats().rotation.nodeBudgetRetired, 1, `one connection retired, after the heavy peer's ${sent} requests`);
  t.equal(hub.stats().limits.nodeStreamBudget, 1, 'counted in stats().limits');
  t.ok(heavyBefore.streamsUsed >= 2000, `the heavy peer's connection had carried ${heavyBefore.streamsUsed} streams`);
  await until(() => heavy.stats().rotation.replaced >= 1 && hub.stats().rotation.replaced >= 1, 10_000);
  const heavyNow = nodeServices(hub).peers.live(heavy.id)!;
  t.not(heavyNow, heavyBefore, 'the hub keeps a fresh connection to the heavy peer');
  t.equal(heavyNow.direction, 'outbound', 'dialed back by the hub');
  t.equal(nodeServices(heavy).peers.live(hub.id)?.direction, 'inbound', 'the heavy peer keeps the same one');
  t.equal(String(await heavy.request(hub.id, 'echo', 'after')), 'after', 'and is served on it');
  t.same(light.map((peer) => nodeServices(hub).peers.live(peer.id)), lightBefore, "the light peers' connections are the same, open");
  t.same(downs, [], 'no peer went down at any node');
  await until(() => heavyBefore.closing, 10_000);
  t.ok(heavyBefore.closing, 'the worn connection drains');
});

t.test('over the node-wide budget a connection too fresh for the duplicate rule is closed (5 s for its open streams, a routing stream among them)', async (t) => {
  const { hub, peers } = await hubWithPeers(t, 300);
  const [heavy, light] = peers as [PnetNode, PnetNode, PnetNode];
  for (let i = 0; i < 20; i++) await light.request(hub.id, 'echo', 'x');
  const lightBefore = nodeServices(hub).peers.live(light.id)!;
  const heavyBefore = nodeServices(hub).peers.live(heavy.id)!;
  const closed = once(heavyBefore, 'close');
  let failed = 0;
  for (let i = 0; i < 400 && hub.stats().rotation.nodeBudgetRetired === 0; i++) await heavy.request(hub.id, 'echo', 'x').catch(() => failed++);
  await closed;
  t.equal(hub.stats().rotation.nodeBudgetRetired, 1, 'retired once');
  t.equal(failed, 0, 'no request failed');
  t.ok(heavyBefore.streamsUsed < 1024, `it had carried ${heavyBefore.streamsUsed} streams`);
  t.equal(nodeServices(hub).peers.live(light.id), lightBefore, "the light peer's connection is untouched");
  await heavy.dial(hub.address);
  t.equal(String(await heavy.request(hub.id, 'echo', 'again')), 'again', 'the heavy peer is served again on a fresh connection');
});

t.test('rotateAfterStreams and maxStreamIdsHeld must be positive integers', async (t) => {
  await t.rejects(createNode({ rotateAfterStreams: 0 }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ rotateAfterStreams: 1.5 }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ maxStreamIdsHeld: 0 }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ maxStreamIdsHeld: 2.5 }), { code: 'ERR_BAD_OPTION' });
});
