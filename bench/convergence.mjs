#!/usr/bin/env node
// Convergence after a link cut (figure 9c), with real pnet nodes on loopback:
// a ring of N nodes in this one process (default routing options). Per run,
// one ring link is cut with node.disconnect(); the time is measured from the
// cut until every node has a route to every other node and no route crosses
// the cut link. The link is then dialed again and the ring re-converges
// before the next run (cutting a different link).
//
//   node bench/convergence.mjs [--nodes=16] [--runs=3] [--json=PATH]
import { writeFileSync } from 'node:fs';
import { createNode } from '../dist/index.js';

const arg = (name, dflt) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const N = arg('nodes', 16);
const RUNS = arg('runs', 3);
const jsonOut = process.argv.find((a) => a.startsWith('--json='))?.slice('--json='.length);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition, ms, what) {
  const t0 = performance.now();
  while (!condition()) {
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(2);
  }
  return performance.now() - t0;
}

/** Every node routes to every other, and (if given) no path uses the link a–b. */
function converged(nodes, cut) {
  for (const node of nodes) {
    if (node.routes().length !== nodes.length - 1) return false;
    if (!cut) continue;
    for (const other of nodes) {
      if (other === node) continue;
      const path = node.path(other.id);
      if (!path) return false;
      for (let i = 0; i + 1 < path.length; i++) {
        const x = path[i];
        const y = path[i + 1];
        if ((x === cut[0] && y === cut[1]) || (x === cut[1] && y === cut[0])) return false;
      }
    }
  }
  return true;
}

const nodes = [];
for (let i = 0; i < N; i++) {
  const node = await createNode({ listen: '127.0.0.1:0' });
  node.on('error', () => {});
  nodes.push(node);
}
const tBuild = performance.now();
for (let i = 0; i < N; i++) await nodes[i].dial(nodes[(i + 1) % N].address, { expectedNodeId: nodes[(i + 1) % N].id });
await until(() => converged(nodes), 30_000, 'initial convergence');
const initialMs = performance.now() - tBuild;

const samples = [];
const errors = [];
for (let r = 0; r < RUNS; r++) {
  const a = nodes[(r * 5) % N];
  const b = nodes[((r * 5) % N + 1) % N];
  try {
    const t0 = performance.now();
    const closing = a.disconnect(b.id);
    await until(() => converged(nodes, [a.id, b.id]), 30_000, 'convergence after the cut');
    samples.push(performance.now() - t0);
    await closing;
  } catch (error) {
    errors.push(String(error?.message ?? error));
  }
  // restore the link and wait until a reaches b directly again
  await a.dial(b.address, { expectedNodeId: b.id }).catch(() => {});
  await until(() => converged(nodes) && a.path(b.id)?.length === 2, 30_000, 'restored link').catch((e) => errors.push(String(e.message)));
}

await Promise.all(nodes.map((n) => n.close({ timeoutMs: 500 })));
const result = { nodes: N, runs: RUNS, initialConvergenceMs: initialMs, samplesMs: samples, errors };
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(result) + '\n');
else console.log(JSON.stringify(result));
process.exit(0);
