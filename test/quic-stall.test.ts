// After an event-loop stall the datagrams waiting in the socket are fed before a timer is decided:
// a peer that kept talking through the stall is not declared idle. The dialer is in its own process
// (test/fixtures/quic-chatter.mts) so it keeps sending while this process is blocked.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Identity } from '../src/identity/index.js';
import { QuicTransport } from '../src/transport/index.js';
import type { Connection, Stream } from '../src/transport/index.js';
import { childEnv } from './fixtures/child-env.js';

const IDLE_MS = 600;
const STALL_MS = 1200;

t.test('a stall longer than the idle timeout: the peer\'s datagrams sent meanwhile are read before the idle timer is decided', async (t) => {
  const identity = await Identity.generate();
  const server = await QuicTransport.listen({ identity, host: '127.0.0.1', port: 0, idleTimeoutMs: IDLE_MS });
  t.teardown(() => server.close({ timeoutMs: 100 }));
  const accepted = once(server, 'connection') as Promise<[Connection]>;
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/quic-chatter.mts', import.meta.url).pathname], {
    // With 600 ms the dialer's silence rule would send CONNECTION_CLOSE 600 ms into the stall: give it more.
    env: childEnv({ PORT: String(server.address.port), NODE_ID: identity.nodeId, CHATTER_MS: String(STALL_MS + 3000), IDLE_MS: '30000' }),
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const [connection] = await accepted;
  const [stream] = (await once(connection, 'stream')) as [Stream];
  let bytes = 0;
  stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
  stream.on('error', () => undefined);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.ok(bytes > 0, 'the peer writes');
  let closedAfter = -1;
  connection.once('close', () => (closedAfter = bytes));
  // Block this process (no timers, no I/O) for longer than the idle timeout.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, STALL_MS);
  const before = bytes;
  await new Promise((resolve) => setTimeout(resolve, 0));
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  t.ok(bytes > before, `the bytes sent during the stall were read (${bytes - before})`);
  t.equal(closedAfter, -1, 'and the connection was not closed as idle');
  t.notOk(connection.closed);
});
