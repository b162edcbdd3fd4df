#!/usr/bin/env node
// Fan-out (figure 8), with real pnet nodes on loopback, all in this one process (a simulation of
// a network on the same code paths as separate hosts), at default options.
//
// Topology: the one users run (docs/ROUTING.md, "Choosing the role"): H hub routers in a full
// mesh (role 'router'), every other host a `role: 'leaf'` node that dials one hub (round robin),
// and one operator node (role 'router', as ROUTING.md advises for a node that fans out to all)
// attached to hub 0. Leaves are configured as leaves, not 'auto': a deployment knows its agents
// are agents, and 'auto' ends in the same roles (bench/hub-real --role=auto) after more messages.
// The operator fans out to 'all' (every node of its map: the hubs, the leaves and itself) and
// the run measures the time until every answer is in and per-target latency (p50/p99, from the
// start of the fan-out), plus build (createNode), join+converge time and RSS.
//
// Routing options are the defaults (RTT sampling on, default timers and rates). Two transport
// options are not: `h2: false` (no TCP listener: 10,000 nodes would need 20,000 file
// descriptors), and above 1,000 nodes QUIC's idle timeout is 60 s (keep-alives every 20 s) and its
// handshake timeout 30 s. Keep-alives cost each connection end one packet per idleTimeoutMs/3:
// on separate hosts each host pays for its own few connections, but one process playing 10,000
// hosts pays for all 20,000 connection ends in one event loop (12,000 keep-alives/s at the 5 s
// default, on top of the join). A run at the defaults (2026-12-06) lost 6,358 of 10,000 leaves'
// connections to idle timeouts during the join, and the redials took down the rest.
//
//   flock /tmp/bench.lock node --max-old-space-size=8192 bench/fanout.mjs [--nodes=10000]
//     [--hubs=N] [--runs=3] [--json=PATH] [--md=PATH] [--profile=PATH.cpuprofile (the measured runs)]
//     [--legs=1 (every node sends and accepts version 1 legs only: a stream per leg, the code's own baseline)]
//   node bench/fanout.mjs --md-from=RUN.json --md=PATH   (the Markdown of an earlier run)
//   default --hubs: 1 below 1,000 nodes, else one per 2,500 nodes (at least 2)
import { readFileSync, writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createNode } from '../dist/index.js';
import { nodeServices } from '../dist/node/node.js';

// Ed25519 jobs batched on the fan-out's signing worker (absent on code before it).
const signer = await import('../dist/node/fanout-signer.js').catch(() => undefined);
const signerJobs = () => signer?.signerCounters().workerJobs;
const argv = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const arg = (name, dflt) => Number(argv(name) ?? dflt);
const N = arg('nodes', 100);
const HUBS = arg('hubs', N < 1000 ? 1 : Math.max(2, Math.round(N / 2500)));
const RUNS = arg('runs', 3);
const DIALS_IN_FLIGHT = arg('dials', 100);
const QUIC = N > 1000 ? { idleTimeoutMs: 60_000, handshakeTimeoutMs: 30_000 } : {};
const jsonOut = argv('json');
const mdOut = argv('md');
const LEAVES = N - HUBS - 1;
const LEG_VERSION = arg('legs', 2);
// --md-from=JSON: only write the Markdown of an earlier run's JSON.
if (argv('md-from')) {
  writeFileSync(mdOut, markdown(JSON.parse(readFileSync(argv('md-from'), 'utf8'))));
  process.exit(0);
}
if (LEAVES < 1) throw new Error('--nodes must exceed --hubs + 1');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const log = (message) => console.error(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${message}`);
const rssMiB = () => Math.round(process.memoryUsage().rss / 2 ** 20);
const routerOf = (node) => nodeServices(node).neighbours.router;

const started = performance.now();
const make = async (role, count) => {
  const made = [];
  for (let i = 0; i < count; i++) {
    const node = await createNode({ h2: false, quic: QUIC, routing: { role } });
    node.handleRequest('bench/uptime', () => `${node.id} up ${Math.round(process.uptime())} s`);
    if (LEG_VERSION === 1) nodeServices(node).fanouts.linksEnabled = false;
    made.push(node);
    if (i % 1000 === 999) log(`${i + 1} ${role} nodes built, RSS ${rssMiB()} MiB`);
  }
  return made;
};
const hubs = await make('router', HUBS);
const [operator] = await make('router', 1);
const leaves = await make('leaf', LEAVES);
const nodes = [...hubs, operator, ...leaves];
const buildMs = performance.now() - started;
log(`built ${N} nodes (${HUBS} hubs, ${LEAVES} leaves, 1 operator), RSS ${rssMiB()} MiB`);

let redials = 0;
const redialing = new Set();
const dial = async (node, hub) => {
  // A join that fails (handshake timeout in a join storm) is retried, as a daemon's redial would.
  for (let attempt = 1; ; attempt++) {
    try {
      return await node.dial(hub.address, { expectedNodeId: hub.id });
    } catch (error) {
      if (attempt === 10) throw error;
      redials++;
      await sleep(200 + Math.random() * 800);
    }
  }
};
const joinStart = performance.now();
for (let a = 0; a < HUBS; a++) for (let b = a + 1; b < HUBS; b++) await dial(hubs[a], hubs[b]);
await dial(operator, hubs[0]);
let next = 0;
await Promise.all(
  Array.from({ length: DIALS_IN_FLIGHT }, async () => {
    while (next < LEAVES) {
      const i = next++;
      await dial(leaves[i], hubs[i % HUBS]);
      if (i % 1000 === 999) log(`${i + 1} leaves dialled`);
    }
  }),
);
const dialledMs = performance.now() - joinStart;
log(`all dialled; waiting for routes`);
const converged = () =>
  routerOf(operator).routeCount === N - 1 &&
  hubs.every((hub) => routerOf(hub).routeCount === N - 1) &&
  leaves.every((leaf, i) => routerOf(leaf).defaultRoute === hubs[i % HUBS].id);
let lastLog = 0;
while (!converged()) {
  if (performance.now() - joinStart > 600_000) throw new Error('routes did not converge in 10 minutes');
  await sleep(250);
  // A leaf whose connection to its hub closed (an idle timeout while the process was busy) dials again, as a daemon would.
  leaves.forEach((leaf, i) => {
    if (leaf.peers().length === 0 && !redialing.has(leaf) && redialing.size < DIALS_IN_FLIGHT) {
      redialing.add(leaf);
      dial(leaf, hubs[i % HUBS])
        .catch(() => undefined)
        .finally(() => redialing.delete(leaf));
    }
  });
  if (performance.now() - lastLog > 5000) {
    lastLog = performance.now();
    const defaulted = leaves.filter((leaf, i) => routerOf(leaf).defaultRoute === hubs[i % HUBS].id).length;
    log(`operator routes ${routerOf(operator).routeCount}, hubs ${hubs.map((hub) => routerOf(hub).routeCount).join('/')}, leaves defaulted ${defaulted}, redialing ${redialing.size}, redials ${redials}`);
  }
}
const convergeMs = performance.now() - joinStart;
log(`converged: ${Math.round(convergeMs)} ms after the first dial, RSS ${rssMiB()} MiB`);

// Steady state: the joins' last publications settle (origination backoff up to 5 s per fragment,
// then the floods and recomputations they cause), then one warm-up fan-out (not counted).
await sleep(N > 2000 ? 20_000 : 5_000);
const ROUTING_STATS = ['recordsAccepted', 'published', 'recordsSent', 'spfRuns', 'publishRateLimited'];
const routingStats = () => {
  const sum = (group) => Object.fromEntries(ROUTING_STATS.map((k) => [k, group.reduce((n, node) => n + routerOf(node).stats()[k], 0)]));
  return { hubs: sum(hubs), operator: sum([operator]), leaves: sum(leaves) };
};
const delta = (a, b) => Object.fromEntries(Object.keys(a).map((g) => [g, Object.fromEntries(ROUTING_STATS.map((k) => [k, b[g][k] - a[g][k]]))]));
const routing0 = routingStats();
// RTT reads into the QUIC binding (neighbours.rttStats), summed over every node.
const rttSamples = () => nodes.reduce((n, node) => n + (nodeServices(node).neighbours.rttStats?.samples ?? 0), 0);
const rtt0 = rttSamples();
const cpu0 = process.cpuUsage();
const rest0 = performance.now();
await sleep(5_000);
const restCpu = process.cpuUsage(cpu0);
const restSeconds = (performance.now() - rest0) / 1000;
const restCpuPercent = (100 * (restCpu.user + restCpu.system)) / 1000 / (performance.now() - rest0);
const restRttSamplesPerS = (rttSamples() - rtt0) / restSeconds;
const routingRest = delta(routing0, routingStats());
log(`at rest: process CPU ${restCpuPercent.toFixed(0)} % of a core, ${Math.round(restRttSamplesPerS)} RTT reads/s; routing in 5 s: ${JSON.stringify(routingRest)}`);
const routing1 = routingStats();
for await (const _ of operator.fanout('all', 'bench/uptime', 'warm-up', { deadlineMs: 30_000 }));
const profile = argv('profile');
const session = profile ? new inspector.Session() : undefined;
const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r))));
if (session) {
  session.connect();
  await post('Profiler.enable');
  await post('Profiler.start');
}
const legsBefore = operator.fanoutStats.legsSent;
// v2 leg links summed over every node (absent on code before them).
const linkCounts = () => nodes.reduce((sum, node) => {
  const c = nodeServices(node).fanouts.linkCounters;
  if (c) for (const k of ['opened', 'broken', 'v1Legs']) sum[k] = (sum[k] ?? 0) + c[k];
  return sum;
}, {});
const links0 = linkCounts();
// QUIC packets sent, lost and retransmitted, summed over every node's connections (quiche's own
// counters, both ends), datagrams quiche refused (machine.recvErrors, absent before it) and the
// endpoints' drops by reason (unknown connection id, wrong source, ...): where a loss can come from.
const quicPackets = () => nodes.reduce((sum, node) => {
  for (const [, connection] of nodeServices(node).peers.entries()) {
    const stats = connection.machine?.quiche.stats();
    if (stats) for (const k of ['sent', 'lost', 'retrans']) sum[k] += stats[k];
    sum.recvErrors += connection.machine?.recvErrors ?? 0;
  }
  const dropped = nodeServices(node).transports[0]?.stats?.().droppedDatagrams ?? {};
  for (const [k, v] of Object.entries(dropped)) sum.dropped[k] = (sum.dropped[k] ?? 0) + v;
  return sum;
}, { sent: 0, lost: 0, retrans: 0, recvErrors: 0, dropped: {} });
const packets0 = quicPackets();
// The same counters per group (hubs, operator, leaves): which end sends the extra packets.
const byRole = () => Object.fromEntries(Object.entries({ hubs, operator: [operator], leaves }).map(([group, members]) => {
  const sum = { sent: 0, lost: 0, retrans: 0 };
  for (const node of members) for (const [, connection] of nodeServices(node).peers.entries()) {
    const stats = connection.machine?.quiche.stats();
    if (stats) for (const k of ['sent', 'lost', 'retrans']) sum[k] += stats[k];
  }
  return [group, sum];
}));
const roles0 = byRole();
const signerJobs0 = signerJobs();
// The main thread: busy share (event-loop utilisation) and how late the loop ran, over the measured runs.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
const elu0 = performance.eventLoopUtilization();
// The kernel's UDP receive-buffer drops, machine-wide (Linux /proc/net/snmp; other processes count too).
const udpRcvbufErrors = () => {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
    return Number(lines[1].split(/\s+/)[lines[0].split(/\s+/).indexOf('RcvbufErrors')]);
  } catch {
    return undefined;
  }
};
// Other kernel drops, machine-wide: UDP sends refused for a full send buffer (SndbufErrors) and
// packets dropped from the per-CPU input backlog that loopback goes through (/proc/net/softnet_stat, 2nd field).
const kernelDrops = () => {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
    const sndbuf = Number(lines[1].split(/\s+/)[lines[0].split(/\s+/).indexOf('SndbufErrors')]);
    const backlog = readFileSync('/proc/net/softnet_stat', 'utf8').trim().split('\n').reduce((n, l) => n + parseInt(l.split(/\s+/)[1], 16), 0);
    return { sndbuf, backlog };
  } catch {
    return undefined;
  }
};
const kernel0 = kernelDrops();
const rcvbuf0 = udpRcvbufErrors();
const samplesMs = [];
// Process CPU (all threads: the event loop and the thread pool's signatures) per run: less noisy than wall time on a shared machine.
const cpuMs = [];
const perTarget = [];
const errors = [];
let maxHops = 0;
for (let run = 0; run < RUNS; run++) {
  await sleep(1000);
  const t0 = performance.now();
  const cpuRun = process.cpuUsage();
  let answered = 0;
  for await (const result of operator.fanout('all', 'bench/uptime', 'ping', { deadlineMs: 30_000 })) {
    if (result.ok) answered++;
    else errors.push(`${result.error.code}`);
    perTarget.push(result.ms);
    maxHops = Math.max(maxHops, result.hops);
  }
  samplesMs.push(performance.now() - t0);
  const used = process.cpuUsage(cpuRun);
  cpuMs.push((used.user + used.system) / 1000);
  log(`run ${run}: ${answered}/${N} in ${Math.round(samplesMs.at(-1))} ms`);
  if (answered !== N) errors.push(`run ${run}: ${answered}/${N} answered`);
}
if (session) writeFileSync(profile, JSON.stringify((await post('Profiler.stop')).profile));
const routingRuns = delta(routing1, routingStats());
const links1 = linkCounts();
const packets1 = quicPackets();
const roles1 = byRole();
const elu = performance.eventLoopUtilization(elu0);
loopDelay.disable();
const rcvbuf1 = udpRcvbufErrors();
const kernel1 = kernelDrops();
const legLinks = Object.fromEntries(Object.keys(links1).map((k) => [k, links1[k] - links0[k]]));
perTarget.sort((a, b) => a - b);
const memory = process.memoryUsage();
const result = {
  date: new Date().toISOString(),
  nodes: N,
  hubs: HUBS,
  leaves: LEAVES,
  quic: QUIC,
  links: (HUBS * (HUBS - 1)) / 2 + 1 + LEAVES,
  legsSentPerRun: (operator.fanoutStats.legsSent - legsBefore) / RUNS,
  legVersion: LEG_VERSION,
  /** v2 links opened, broken with legs on them, and legs sent as v1, all nodes, during the measured runs. */
  legLinks,
  /** QUIC packets sent (all nodes, both ends of every connection) per measured run, and lost in all runs. */
  quicPacketsPerRun: (packets1.sent - packets0.sent) / RUNS,
  quicPacketsLost: packets1.lost - packets0.lost,
  /** Packets quiche retransmitted and datagrams it refused, in all runs; endpoint drops by reason (only those that moved). */
  quicRetransmitted: packets1.retrans - packets0.retrans,
  quicRecvErrors: packets1.recvErrors - packets0.recvErrors,
  /** Sent per run, lost and retransmitted in all runs, by group. */
  quicByRole: Object.fromEntries(Object.keys(roles1).map((g) => [g, { sentPerRun: (roles1[g].sent - roles0[g].sent) / RUNS, lost: roles1[g].lost - roles0[g].lost, retrans: roles1[g].retrans - roles0[g].retrans }])),
  /** Signatures and checks the signing worker took per run (undefined: code without it). */
  signerJobsPerRun: signerJobs0 === undefined ? undefined : (signerJobs() - signerJobs0) / RUNS,
  /** Main thread over the measured runs (with the 1 s pauses between them): busy share, and loop delay p50 / p99 / max in ms. */
  eventLoop: { utilization: elu.utilization, delayP50Ms: loopDelay.percentile(50) / 1e6, delayP99Ms: loopDelay.percentile(99) / 1e6, delayMaxMs: loopDelay.max / 1e6 },
  quicDropped: Object.fromEntries(Object.entries(packets1.dropped).map(([k, v]) => [k, v - (packets0.dropped[k] ?? 0)]).filter(([, v]) => v !== 0)),
  /** UDP datagrams the kernel dropped for full receive buffers during the measured runs (machine-wide). */
  udpRcvbufErrors: rcvbuf0 === undefined ? undefined : rcvbuf1 - rcvbuf0,
  /** UDP sends refused for a full send buffer, and input-backlog drops, machine-wide, during the measured runs. */
  udpSndbufErrors: kernel0 === undefined ? undefined : kernel1.sndbuf - kernel0.sndbuf,
  softnetBacklogDrops: kernel0 === undefined ? undefined : kernel1.backlog - kernel0.backlog,
  maxHops,
  buildMs,
  dialledMs,
  convergeMs,
  redials,
  restCpuPercent,
  restRttSamplesPerS,
  /** Routing work summed per group (hubs, operator, leaves) over the 5 s at rest, and over the warm-up and measured runs. */
  routingRest,
  routingRuns,
  samplesMs,
  cpuMs,
  perTargetP50Ms: percentile(perTarget, 50),
  perTargetP99Ms: percentile(perTarget, 99),
  errors: [...new Set(errors)],
  rssMiB: memory.rss / 2 ** 20,
  heapUsedMiB: memory.heapUsed / 2 ** 20,
};
await Promise.all(nodes.map((node) => node.close({ timeoutMs: 100 })));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(result, null, 2) + '\n');
if (mdOut) writeFileSync(mdOut, markdown(result));
console.log(JSON.stringify(result, null, 2));
process.exit(0);

function routingRow(g) {
  if (g === undefined) return 'not recorded';
  return ['hubs', 'operator', 'leaves'].map((k) => `${g[k].recordsAccepted}, ${g[k].published}, ${g[k].spfRuns}`).join(' / ');
}

function markdown(r) {
  const ms = (x) => `${Math.round(x).toLocaleString('en')} ms`;
  return `# Fan-out to ${r.nodes.toLocaleString('en')} real nodes in one process

\`node bench/fanout.mjs --nodes=${r.nodes}\` on ${r.date.slice(0, 10)} (2 shared cores): ${r.hubs} meshed hub routers, ${r.leaves.toLocaleString('en')} \`role: 'leaf'\` nodes (each dials one hub, round robin), one operator (role router) attached to hub 0; default routing options; transport: \`h2: false\`${r.quic.idleTimeoutMs ? `, QUIC idle timeout ${r.quic.idleTimeoutMs / 1000} s and handshake timeout ${r.quic.handshakeTimeoutMs / 1000} s (keep-alives of 20,000 connection ends in one event loop; see the bench header)` : ''}.

| measure | value |
|---|---:|
| build (createNode × ${r.nodes}) | ${ms(r.buildMs)} |
| all dialled / converged (operator and hubs route to all, every leaf defaults to its hub), from the first dial | ${ms(r.dialledMs)} / ${ms(r.convergeMs)} |
| redials during the join | ${r.redials} |
| process CPU at rest (5 s) | ${r.restCpuPercent.toFixed(0)} % of a core |
| RTT reads into the QUIC binding at rest, all nodes | ${r.restRttSamplesPerS === undefined ? 'not recorded' : `${Math.round(r.restRttSamplesPerS).toLocaleString('en')}/s`} |
| operator fanout('all'): time to all answers (${r.samplesMs.length} runs) | ${r.samplesMs.map(ms).join(', ')} |
| process CPU per run (all threads) | ${r.cpuMs ? r.cpuMs.map(ms).join(', ') : 'not recorded'} |
| QUIC packets sent per run (all nodes), per target; lost in all runs | ${r.quicPacketsPerRun === undefined ? 'not recorded' : `${Math.round(r.quicPacketsPerRun).toLocaleString('en')}, ${(r.quicPacketsPerRun / r.nodes).toFixed(2)}; ${r.quicPacketsLost}`}${r.udpRcvbufErrors === undefined ? '' : `; UDP receive-buffer drops (machine-wide) ${r.udpRcvbufErrors}`}${r.udpSndbufErrors === undefined ? '' : `, send-buffer refusals ${r.udpSndbufErrors}, input-backlog drops ${r.softnetBacklogDrops}`}${r.quicRetransmitted === undefined ? '' : `; retransmitted ${r.quicRetransmitted}, refused by quiche ${r.quicRecvErrors}, dropped by the endpoints ${JSON.stringify(r.quicDropped)}`} |
| per target, p50 / p99 | ${ms(r.perTargetP50Ms)} / ${ms(r.perTargetP99Ms)} |
| legs sent by the operator per run, max hops | ${r.legsSentPerRun} / ${r.maxHops} |
| leg version; during the measured runs, all nodes: v2 links opened / broken / legs sent as v1 | ${r.legVersion ?? 1}; ${r.legLinks?.opened === undefined ? 'no v2 links (code before them)' : `${r.legLinks.opened} / ${r.legLinks.broken} / ${r.legLinks.v1Legs}`} |
| routing work at rest (5 s), hubs / operator / leaves: records accepted, published, SPF runs | ${routingRow(r.routingRest)} |
| routing work during the warm-up and measured runs | ${routingRow(r.routingRuns)} |
| errors | ${r.errors.length === 0 ? 'none' : r.errors.join(', ')} |
| RSS / heap used at the end | ${Math.round(r.rssMiB)} MiB / ${Math.round(r.heapUsedMiB)} MiB |

Target (issue 14): all answers in ≤ 2 s at 10,000 nodes.
`;
}
