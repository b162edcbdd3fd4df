// The QUIC endpoint's datagrams that are not QUIC (fixed bit clear): relay v2's link packets.
// sendRelayed gathers a tick's datagrams to one peer into runs; onForeignDatagram takes them at
// the other end in order and byte-exact, on both UDP sockets, while QUIC on the same socket works.
import t from 'tap';
import { Identity } from '../src/identity/index.js';
import { QuicTransport } from '../src/transport/index.js';
import { nativeUdpError } from '../src/transport/quic/udp.js';

for (const udp of ['native', 'node'] as const) {
  t.test(`${udp} socket: runs of link packets arrive whole and in order; QUIC on the same sockets still works`, { skip: udp === 'native' && nativeUdpError() !== undefined }, async (t) => {
    const [one, two] = await Promise.all([Identity.generate(), Identity.generate()]);
    const a = await QuicTransport.listen({ identity: one, udp });
    const b = await QuicTransport.listen({ identity: two, udp });
    t.teardown(() => Promise.all([a.close({ timeoutMs: 100 }), b.close({ timeoutMs: 100 })]));
    const got: Buffer[] = [];
    const senders = new Set<string>();
    b.onForeignDatagram = (datagram, host, port) => {
      senders.add(`${host}:${port}`);
      got.push(Buffer.from(datagram));
    };
    const prefix = Buffer.of(0x21, 1, 2, 3, 4, 5, 6, 7, 8);
    const sent: Buffer[] = [];
    // 100 of 1,000 bytes then a short one, in one tick: runs of up to 60 KiB, the short one last
    for (let i = 0; i < 101; i++) {
      const payload = Buffer.alloc(i === 100 ? 10 : 1000, i);
      a.sendRelayed(prefix, payload, b.address.host, b.address.port);
      sent.push(Buffer.concat([prefix, payload]));
    }
    const deadline = Date.now() + 5000;
    while (got.length < sent.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    t.equal(got.length, sent.length, 'every datagram arrived');
    t.ok(got.every((datagram, i) => datagram.equals(sent[i]!)), 'byte-exact, in order');
    t.same([...senders], [`${a.address.host}:${a.address.port}`], "all from a's socket");
    const connection = await a.dial(b.address, { expectedNodeId: two.nodeId });
    t.equal(connection.remoteNodeId, two.nodeId, 'a QUIC handshake on the same sockets');
    t.equal(b.stats().droppedDatagrams.badHeader, 0, 'nothing taken for a bad QUIC header');
  });
}

t.test('without a taker, a datagram with the fixed bit clear is dropped as a bad header', async (t) => {
  const a = await QuicTransport.listen({ identity: await Identity.generate(), udp: 'node' });
  const b = await QuicTransport.listen({ identity: await Identity.generate(), udp: 'node' });
  t.teardown(() => Promise.all([a.close({ timeoutMs: 100 }), b.close({ timeoutMs: 100 })]));
  a.sendRelayed(Buffer.of(0x21), Buffer.alloc(100), b.address.host, b.address.port);
  const deadline = Date.now() + 5000;
  while (b.stats().droppedDatagrams.badHeader === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  t.equal(b.stats().droppedDatagrams.badHeader, 1);
});
