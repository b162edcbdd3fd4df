import t from 'tap';
import type { Test } from 'tap';
import { createNode } from '../src/index.js';
import type { NodeOptions, PnetError, PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

// Issue 17 item 5 on the fallback path: the stream relay carries the far end's request error
// codes, as relay v2 does (test/relay-v2-node.test.ts). The far end resets its leg with the code,
// each hop resets the next leg with the same code, the opener's tunnel fails with it (docs/RELAY.md).
t.setTimeout(90_000);

async function line(t: Test, size: number, each: (i: number) => NodeOptions): Promise<PnetNode[]> {
  const nodes: PnetNode[] = [];
  for (let i = 0; i < size; i++) nodes.push(await createNode({ routing: { rttSampleMs: 60_000 }, ...each(i) }));
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  // each node dials the one before it: an HTTP/2-only node dials out, never dialed at a UDP port it does not hold
  for (let i = 0; i + 1 < size; i++) await nodes[i + 1]!.dial(nodes[i]!.address);
  const deadline = Date.now() + 15_000;
  // the route to the far end itself (a count of routes can include a stray node from a reused port), at
  // every node before it: each hop of the stream relay looks its next hop up (a's route can come first)
  const far = nodes[size - 1]!.id;
  while (nodes.slice(0, -1).some((node) => node.path(far) === undefined) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  return nodes;
}

/** The far end's handlers: one that throws, one with a 10-byte limit, a stream reset with an application code. */
function serve(far: PnetNode): void {
  far.handleRequest('throws', () => {
    throw new Error('boom');
  });
  far.handleRequest('small', (request) => request, { maxRequestBytes: 10 });
  far.handle('resets', (stream) => stream.reset(7));
  far.handle('deaf', () => undefined); // listens for nothing on its stream, not even 'error'
  far.on('error', () => undefined);
}

async function errorsArriveWhole(t: Test, a: PnetNode, far: PnetNode): Promise<void> {
  t.ok(a.path(far.id), 'a has a route to the far end');
  await t.rejects(a.request(far.id, 'throws', 'x'), { code: 'ERR_HANDLER_FAILED' }, 'a throwing handler');
  await t.rejects(a.request(far.id, 'small', Buffer.alloc(100)), { code: 'ERR_REQUEST_TOO_LARGE' }, 'an oversized request');
  await t.rejects(a.request(far.id, 'small', Buffer.alloc(256 * 1024)), { code: 'ERR_REQUEST_TOO_LARGE' }, 'a much larger one (reset while the requester still writes)');
  await t.rejects(a.request(far.id, 'no-such-channel', 'x'), { code: 'UNKNOWN_CHANNEL' }, 'an unknown channel');
  // the reset may overtake the ACCEPT (a reset drops unsent data): the open or the stream fails with it
  const error = await a.openStream(far.id, 'resets').then(
    (stream) => new Promise<PnetError>((resolve) => stream.on('error', resolve).resume()),
    (failure: PnetError) => failure,
  );
  t.match(error, { code: 'ERR_STREAM_RESET', resetCode: 7 }, "an application reset keeps its code");
  // the other way: the opener resets with a code a far end does not listen for; the far end lives on
  const deaf = await a.openStream(far.id, 'deaf');
  deaf.write('x');
  deaf.reset(9);
  t.equal((await a.request(far.id, 'small', 'tiny')).toString(), 'tiny', 'and the next request works');
}

for (const [name, quic] of [['QUIC legs', true], ['HTTP/2 legs', false]] as const) {
  t.test(`stream relay (relay.datagrams false), 2 hops, ${name}: the far end's ERR_HANDLER_FAILED, ERR_REQUEST_TOO_LARGE, UNKNOWN_CHANNEL, reset codes`, async (t) => {
    const nodes = await line(t, 4, () => ({ quic, relay: { datagrams: false } }));
    const [a, b, c, d] = nodes as [PnetNode, PnetNode, PnetNode, PnetNode];
    t.equal(a.peers()[0]?.transport, quic ? 'quic' : 'h2');
    serve(d);
    await errorsArriveWhole(t, a, d);
    for (const hop of [b, c]) t.ok(nodeServices(hop).streams.relayStats().flows >= 6, 'every request went through the stream relay');
  });
}

t.test('the stream relay as fallback after a RELAY_REFUSED (an HTTP/2 neighbour without relay v2): the same codes', async (t) => {
  const nodes = await line(t, 3, (i) => (i === 2 ? { quic: false, relay: { datagrams: false } } : {}));
  const [a, b, c] = nodes as [PnetNode, PnetNode, PnetNode];
  serve(c);
  await errorsArriveWhole(t, a, c);
  t.ok(nodeServices(b).streams.relayStats().flows >= 6, 'through the stream relay');
  t.equal(a.peers().filter((peer) => peer.transport === 'relay').length, 0, 'no relayed QUIC connection');
});
