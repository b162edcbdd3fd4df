// The quiche binding's error strings, provoked with real quiche calls, and what the one
// classifier (src/transport/quic/quiche-errors.ts) makes of them. If a binding upgrade changes a
// string, this test says which.
import t from 'tap';
import { classifyQuicheError, isQuicheError } from '../src/transport/quic/quiche-errors.js';
import { QuicPair } from './fixtures/quic-pair.js';

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected quiche to throw');
}

const pair = await QuicPair.connect({ maxStreamsPerConnection: 2 });
const { client, server } = pair;

t.test('StreamLimit: a stream beyond the peer limit', async (t) => {
  client.open();
  client.open();
  const error = thrown(() => client.machine.quiche.streamSend(8, Buffer.alloc(0), false));
  t.equal((error as Error).message, 'StreamLimit');
  t.same(classifyQuicheError(error), { kind: 'StreamLimit' });
});

t.test('InvalidStreamState(n): a stream quiche does not have', async (t) => {
  const error = thrown(() => client.machine.quiche.streamCapacity(400));
  t.equal((error as Error).message, 'InvalidStreamState(400)');
  t.same(classifyQuicheError(error), { kind: 'InvalidStreamState', streamId: 400 });
});

t.test('StreamReset(n) and StreamStopped(n): the peer reset or stopped the stream', async (t) => {
  const id = 0;
  client.write(id, Buffer.from('hello'), false);
  pair.run();
  server.write(id, Buffer.from('hi'), false);
  server.drive();
  pair.run();
  // The client resets both directions with code 9: the server's reads see RESET_STREAM, its writes STOP_SENDING.
  client.machine.quiche.streamShutdown(id, 0, 9);
  client.machine.quiche.streamShutdown(id, 1, 9);
  client.transmit();
  // Fed to quiche only (no service(), which would read the reset and fail the stream first).
  for (const datagram of client.outbox.splice(0)) server.machine.handleDatagram(datagram, 0, () => undefined);
  const stopped = thrown(() => server.machine.quiche.streamSend(id, Buffer.from('more'), false));
  t.equal((stopped as Error).message, 'StreamStopped(9)');
  t.same(classifyQuicheError(stopped), { kind: 'StreamStopped', code: 9 });
  const reset = thrown(() => server.machine.quiche.streamRecv(id, Buffer.alloc(100)));
  t.equal((reset as Error).message, 'StreamReset(9)');
  t.same(classifyQuicheError(reset), { kind: 'StreamReset', code: 9 });
});

t.test('InvalidState: a DATAGRAM before the handshake', async (t) => {
  const { native } = await import('@matrixai/quic');
  const { Identity } = await import('../src/identity/index.js');
  const { makeQuicConfig } = await import('../src/transport/quic/config.js');
  const identity = await Identity.generate();
  const config = makeQuicConfig(identity, { idleTimeoutMs: 1000, connectionWindow: 1 << 20, streamWindow: 1 << 16, maxStreamsPerConnection: 4, maxDatagramSize: 1350 });
  const fresh = native.quiche.Connection.connect('pnet', Buffer.alloc(16, 1), { host: '127.0.0.1', port: 1 }, { host: '127.0.0.1', port: 2 }, config);
  const error = thrown(() => fresh.dgramSend(Buffer.from('early')));
  t.equal((error as Error).message, 'InvalidState');
  t.ok(isQuicheError(error, 'InvalidState'));
});

t.test('anything else is Other, with its text', async (t) => {
  t.same(classifyQuicheError(new Error('SomethingNew(3)')), { kind: 'Other', text: 'SomethingNew(3)' });
  t.same(classifyQuicheError('Done'), { kind: 'Done' });
});
