// Issue 15 item 2 of the leftovers: the node passes the QUIC `retry` option to its endpoint
// (createNode({ quic: { retry } }) -> QuicTransport): 'always' answers every new Initial with a
// stateless Retry that a good dialer follows; 'never' sends none; a bad value fails createNode.
import t from 'tap';
import type { Test } from 'tap';
import { createNode } from '../src/index.js';
import type { PnetNode, NodeOptions } from '../src/index.js';

async function node(t: Test, options: NodeOptions = {}): Promise<PnetNode> {
  const n = await createNode({ listen: '127.0.0.1:0', h2: false, ...options });
  t.teardown(() => n.close({ timeoutMs: 200 }));
  return n;
}

for (const retry of ['always', 'never', 'auto'] as const) {
  t.test(`quic: { retry: '${retry}' }`, async (t) => {
    const server = await node(t, { quic: { retry } });
    server.handleRequest('echo', (request) => request);
    const client = await node(t);
    await client.dial(server.address);
    t.equal((await client.request(server.id, 'echo', 'hi')).toString(), 'hi', 'a good dialer connects and is served');
    const retried = server.stats().datagramsDropped?.retried;
    if (retry === 'always') t.equal(retried, 1, 'its first Initial got a Retry');
    else t.equal(retried, 0, 'no Retry at this rate');
  });
}

t.test('a retry value the endpoint does not know fails createNode', async (t) => {
  await t.rejects(createNode({ h2: false, quic: { retry: 'sometimes' as 'always' } }), { code: 'ERR_BAD_OPTION' });
});
