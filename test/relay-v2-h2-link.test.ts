import t from 'tap';
import { createNode } from '../src/index.js';
import type { PnetNode, NodeOptions } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

// Relay v2 over an HTTP/2 link: the hop sends the datagrams length-prefixed on one stream per
// link (src/relay/stream-link.ts) instead of refusing them, so a far node behind an HTTP/2-only
// link is still reached on one end-to-end QUIC connection.

const options: NodeOptions = { routing: { rttSampleMs: 200 } };
const relayPeers = (node: PnetNode): number => node.peers().filter((peer) => peer.transport === 'relay').length;

async function until(what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

t.test('a line a-b-c whose b-c link is HTTP/2 only: a reaches c on a relayed QUIC connection, and c reaches a', async (t) => {
  const a = await createNode(options);
  const b = await createNode(options);
  const c = await createNode({ ...options, quic: false });
  t.teardown(() => Promise.all([a, b, c].map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  for (const node of [a, c]) node.handleRequest('whoami', (request, info) => Buffer.concat([Buffer.from(`${node.id}<-${info.remoteNodeId}:`), request]));
  await a.dial(b.address);
  await c.dial(b.address); // c has only HTTP/2
  t.equal(b.peers().find((peer) => peer.nodeId === c.id)?.transport, 'h2', 'b-c is an HTTP/2 link');
  t.equal(b.peers().find((peer) => peer.nodeId === a.id)?.transport, 'quic', 'a-b is QUIC');
  await until('routes', () => a.path(c.id)?.length === 3 && c.path(a.id)?.length === 3);

  for (let i = 0; i < 5; i++) t.equal((await a.request(c.id, 'whoami', `r${i}`)).toString(), `${c.id}<-${a.id}:r${i}`);
  const relayed = nodeServices(a).datagrams!.live(c.id);
  t.ok(relayed, 'a relayed QUIC connection to c');
  t.equal(relayPeers(a), 1, "listed in a's peers() as 'relay'");
  t.equal(nodeServices(b).streams.relayStats().flows, 0, 'the hop spliced no relayed stream (no stream-relay fallback)');
  const links = nodeServices(b).datagrams!.stats().streamLinks;
  t.ok(links.sent > 0 && links.received > 0, `the hop moved datagrams on the HTTP/2 link stream both ways (${links.sent} sent, ${links.received} received)`);
  t.equal(links.streams, 1, 'one stream for the link');
  t.equal(nodeServices(b).datagrams!.forwarder.stats.tooBig, 0, 'nothing refused for want of room');

  // a bigger transfer on the same connection, then the other direction (c's first hop is the HTTP/2 link)
  a.handle('echo', (stream) => stream.pipe(stream));
  c.handle('echo', (stream) => stream.pipe(stream));
  const payload = Buffer.alloc(2 * 1024 * 1024);
  for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
  const stream = await a.openStream(c.id, 'echo');
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise((resolve) => stream.on('end', resolve));
  stream.end(payload);
  await ended;
  t.ok(Buffer.concat(chunks).equals(payload), '2 MiB echoed byte-exact over the HTTP/2 link stream');
  t.equal(nodeServices(a).datagrams!.live(c.id), relayed, 'on the same relayed connection');
  t.equal((await c.request(a.id, 'whoami', 'back')).toString(), `${a.id}<-${c.id}:back`, 'c reaches a back');
  t.equal(nodeServices(b).datagrams!.stats().streamLinks.streams, 1, 'still one stream for the link');
});

t.test('an HTTP/2 neighbour without the link channel (relay.datagrams false): RELAY_REFUSED, and the stream relay carries it', async (t) => {
  const a = await createNode(options);
  const b = await createNode(options);
  const c = await createNode({ ...options, quic: false, relay: { datagrams: false } });
  t.teardown(() => Promise.all([a, b, c].map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  c.handleRequest('whoami', (request, info) => Buffer.concat([Buffer.from(`${c.id}<-${info.remoteNodeId}:`), request]));
  await a.dial(b.address);
  await c.dial(b.address);
  await until('routes', () => a.path(c.id)?.length === 3);
  t.equal((await a.request(c.id, 'whoami', 'x')).toString(), `${c.id}<-${a.id}:x`, 'the request arrives');
  t.equal(relayPeers(a), 0, 'not on a relayed QUIC connection');
  t.equal(nodeServices(b).streams.relayStats().flows, 1, 'b spliced one relayed stream (the fallback)');
  const stats = nodeServices(b).datagrams!.stats();
  t.equal(stats.streamLinks.streams, 1, 'b tried one link stream (rejected: UNKNOWN_CHANNEL), no new one while refused');
  t.ok(stats.forwarder.errorsSent >= 1, 'b reported RELAY_REFUSED for the next ones');
  t.equal((await a.request(c.id, 'whoami', 'y')).toString(), `${c.id}<-${a.id}:y`, 'later requests too');
  t.equal(nodeServices(b).datagrams!.stats().streamLinks.streams, 1, 'still one try');
});

t.test("an opener whose own first hop is HTTP/2 (a-b HTTP/2 only): one relayed QUIC connection to c, and c's error codes", async (t) => {
  const a = await createNode({ ...options, quic: false });
  const b = await createNode(options);
  const c = await createNode(options);
  t.teardown(() => Promise.all([a, b, c].map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  c.handleRequest('whoami', (request, info) => Buffer.concat([Buffer.from(`${c.id}<-${info.remoteNodeId}:`), request]));
  c.handleRequest('throws', () => {
    throw new Error('boom');
  });
  c.handleRequest('small', (request) => request, { maxRequestBytes: 10 });
  c.on('error', () => undefined);
  await a.dial(b.address); // a has only HTTP/2
  await b.dial(c.address);
  t.equal(a.peers().find((peer) => peer.nodeId === b.id)?.transport, 'h2', 'a-b is an HTTP/2 link');
  await until('routes', () => a.path(c.id)?.length === 3 && c.path(a.id)?.length === 3);

  for (let i = 0; i < 3; i++) t.equal((await a.request(c.id, 'whoami', `r${i}`)).toString(), `${c.id}<-${a.id}:r${i}`);
  const relayed = nodeServices(a).datagrams!.live(c.id);
  t.ok(relayed, 'a relayed QUIC connection to c');
  t.same(
    a.peers().filter((peer) => peer.transport === 'relay').map((peer) => peer.nodeId),
    [c.id],
    "listed in a's peers() as transport 'relay'",
  );
  t.equal(nodeServices(b).streams.relayStats().flows, 0, 'b spliced no relayed stream (the stream relay is not used)');
  const aLinks = nodeServices(a).datagrams!.stats().streamLinks;
  t.ok(aLinks.sent > 0 && aLinks.received > 0, `a's own datagrams went on its HTTP/2 link stream (${aLinks.sent} sent, ${aLinks.received} received)`);

  await t.rejects(a.request(c.id, 'throws', 'x'), { code: 'ERR_HANDLER_FAILED' }, 'a throwing handler at c');
  await t.rejects(a.request(c.id, 'small', Buffer.alloc(100)), { code: 'ERR_REQUEST_TOO_LARGE' }, 'an oversized request');
  await t.rejects(a.request(c.id, 'no-such-channel', 'x'), { code: 'UNKNOWN_CHANNEL' }, 'an unknown channel');
  t.equal((await a.request(c.id, 'small', 'tiny')).toString(), 'tiny', 'and the next request works');
  t.equal(nodeServices(a).datagrams!.live(c.id), relayed, 'all on the same relayed connection');
  t.equal(nodeServices(b).streams.relayStats().flows, 0, 'still no relayed stream at b');
});

t.test('an opener whose HTTP/2 first hop refuses the link stream (relay.datagrams false there): the stream relay at once', async (t) => {
  const a = await createNode({ ...options, quic: false });
  const b = await createNode({ ...options, relay: { datagrams: false } });
  const c = await createNode(options);
  t.teardown(() => Promise.all([a, b, c].map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  c.handleRequest('whoami', (request, info) => Buffer.concat([Buffer.from(`${c.id}<-${info.remoteNodeId}:`), request]));
  await a.dial(b.address);
  await b.dial(c.address);
  await until('routes', () => a.path(c.id)?.length === 3);
  const started = performance.now();
  t.equal((await a.request(c.id, 'whoami', 'x')).toString(), `${c.id}<-${a.id}:x`, 'the request arrives');
  const elapsed = performance.now() - started;
  // the refusal fails the handshake at once: well inside the 5 s handshake timeout even on a loaded machine
  t.ok(elapsed < 4000, `answered without waiting for the handshake timeout (${elapsed.toFixed(0)} ms)`);
  t.equal(relayPeers(a), 0, 'not on a relayed QUIC connection');
  t.equal(nodeServices(b).streams.relayStats().flows, 1, 'b spliced one relayed stream (the fallback)');
  t.equal((await a.request(c.id, 'whoami', 'y')).toString(), `${c.id}<-${a.id}:y`, 'later requests too');
  t.equal(nodeServices(b).streams.relayStats().flows, 2, 'on the stream relay while refused');
});
