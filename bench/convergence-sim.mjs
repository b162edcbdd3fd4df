#!/usr/bin/env node
// Convergence after a link cut on a 100-node ring, in the routing simulation (figure 9c, second
// row): the real Router code, many routers in one process, messages carried on a virtual clock
// with 5 ms one-way link delays (src/routing/router/simulation.ts). Per run, one ring link is cut
// (both ends hear it at once); the figure is the virtual time from the cut until the last route
// change it causes, checked against global shortest paths. The link is restored between runs.
//
//   node bench/convergence-sim.mjs [--nodes=100] [--runs=3] [--json=PATH]
import { writeFileSync } from 'node:fs';
import { RoutingSimulation } from '../dist/routing/testing.js';

const arg = (name, dflt) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const N = arg('nodes', 100);
const RUNS = arg('runs', 3);
const jsonOut = process.argv.find((a) => a.startsWith('--json='))?.slice('--json='.length);

let lastChange = 0;
const sim = new RoutingSimulation({ seed: 9, onRoutesChanged: (_node, _changed, now) => (lastChange = now) });
const ids = sim.addNodes(N);
for (let i = 0; i < N; i++) sim.connect(ids[i], ids[(i + 1) % N]);
if (!sim.runUntilIdle(600_000)) throw new Error('the ring did not converge');

const samplesMs = [];
const errors = [];
const wall = performance.now();
for (let run = 0; run < RUNS; run++) {
  const a = ids[(run * 37) % N];
  const b = ids[((run * 37) % N) + 1];
  const cutAt = sim.now;
  lastChange = cutAt;
  sim.cut(a, b);
  if (!sim.runUntilIdle(600_000)) errors.push(`run ${run}: not idle`);
  samplesMs.push(lastChange - cutAt);
  const check = sim.checkRoutes();
  if (check.mismatches > 0) errors.push(`run ${run}: ${check.mismatches} routes differ from global shortest paths`);
  sim.restore(a, b);
  if (!sim.runUntilIdle(600_000)) errors.push(`run ${run}: not idle after restore`);
}
const result = { nodes: N, samplesMs, errors, wallMs: performance.now() - wall, messages: sim.counters.messagesSent };
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(result));
else console.log(JSON.stringify(result, null, 2));
