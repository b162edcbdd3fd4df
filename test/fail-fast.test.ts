import t from 'tap';
import { createNode } from '../src/index.js';
import { deadPort } from './fixtures/ports.js';

// Figures here are bounds a loaded machine meets (the old dial took the whole 5 s handshake timeout).
t.setTimeout(60_000);

t.test('a dial to a closed port fails with ERR_CONNECTION_REFUSED well before the handshake timeout', async (t) => {
  const node = await createNode();
  t.teardown(() => node.close());
  const port = await deadPort();
  const started = performance.now();
  const error = await node.dial(`127.0.0.1:${port}`).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  const ms = performance.now() - started;
  t.match(error, { code: 'ERR_CONNECTION_REFUSED' }, `refused (${(error as Error | undefined)?.message})`);
  t.ok(ms < 2500, `failed in ${Math.round(ms)} ms (the handshake timeout is 5000 ms)`);
  t.equal(node.dialStats.refused, 1, 'counted in dialStats.refused');
  t.notMatch((error as Error).message, /\d\.\d{3,}/, 'no unrounded figures in the message');
});

t.test('a dead bootstrap address does not hold createNode for the handshake timeout', async (t) => {
  const port = await deadPort();
  const started = performance.now();
  const node = await createNode({ bootstrap: [`127.0.0.1:${port}`] });
  const ms = performance.now() - started;
  t.teardown(() => node.close());
  t.equal(node.bootstrapResults[0]?.ok, false);
  t.ok(ms < 2500, `createNode returned in ${Math.round(ms)} ms`);
});

t.test('a QUIC-only peer (no TCP listener) is still reached: the refusal only shortens a dead dial', async (t) => {
  const quicOnly = await createNode({ h2: false });
  const dialer = await createNode();
  t.teardown(() => Promise.all([quicOnly.close(), dialer.close()]));
  t.equal(await dialer.dial(quicOnly.address), quicOnly.id);
});
