import t from 'tap';
import { createNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

t.setTimeout(60_000);

t.test('a link on HTTP/2 (the address remembered as HTTP/2-only) moves to QUIC in the background, and the memory is forgotten', async (t) => {
  const a = await createNode();
  const b = await createNode();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const { dialer } = nodeServices(a);
  // As after a fallback caused by a transient QUIC loss at start-up.
  dialer.h2Addresses.set(b.address, performance.now() + 10 * 60_000);
  await a.dial(b.address);
  t.equal(a.peers().find((peer) => peer.nodeId === b.id)?.transport, 'h2', 'dialed over HTTP/2 first');
  const deadline = performance.now() + 20_000;
  while (a.peers().find((peer) => peer.nodeId === b.id)?.transport !== 'quic' && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.equal(a.peers().find((peer) => peer.nodeId === b.id)?.transport, 'quic', 'the link moved to QUIC');
  t.equal(a.peers().filter((peer) => peer.nodeId === b.id).length, 1, 'one link to b');
  t.equal(a.dialStats.quicRecovered, 1, 'counted in dialStats.quicRecovered');
  t.ok(a.dialStats.quicRetries >= 1);
  t.notOk(dialer.h2Addresses.has(b.address), 'the address is no longer remembered as HTTP/2-only');
  // The HTTP/2 link drains after the duplicate grace; b stays a peer throughout.
  await new Promise((resolve) => setTimeout(resolve, 800));
  t.same(
    a.peers().filter((peer) => peer.nodeId === b.id).map((peer) => peer.transport),
    ['quic'],
    'still one link, on QUIC',
  );
});

t.test('the HTTP/2-only address memory is bounded, and evictions are counted', async (t) => {
  const a = await createNode({ h2: {} });
  t.teardown(() => a.close());
  const { dialer } = nodeServices(a);
  const remember = (dialer as unknown as { rememberH2(key: string): void }).rememberH2.bind(dialer);
  for (let i = 0; i <= 10_000; i++) remember(`10.0.${i >> 8}.${i & 255}:7300`);
  t.equal(dialer.h2Addresses.size, 10_000);
  t.equal(a.dialStats.rememberedEvicted, 1);
  t.notOk(dialer.h2Addresses.has('10.0.0.0:7300'), 'the oldest went first');
});
