import t from 'tap';
import { createNode } from '../src/index.js';
import type { PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

// A target's answer carries the ACK of its leg (issue 14, session 9): one packet per target per
// fan-out. Targets sign their answer on the event loop and the link writes it up after that batch
// of drives (a microtask), so it leaves within the turns the leg's ACK waits for
// (src/transport/quic/scheduler.ts). Signed on the worker thread, as when many targets share a
// process (more than 32 signatures in a turn), it came back turns later and the ACK went alone
// first: 1.72 packets per target; written up a turn later (a setImmediate flush), 1.23-1.35.
// Counted with quiche's own counters.

const LEAVES = 48;
/** Fan-outs measured at most; a run at or under CLEAN packets a target ends the measuring. */
const MAX_RUNS = 6;
const CLEAN = 1.1;
const base = { h2: false, quic: { idleTimeoutMs: 30_000 } };

async function until(what: string, ok: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const sentBy = (nodes: PnetNode[]): number =>
  nodes.reduce((n, node) => {
    for (const [, connection] of nodeServices(node).peers.entries()) n += (connection as { machine?: { quiche: { stats(): { sent: number } } } }).machine?.quiche.stats().sent ?? 0;
    return n;
  }, 0);

t.test('targets answering together: one packet each per fan-out, the answer carrying the ACK', async (t) => {
  const hub = await createNode({ ...base, routing: { role: 'router' } });
  const operator = await createNode({ ...base, routing: { role: 'router' } });
  const leaves: PnetNode[] = [];
  for (let i = 0; i < LEAVES; i++) leaves.push(await createNode({ ...base, routing: { role: 'leaf' } }));
  const all = [hub, operator, ...leaves];
  t.teardown(() => Promise.all(all.map((n) => n.close({ timeoutMs: 200 }))).then(() => undefined));
  for (const node of all) node.handleRequest('test/ping', () => 'pong');
  await operator.dial(hub.address);
  for (const leaf of leaves) await leaf.dial(hub.address);
  await until('the operator routes to every node', () => nodeServices(operator).neighbours.router.routeCount === all.length - 1);
  const fanout = async (): Promise<number> => {
    let ok = 0;
    for await (const result of operator.fanout('all', 'test/ping', 'x', { deadlineMs: 10_000 })) if (result.ok) ok++;
    return ok;
  };
  t.equal(await fanout(), all.length, 'warm-up: every node answered');
  // Load on the machine (a stall of the test process past a probe timeout) adds packets to a run:
  // the best of up to MAX_RUNS is judged, stopping at the first clean one.
  const perTarget: number[] = [];
  for (let run = 0; run < MAX_RUNS && !(Math.min(...perTarget) <= CLEAN); run++) {
    // Let the last fan-out's ACKs go, then count this one's packets from the leaves alone.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const before = sentBy(leaves);
    t.equal(await fanout(), all.length, `run ${run}: every node answered`);
    perTarget.push((sentBy(leaves) - before) / LEAVES);
  }
  const best = Math.min(...perTarget);
  t.ok(best >= 1 && best < 1.2, `the leaves' best run sent ${best.toFixed(2)} packets a target (runs: ${perTarget.map((x) => x.toFixed(2)).join(', ')}; 1.23-1.72 on the code before)`);
});
