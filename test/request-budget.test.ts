// Issue 15 (docs/LIMITS.md, "requests being read"): the bytes of handleRequest requests a node
// holds have a per-peer share and a node budget. A peer sending many large requests at once gets
// OVERLOADED past its share instead of taking the node's memory; past the node budget the peer
// holding the most loses its largest request still being read to a lighter peer. Counted in
// node.stats().limits. Real nodes over loopback, then the accounting alone.
import t from 'tap';
import { createNode } from '../src/index.js';
import type { PnetError, PnetNode, PnetStream } from '../src/index.js';
import { RequestBudget } from '../src/node/request-budget.js';
import type { RequestRead } from '../src/node/request-budget.js';
import { until } from './fixtures/node-channels.js';

t.setTimeout(90_000);
const KiB = 1024;

t.test('a peer over its share gets OVERLOADED, a lighter peer evicts it at the node budget, bytes come back', async (t) => {
  const b = await createNode({ requests: { maxBytesInFlightPerPeer: 1024 * KiB, maxBytesInFlight: 1536 * KiB } });
  const a = await createNode();
  const c = await createNode();
  t.teardown(() => Promise.all([a, b, c].map((node: PnetNode) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  b.handleRequest('up', (request) => String(request.length));
  await a.dial(b.address);
  await c.dial(b.address);

  // a: eight requests of 256 KiB written and never ended (held by b until they end).
  const held: PnetStream[] = [];
  const resets: number[] = [];
  for (let i = 0; i < 8; i++) {
    const stream = await a.openStream(b.id, 'up');
    stream.on('error', (error: PnetError) => resets.push(error.resetCode ?? -1));
    stream.resume();
    stream.write(Buffer.alloc(256 * KiB, i));
    held.push(stream);
  }
  await until(() => resets.length >= 1 && b.stats().limits.requestBytesPeerLimit >= 1, 20_000);
  t.ok(b.stats().limits.requestBytesPeerLimit >= 1, `over the peer's share counted (${b.stats().limits.requestBytesPeerLimit}; the old code held all 2 MiB)`);
  t.ok(resets.every((code) => code === 3), `a's streams over its share reset with code 3 (${resets.join(', ')})`);
  await t.rejects(a.request(b.id, 'up', Buffer.alloc(900 * KiB)), { code: 'OVERLOADED' }, "request() of a peer over its share rejects with OVERLOADED");

  // c, a lighter peer: its request fits once a's largest request being read is cut.
  const before = b.stats().limits.requestBytesEvicted;
  t.equal((await c.request(b.id, 'up', Buffer.alloc(700 * KiB))).toString(), String(700 * KiB), "c's 700 KiB request answered at the node budget");
  t.ok(b.stats().limits.requestBytesEvicted > before, 'by evicting one of a\'s requests, counted');

  // a ends its requests: their bytes come back (answered, or reset above), and a fits again.
  for (const stream of held) if (!stream.destroyed) stream.end();
  await until(() => held.every((stream) => stream.destroyed || stream.readableEnded), 20_000);
  t.equal((await a.request(b.id, 'up', Buffer.alloc(900 * KiB))).toString(), String(900 * KiB), 'a fits again once its requests ended');
});

t.test('the accounting: share, eviction of the heaviest peer\'s largest read, handlers not cut, bytes freed', async (t) => {
  const budget = new RequestBudget(100, 60);
  const cuts: string[] = [];
  const read = (peer: string, name: string): RequestRead => ({ peer: peer as RequestRead['peer'], bytes: 0, reading: true, cut: () => cuts.push(name) });
  const a1 = read('a', 'a1');
  const a2 = read('a', 'a2');
  t.ok(budget.charge(a1, 40));
  t.ok(budget.charge(a2, 20));
  t.notOk(budget.charge(a2, 1), 'a is at its share of 60');
  t.equal(budget.stats.bytesPeerLimit, 1);
  const b1 = read('b', 'b1');
  t.ok(budget.charge(b1, 30), 'b: 90 of 100');
  t.ok(budget.charge(b1, 20), 'b at 50 > 100: a (60) holds more than b would (50), its largest read is cut');
  t.same(cuts, ['a1']);
  t.equal(budget.stats.bytesEvicted, 1);
  t.equal(budget.heldBytes, 70);
  a2.reading = false; // their handlers run: not cut
  b1.reading = false;
  const c1 = read('c', 'c1');
  t.notOk(budget.charge(c1, 40), 'at the budget with nothing of a heavier peer being read: refused');
  t.equal(budget.stats.bytesNodeLimit, 1);
  t.same(cuts, ['a1'], 'no handler cut');
  budget.done(a2);
  budget.done(b1);
  budget.done(c1);
  t.equal(budget.heldBytes, 0, 'every byte freed');
});
