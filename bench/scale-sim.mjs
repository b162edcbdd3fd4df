#!/usr/bin/env node
// Routing at scale in the simulation (the real Router code, one process, virtual time, exact
// counts): hubs ('router' role) with single-homed leaves ('leaf' role), default options.
// Per topology: join storm (everything boots at t = 0) until idle; sampled leaf-to-leaf routes
// against global shortest paths (next hops followed node by node, costs compared with Dijkstra
// over the live links, leaves never transit); routing bytes per node at rest over two virtual
// hours (four refresh periods; one hour, two periods, for the 100,100 nodes) with RTT samples
// that jitter ±20 %; a hub killed and restarted
// (its neighbours notice after 1 s): virtual time from its return until idle, and bytes moved.
//
//   node --max-old-space-size=14000 bench/scale-sim.mjs [--only=star-1k,star-10k,mesh-100x1000] [--pairs=10000] [--out=bench/results/scale-sim]
//   PNET_SCALE_SRC=1 node --import tsx bench/scale-sim.mjs   (runs src/ without a build)
//   --merge keeps the other topologies' results already in <out>.json (run them one at a time)
//
// Writes <out>.json and <out>.md. Wall times are this machine's (2 shared cores).
import { writeFileSync, mkdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';

const lib = process.env.PNET_SCALE_SRC ? '../src/routing/testing.ts' : '../dist/routing/testing.js';
const { RoutingSimulation, randomConnectedGraph } = await import(lib);
const { keyBytesOf } = await import(process.env.PNET_SCALE_SRC ? '../src/routing/index.ts' : '../dist/routing/index.js');

const arg = (name, dflt) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;
const PAIRS = Number(arg('pairs', 10_000));
const OUT = arg('out', new URL('./results/scale-sim', import.meta.url).pathname);
const ONLY = arg('only', 'star-1k,star-10k,mesh-100x1000').split(',');
const REST_MS = 2 * 3_600_000;

const TOPOLOGIES = {
  'star-1k': { name: '1 hub + 1,000 leaves', hubs: 1, leaves: 1_000, hubDegree: 0, rttEveryMs: 10_000 },
  'star-10k': { name: '1 hub + 10,000 leaves', hubs: 1, leaves: 10_000, hubDegree: 0, rttEveryMs: 10_000 },
  'mesh-10x1000': { name: '10 meshed hubs × 1,000 leaves', hubs: 10, leaves: 1_000, hubDegree: 4, rttEveryMs: 60_000 },
  'mesh-100x1000': { name: '100 meshed hubs × 1,000 leaves', hubs: 100, leaves: 1_000, hubDegree: 4, rttEveryMs: 300_000, restMs: 3_600_000 },
};

/** The flat link-state router before this work (notes/scale-and-relay.md, same simulation, defaults). */
const BASELINE = {
  'star-1k': 'hub sends 10.4 MB/s, each leaf receives 10.4 KB/s at rest',
  'star-10k': 'hub sends ~861 MB/s at rest (pacing ceiling); a hub announced at most 1,024 links: ~10 % of leaf pairs reachable',
  'mesh-10x1000': 'not measured (10 meshed hubs sharing 1,000 leaves: 1.15 MB/s per hub, 11.5 MB/s in total)',
  'mesh-100x1000': 'not reachable (one process could not hold it; quadratic: ~10^5 records per node per refresh)',
};

const ms = (t0) => Math.round(performance.now() - t0);

function build(topo, seed) {
  let lastChange = 0;
  const sim = new RoutingSimulation({ seed, detectDelayMs: 1000, rttSampleIntervalMs: topo.rttEveryMs, rttJitter: 0.2, onRoutesChanged: (_n, _c, now) => (lastChange = now) });
  const hubs = sim.addNodes(topo.hubs);
  if (topo.hubs > 1) for (const [a, b] of randomConnectedGraph(topo.hubs, topo.hubDegree, sim.random)) sim.connect(hubs[a], hubs[b], { delayMs: 2 + Math.floor(sim.random() * 9) });
  const leaves = [];
  for (const hub of hubs) {
    const mine = sim.addNodes(topo.leaves, { role: 'leaf' });
    for (const leaf of mine) sim.connect(hub, leaf, { delayMs: 1 + Math.floor(sim.random() * 3) });
    leaves.push(mine);
  }
  return { sim, hubs, leaves, lastChange: () => lastChange };
}

/** 100 sources × PAIRS/100 destinations, leaves only, the two ends distinct. */
function samplePairs(sim, leaves, count) {
  const flat = leaves.flat().filter((id) => sim.isAlive(id));
  const sources = Math.min(100, flat.length);
  const pairs = [];
  for (let s = 0; s < sources; s++) {
    const a = flat[Math.floor(sim.random() * flat.length)];
    for (let k = 0; k < count / sources; k++) {
      const b = flat[Math.floor(sim.random() * flat.length)];
      if (a !== b) pairs.push([a, b]);
    }
  }
  return pairs;
}

function trafficByRole(sim, ids, seconds) {
  let sent = 0;
  let received = 0;
  let maxSent = 0;
  let maxReceived = 0;
  for (const id of ids) {
    const t = sim.traffic(id);
    sent += t.bytesSent;
    received += t.bytesReceived;
    maxSent = Math.max(maxSent, t.bytesSent);
    maxReceived = Math.max(maxReceived, t.bytesReceived);
  }
  const per = (x) => Math.round((x / seconds) * 1000) / 1000;
  return { avgSentBps: per(sent / ids.length), avgReceivedBps: per(received / ids.length), maxSentBps: per(maxSent), maxReceivedBps: per(maxReceived) };
}

/**
 * A fan-out to every node, as the routers split it (the routing table's groupByNextHop over all
 * the packed keys, what bench/fanout.mjs's nodes do per hop): at a hub, and at a leaf (which
 * sends everything to its hub in one copy). Wall time: the median of 5 calls.
 */
function fanoutSplit(sim, hubs, leaves) {
  const packed = Buffer.concat(sim.nodeIds.filter((id) => sim.isAlive(id)).map((id) => keyBytesOf(id)));
  const timed = (router) => {
    const times = [];
    let shares;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      shares = router.groupByNextHop(packed);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const unreachable = shares.find((s) => s.hop === undefined)?.indexes.length ?? 0;
    return { shares: shares.length, unreachable, ms: Math.round(times[2] * 100) / 100 };
  };
  return { targets: packed.length / 32, hub: timed(sim.router(hubs[0])), leaf: timed(sim.router(leaves[0][0])) };
}

function run(key, seed) {
  const topo = TOPOLOGIES[key];
  const out = { key, name: topo.name, nodes: topo.hubs * (1 + topo.leaves), baseline: BASELINE[key], wallMs: {} };
  let t0 = performance.now();
  const net = build(topo, seed);
  const { sim, hubs, leaves } = net;
  out.wallMs.build = ms(t0);

  t0 = performance.now();
  out.converged = sim.runUntilIdle(600_000);
  out.convergedVirtualMs = sim.now;
  out.join = { messages: sim.counters.messagesSent, bytes: sim.counters.bytesSent, hubMaxBytes: Math.max(...hubs.map((h) => sim.traffic(h).bytesSent)) };
  out.wallMs.converge = ms(t0);

  t0 = performance.now();
  const check = sim.checkPaths(samplePairs(sim, leaves, PAIRS));
  out.routes = { checked: check.checked, mismatches: check.mismatches, examples: check.examples.slice(0, 3) };
  const hub0 = sim.router(hubs[0]);
  out.hubRoutes = hub0.routeCount;
  out.hubFragments = hub0.record(hubs[0])?.fragments ?? null;
  out.fanout = fanoutSplit(sim, hubs, leaves);
  out.wallMs.check = ms(t0);

  t0 = performance.now();
  sim.resetTraffic();
  const statsBefore = hubs.map((h) => sim.router(h).stats().published);
  const restMs = topo.restMs ?? REST_MS;
  sim.runFor(restMs);
  const seconds = restMs / 1000;
  out.rest = {
    virtualSeconds: seconds,
    leaf: trafficByRole(sim, leaves.flat(), seconds),
    hub: trafficByRole(sim, hubs, seconds),
    hubPublications: hubs.reduce((n, h, i) => n + sim.router(h).stats().published - statsBefore[i], 0) / hubs.length,
  };
  out.wallMs.rest = ms(t0);

  t0 = performance.now();
  const victim = hubs[0];
  sim.kill(victim);
  sim.runFor(30_000);
  sim.runUntilIdle(600_000);
  const bytesBefore = sim.counters.bytesSent;
  const back = sim.now;
  sim.restart(victim);
  const idle = sim.runUntilIdle(600_000);
  const restartCheck = sim.checkPaths(samplePairs(sim, [leaves[0], leaves.flat()], Math.min(PAIRS, 2000)));
  out.restart = {
    idle,
    reconvergedVirtualMs: sim.now - back,
    lastRouteChangeMs: Math.max(0, net.lastChange() - back),
    bytes: sim.counters.bytesSent - bytesBefore,
    routesChecked: restartCheck.checked,
    mismatches: restartCheck.mismatches,
  };
  out.wallMs.restart = ms(t0);
  out.memoryMiB = Math.round(process.memoryUsage().rss / 1048576);
  return out;
}

const fmt = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} MB` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} KB` : `${x.toFixed(2)} B`);

function markdown(results) {
  const lines = [
    '# Routing at scale (simulation, virtual time, exact counts)',
    '',
    `\`node bench/scale-sim.mjs\` on ${new Date().toISOString().slice(0, 10)}; default Router options; leaves single-homed; RTT samples ±20 %.`,
    'Bytes are routing message payloads on the virtual links (no transport framing). "At rest": two virtual hours (100,100 nodes: one) after the join storm settled.',
    '',
    '| topology | nodes | join: converged (virtual) | sampled leaf→leaf routes | leaf at rest, sent / received | hub at rest, sent / received (avg; max) | hub restart: idle after | before (flat link state) |',
    '|---|---:|---:|---|---|---|---|---|',
  ];
  for (const r of results) {
    const l = r.rest.leaf;
    const h = r.rest.hub;
    lines.push(
      `| ${r.name} | ${r.nodes.toLocaleString('en')} | ${r.converged ? `${(r.convergedVirtualMs / 1000).toFixed(2)} s` : 'NO'} | ${r.routes.checked.toLocaleString('en')} checked, ${r.routes.mismatches} wrong | ${fmt(l.avgSentBps)}/s / ${fmt(l.avgReceivedBps)}/s | ${fmt(h.avgSentBps)}/s / ${fmt(h.avgReceivedBps)}/s; ${fmt(h.maxSentBps)}/s / ${fmt(h.maxReceivedBps)}/s | ${(r.restart.reconvergedVirtualMs / 1000).toFixed(2)} s (${fmt(r.restart.bytes)} moved; ${r.restart.mismatches} wrong of ${r.restart.routesChecked}) | ${r.baseline} |`,
    );
  }
  lines.push('', 'Wall time per phase (ms) and memory:', '');
  for (const r of results) lines.push(`- ${r.name}: ${JSON.stringify(r.wallMs)}, RSS ${r.memoryMiB} MiB; join storm ${r.join.messages.toLocaleString('en')} messages, ${fmt(r.join.bytes)}; the hub routes to ${r.hubRoutes.toLocaleString('en')} nodes and announces ${r.hubFragments} fragments`);
  const split = results.filter((r) => r.fanout);
  if (split.length > 0) {
    lines.push('', "Fan-out to every node, split by next hop (groupByNextHop over all the packed keys; median of 5 calls):", '');
    for (const r of split) {
      const f = r.fanout;
      lines.push(`- ${r.name}: ${f.targets.toLocaleString('en')} targets; at a hub ${f.hub.shares.toLocaleString('en')} shares (${f.hub.unreachable} unreachable) in ${f.hub.ms} ms; at a leaf ${f.leaf.shares} shares (itself, its hub) in ${f.leaf.ms} ms`);
    }
  }
  return `${lines.join('\n')}\n`;
}

const results = [];
const wall = performance.now();
const MERGE = process.argv.includes('--merge');
for (const key of ONLY) {
  const t0 = performance.now();
  const r = run(key, 2026);
  results.push(r);
  console.error(`${key}: ${ms(t0)} ms wall`, JSON.stringify({ converged: r.converged, routes: r.routes.mismatches, rest: r.rest, restart: r.restart }));
}
const previous = MERGE && existsSync(`${OUT}.json`) ? JSON.parse(readFileSync(`${OUT}.json`, 'utf8')).results : [];
const order = Object.keys(TOPOLOGIES);
const all = [...previous.filter((p) => !ONLY.includes(p.key)), ...results].sort((a, b) => order.indexOf(a.key) - order.indexOf(b.key));
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(`${OUT}.json`, JSON.stringify({ date: new Date().toISOString(), wallMs: ms(wall), results: all }, null, 2));
writeFileSync(`${OUT}.md`, markdown(all));
console.log(markdown(all));
