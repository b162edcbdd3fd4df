// Issue 15, the stream relay (docs/LIMITS.md): a whole-node cap on relayed streams besides each
// upstream neighbour's share; at the cap the neighbour holding the most gives back its oldest
// relayed stream to a neighbour holding fewer, else the request is refused RELAY_REFUSED; both
// counted in node.stats(). Real nodes over loopback: a1 and a2 reach c through b.
import t from 'tap';
import { createNode } from '../src/index.js';
import type { NodeOptions, PnetNode, PnetStream } from '../src/index.js';
import { until } from './fixtures/node-channels.js';

t.setTimeout(90_000);

t.test('the relay hop holds maxStreams: eviction of the heaviest neighbour\'s oldest, then refusal, counted', async (t) => {
  const base: NodeOptions = { routing: { rttSampleMs: 60_000 }, relay: { datagrams: false } };
  const b = await createNode({ ...base, relay: { datagrams: false, maxStreams: 4, maxStreamsPerPeer: 3 } });
  const [a1, a2, c] = await Promise.all([createNode(base), createNode(base), createNode(base)]);
  t.teardown(() => Promise.all([a1, a2, b, c].map((node: PnetNode) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  c.handle('hold', (stream) => stream.resume()); // held open until the opener goes
  for (const node of [a1, a2, c]) await node.dial(b.address);
  await until(() => a1.path(c.id) !== undefined && a2.path(c.id) !== undefined, 20_000);

  const open = async (from: PnetNode): Promise<PnetStream> => {
    const stream = await from.openStream(c.id, 'hold', { timeoutMs: 10_000 });
    stream.on('error', () => undefined);
    stream.write('x');
    return stream;
  };
  const first = await open(a1);
  let firstClosed = false;
  first.on('close', () => (firstClosed = true));
  await open(a1);
  await open(a1);
  await t.rejects(open(a1), { code: 'RELAY_REFUSED' }, "a1's fourth: over its share of 3");
  await open(a2);
  await until(() => b.stats().relay.active === 4, 10_000);
  t.equal(b.stats().relay.active, 4, 'b relays 4 streams, its cap');

  await open(a2);
  await until(() => firstClosed, 10_000);
  t.ok(firstClosed, "a2's second stream got in: a1's oldest was cut (the old code had no node cap)");
  t.equal(b.stats().limits.relayEvicted, 1, 'eviction counted');
  await t.rejects(open(a2), { code: 'RELAY_REFUSED' }, "a2's third: a1 holds no more than a2 would, refused");
  const limits = b.stats().limits;
  t.equal(limits.relayNodeLimit, 1, 'node cap refusal counted');
  t.equal(limits.relayPeerLimit, 1, 'share refusal counted');
  t.ok(b.stats().relay.active <= 4, 'never above the cap');
});
