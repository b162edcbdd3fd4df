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
import { DATAGRAM_ROOM, INNER_DATAGRAM_SIZE, OUTER_DATAGRAM_SIZE, encodeData, type PacketSource, type RelayPath } from '../src/relay/v2/index.js';
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

/** One end's QUIC connection on its RelayPath; `source` is what the path drains (as a QuicMachine's pollTransmit). */
interface End {
  conn: Conn;
  path: RelayPath;
  sizes: number[];
  source: PacketSource;
}

function endOf(conn: Conn, path: RelayPath): End {
  const sizes: number[] = [];
  const source: PacketSource = {
    pollTransmit: (buffer) => {
      const sent = conn.send(buffer);
      if (sent === null) return null;
      sizes.push(sent[0]);
      return sent[0];
    },
  };
  const end = { conn, path, sizes, source };
  path.owner = end;
  return end;
}

/** Drains the connection through its path; how many packets went. */
function pump(end: End | undefined): number {
  if (end === undefined) return 0;
  const before = end.sizes.length;
  end.path.transmit(end.source);
  return end.sizes.length - before;
}

/** A client connection from `node` to `far` on a RelayPath of its own (as QuicTransport.dial would make it). */
function dialOver(node: SimNode, far: SimNode, identity: Identity): End {
  const flow = node.endpoint.open(far.id, 0);
  const scid = randomBytes(16);
  const conn = quiche.Connection.connect('pnet', scid, node.endpoint.localAddress, flow.address, config(identity, flow.maxDatagramSize));
  return endOf(conn, node.endpoint.path(flow, [scid]));
}

/** Serves `node`: a packet on a known path goes to its connection; an Initial with none starts one. */
function serve(node: SimNode, identity: Identity, accepted: End[]): void {
  node.onPacket = (flow, packet, _created, path) => {
    let end = path?.owner as End | undefined;
    if (end === undefined) {
      if ((packet[0]! & 0xf0) !== 0xc0) return; // not an Initial: nothing to accept
      const scid = randomBytes(16);
      const clientDcid = packet.subarray(6, 6 + packet[5]!);
      const conn = quiche.Connection.accept(scid, null, node.endpoint.localAddress, flow.address, config(identity, flow.maxDatagramSize));
      end = endOf(conn, node.endpoint.path(flow, [clientDcid, scid]));
      accepted.push(end);
    }
    end.conn.recv(packet, { from: flow.address, to: node.endpoint.localAddress });
  };
}

/** The opener's side: packets go to the connection whose id they carry. */
function receiveOnPaths(node: SimNode): void {
  node.onPacket = (flow, packet, _created, path) => {
    const end = path?.owner as End | undefined;
    end?.conn.recv(packet, { from: flow.address, to: node.endpoint.localAddress });
  };
}

/** Waits out quiche's own timers (loss detection, delayed ACKs) when nothing moves; bounded. */
async function idle(ends: Array<End | undefined>): Promise<void> {
  await sleep(5);
  for (const end of ends) end?.conn.onTimeout();
}

t.test('end-to-end QUIC over relayed datagrams: handshake, transfer, ciphertext only, a hop dies mid-transfer', async (t) => {
  const [ida, ide] = [await Identity.generate(), await Identity.generate()];
  // 0-1-2-3-4 with a bypass 1-5-3: the path goes through 2 until 2 dies.
  const sim = new Sim(6, [[0, 1], [1, 2], [2, 3], [3, 4], [1, 5], [5, 3]], {
    key: (i) => (i === 0 ? keyBytesOf(ida.nodeId) : i === 4 ? keyBytesOf(ide.nodeId) : undefined),
  });
  const [a, , hop2, , e, bypass] = sim.nodes as [SimNode, SimNode, SimNode, SimNode, SimNode, SimNode];
  const marker = Buffer.from('PNET-RELAY-V2-MARKER');
  let plaintextSeen = 0;
  let largest = 0;
  sim.tap = (_at, datagram) => {
    largest = Math.max(largest, datagram.length);
    if (Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength).includes(marker)) plaintextSeen++;
  };
  const client = dialOver(a, e, ida);
  receiveOnPaths(a);
  const accepted: End[] = [];
  serve(e, ide, accepted);

  const payload = Buffer.concat(Array.from({ length: 512 }, (_, i) => Buffer.concat([marker, randomBytes(492 + (i % 7))])));
  const received: Buffer[] = [];
  let written = 0;
  let answered = false;
  let reply = '';
  let killed = false;
  let pauses = 0;
  for (let round = 0; round < 5000 && reply !== 'done'; round++) {
    const server = accepted[0];
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
    if (server?.conn.isEstablished() && server.conn.streamReadable(0)) {
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
    if (moved === 0) {
      pauses++;
      await idle([client, server]);
    }
  }
  const server = accepted[0]!;
  t.equal(accepted.length, 1, 'one connection accepted');
  t.ok(client.conn.isEstablished() && server.conn.isEstablished(), 'handshake completed over 3 relaying hops');
  t.equal(verifyPeerCertificate(client.conn.peerCertChain()), e.id, 'the client proved it reached the far node it addressed');
  t.equal(verifyPeerCertificate(server.conn.peerCertChain()), server.path.flow.remoteNodeId, 'the server proved the flow’s claimed source');
  t.same(Buffer.concat(received), payload, `${payload.length} bytes arrived byte-exact`);
  t.equal(reply, 'done', 'and the answer came back');
  t.ok(killed && hop2.forwarder.stats.forwarded > 0 && bypass.forwarder.stats.forwarded > 0, 'the transfer moved from hop 2 to the bypass');
  t.equal(plaintextSeen, 0, 'no hop ever forwarded the plaintext marker');
  t.ok(Math.max(...client.sizes, ...server.sizes) <= INNER_DATAGRAM_SIZE, 'inner packets within 1244 bytes');
  t.ok(largest <= DATAGRAM_ROOM, 'relayed datagrams within a 1350-byte link’s DATAGRAM room');
  t.ok(sim.lost > 0, 'datagrams in flight through the dead hop were lost, and QUIC recovered them');
  t.comment(`lost in the dead hop: ${sim.lost} datagrams; rounds that waited on quiche timers: ${pauses}`);
  client.path.release();
  t.equal(a.endpoint.flowCount, 0, 'the last connection released its flow');
});

t.test('two connections on one flow are told apart by connection id', async (t) => {
  const [ida, ide] = [await Identity.generate(), await Identity.generate()];
  const sim = new Sim(4, [[0, 1], [1, 2], [2, 3]], { key: (i) => (i === 0 ? keyBytesOf(ida.nodeId) : i === 3 ? keyBytesOf(ide.nodeId) : undefined) });
  const [a, , , d] = sim.nodes as [SimNode, SimNode, SimNode, SimNode];
  // Like a far node that restarted and dials again while its old connection still drains.
  const first = dialOver(a, d, ida);
  const second = dialOver(a, d, ida);
  t.equal(first.path.flow, second.path.flow, 'the same flow');
  receiveOnPaths(a);
  const accepted: End[] = [];
  serve(d, ide, accepted);
  const got = new Map<End, string>();
  const wrote = new Set<End>();
  for (let round = 0; round < 500 && got.size < 2; round++) {
    for (const [end, text] of [[first, 'first'], [second, 'second']] as const) {
      if (end.conn.isEstablished() && !wrote.has(end) && end.conn.streamSend(0, Buffer.from(text), true) !== null) wrote.add(end);
    }
    const moved = [first, second, ...accepted].reduce((n, end) => n + pump(end), 0);
    sim.run();
    for (const end of accepted) {
      if (!end.conn.streamReadable(0)) continue;
      const read = end.conn.streamRecv(0, buf);
      if (read !== null) got.set(end, (got.get(end) ?? '') + buf.toString('latin1', 0, read[0]));
    }
    if (moved === 0) await idle([first, second, ...accepted]);
  }
  t.equal(accepted.length, 2, 'two connections accepted on one flow');
  t.same([...got.values()].sort(), ['first', 'second'], 'each connection’s stream reached its own server connection');
  t.equal(d.endpoint.flowCount, 1);
  accepted[0]!.path.release();
  t.equal(d.endpoint.flowCount, 1, 'a flow lives while a connection is on it');
  accepted[1]!.path.release();
  t.equal(d.endpoint.flowCount, 0, 'and goes with the last');
});

t.test('a real client Initial that runs out of hops comes back as HOP_LIMIT, its quote matching the client’s connection id', async (t) => {
  const ida = await Identity.generate();
  const sim = new Sim(5, [[0, 1], [1, 2], [2, 3], [3, 4]], {
    key: (i) => (i === 0 ? keyBytesOf(ida.nodeId) : undefined),
    endpoint: (i) => (i === 0 ? { hopLimit: 2 } : {}),
  });
  const [a, , hop2, , e] = sim.nodes as [SimNode, SimNode, SimNode, SimNode, SimNode];
  const end = dialOver(a, e, ida);
  a.onPacket = () => t.fail('nothing should come back but the report');
  t.ok(pump(end) > 0);
  sim.run();
  t.equal(hop2.forwarder.stats.hopLimit > 0, true, 'dropped at the second link');
  t.equal(a.errors[0]?.code, 'HOP_LIMIT', 'the opener learns why, during the handshake');
  t.equal(a.endpoint.stats.staleError, 0);
});
