// Micro-benchmark of the routing table: native addon vs TypeScript twin.
//   npm run build && node bench/routing-table.mjs [--quick]
// 1. batch next-hop lookups with 1M routes (ns per id), in batches of 1,024 ids and in one call;
// 2. all-destinations shortest paths on 100k nodes / 400k links (ms): native (radix heap),
//    twin (typed-array binary heap) and a plain binary-heap C++ Dijkstra over the same graph
//    (native/bench/dijkstra.cc: not part of pnet; built here on first use into build/bench);
//    plus the incremental recompute after one link change.
// Prints a table and writes bench/results/routing-table.json.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createRoutingTable } from '../dist/routing/table/index.js';

const quick = process.argv.includes('--quick');
// --json=PATH: also write the results there (bench/quic.mjs folds them into its report)
const jsonOut = process.argv.find((a) => a.startsWith('--json='))?.slice('--json='.length);
const ROUTES = quick ? 100_000 : 1_000_000;
const SP_NODES = 100_000;
const SP_EDGES_PER_NODE = 4;
const BATCH = 1024;

// deterministic xorshift
let seed = 0x9e3779b9;
const rnd = (m) => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % m;
};

function makeIds(n) {
  const ids = Buffer.allocUnsafe(n * 32);
  for (let i = 0; i < ids.length; i += 4) ids.writeUInt32LE((rnd(0x100000000) ^ (i * 2654435761)) >>> 0, i);
  return ids;
}
const idAt = (ids, i) => ids.subarray(i * 32, i * 32 + 32);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** n nodes; local (0) has 8 neighbours; every other node hangs under a random earlier node. */
function buildTree(impl, ids, n) {
  const children = Array.from({ length: n }, () => []);
  for (let i = 1; i < n; i++) children[i <= 8 ? 0 : 1 + rnd(i - 1)].push(i);
  const t = createRoutingTable(idAt(ids, 0), { implementation: impl });
  for (let u = 0; u < n; u++) {
    const c = children[u];
    if (c.length === 0) continue;
    const targets = Buffer.allocUnsafe(c.length * 32);
    const costs = new Uint32Array(c.length);
    for (let k = 0; k < c.length; k++) {
      ids.copy(targets, k * 32, c[k] * 32, c[k] * 32 + 32);
      costs[k] = 1 + rnd(100);
    }
    t.setLinksPacked(idAt(ids, u), targets, costs);
  }
  t.recompute();
  return t;
}

function lookupBench(impl, ids, n) {
  const t0 = performance.now();
  const table = buildTree(impl, ids, n);
  const buildMs = performance.now() - t0;
  // queries: every destination once, shuffled
  const order = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rnd(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const queries = Buffer.allocUnsafe(n * 32);
  for (let i = 0; i < n; i++) ids.copy(queries, i * 32, order[i] * 32, order[i] * 32 + 32);
  const out = new Int32Array(n);
  let check = 0;
  const batched = [];
  const whole = [];
  const reps = impl === 'native' ? 7 : 3;
  for (let r = -1; r < reps; r++) {
    let s = performance.now();
    for (let off = 0; off < n; off += BATCH) {
      const end = Math.min(n, off + BATCH);
      table.nextHopBatch(queries.subarray(off * 32, end * 32), out.subarray(off, end));
    }
    if (r >= 0) batched.push(((performance.now() - s) * 1e6) / n);
    check += out[n >> 1];
    s = performance.now();
    table.nextHopBatch(queries, out);
    if (r >= 0) whole.push(((performance.now() - s) * 1e6) / n);
    check += out[n >> 2];
  }
  let unreachable = 0;
  for (let i = 0; i < n; i++) if (out[i] < 0) unreachable++;
  // one group-by for a 10k-destination fan-out
  const fan = queries.subarray(0, 10_000 * 32);
  const gs = [];
  for (let r = -1; r < reps; r++) {
    const s = performance.now();
    const groups = table.groupByNextHop(fan);
    if (r >= 0) gs.push(((performance.now() - s) * 1e6) / 10_000);
    check += groups.length;
  }
  return {
    buildMs,
    nsPerIdBatch: median(batched),
    nsPerIdBatchBest: Math.min(...batched),
    nsPerIdWhole: median(whole),
    nsPerIdWholeBest: Math.min(...whole),
    groupNsPerId: median(gs),
    unreachable,
    check,
  };
}

/** n nodes with SP_EDGES_PER_NODE random out-links each (no self links), in CSR form. */
function makeGraph(n) {
  const m = n * SP_EDGES_PER_NODE;
  const offsets = new Uint32Array(n + 1);
  const targets = new Uint32Array(m);
  const costs = new Uint32Array(m);
  for (let u = 0; u < n; u++) {
    offsets[u] = u * SP_EDGES_PER_NODE;
    for (let k = 0; k < SP_EDGES_PER_NODE; k++) {
      let v = rnd(n);
      if (v === u) v = (v + 1) % n;
      targets[u * SP_EDGES_PER_NODE + k] = v;
      costs[u * SP_EDGES_PER_NODE + k] = 1 + rnd(1000);
    }
  }
  offsets[n] = m;
  return { n, offsets, targets, costs };
}

function spBench(impl, ids, graph) {
  const { n, offsets, targets: to, costs: co } = graph;
  const table = createRoutingTable(idAt(ids, 0), { implementation: impl });
  const targets = Buffer.allocUnsafe(SP_EDGES_PER_NODE * 32);
  const costs = new Uint32Array(SP_EDGES_PER_NODE);
  for (let u = 0; u < n; u++) {
    for (let e = offsets[u], k = 0; e < offsets[u + 1]; e++, k++) {
      ids.copy(targets, k * 32, to[e] * 32, to[e] * 32 + 32);
      costs[k] = co[e];
    }
    table.setLinksPacked(idAt(ids, u), targets, costs);
  }
  table.recompute();
  const reps = impl === 'native' ? 9 : 3;
  const full = [];
  for (let r = 0; r < reps; r++) {
    const s = performance.now();
    table.recompute({ full: true });
    full.push(performance.now() - s);
  }
  // the sum of all distances: the baseline's checksum
  const checksum = table.routesPacked().costs.reduce((a, b) => a + b, 0);
  // incremental: change one random node's links, recompute
  const inc = [];
  const modes = {};
  for (let r = 0; r < 50; r++) {
    const u = rnd(n);
    for (let k = 0; k < SP_EDGES_PER_NODE; k++) {
      const v = rnd(n);
      ids.copy(targets, k * 32, v * 32, v * 32 + 32);
      costs[k] = 1 + rnd(1000);
    }
    table.setLinksPacked(idAt(ids, u), targets, costs);
    const s = performance.now();
    const res = table.recompute();
    inc.push(performance.now() - s);
    modes[res.mode] = (modes[res.mode] ?? 0) + 1;
  }
  const reachable = table.routesPacked().nextHops.length;
  return { fullMs: median(full), fullMsBest: Math.min(...full), incrementalMs: median(inc), incrementalModes: modes, reachable, links: table.linkCount, checksum };
}

/**
 * The plain C++ Dijkstra (native/bench/dijkstra.cc), built on first use by the root CMakeLists.txt
 * in its bench-only mode into build/bench, apart from pnet's addons in build/Release.
 */
function loadBaseline() {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const file = `${root}build/bench/Release/pnet_bench_dijkstra.node`;
  const require = createRequire(import.meta.url);
  if (!existsSync(file)) {
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
    const run = spawnSync(process.execPath, [cmakeJs, 'compile', '--directory', root, '--out', `${root}build/bench`, '--CDPNET_BENCH_ONLY=ON', '--log-level', 'warn'], { encoding: 'utf8', timeout: 5 * 60_000 });
    if (run.status !== 0 || !existsSync(file)) throw new Error(`could not build ${file}: ${`${run.error?.message ?? ''}${run.stderr ?? ''}`.trim().split('\n').slice(-3).join(' ')}`);
  }
  return require(file);
}

function baselineBench(graph) {
  let addon;
  try {
    addon = loadBaseline();
  } catch (error) {
    console.error(`plain Dijkstra baseline skipped: ${error.message}`);
    return undefined;
  }
  const times = [];
  let checksum = 0;
  for (let r = 0; r < 9; r++) {
    const s = performance.now();
    checksum = addon.dijkstra(graph.offsets, graph.targets, graph.costs, 0);
    times.push(performance.now() - s);
  }
  return { ms: median(times), msBest: Math.min(...times), checksum };
}

const idsLookup = makeIds(ROUTES);
const idsSp = makeIds(SP_NODES);
const results = { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, routes: ROUTES, batch: BATCH };

for (const impl of ['native', 'ts']) {
  const s = seed;
  results[`lookup_${impl}`] = lookupBench(impl, idsLookup, ROUTES);
  seed = s;
  globalThis.gc?.();
}
const graph = makeGraph(SP_NODES);
for (const impl of ['native', 'ts']) {
  const s = seed;
  results[`sp_${impl}`] = spBench(impl, idsSp, graph);
  seed = s;
  globalThis.gc?.();
}
results.sp_baseline = baselineBench(graph);

const ln = results.lookup_native;
const lt = results.lookup_ts;
const sn = results.sp_native;
const st = results.sp_ts;
const sb = results.sp_baseline;
results.targets = {
  lookupNsPerId: { value: ln.nsPerIdBatch, target: 25, ok: ln.nsPerIdBatch <= 25 },
  lookupSpeedupVsTwin: { value: lt.nsPerIdBatch / ln.nsPerIdBatch, target: 3, ok: lt.nsPerIdBatch / ln.nsPerIdBatch >= 3 },
  shortestPathsMs: { value: sn.fullMs, target: 30, ok: sn.fullMs <= 30 },
  beatsPlainDijkstra: { value: sb ? sb.ms / sn.fullMs : null, ok: sb !== undefined && sn.fullMs < sb.ms && sn.fullMs < st.fullMs },
};

const f = (x, d = 1) => x.toFixed(d);
const rows = [
  ['measure (median; native best-of in brackets)', 'native', 'ts twin', 'ratio'],
  [`next hop, batches of ${BATCH}, ${ROUTES / 1e6}M routes (ns/id)`, `${f(ln.nsPerIdBatch)} [${f(ln.nsPerIdBatchBest)}]`, f(lt.nsPerIdBatch), `${f(lt.nsPerIdBatch / ln.nsPerIdBatch)}x`],
  [`next hop, one call of ${ROUTES / 1e6}M ids (ns/id)`, `${f(ln.nsPerIdWhole)} [${f(ln.nsPerIdWholeBest)}]`, f(lt.nsPerIdWhole), `${f(lt.nsPerIdWhole / ln.nsPerIdWhole)}x`],
  ['groupByNextHop, 10k ids (ns/id)', f(ln.groupNsPerId), f(lt.groupNsPerId), `${f(lt.groupNsPerId / ln.groupNsPerId)}x`],
  [`build ${ROUTES / 1e6}M-node table (ms)`, f(ln.buildMs, 0), f(lt.buildMs, 0), ''],
  [`shortest paths, ${SP_NODES / 1e3}k nodes / ${sn.links / 1e3}k links (ms)`, `${f(sn.fullMs, 2)} [${f(sn.fullMsBest, 2)}]`, f(st.fullMs, 2), `${f(st.fullMs / sn.fullMs)}x`],
  ['  plain binary-heap C++ Dijkstra, same graph (ms)', sb ? f(sb.ms, 2) : 'not built', '', sb ? `${f(sb.ms / sn.fullMs)}x` : ''],
  ['recompute after one node\'s links change (ms)', f(sn.incrementalMs, 3), f(st.incrementalMs, 3), `${f(st.incrementalMs / sn.incrementalMs)}x`],
];
const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
for (const r of rows) console.log(r.map((x, c) => (c === 0 ? x.padEnd(widths[c]) : x.padStart(widths[c]))).join('  '));
console.log(
  `targets: ${Object.entries(results.targets)
    .map(([k, v]) => `${k} ${v.value === null ? '-' : f(v.value, 2)} ${v.ok ? 'ok' : 'MISSED'}`)
    .join('; ')}`,
);
if (sn.checksum !== st.checksum || sn.reachable !== st.reachable || (sb !== undefined && sb.checksum !== sn.checksum)) {
  console.error(`native, twin and plain Dijkstra disagree: sum of distances ${sn.checksum} / ${st.checksum} / ${sb?.checksum ?? '-'}, reachable ${sn.reachable} vs ${st.reachable}`);
  process.exitCode = 1;
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(results) + '\n');
if (!quick) {
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/routing-table.json', import.meta.url), JSON.stringify(results, null, 2) + '\n');
}
