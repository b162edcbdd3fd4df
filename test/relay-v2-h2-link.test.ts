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
