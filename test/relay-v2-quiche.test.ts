// Relay v2 with real quiche: the DATAGRAM room of a 1350-byte link is what header.ts says, and an
// end-to-end QUIC connection (mutual TLS, pinned node ids) runs over RelayFlows through simulated
// hops: handshake, a transfer byte-exact both ways, hops seeing only ciphertext, a hop dying
// mid-transfer costing a pause, not the connection. Real time only where quiche's own timers
// (loss detection, delayed ACKs) need it; every loop is bounded.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { native } from '@matrixai/quic';
import { Identity, verifyPeerCertificate } from '../src/identity/index.js';
import { keyBytesOf } from '../src/routing/index.js';
import { DATAGRAM_ROOM, INNER_DATAGRAM_SIZE, OUTER_DATAGRAM_SIZE, encodeData, type RelayFlow } from '../src/relay/v2/index.js';
import { Sim, type SimNode } from './fixtures/relay-v2-sim.js';

const quiche = native.quiche;
type Conn = native.Connection;

/** The settings of pnet's production config that matter here (mutual TLS, Ed25519, ALPN, sizes, DATAGRAM on). */
function config(identity: Identity, maxDatagramSize: number): native.Config {
  const c = quiche.Config.withBoringSslCtx(true, true, null, [Buffer.from(identity.keyPem)], [Buffer.from(identity.certPem)], 'ed25519');
  c.setApplicationProtos(['pnet/1']);
  c.setMaxIdleTimeout(30_000);
  c.setMaxRecvUdpPayloadSize(65527);
  c.setMaxSendUdpPayloadSize(maxDatagramSize);
  c.setInitialMaxData(4 * 1024 * 1024);
  c.setInitialMaxStreamDataBidiLocal(1024 * 1024);
  c.setInitialMaxStreamDataBidiRemote(1024 * 1024);
  c.setInitialMaxStreamsBidi(16);
  c.setDisableActiveMigration(true);
  c.enableDgram(true, 1024, 1024);
  return c;
}

const LOCAL = { host: '127.0.0.1', port: 4000 };
const buf = Buffer.alloc(65536);

t.test('a 1350-byte link: DATAGRAM room is 1310 bytes, a full relayed datagram fits one packet', async (t) => {
  const [a, b] = [await Identity.generate(), await Identity.generate()];
  const ha = { host: '127.0.0.1', port: 1 };
  const hb = { host: '127.0.0.1', port: 2 };
  const client = quiche.Connection.connect('pnet', randomBytes(16), ha, hb, config(a, OUTER_DATAGRAM_SIZE));
  const server = quiche.Connection.accept(randomBytes(16), null, hb, ha, config(b, OUTER_DATAGRAM_SIZE));
  const packets: number[] = [];
  const exchange = (): void => {
    for (const [from, to, fa, ta] of [[client, server, ha, hb], [server, client, hb, ha]] as const) {
      for (let i = 0; i < 100; i++) {
        const sent = from.send(buf);
        if (sent === null) break;
        packets.push(sent[0]);
        to.recv(buf.subarray(0, sent[0]), { from: fa, to: ta });
      }
    }
  };
  for (let i = 0; i < 20 && !(client.isEstablished() && server.isEstablished()); i++) exchange();
  t.ok(client.isEstablished() && server.isEstablished());
  t.equal(client.dgramMaxWritableLen(), DATAGRAM_ROOM, 'quiche says 1310, as header.ts computes');
  const relayed = encodeData(16, keyBytesOf(b.nodeId), keyBytesOf(a.nodeId), randomBytes(INNER_DATAGRAM_SIZE));
  t.equal(relayed.length, DATAGRAM_ROOM, 'a relayed datagram with a full inner packet fills the room exactly');
  client.dgramSend(relayed);
  packets.length = 0;
  exchange();
  t.ok(Math.max(...packets) <= OUTER_DATAGRAM_SIZE, 'in packets of at most 1350 bytes');
  const got = Buffer.alloc(2000);
  const length = server.dgramRecv(got);
  t.same(got.subarray(0, length ?? 0), relayed, 'arrived byte-exact');
  let refused = false;
  try {
    refused = client.dgramSend(Buffer.alloc(DATAGRAM_ROOM + 1)) === null;
  } catch {
    refused = true;
  }
  t.ok(refused, 'one byte more is refused by quiche');
});

interface End {
  conn?: Conn;
  flow?: RelayFlow;
  sizes: number[];
}

/** Sends everything `end.conn` has on its flow. */
function pump(end: End): number {
  let sent = 0;
  if (end.conn === undefined || end.flow === undefined) return 0;
  for (let i = 0; i < 10_000; i++) {
    const out = end.conn.send(buf);
    if (out === null) break;
    end.sizes.push(out[0]);
    if (end.flow.send(buf.subarray(0, out[0]))) sent++;
  }
  return sent;
}

t.test('end-to-end QUIC over relayed datagrams: handshake, transfer, ciphertext only, a hop dies mid-transfer', async (t) => {
  const [ida, ide] = [await Identity.generate(), await Identity.generate()];
  // 0-1-2-3-4 with a bypass 1-5-3: the path goes through 2 until 2 dies.
  const sim = new Sim(6, [[0, 1], [1, 2], [2, 3], [3, 4], [1, 5], [5, 3]], {
    key: (i) => (i === 0 ? keyBytesOf(ida.nodeId) : i === 4 ? keyBytesOf(ide.nodeId) : undefined),
  });
  const [a, , hop2, , e, bypass] = sim.nodes as [SimNode, SimNode, SimNode, SimNode, SimNode, SimNode];
  const client: End = { sizes: [] };
  const server: End = { sizes: [] };
  const marker = Buffer.from('PNET-RELAY-V2-MARKER');
  let plaintextSeen = 0;
  let largest = 0;
  sim.tap = (_at, datagram) => {
    largest = Math.max(largest, datagram.length);
    if (Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength).includes(marker)) plaintextSeen++;
  };
  client.flow = a.endpoint.open(e.id, 0, 3);
  client.conn = quiche.Connection.connect('pnet', randomBytes(16), LOCAL, client.flow.address, config(ida, client.flow.maxDatagramSize));
  a.onPacket = (_flow, packet) => void client.conn!.recv(packet, { from: client.flow!.address, to: LOCAL });
  e.onPacket = (flow, packet, created) => {
    if (created) {
      server.flow = flow;
      server.conn = quiche.Connection.accept(randomBytes(16), null, LOCAL, flow.address, config(ide, flow.maxDatagramSize));
    }
    if (flow === server.flow) server.conn!.recv(packet, { from: flow.address, to: LOCAL });
  };

  const payload = Buffer.concat(Array.from({ length: 512 }, (_, i) => Buffer.concat([marker, randomBytes(492 + (i % 7))])));
  const received: Buffer[] = [];
  let written = 0;
  let answered = false;
  let reply = '';
  let killed = false;
  let pauses = 0;
  for (let round = 0; round < 5000 && reply !== 'done'; round++) {
    if (client.conn.isEstablished() && written < payload.length) {
      const n = client.conn.streamSend(0, payload.subarray(written, Math.min(payload.length, written + 16_384)), written + 16_384 >= payload.length);
      if (n !== null) written += n;
    }
    const moved = pump(client) + pump(server);
    if (!killed && written > payload.length / 2) {
      killed = true;
      sim.run(6); // some datagrams get as far as the link to hop 2...
      sim.down.add(2); // ...and hop 2 dies with them in flight; the routers converge
      sim.computeRoutes();
    }
    sim.run();
    sim.now += 1;
    if (server.conn?.isEstablished() && server.conn.streamReadable(0)) {
      for (let i = 0; i < 1000; i++) {
        const read = server.conn.streamRecv(0, buf);
        if (read === null) break;
        received.push(Buffer.from(buf.subarray(0, read[0])));
        if (read[1] && !answered) {
          answered = true;
          server.conn.streamSend(0, Buffer.from('done'), true);
        }
      }
    }
    if (client.conn.streamReadable(0)) {
      const read = client.conn.streamRecv(0, buf);
      if (read !== null) reply += buf.toString('latin1', 0, read[0]);
    }
    if (moved === 0 && sim.now > 0) {
      // Only quiche's timers (loss detection after the dead hop, delayed ACKs) can move things now.
      pauses++;
      await sleep(5);
      client.conn.onTimeout();
      server.conn?.onTimeout();
    }
  }
  t.ok(client.conn.isEstablished() && server.conn?.isEstablished(), 'handshake completed over 3 relaying hops');
  t.equal(verifyPeerCertificate(client.conn.peerCertChain()), e.id, 'the client proved it reached the far node it addressed');
  t.equal(verifyPeerCertificate(server.conn!.peerCertChain()), server.flow!.remoteNodeId, 'the server proved the flow’s claimed source');
  t.same(Buffer.concat(received), payload, `${payload.length} bytes arrived byte-exact`);
  t.equal(reply, 'done', 'and the answer came back');
  t.ok(killed && hop2.forwarder.stats.forwarded > 0 && bypass.forwarder.stats.forwarded > 0, 'the transfer moved from hop 2 to the bypass');
  t.equal(plaintextSeen, 0, 'no hop ever forwarded the plaintext marker');
  t.ok(Math.max(...client.sizes, ...server.sizes) <= INNER_DATAGRAM_SIZE, 'inner packets within 1244 bytes');
  t.ok(largest <= DATAGRAM_ROOM, 'relayed datagrams within a 1350-byte link’s DATAGRAM room');
  t.ok(sim.lost > 0, 'datagrams in flight through the dead hop were lost, and QUIC recovered them');
  t.comment(`lost in the dead hop: ${sim.lost} datagrams; rounds that waited on quiche timers: ${pauses}`);
});

t.test('a real client Initial that runs out of hops comes back as HOP_LIMIT, its quote matching the client’s connection id', async (t) => {
  const ida = await Identity.generate();
  const sim = new Sim(5, [[0, 1], [1, 2], [2, 3], [3, 4]], {
    key: (i) => (i === 0 ? keyBytesOf(ida.nodeId) : undefined),
    endpoint: (i) => (i === 0 ? { hopLimit: 2 } : {}),
  });
  const [a, , hop2, , e] = sim.nodes as [SimNode, SimNode, SimNode, SimNode, SimNode];
  const end: End = { sizes: [] };
  end.flow = a.endpoint.open(e.id, 0);
  end.conn = quiche.Connection.connect('pnet', randomBytes(16), LOCAL, end.flow.address, config(ida, end.flow.maxDatagramSize));
  a.onPacket = () => t.fail('nothing should come back but the report');
  t.ok(pump(end) > 0);
  sim.run();
  t.equal(hop2.forwarder.stats.hopLimit > 0, true, 'dropped at the second link');
  t.equal(a.errors[0]?.code, 'HOP_LIMIT', 'the opener learns why, during the handshake');
  t.equal(a.endpoint.stats.staleError, 0);
});
