// Relay v2's link packets (src/relay/raw-link.ts), sans-IO: the tag exchange, what a received
// packet must carry (the tag we gave that neighbour, from its address), and a neighbour that
// started its side afresh.
import t from 'tap';
import { LINK_PACKET_MARKER, LINK_PREFIX_BYTES, RawLinks } from '../src/relay/raw-link.js';
import type { RawLinkHost } from '../src/relay/raw-link.js';
import type { NodeId } from '../src/identity/index.js';
import type { SocketAddress } from '../src/transport/index.js';

const A = 'a'.repeat(52) as NodeId;
const B = 'b'.repeat(52) as NodeId;

interface Sent {
  packet: Buffer;
  to: SocketAddress;
}

function pair(): { a: RawLinks; b: RawLinks; toB: Sent[]; toA: Sent[]; addrA: SocketAddress; addrB: SocketAddress } {
  const toB: Sent[] = [];
  const toA: Sent[] = [];
  const host = (out: Sent[]): RawLinkHost => ({ maxDatagramSize: 1350, send: (prefix, payload, to) => out.push({ packet: Buffer.concat([prefix, payload]), to }) });
  const addrA = { host: '127.0.0.1', port: 1000 };
  const addrB = { host: '127.0.0.1', port: 2000 };
  return { a: new RawLinks(host(toB)), b: new RawLinks(host(toA)), toB, toA, addrA, addrB };
}

t.test('after the tag exchange a link packet reaches the neighbour; before it there is no raw link', async (t) => {
  const { a, b, toB, addrA, addrB } = pair();
  const fromA = a.linkUp(B, { remoteAddress: addrB })!;
  const fromB = b.linkUp(A, { remoteAddress: addrA })!;
  t.equal(fromA.length, 9, 'a tag message is a version byte and 8 tag bytes');
  t.equal(a.link(B, { remoteAddress: addrB }), undefined, 'no raw link before the neighbour gave its tag');
  t.equal(a.takeTag(B, fromB), 'taken');
  t.equal(b.takeTag(A, fromA), 'taken');
  const link = a.link(B, { remoteAddress: addrB })!;
  t.equal(link.maxDatagramPayload, 1350 - LINK_PREFIX_BYTES, 'room: the link datagram size less the prefix');
  t.equal(link.sendDatagram(Buffer.from('relayed')), true);
  t.equal(toB.length, 1);
  const { packet, to } = toB[0]!;
  t.same(to, addrB, 'sent to the neighbour link address');
  t.equal(packet[0], LINK_PACKET_MARKER);
  t.equal(packet[0]! & 0x40, 0, 'the fixed bit is clear: never taken for QUIC');
  t.same(packet.subarray(1, 9), fromB.subarray(1), "the packet carries B's tag");
  const got = b.receive(packet, addrA.host, addrA.port);
  t.equal(got?.from, A);
  t.equal(got?.datagram.toString(), 'relayed');
  t.same(b.stats, { sent: 0, received: 1, badTag: 0, wrongSource: 0, badTagMessages: 0 });
});

t.test('a packet with an unknown tag, a wrong marker or from another address is dropped and counted', async (t) => {
  const { a, b, toB, addrA, addrB } = pair();
  b.takeTag(A, Buffer.of(1, ...Buffer.alloc(8, 9))); // no entry yet: ignored
  const fromB = b.linkUp(A, { remoteAddress: addrA })!;
  a.linkUp(B, { remoteAddress: addrB });
  a.takeTag(B, fromB);
  a.link(B, { remoteAddress: addrB })!.sendDatagram(Buffer.from('x'));
  const good = toB[0]!.packet;
  t.equal(b.receive(good, '127.0.0.1', 1001), undefined, 'the right tag from another port');
  t.equal(b.receive(good, '127.0.0.2', addrA.port), undefined, 'the right tag from another host');
  const forged = Buffer.from(good);
  forged[3] = forged[3]! ^ 1;
  t.equal(b.receive(forged, addrA.host, addrA.port), undefined, 'a tag we never gave');
  const marker = Buffer.from(good);
  marker[0] = 0x22;
  t.equal(b.receive(marker, addrA.host, addrA.port), undefined, 'an unknown marker');
  t.equal(b.receive(good.subarray(0, LINK_PREFIX_BYTES), addrA.host, addrA.port), undefined, 'a prefix with nothing behind it');
  t.same(b.stats, { sent: 0, received: 0, badTag: 3, wrongSource: 2, badTagMessages: 0 });
  b.linkDown(A);
  t.equal(b.receive(good, addrA.host, addrA.port), undefined, 'a link gone takes its tag along');
  t.equal(b.stats.badTag, 4);
});

t.test('tag messages: malformed ones are refused; a neighbour that starts afresh gets ours again', async (t) => {
  const { a, b, addrA, addrB } = pair();
  const fromA = a.linkUp(B, { remoteAddress: addrB })!;
  let fromB = b.linkUp(A, { remoteAddress: addrA })!;
  t.equal(a.takeTag(B, fromB.subarray(0, 8)), 'bad', 'too short');
  t.equal(a.takeTag(B, Buffer.of(2, ...fromB.subarray(1))), 'bad', 'unknown version');
  t.equal(a.takeTag(B, fromB), 'taken');
  t.equal(b.takeTag(A, fromA), 'taken');
  t.equal(a.linkUp(B, { remoteAddress: addrB }), undefined, 'a second connection to the neighbour keeps the tags: nothing to send');
  t.equal(a.takeTag(B, fromB), 'taken', 'the same tag again changes nothing');
  // b lost the link (its connection closed first) and came back: a new tag, and it forgot ours
  b.linkDown(A);
  fromB = b.linkUp(A, { remoteAddress: addrA })!;
  t.equal(b.link(A, { remoteAddress: addrA }), undefined, 'b cannot send raw until a tells it its tag again');
  t.equal(a.takeTag(B, fromB), 'resend', "a sees B's tag replaced: it must send its own again");
  t.equal(b.takeTag(A, a.tagMessage(B)!), 'taken');
  t.ok(b.link(A, { remoteAddress: addrA }), 'raw both ways again');
});

t.test("docs/RELAY.md's test vector: the DATA vector as a link packet to a neighbour with tag 0102030405060708", async (t) => {
  const { a, toB, addrB } = pair();
  a.linkUp(B, { remoteAddress: addrB });
  t.equal(a.takeTag(B, Buffer.from('010102030405060708', 'hex')), 'taken');
  const data = Buffer.concat([Buffer.of(0x10, 0x10), Buffer.alloc(32, 0xdd), Buffer.alloc(32, 0x55), Buffer.of(0x40, 1, 2, 3)]);
  a.link(B, { remoteAddress: addrB })!.sendDatagram(data);
  t.equal(toB[0]!.packet.toString('hex'), '210102030405060708' + data.toString('hex'));
  t.equal(toB[0]!.packet.length, 79);
});
