import t from 'tap';
import { createNode } from '../src/index.js';
import type { PnetNode } from '../src/index.js';

// Issue 17 item 5 on the fallback path: the stream relay (relay: { datagrams: false }) carries
// the far end's request error codes, as relay v2 does (test/relay-v2-node.test.ts).
t.setTimeout(60_000);

// Known gap: the stream relay's end-to-end TLS tunnel carries no stream reset code, so the
// requester sees ERR_STREAM_RESET; fixing it needs in-band framing in src/relay (not small).
t.test("errors through the stream relay are the far end's: ERR_HANDLER_FAILED, ERR_REQUEST_TOO_LARGE", { todo: 'stream relay tunnels carry no reset code (issue 17 item 5)' }, async (t) => {
  const nodes: PnetNode[] = [];
  for (let i = 0; i < 3; i++) nodes.push(await createNode({ relay: { datagrams: false }, routing: { rttSampleMs: 60_000 } }));
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  const [a, b, c] = nodes as [PnetNode, PnetNode, PnetNode];
  await a.dial(b.address);
  await b.dial(c.address);
  const deadline = Date.now() + 15_000;
  while (a.routes().length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  c.handleRequest('throws', () => {
    throw new Error('boom');
  });
  c.handleRequest('small', (request) => request, { maxRequestBytes: 10 });
  c.on('error', () => undefined);
  await t.rejects(a.request(c.id, 'throws', 'x'), { code: 'ERR_HANDLER_FAILED' }, 'a throwing handler at c');
  await t.rejects(a.request(c.id, 'small', Buffer.alloc(100)), { code: 'ERR_REQUEST_TOO_LARGE' }, 'an oversized request');
  t.equal((await a.request(c.id, 'small', 'tiny')).toString(), 'tiny');
});
