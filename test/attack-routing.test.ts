// Issue 15 item 9: `pnet/routing` streams from a peer that is not a routing neighbour. Each one
// is a message of up to 64 KiB read whole; before, any connected peer could have every stream it
// opened read at once (1,000 per connection), uncounted. Now (src/node/routing-gate.ts) a peer's
// routing streams are read a few at a time and the rest wait unread (flow control holds their
// bytes); a non-neighbour reads 1 at a time with 64 admitted, the non-neighbours together 1,024,
// and every refusal is counted in node.stats().limits.
import t from 'tap';
import type { Test } from 'tap';
import type { Duplex } from 'node:stream';
import { createNode } from '../src/index.js';
import type { NodeId, PnetNode, NodeOptions } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { RoutingGate } from '../src/node/routing-gate.js';
import { until } from './fixtures/node-channels.js';

const A = 'a' as NodeId;
const B = 'b' as NodeId;

t.test('gate: a non-neighbour reads one stream at a time, 64 admitted, the rest refused and counted', async (t) => {
  const neighbours = new Set<NodeId>();
  const gate = new RoutingGate((peer) => neighbours.has(peer));
  const started: number[] = [];
  const tickets = [];
  for (let i = 0; i < 70; i++) tickets.push(gate.admit(A, () => started.push(i)));
  t.same(started, [0], 'only the first is read');
  t.equal(tickets.filter((ticket) => ticket !== undefined).length, 64, '64 admitted');
  t.equal(gate.stats.refusedPeerLimit, 6, 'the rest refused, counted');
  t.throws(() => gate.check(A), { code: 'OVERLOADED' }, 'the authorise check refuses too');
  tickets[1]!.finish(); // a waiting stream that closed leaves the queue
  tickets[0]!.finish();
  t.same(started, [0, 2], 'the next waiting one is read when the first is done');
  t.equal(gate.stats.waited, 63);
  for (const ticket of tickets) ticket?.finish();
  t.equal(gate.stats.admitted, 0, 'all released');
  t.equal(gate.stats.admittedOthers, 0);
});

t.test('gate: a neighbour reads 4 at a time, and the non-neighbours share one node bound', async (t) => {
  const gate = new RoutingGate((peer) => peer === A, { admittedOthers: 100 });
  const read: NodeId[] = [];
  for (let i = 0; i < 10; i++) t.ok(gate.admit(A, () => read.push(A)));
  t.equal(read.length, 4, 'a neighbour: 4 read at once');
  let refused = 0;
  for (let k = 0; k < 5; k++) {
    for (let i = 0; i < 30; i++) if (gate.admit(`o${k}` as NodeId, () => undefined) === undefined) refused++;
  }
  t.equal(gate.stats.admittedOthers, 100, 'non-neighbours held to the node bound');
  t.equal(refused, 50);
  t.equal(gate.stats.refusedNodeLimit, 50);
  t.ok(gate.admit(A, () => undefined), 'a neighbour is not held by it');
  t.ok(gate.admit(B, () => undefined) === undefined, 'a new non-neighbour is');
});

async function node(t: Test, options: NodeOptions = {}): Promise<PnetNode> {
  const n = await createNode({ listen: '127.0.0.1:0', h2: false, ...options });
  t.teardown(() => n.close({ timeoutMs: 200 }));
  return n;
}

t.test('over QUIC: a peer that never says hello holds 300 routing streams; a good neighbour still joins', async (t) => {
  const victim = await node(t);
  victim.handleRequest('svc', () => 'pong');
  // Never says hello, so it never becomes the victim's routing neighbour.
  const attacker = await node(t, { routing: { neighbourHoldDownMs: 600_000 } });
  await attacker.dial(victim.address);
  const streams: Duplex[] = [];
  const opened = [];
  for (let i = 0; i < 300; i++) {
    opened.push(
      nodeServices(attacker)
        .streams.openDirect(victim.id, 'pnet/routing', { optimistic: true })
        .then((stream) => {
          stream.on('error', () => undefined);
          stream.write(Buffer.alloc(2048, 7)); // a message that never ends
          streams.push(stream);
        }),
    );
  }
  await Promise.all(opened);
  await until(() => victim.stats().limits.routingStreamsPeerLimit >= 300 - 64, 20_000);
  const limits = victim.stats().limits;
  t.equal(limits.routingStreamsPeerLimit, 236, '236 refused over the non-neighbour share (64), counted');
  t.equal(limits.routingStreamsNodeLimit, 0);
  const good = await node(t);
  good.handleRequest('svc', () => 'pong');
  await good.dial(victim.address);
  await until(() => victim.path(good.id)?.length === 2 && good.path(victim.id)?.length === 2, 10_000);
  t.pass('the good peer became a routing neighbour both ways');
  t.equal((await good.request(victim.id, 'svc', 'ping')).toString(), 'pong');
  for (const stream of streams) stream.destroy();
});
