// A client whose handshake completed but was never confirmed (the server's HANDSHAKE_DONE and its
// ACK of the client's Finished lost: the server died or restarted then) closes while a Handshake
// PTO is pending. quiche 0.18 then writes ACK-only Handshake packets without end (no PING while
// closing, so the probe is never spent): the driver's transmit loop never returned, and a soak
// worker spun in it, holding every packet in quiche's recovery, until the kernel killed it at
// 23 GB. The machine now lets a closing connection write CLOSING_PACKETS and no more.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { native } from '@matrixai/quic';
import { Identity } from '../src/identity/index.js';
import { makeQuicConfig } from '../src/transport/quic/config.js';
import { QuicMachine, READ_POOL_SIZE } from '../src/transport/quic/machine.js';
import { PairEnd } from './fixtures/quic-pair.js';

const quiche = native.quiche;
const CLIENT = { host: '127.0.0.1', port: 40001 };
const SERVER = { host: '127.0.0.1', port: 40002 };
/** The machine's CLOSING_PACKETS (written out, so that this test runs against the code before it too). */
const CLOSING_PACKETS = 16;

/** A client machine established but unconfirmed: every server datagram after the client's handshake completed is lost. */
async function unconfirmedClient(): Promise<QuicMachine> {
  const [alice, bob] = await Promise.all([Identity.generate(), Identity.generate()]);
  const limits = { idleTimeoutMs: 30_000, connectionWindow: 16 << 20, streamWindow: 1 << 20, maxStreamsPerConnection: 100, maxDatagramSize: 1350 };
  const common = { handshakeTimeoutMs: 3_600_000, readPool: { buffer: Buffer.allocUnsafe(READ_POOL_SIZE), offset: 0 }, now: 0 };
  const clientMachine = new QuicMachine(quiche.Connection.connect('pnet', randomBytes(16), CLIENT, SERVER, makeQuicConfig(alice, limits)), { ...common, direction: 'outbound', local: CLIENT, remote: SERVER, expectedNodeId: bob.nodeId });
  const serverMachine = new QuicMachine(quiche.Connection.accept(randomBytes(16), null, SERVER, CLIENT, makeQuicConfig(bob, limits)), { ...common, direction: 'inbound', local: SERVER, remote: CLIENT });
  const ends: { client?: PairEnd; server?: PairEnd } = {};
  const client = (ends.client = new PairEnd('client', clientMachine, () => ends.server!));
  const server = (ends.server = new PairEnd('server', serverMachine, () => client));
  server.filter = () => (clientMachine.established ? 'drop' : 'deliver');
  client.drive();
  for (let i = 0; i < 50; i++) {
    for (const end of [client, server]) if (end.pendingTransmit) end.transmit();
    server.receiveAll();
    client.receiveAll();
  }
  return clientMachine;
}

/**
 * Waits until quiche's next timer has passed (its loss timers read the real clock), at most
 * `limitMs`. Past it, not at "1 ms left" (the machine's own threshold): quiche's onTimeout fires
 * only the timers already expired, and its whole milliseconds can read 0 up to 1 ms early, so a
 * PTO 0.5 ms away was not fired and the close found no probe pending (CI at 7b95f68:
 * "the close wrote 1 packets").
 */
async function untilDue(machine: QuicMachine, limitMs: number): Promise<void> {
  const until = Date.now() + limitMs;
  for (;;) {
    const due = machine.quiche.timeout();
    if (due === null || Date.now() > until) return;
    if (due === 0) return new Promise((resolve) => setTimeout(resolve, 2));
    await new Promise((resolve) => setTimeout(resolve, Math.min(due, 50)));
  }
}

t.test('a close with a Handshake PTO pending writes a bounded number of packets', async (t) => {
  const machine = await unconfirmedClient();
  t.ok(machine.established, 'the client completed its handshake');
  await untilDue(machine, 10_000);
  machine.handleTimeout(1_000); // the Handshake PTO: the client's Finished was never acknowledged
  machine.close({ graceful: false, reason: 'replaced' }, 1_001);
  t.ok(machine.closed, 'closed');
  const buffer = Buffer.alloc(1350);
  let written = 0;
  // Bounded here so that the old code fails rather than hangs: it wrote 10,000 of 10,000.
  while (written < 10_000 && machine.pollTransmit(buffer) !== null) written++;
  t.ok(written <= CLOSING_PACKETS, `the close wrote ${written} packets (at most ${CLOSING_PACKETS})`);
  t.ok(machine.closingSendsCut, 'the cut is recorded (the transport counts it)');
  // Later timers find nothing more to send either.
  await untilDue(machine, 2_000);
  machine.handleTimeout(2_000);
  let later = 0;
  while (later < 10_000 && machine.pollTransmit(buffer) !== null) later++;
  t.equal(later, 0, 'no packet after the cut');
});

t.test('an ordinary close still sends its CONNECTION_CLOSE and drains', async (t) => {
  const machine = await unconfirmedClient();
  machine.close({ graceful: false, reason: 'bye' }, 1);
  const buffer = Buffer.alloc(1350);
  let written = 0;
  while (written < 10_000 && machine.pollTransmit(buffer) !== null) written++;
  t.ok(written >= 1 && written <= 2, `one close packet (${written})`);
  t.ok(machine.quiche.isDraining(), 'quiche drains');
  t.notOk(machine.closingSendsCut, 'nothing cut');
});
