// Relay v2's link packets in real nodes (QUIC on loopback): the hops forward relayed datagrams as
// UDP datagrams of their own (src/relay/raw-link.ts), not inside the links' QUIC; a node with
// relay.linkPackets false makes its links fall back to DATAGRAM frames; a forged link packet is
// dropped and counted.
import t from 'tap';
import type { Test } from 'tap';
import dgram from 'node:dgram';
import { createNode } from '../src/index.js';
import type { PnetNode, NodeOptions } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

async function line(t: Test, each: Array<NodeOptions>): Promise<PnetNode[]> {
  const nodes: PnetNode[] = [];
  for (const options of each) {
    const node = await createNode({ routing: { rttSampleMs: 3_600_000 }, ...options });
    node.handleRequest('echo', (request) => request);
    nodes.push(node);
  }
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  for (let i = 1; i < nodes.length; i++) await nodes[i - 1]!.dial(nodes[i]!.address);
  const deadline = Date.now() + 20_000;
  while (!nodes.every((node) => node.routes().length === nodes.length - 1)) {
    if (Date.now() > deadline) throw new Error('routes did not converge');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return nodes;
}

const relayOf = (node: PnetNode) => nodeServices(node).datagrams!;

t.test('a line a-b-c: every datagram b forwards came and left as a link packet', async (t) => {
  const [a, b, c] = (await line(t, [{}, {}, {}])) as [PnetNode, PnetNode, PnetNode];
  const body = Buffer.alloc(200_000, 7);
  for (let i = 0; i < 5; i++) t.same(await a.request(c.id, 'echo', body), body, `request ${i} came back whole`);
  const stats = relayOf(b).stats();
  t.ok(stats.forwarder.forwarded > 100, 'b forwarded the traffic');
  t.equal(stats.rawLinks.received, stats.forwarder.received, 'every datagram b got came as a link packet');
  t.equal(stats.rawLinks.sent, stats.forwarder.forwarded, 'every datagram b forwarded left as one');
  t.equal(stats.rawLinks.badTag + stats.rawLinks.wrongSource, 0);
  t.ok(relayOf(a).stats().rawLinks.sent > 0 && relayOf(c).stats().rawLinks.sent > 0, 'the ends send link packets too');
});

t.test('relay.linkPackets false at the hop: its links carry DATAGRAM frames, and the traffic still flows', async (t) => {
  const [a, b, c] = (await line(t, [{}, { relay: { linkPackets: false } }, {}])) as [PnetNode, PnetNode, PnetNode];
  const body = Buffer.alloc(50_000, 3);
  t.same(await a.request(c.id, 'echo', body), body);
  const hop = relayOf(b).stats();
  t.ok(hop.forwarder.forwarded > 10, 'b forwarded');
  t.equal(hop.rawLinks.received + hop.rawLinks.sent, 0, 'no link packet at b');
  t.equal(relayOf(a).stats().rawLinks.sent, 0, 'a had no tag from b: it sent DATAGRAM frames');
});

t.test('a forged link packet (a tag never given) is dropped and counted; the node carries on', async (t) => {
  const [a, b, c] = (await line(t, [{}, {}, {}])) as [PnetNode, PnetNode, PnetNode];
  const socket = dgram.createSocket('udp4');
  t.teardown(() => socket.close());
  const [host, port] = [b.address.slice(0, b.address.lastIndexOf(':')), Number(b.address.slice(b.address.lastIndexOf(':') + 1))];
  const forged = Buffer.alloc(200, 0x10);
  forged[0] = 0x21;
  const before = relayOf(b).stats().rawLinks.badTag;
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => socket.send(forged, port, host, () => resolve()));
  const deadline = Date.now() + 5000;
  while (relayOf(b).stats().rawLinks.badTag < before + 20 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  t.equal(relayOf(b).stats().rawLinks.badTag, before + 20, 'all 20 counted as bad tags');
  t.equal(relayOf(b).stats().forwarder.received, relayOf(b).stats().rawLinks.received, 'none reached the forwarder');
  t.same(await a.request(c.id, 'echo', 'still'), Buffer.from('still'));
});
