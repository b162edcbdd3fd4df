// Connection flow control under held streams (issue 15, the victims' native memory), played with
// the QuicPair (test/fixtures/quic-pair.ts): two machines with the production config joined by
// in-memory queues. quiche 0.18 gives the connection window back only for bytes the application
// reads, so streams reset with unread bytes used it up for good; and a blocked connection's parked
// writes, retried on every ACK, ping-ponged DATA_BLOCKED frames at loop speed for as long as the
// block lasted (in the soak: ~2,400 packets/s each way, native memory growing with them).
import t from 'tap';
import { QuicPair } from './fixtures/quic-pair.js';
import type { PairEnd } from './fixtures/quic-pair.js';
import { ABANDONED_STREAM_LIMIT } from '../src/transport/quic/machine.js';

const WINDOW = 64 * 1024;

/** The end's application stops reading the streams in `paused` (their bytes stay in quiche, unread). */
function pauseReads(end: PairEnd, paused: (id: number) => boolean): void {
  const machine = end.machine;
  const read = machine.streamRead.bind(machine);
  machine.streamRead = (id, push) => {
    if (!paused(id)) read(id, push);
  };
}

t.test('streams reset with unread bytes give the connection window back', async (t) => {
  const pair = await QuicPair.connect({ connectionWindow: WINDOW, streamWindow: WINDOW, maxStreamsPerConnection: 1000 });
  const { client, server } = pair;
  pauseReads(server, () => true);
  const streams = 40; // 40 × 4 KiB = 160 KiB through a 64 KiB window
  let sent = 0;
  for (let i = 0; i < streams; i++) {
    const id = client.open();
    if (client.write(id, Buffer.alloc(4096, 1), false) !== true) break;
    pair.run();
    // The held stream is refused: its reader destroys it with the 4 KiB still unread.
    server.machine.streamReset(id, 0);
    server.react();
    pair.run();
    client.machine.streamReset(id, 0);
    client.react();
    pair.run();
    sent++;
  }
  // quiche 0.18 alone: the 16th stream blocks (15 × 4 KiB unread used the window up) and stays blocked.
  t.equal(sent, streams, 'every stream took its bytes');
  t.equal(server.machine.discardedBytes, streams * 4096, "the server dropped each stream's unread bytes before shutting its read side");
});

t.test('a connection blocked by flow control stays quiet until the reader reads', async (t) => {
  const pair = await QuicPair.connect({ connectionWindow: WINDOW, streamWindow: WINDOW, maxStreamsPerConnection: 1000 });
  const { client, server } = pair;
  let paused = true;
  pauseReads(server, () => paused);
  const ids = [client.open(), client.open(), client.open()];
  const size = 40 * 1024; // 120 KiB in all: the window takes 64
  const results = ids.map((id) => client.write(id, Buffer.alloc(size, 2), false));
  t.ok(results.includes(false), 'a write is parked on flow control');
  pair.run(50);
  const before = { client: client.sent, server: server.sent };
  for (let i = 0; i < 300; i++) pair.step();
  const moved = client.sent - before.client + (server.sent - before.server);
  // Before: each of the 300 steps moved a DATA_BLOCKED one way and its ACK the other (~300 datagrams).
  t.ok(moved <= 10, `at most a few datagrams while blocked (${moved})`);
  t.ok(client.machine.blockedRetriesSkipped > 0, 'retries into no capacity were skipped (counted)');

  paused = false;
  server.drive(); // the application reads again: its readable streams are found
  pair.run(2000);
  for (const id of ids) t.equal(server.bytes(id), size, `stream ${id}: every byte arrived once the reader read`);
  t.ok(client.writesDone.length >= 1, 'the parked writes completed');
});

/** REJECT and FIN from the server, then (the linger over) it destroys the stream; the client never ends its side unless `clientResets`. */
function refuseStreams(pair: QuicPair, count: number, clientResets: boolean): number {
  const { client, server } = pair;
  let opened = 0;
  for (; opened < count; opened++) {
    const id = client.machine.openStream();
    if (typeof id !== 'number') break;
    client.write(id, Buffer.alloc(5, 1), false);
    pair.run();
    if (server.machine.closing) break;
    server.write(id, Buffer.alloc(40, 2), true);
    pair.run();
    if (clientResets) {
      client.machine.streamReset(id, 0);
      client.react();
      pair.run();
    }
    if (server.machine.hasStream(id)) {
      server.machine.streamReset(id, 0);
      server.react();
      pair.run();
    }
  }
  return opened;
}

t.test('a peer that leaves streams quiche never collects has its connection closed', async (t) => {
  const pair = await QuicPair.connect({ maxStreamsPerConnection: 1000 });
  const opened = refuseStreams(pair, 400, false);
  // quiche 0.18 keeps each (~2-4 KiB, one of the client's stream credits): before, all 400 stayed and the connection lived on.
  t.ok(pair.server.machine.abandonedClose, 'the server closed the connection');
  t.ok(opened >= ABANDONED_STREAM_LIMIT && opened < 400, `after ${opened} streams (limit ${ABANDONED_STREAM_LIMIT})`);
  pair.run(500);
  t.ok(pair.server.machine.closed && pair.client.machine.closed, 'both ends closed');
});

t.test('openers that reset on the REJECT leave nothing behind: no close', async (t) => {
  const pair = await QuicPair.connect({ maxStreamsPerConnection: 100 });
  t.equal(refuseStreams(pair, 600, true), 600, '600 streams through a limit of 100');
  t.notOk(pair.server.machine.closing, 'the connection stays open');
});
