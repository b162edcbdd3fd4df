import t from 'tap';
import type { Test } from 'tap';
import { createNode } from '../src/index.js';
import type { PnetNode, NodeOptions } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

// A relayed (v2) connection a→d on a line a-b-c-d whose first hop (a-b) is cut and dialed again.
// a's routes come back with its link, but c's and d's only once a's and b's records are out again:
// up to the routing's publication hold, 1 s doubling to 5 s under churn. Meanwhile a's requests
// reached d and d's answers had no route (requests timed out at 3 s after the redial). Now the far
// end and the hops send a datagram they have no route for the way the destination's own came in
// (forwarder.ts WAY_BACK_MS). The hold is set to 5 s here so that the gap is there on any machine.

const options: NodeOptions = { routing: { rttSampleMs: 200, publishBackoffMs: 5000, minPublishIntervalMs: 5000 } };
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await delay(20);
  }
}

async function line(t: Test): Promise<PnetNode[]> {
  const nodes: PnetNode[] = [];
  for (let i = 0; i < 4; i++) {
    const node = await createNode(options);
    node.handleRequest('echo', (request) => request);
    nodes.push(node);
  }
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  for (let i = 0; i < 3; i++) await nodes[i]!.dial(nodes[i + 1]!.address);
  // Each node's second link change waits out the 5 s hold: converged within ~10 s, longer under load.
  await until('routes converged', 40_000, () => nodes.every((node) => node.routes().length === 3));
  return nodes;
}

t.test('a first hop cut and redialed: every request after a has its route back is answered, none waits for the far end\'s routes', async (t) => {
  const [a, b, c, d] = (await line(t)) as [PnetNode, PnetNode, PnetNode, PnetNode];
  t.equal((await a.request(d.id, 'echo', 'before', { timeoutMs: 3000 })).toString(), 'before');
  const relayed = nodeServices(a).datagrams!.live(d.id);
  t.ok(relayed, 'a relayed connection a→d');
  // Past the hold of the setup's last publication, so the cut itself is published at once and the
  // link's return waits the whole 5 s hold at a and b.
  await delay(5500);
  await a.disconnect(b.id, { timeoutMs: 0 });
  await until("the cut reached d's routes", 10_000, () => d.path(a.id) === undefined);
  await a.dial(b.address);
  await until("a's route to d is back", 10_000, () => a.path(d.id) !== undefined);
  const farRouteBack = (): boolean => d.path(a.id) !== undefined && c.path(a.id) !== undefined;
  t.notOk(farRouteBack(), "c and d have no route to a yet (the hold): the case this test is for");
  const results: Array<{ ok: boolean; ms: number; farRoute: boolean }> = [];
  for (let i = 0; i < 20; i++) {
    const started = performance.now();
    const farRoute = farRouteBack();
    const reply = await a.request(d.id, 'echo', `n${i}`, { timeoutMs: 3000 }).then(String, (error: { code?: string }) => `error ${error.code}`);
    results.push({ ok: reply === `n${i}`, ms: performance.now() - started, farRoute });
    await delay(100);
  }
  const withoutFarRoute = results.filter((r) => !r.farRoute).length;
  const way = { forwardedBack: nodeServices(c).datagrams!.forwarder.stats.forwardedBack, sentBack: nodeServices(d).datagrams!.endpoint.stats.sentBack };
  t.comment(`20 requests after a's route came back (${withoutFarRoute} before d's and c's): ${results.map((r) => `${r.ok ? 'ok' : 'FAILED'} ${r.ms.toFixed(0)} ms`).join(', ')}; ${JSON.stringify(way)}`);
  t.ok(withoutFarRoute > 0, 'some requests went while d and c had no route to a');
  t.equal(results.filter((r) => r.ok).length, 20, 'every request answered');
  t.ok(way.sentBack > 0 && way.forwardedBack > 0, 'd sent and c forwarded the answers the way the requests came');
  t.equal(nodeServices(a).datagrams!.live(d.id), relayed, 'on the same relayed connection');
});
