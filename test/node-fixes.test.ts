import t from 'tap';
import { inspect } from 'node:util';
import { createNode, PnetError } from '../src/index.js';
import type { NodeId } from '../src/index.js';

// Issue 17, item 8: the smaller fixes, each checked on real nodes.
t.setTimeout(60_000);

t.test("a handler that throws: the node's 'error' event carries a PnetError (ERR_HANDLER_FAILED), the throw as its cause", async (t) => {
  const a = await createNode();
  const b = await createNode();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const thrown = new Error('boom');
  b.handleRequest('fail', () => {
    throw thrown;
  });
  const emitted = new Promise<Error>((resolve) => b.once('error', resolve));
  await a.dial(b.address);
  await t.rejects(a.request(b.id, 'fail', 'x'), { code: 'ERR_HANDLER_FAILED' });
  const error = await emitted;
  t.ok(error instanceof PnetError, `a PnetError (${error.constructor.name})`);
  t.match(error, { code: 'ERR_HANDLER_FAILED', cause: thrown });
});

t.test('disconnect() with an idle stream open takes its timeoutMs (default 1 s), not the 5 s drain', async (t) => {
  const a = await createNode();
  const b = await createNode();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  b.handle('echo', (stream) => void stream.pipe(stream));
  const id = await a.dial(b.address);
  const stream = await a.openStream(id, 'echo');
  stream.on('error', () => undefined);
  stream.write('x');
  let started = performance.now();
  await a.disconnect(id);
  const ms = performance.now() - started;
  t.ok(ms < 2500, `disconnect took ${Math.round(ms)} ms (was 5,036 ms)`);
  t.equal(a.peers().length, 0);
  await a.dial(b.address);
  const again = await a.openStream(id, 'echo');
  again.on('error', () => undefined);
  started = performance.now();
  await a.disconnect(id, { timeoutMs: 0 });
  t.ok(performance.now() - started < 1000, 'timeoutMs 0: at once');
  t.throws(() => a.disconnect(id, { timeoutMs: -1 }), { code: 'ERR_BAD_OPTION' });
});

t.test('a malformed expectedNodeId is ERR_BAD_NODE_ID, before any dial', async (t) => {
  const a = await createNode();
  const b = await createNode();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  await t.rejects(a.dial(b.address, { expectedNodeId: 'abc' as NodeId }), { code: 'ERR_BAD_NODE_ID' });
  t.equal(a.dialStats.quic + a.dialStats.h2, 0, 'nothing was dialed');
});

t.test('a request to the node itself runs its own handler', async (t) => {
  const a = await createNode();
  t.teardown(() => a.close());
  a.handleRequest('whoami', (request, info) => `${info.remoteNodeId}:${request.toString()}`);
  t.equal((await a.request(a.id, 'whoami', 'hi')).toString(), `${a.id}:hi`);
  await t.rejects(a.request(a.id, 'nobody', ''), { code: 'UNKNOWN_CHANNEL' });
  a.handleRequest('refuse', () => 'x', { authorise: () => false });
  await t.rejects(a.request(a.id, 'refuse', ''), { code: 'UNAUTHORIZED' });
});

t.test('peers() prints plain values (no [Getter])', async (t) => {
  const a = await createNode();
  const b = await createNode();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  await a.dial(b.address);
  const printed = inspect(a.peers());
  t.notMatch(printed, /Getter/, printed);
  t.type(a.peers()[0]!.rttMs, 'number');
  t.same(Object.keys(JSON.parse(JSON.stringify(a.peers()[0]))).sort(), ['address', 'direction', 'nodeId', 'rttMs', 'streams', 'transport']);
});
