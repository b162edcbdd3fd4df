// A fan-out in progress when its node closes ends with ERR_NODE_CLOSED (it waited forever before;
// the soak saw it), after the results that had arrived.
import t from 'tap';
import { createNode } from '../src/index.js';
import type { FanoutResult } from '../src/index.js';

t.test('closing the node ends its fan-outs: the answers so far, then ERR_NODE_CLOSED', async (t) => {
  const [a, b, c] = await Promise.all([createNode(), createNode(), createNode()]);
  t.teardown(() => Promise.all([a, b, c].map((node) => node.close({ timeoutMs: 100 }))).then(() => undefined));
  b.handleRequest('job', () => 'done');
  c.handleRequest('job', () => new Promise<never>(() => undefined)); // never answers
  await a.dial(b.address);
  await a.dial(c.address);
  const deadline = Date.now() + 10_000;
  while (a.routes().length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  const results: FanoutResult[] = [];
  const run = (async () => {
    for await (const result of a.fanout([b.id, c.id], 'job', 'x', { deadlineMs: 60_000 })) {
      results.push(result);
      if (results.length === 1) setTimeout(() => void a.close({ timeoutMs: 100 }), 100);
    }
  })();
  const started = Date.now();
  await t.rejects(run, { code: 'ERR_NODE_CLOSED' });
  t.ok(Date.now() - started < 10_000, 'at once, not at the 60 s deadline');
  t.same(results.map((result) => [result.nodeId, result.ok]), [[b.id, true]], "b's answer came first");
});
