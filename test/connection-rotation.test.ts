// Connection rotation (docs/LIMITS.md, "Streams ever opened on a connection"): quiche keeps the id
// of every stream it finished until its connection closes, so a long-lived connection carrying a
// stream per request grows native memory without bound. A node replaces a QUIC connection it
// dialed after `rotateAfterStreams` streams (both ends keep the fresh one; the old one's open
// streams finish on it), and closes an inbound one at twice the budget when its peer never does.
// Real nodes over loopback.
import t from 'tap';
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

t.test('rotateAfterStreams must be a positive integer', async (t) => {
  await t.rejects(createNode({ rotateAfterStreams: 0 }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ rotateAfterStreams: 1.5 }), { code: 'ERR_BAD_OPTION' });
});
