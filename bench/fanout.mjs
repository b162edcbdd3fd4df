#!/usr/bin/env node
// Fan-out (figure 8), with real pnet nodes on loopback, all in this one process (a simulation of
// a network on the same code paths as separate hosts): N nodes, each joined through one random
// earlier node plus N/20 extra links (an irregular tree with some cycles). Every node serves a
// small request handler; node 0 fans out to 'all' and the run measures the time until every
// answer is in, and per-target latency (p50/p99, from the start of the fan-out).
// RTT sampling is off (link costs stay put): with N nodes sharing two cores, event-loop delays
// would read as RTT changes and flood the map with new costs. Above 200 nodes the routers are
// also slowed down (publish at most every 5 s, flood every 2 s, recompute every 3 s, refresh
// every 5 min): every flood and recompute is O(N) work per node, so O(N^2) for the process, which
// one process playing N hosts on 2 cores cannot keep up with at the per-host defaults.
//
//   node bench/fanout.mjs [--nodes=100] [--runs=3] [--json=PATH]
import { writeFileSync } from 'node:fs';
import { createNode } from '../dist/index.js';

const arg = (name, dflt) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const N = arg('nodes', 100);
const RUNS = arg('runs', 3);
const jsonOut = process.argv.find((a) => a.startsWith('--json='))?.slice('--json='.length);

let seed = 11;
const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

const built = performance.now();
const nodes = [];
for (let i = 0; i < N; i++) {
  const node = await createNode({
    h2: false,
    // One process plays N hosts on two cores: routers publish and recompute less often than
    // the defaults (which suit one node per host), and a loaded event loop must not read as dead peers.
    quic: { idleTimeoutMs: 60_000, handshakeTimeoutMs: 30_000 },
    routing:
      N > 200
        ? // Links join the map together once all are dialed (one flood instead of one per join).
          { rttSampleMs: 3_600_000, neighbourHoldDownMs: 20_000, minPublishIntervalMs: 5000, floodPacingMs: 2000, recordLifetimeMs: 600_000, refreshIntervalMs: 300_000, spfDelayMs: 500, spfMinIntervalMs: 3000 }
        : { rttSampleMs: 3_600_000 },
  });
  node.handleRequest('bench/uptime', () => `${node.id} up ${Math.round(process.uptime())} s`);
  nodes.push(node);
}
const edges = [];
for (let i = 1; i < N; i++) edges.push([i, Math.floor(random() * i)]);
for (let k = 0; k < Math.floor(N / 20); k++) {
  const a = Math.floor(random() * N);
  const b = Math.floor(random() * N);
  if (a !== b) edges.push([a, b]);
}
const dial = async (a, b) => {
  // A join can time out while the routers digest the joins before it: try again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await nodes[a].dial(nodes[b].address);
    } catch (error) {
      if (attempt === 5) throw error;
    }
  }
};
for (let i = 0; i < edges.length; i += 20) await Promise.all(edges.slice(i, i + 20).map(([a, b]) => dial(a, b)));
const convergeStart = performance.now();
while (!nodes.every((node) => node.routes().length === N - 1)) {
  if (performance.now() - convergeStart > 600_000) throw new Error('routes did not converge in 10 minutes');
  await new Promise((resolve) => setTimeout(resolve, 100));
}
const setupMs = performance.now() - built;
const convergeMs = performance.now() - convergeStart;

// Steady state: let the joins' last floods settle, then one warm-up fan-out (not counted).
await new Promise((resolve) => setTimeout(resolve, N > 200 ? 15_000 : 2_000));
const origin = nodes[0];
for await (const _ of origin.fanout('all', 'bench/uptime', 'warm-up', { deadlineMs: 30_000 }));
const legsBefore = origin.fanoutStats.legsSent;
const samplesMs = [];
const perTarget = [];
const errors = [];
let maxHops = 0;
for (let run = 0; run < RUNS; run++) {
  await new Promise((resolve) => setTimeout(resolve, 500));
  const t0 = performance.now();
  let answered = 0;
  for await (const result of origin.fanout('all', 'bench/uptime', 'ping', { deadlineMs: 30_000 })) {
    if (result.ok) answered++;
    else errors.push(`${result.error.code}`);
    perTarget.push(result.ms);
    maxHops = Math.max(maxHops, result.hops);
  }
  samplesMs.push(performance.now() - t0);
  if (answered !== N) errors.push(`run ${run}: ${answered}/${N} answered`);
}
perTarget.sort((a, b) => a - b);
const result = {
  nodes: N,
  links: edges.length,
  originNeighbours: origin.peers().length,
  legsSentPerRun: (origin.fanoutStats.legsSent - legsBefore) / RUNS,
  maxHops,
  setupMs,
  convergeMs,
  samplesMs,
  perTargetP50Ms: percentile(perTarget, 50),
  perTargetP99Ms: percentile(perTarget, 99),
  errors: [...new Set(errors)],
  rssMiB: process.memoryUsage().rss / 2 ** 20,
};
await Promise.all(nodes.map((node) => node.close({ timeoutMs: 100 })));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(result));
else console.log(JSON.stringify(result, null, 2));
process.exit(0);
