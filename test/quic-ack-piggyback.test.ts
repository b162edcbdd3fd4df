// The ACK of what a connection read waits two loop turns (src/transport/quic/scheduler.ts), so
// an answer written in the next turn (the fan-out's setImmediate flush, a thread-pool job)
// carries it: one packet per answer, not an ACK-only packet and then the answer. Counted with
// quiche's own packet counters over real QuicTransports on 127.0.0.1; the order of immediates is
// fixed, so the counts do not depend on the machine's load.
import t from 'tap';
import type { Test } from 'tap';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { Identity } from '../src/identity/index.js';
import { QuicTransport } from '../src/transport/index.js';
import type { QuicConnection } from '../src/transport/quic/connection.js';

const ROUNDS = 20;

async function pair(t: Test): Promise<{ client: QuicConnection; server: Promise<QuicConnection>; stream: Duplex }> {
  const [a, b] = await Promise.all([Identity.generate(), Identity.generate()]);
  const listener = await QuicTransport.listen({ identity: a, host: '127.0.0.1', port: 0 });
  const dialer = await QuicTransport.listen({ identity: b, host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await dialer.close({ timeoutMs: 100 });
    await listener.close({ timeoutMs: 100 });
  });
  const server = new Promise<QuicConnection>((resolve) =>
    listener.on('connection', (connection) => {
      resolve(connection as QuicConnection);
      connection.on('stream', (stream: Duplex) => {
        // Answers each request one loop turn later, queued after the drive that read it (in a
        // microtask), as the fan-out's answer and its link flush are: behind the ACK's transmit.
        const answer = (chunk: Buffer): void => void stream.write(Buffer.concat([Buffer.from('re:'), chunk]));
        stream.on('data', (chunk: Buffer) => queueMicrotask(() => setImmediate(answer, chunk)));
        stream.on('error', () => undefined);
      });
    }),
  );
  const client = await dialer.dial(listener.address, { expectedNodeId: a.nodeId });
  const stream = (await client.openStream()) as unknown as Duplex;
  stream.on('error', () => undefined);
  return { client, server, stream };
}

async function ask(stream: Duplex, i: number): Promise<string> {
  stream.write(`q${i}`);
  const [chunk] = (await once(stream, 'data')) as [Buffer];
  return chunk.toString();
}

const sent = (connection: QuicConnection): number => connection.machine.quiche.stats().sent;

t.test('an answer written in the next turn carries the ACK of its request', async (t) => {
  const { client, server, stream } = await pair(t);
  t.equal(await ask(stream, 0), 're:q0', 'warm-up answer');
  const end = await server;
  // Let the handshake's and the warm-up's last ACKs go.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const server0 = sent(end);
  const client0 = sent(client);
  for (let i = 1; i <= ROUNDS; i++) t.equal(await ask(stream, i), `re:q${i}`);
  const serverPackets = sent(end) - server0;
  const clientPackets = sent(client) - client0;
  // Old rule (ACK-only next turn): 2 per round at the server (its ACK, then the answer). A stall
  // of the loaded test process past a probe timeout can add a packet or two, not one a round.
  t.ok(serverPackets >= ROUNDS && serverPackets < ROUNDS * 1.5, `the server sent one packet per answer (${serverPackets} for ${ROUNDS}; 2 a round before)`);
  // The client's next request carries its ACK of the answer.
  t.ok(clientPackets >= ROUNDS && clientPackets < ROUNDS * 1.5, `the client sent one packet per request (${clientPackets} for ${ROUNDS})`);
});

t.test('a lone ACK still goes out: nothing stays in flight when no answer follows', async (t) => {
  const { client, server, stream } = await pair(t);
  t.equal(await ask(stream, 0), 're:q0');
  const end = await server;
  const lost0 = end.machine.quiche.stats().lost + client.machine.quiche.stats().lost;
  // The client answers nothing: its ACK of the answer goes alone two turns later, before any loss
  // timer. Without it the server would probe again and again (~30, 90, 210, 450, 930 ms).
  const retrans0 = end.machine.quiche.stats().retrans;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const lost = end.machine.quiche.stats().lost + client.machine.quiche.stats().lost - lost0;
  t.equal(lost, 0, 'no packet declared lost');
  // At most one, should a stall of the loaded test process outlast the first probe timeout.
  t.ok(end.machine.quiche.stats().retrans - retrans0 <= 1, 'the server retransmitted nothing (its answer was acknowledged in time)');
});
