// A FIN alone must not wait behind the congestion window (QuicConnection.finCanLeave). Two
// QuicConnections over real quiche connections, joined by an in-memory host that holds every
// datagram until the test delivers it, so the race is played in a fixed order, as in a piped echo:
// A's request arrives whole, the server answers, stream B fills the congestion window, the server
// ends A (a FIN with no data), and only then does the ACK for A's answer arrive. quiche 0.18
// collects a stream whose data is all acknowledged once it knows the final size; had A's FIN been
// handed to quiche while it could not leave, it would never be sent and the client's stream would
// never end. (Seen as 1 stuck stream in ~100-160 fresh connections of 10 parallel 64 KiB echoes
// against a peer process; this test fails without finCanLeave.)
import t from 'tap';
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { native } from '@matrixai/quic';
import { Identity } from '../src/identity/index.js';
import type { NodeId } from '../src/identity/index.js';
import { QuicConnection, READ_POOL_SIZE } from '../src/transport/quic/connection.js';
import type { ConnectionHost } from '../src/transport/quic/connection.js';
import type { QuicStream } from '../src/transport/quic/stream.js';
import type { SocketAddress } from '../src/transport/index.js';

const quiche = native.quiche;

function config(identity: Identity): native.Config {
  const c = quiche.Config.withBoringSslCtx(true, true, null, [Buffer.from(identity.keyPem)], [Buffer.from(identity.certPem)], 'ed25519');
  c.setApplicationProtos(['pnet/1']);
  c.setMaxIdleTimeout(30_000);
  c.setMaxRecvUdpPayloadSize(65527);
  c.setMaxSendUdpPayloadSize(1350);
  c.setInitialMaxData(16 << 20);
  c.setInitialMaxStreamDataBidiLocal(1 << 20);
  c.setInitialMaxStreamDataBidiRemote(1 << 20);
  c.setInitialMaxStreamsBidi(100);
  c.setDisableActiveMigration(true);
  c.enablePacing(false);
  c.grease(false);
  return c;
}

/** A ConnectionHost that queues what its connection sends instead of sending it. */
class HeldHost implements ConnectionHost {
  readonly outbox: Buffer[] = [];
  readonly readPool = { buffer: Buffer.allocUnsafe(READ_POOL_SIZE), offset: 0 };
  constructor(
    readonly localAddress: SocketAddress,
    readonly localNodeId: NodeId,
  ) {}
  flush(connection: QuicConnection): void {
    connection.flushing();
    for (;;) {
      const buffer = Buffer.alloc(1350);
      const sent = connection.quiche.send(buffer);
      if (sent === null) break;
      connection.sentSinceRecv += sent[0]; // as QuicTransport.flush does
      this.outbox.push(buffer.subarray(0, sent[0]));
    }
  }
  schedule(): void {}
  flushSoon(connection: QuicConnection): void {
    this.flush(connection);
  }
  flushLater(connection: QuicConnection): void {
    this.flush(connection);
  }
  flushAfterTicks(connection: QuicConnection): void {
    this.flush(connection);
  }
  saveSession(): void {}
  forget(): void {}
}

const clientAddress = { host: '127.0.0.1', port: 40001 };
const serverAddress = { host: '127.0.0.1', port: 40002 };
const alice = await Identity.generate();
const bob = await Identity.generate();

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Plays the race with stream B filling the congestion window by `fill(b, room)` (room: B's
 * capacity before it writes; it returns the bytes written), then checks that A's FIN still
 * reaches the client.
 */
async function race(t: Test, fill: (b: QuicStream, room: number) => number, expectedCapacity: (capacity: number) => boolean, what: string): Promise<void> {
  const clientHost = new HeldHost(clientAddress, alice.nodeId);
  const serverHost = new HeldHost(serverAddress, bob.nodeId);
  const options = { handshakeTimeoutMs: 30_000, streamOpenTimeoutMs: 30_000 };
  const client = new QuicConnection(clientHost, quiche.Connection.connect('pnet', randomBytes(16), clientAddress, serverAddress, config(alice)), 'outbound', serverAddress, options);
  client.process();
  const first = clientHost.outbox.shift()!;
  const server = new QuicConnection(serverHost, quiche.Connection.accept(randomBytes(16), null, serverAddress, clientAddress, config(bob)), 'inbound', clientAddress, options);
  t.teardown(() => {
    client.dispose();
    server.dispose();
  });
  server.receive(first, 0);
  server.process();

  /** Delivers what `from` sent to `to` (flushing `to` first, as the transport does), then processes `to`. */
  const deliver = (from: HeldHost, to: QuicConnection, toHost: HeldHost): number => {
    const datagrams = from.outbox.splice(0);
    for (const datagram of datagrams) {
      if (to.wrote) toHost.flush(to);
      to.receive(datagram, 0);
    }
    to.process();
    return datagrams.length;
  };
  const pumpAll = async (): Promise<void> => {
    for (let i = 0; i < 500 && clientHost.outbox.length + serverHost.outbox.length > 0; i++) {
      deliver(clientHost, server, serverHost);
      deliver(serverHost, client, clientHost);
      await tick();
    }
  };
  await pumpAll();
  t.ok(client.established && server.established, 'handshake done');

  // The server echoes like a pipe: A's request arrives whole (data and FIN), the server answers
  // with data, and ends its side later with no data left (a FIN alone).
  let a: QuicStream | undefined;
  server.on('stream', (stream) => {
    a = stream as QuicStream;
    stream.resume();
  });
  let aEnded = false;
  let aBytes = 0;
  const request = await client.openStream();
  request.on('data', (chunk: Buffer) => (aBytes += chunk.length));
  request.on('end', () => (aEnded = true));
  request.end(Buffer.alloc(2000, 1));
  await tick();
  await pumpAll();
  t.ok(a?.readableEnded, "the server read A's request to its end");
  a!.write(Buffer.alloc(2000, 3));
  await tick();
  server.process();
  deliver(serverHost, client, clientHost);
  await tick();
  const ackForA = clientHost.outbox.splice(0);
  t.ok(ackForA.length > 0, "the client's ACK for A's answer is held");
  t.equal(aBytes, 2000, "A's answer arrived");

  // B, a stream the server opens, fills the congestion window; what it sends is held too.
  let bBytes = 0;
  client.on('stream', (stream) => stream.on('data', (chunk: Buffer) => (bBytes += chunk.length)));
  const b = (await server.openStream()) as QuicStream;
  const room = server.quiche.streamCapacity(b.streamId);
  const bWritten = fill(b, room);
  await tick();
  server.process();
  t.ok(expectedCapacity(server.quiche.streamCapacity(a!.streamId)), what);

  // The server ends A with no data left: a FIN alone.
  a!.end();
  await tick();
  await tick();

  // Now the ACK for A's answer arrives, before anything else.
  for (const datagram of ackForA) server.receive(datagram, 0);
  server.process();
  await pumpAll();
  t.ok(aEnded, "the client saw A's end");
  b.end();
  await pumpAll();
  t.equal(bBytes, bWritten, "B's data all arrived");
}

t.test('a FIN with no data left waits for room, then leaves: the peer stream ends', (t) =>
  race(t, (b) => (b.write(Buffer.alloc(256 * 1024, 2)), 256 * 1024), (capacity) => capacity === 0, 'no room left for anything, a FIN included'),
);

// quiche's capacity is the window left at its last recv() less the data written since: packets
// sent since (here: B's data, written before and sent with their per-packet overhead) do not
// lower it, so it can say "room" when the window is full. Without counting sentSinceRecv the FIN
// was handed over, never sent, and lost when the ACK came (1 stuck stream in ~30 connections of
// 100 parallel echoes with the batched UDP socket).
t.test('a FIN waits when quiche reports room the packets sent since have used', (t) =>
  race(t, (b, room) => (b.write(Buffer.alloc(room - 1, 2)), room - 1), (capacity) => capacity > 0, 'quiche still reports room for A'),
);
