// The FIN rules of the QUIC machine (src/transport/quic/machine.ts), each played in a fixed order
// with the QuicPair (test/fixtures/quic-pair.ts): two machines with the production config joined
// by in-memory queues. quiche 0.18 collects a stream as soon as it knows the final size and every
// byte is acknowledged, so a FIN that has not left by then is lost for good, and the peer's
// stream never ends. Each test below fails when the rule it names is taken out (see the commit
// that added it; the stories are in docs/HISTORY.md).
import t from 'tap';
import type { Test } from 'tap';
import { QuicPair } from './fixtures/quic-pair.js';
import type { PairEnd } from './fixtures/quic-pair.js';

const EMPTY = Buffer.alloc(0);
/** FIN-only and ACK-only packets are far below this; packets with stream data above it. */
const SMALL = 200;

/** Drops every small datagram `end` sends from now on (FIN-only frames, ACKs). */
function dropSmall(end: PairEnd): void {
  end.filter = (datagram) => (datagram.length < SMALL ? 'drop' : 'deliver');
}

/**
 * A request arrives whole at the server (data and FIN), the server answers with data, and the
 * client's ACK for that answer is held. Returns the stream and the held ACK.
 */
async function answered(t: Test, pair: QuicPair): Promise<{ a: number; ack: Buffer[] }> {
  const { client, server } = pair;
  const a = client.open();
  client.write(a, Buffer.alloc(2000, 1), true);
  pair.run();
  t.ok(server.ended.has(a), "the server read A's request to its end");
  server.write(a, Buffer.alloc(2000, 3), false);
  server.drive();
  client.filter = () => 'hold';
  client.receiveAll();
  client.transmit();
  client.filter = undefined;
  const ack = client.held.splice(0);
  t.ok(ack.length > 0, "the client's ACK for A's answer is held");
  t.equal(client.bytes(a), 2000, "A's answer arrived");
  return { a, ack };
}

/** The server opens B and writes `size(room)` bytes (room: B's capacity before); returns B and the bytes. */
function fillWindow(server: PairEnd, size: (room: number) => number): { b: number; written: number } {
  const b = server.open();
  const written = size(server.machine.quiche.streamCapacity(b));
  server.write(b, Buffer.alloc(written, 2), false);
  server.drive();
  return { b, written };
}

function deliverTo(end: PairEnd, datagrams: Buffer[]): void {
  for (const datagram of datagrams) end.machine.handleDatagram(datagram, 0, () => end.transmit());
  end.drive();
}

// (a) The room rule (finCanLeave): a FIN alone is handed to quiche only when it can leave at once.
// Had A's FIN been handed over behind the full window, the ACK for A's answer would make quiche
// collect A and the FIN would never be sent.
async function roomRace(t: Test, size: (room: number) => number, capacityOk: (capacity: number) => boolean, what: string): Promise<void> {
  const pair = await QuicPair.connect();
  const { client, server } = pair;
  t.ok(client.machine.established && server.machine.established, 'handshake done');
  const { a, ack } = await answered(t, pair);
  const { b, written } = fillWindow(server, size);
  t.ok(capacityOk(server.machine.quiche.streamCapacity(a)), what);
  server.write(a, EMPTY, true); // the server ends A with no data left: a FIN alone
  deliverTo(server, ack); // now the ACK for A's answer arrives, before anything else
  pair.run();
  t.ok(client.ended.has(a), "the client saw A's end");
  server.write(b, EMPTY, true);
  pair.run();
  t.equal(client.bytes(b), written, "B's data all arrived");
}

t.test('(a) a FIN with no data left waits for room, then leaves: the peer stream ends', (t) =>
  roomRace(t, () => 256 * 1024, (capacity) => capacity === 0, 'no room left for anything, a FIN included'),
);

// quiche's capacity is the window left at its last recv() less the data written since: packets
// sent since (B's data, with their per-packet overhead) do not lower it, so it can say "room" when
// the window is full. The room rule subtracts the bytes sent since the last recv().
t.test('(a) a FIN waits when quiche reports room the packets sent since have used', (t) =>
  roomRace(t, (room) => room - 1, (capacity) => capacity > 0, 'quiche still reports room for A'),
);

// (b) The queuedAt rule: a FIN whose stream's data went to quiche since the last transmit rides on
// that data's last frame, even when the room estimate says no. Parked instead, it would follow
// alone in a later packet, and a FIN lost after the data was acknowledged is never sent again.
t.test('(b) a FIN right after its data goes with that data, though the room estimate says no', async (t) => {
  const pair = await QuicPair.connect();
  const { client, server } = pair;
  const { a, ack } = await answered(t, pair);
  deliverTo(server, ack);
  pair.run();
  fillWindow(server, (room) => room - 600);
  const capacity = server.machine.quiche.streamCapacity(a);
  t.ok(capacity >= 500 && capacity < 1350, `room for A's last data but not for a packet (${capacity})`);
  t.equal(server.write(a, Buffer.alloc(500, 4), false), true, "quiche takes A's last data");
  // Whatever the server sends once the client holds all of A's data is lost.
  server.filter = () => (client.bytes(a) === 2500 ? 'drop' : 'deliver');
  t.equal(server.write(a, EMPTY, true), true, 'the FIN goes to quiche with that data');
  pair.run();
  t.equal(client.bytes(a), 2500, "A's last data arrived");
  t.ok(client.ended.has(a), "the client saw A's end: the FIN was in the data's packet");
});

// (c) Sends before receives: a FIN given to quiche but not yet transmitted leaves before the next
// datagram is read, or the ACK in it makes quiche collect the stream first.
t.test('(c) pending writes are transmitted before an incoming datagram is fed', async (t) => {
  const pair = await QuicPair.connect();
  const { client, server } = pair;
  const { a, ack } = await answered(t, pair);
  t.equal(server.machine.streamWrite(a, EMPTY, true), true, 'the FIN goes to quiche (room enough) and waits for a transmit');
  t.equal(server.outbox.length, 0, 'nothing sent yet');
  deliverTo(server, ack);
  t.ok(server.outbox.length > 0, 'the FIN left before the ACK was read');
  pair.run();
  t.ok(client.ended.has(a), "the client saw A's end");
});

// (d) The deferred transmit: when service() hands the application a peer stream's end and the
// application wrote, the transmit waits for that tick's nextTicks, so a stream ended in answer (a
// pipe: data written in 'data', end() in a nextTick) sends its FIN with its last data.
t.test('(d) the FIN of a stream ended in answer to a peer FIN leaves with its last data', async (t) => {
  const pair = await QuicPair.connect();
  const { client, server } = pair;
  server.onData = (id, chunk) => void server.machine.streamWrite(id, chunk, false); // pipe: write in 'data'
  server.onEnd = (id) => void server.write(id, EMPTY, true); // pipe: end() in a nextTick after 'end'
  dropSmall(server);
  const a = client.open();
  client.write(a, Buffer.alloc(2000, 5), true);
  pair.run();
  t.ok(server.ended.has(a), 'the server read the request to its end');
  t.equal(client.bytes(a), 2000, 'the echo arrived');
  t.ok(client.ended.has(a), "the client saw the echo's end");
});

// (e) A write on a stream quiche already collected (the peer stopped it, quiche reset our side and
// the reset was acknowledged) fails and releases the stream. quiche answers such a write with Done,
// as if there were no room: before, the write was parked and retried by every service() for ever,
// and the stream never released (scale-and-relay notes, "Leak at hops": thousands of relayed legs).
async function stoppedThenWritten(t: Test, write: (server: PairEnd, a: number) => unknown): Promise<void> {
  const pair = await QuicPair.connect();
  const { client, server } = pair;
  const a = client.open();
  client.write(a, Buffer.alloc(100, 1), true);
  pair.run();
  t.ok(server.ended.has(a), "the server read A's request to its end");
  client.machine.streamReset(a, 5); // the far end stops A (STOP_SENDING)
  client.react();
  pair.run();
  t.ok(server.machine.hasStream(a), 'the server still holds A (nothing told it)');
  write(server, a);
  pair.run();
  t.equal(server.failed.get(a)?.code, 'ERR_STREAM_RESET', 'the write failed the stream');
  t.notOk(server.machine.hasStream(a), 'A is released');
  t.equal(server.machine.streamCount, 0, 'nothing parked is left to retry');
}

t.test('(e) a FIN on a stream quiche collected after the peer stopped it releases the stream', (t) =>
  stoppedThenWritten(t, (server, a) => server.write(a, EMPTY, true)),
);

t.test('(e) data on a stream quiche collected after the peer stopped it releases the stream', (t) =>
  stoppedThenWritten(t, (server, a) => server.write(a, Buffer.alloc(10), false)),
);

// The same with the FIN parked for room first: the stop arrives while it waits.
t.test('(e) a FIN parked for room on a stream the peer then stops releases the stream', async (t) => {
  const pair = await QuicPair.connect();
  const { client, server } = pair;
  const { a, ack } = await answered(t, pair);
  const { b } = fillWindow(server, () => 256 * 1024);
  t.equal(server.write(a, EMPTY, true), false, "A's FIN is parked (no room)");
  deliverTo(server, ack);
  client.machine.streamReset(a, 5);
  client.react();
  server.machine.streamEnding(b);
  pair.run();
  t.equal(server.failed.get(a)?.code, 'ERR_STREAM_RESET', 'the parked FIN failed');
  t.notOk(server.machine.hasStream(a), 'A is released');
});
