#!/usr/bin/env node
// pnet benchmark: loopback figures for pnet (the built package in ../dist,
// over QUIC and, as 'pnet-h2', over its HTTP/2 transport) beside the
// baselines: @matrixai/quic's high-level classes, Node's TLS 1.3 and
// js-libp2p over QUIC and over TCP+noise+yamux. Every run of every cell forks
// a fresh server process and a fresh client process (bench/worker.mjs); this
// process only orchestrates.
//
//   node bench/quic.mjs [--quick] [--runs=N] [--only=echo,connect] [--systems=pnet,node-tls] [--out=DIR]
//
// Writes bench/results/latest.json and latest.md (or partial.*.tmp when
// filtered) and prints a summary. Targets print PASS/FAIL; the exit code is 0
// unless the bench itself could not run.
import { fork } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CELLS, FIGURES, SYSTEMS, describeWorkload, isScaled } from './scenarios.mjs';
import { machineInfo } from './lib/machine.mjs';
import { buildResults, renderConsole, renderMarkdown, extraEntry, notBuilt, renderExtrasConsole, baselineTargetResults } from './lib/report.mjs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { readFileSync, rmSync } from 'node:fs';
import { renderChart } from './lib/chart.mjs';
import { udpChainRoundTripUs } from './lib/udp-chain.mjs';

/** Figures measured by standalone scripts, and figures not built yet (ids for --only). */
const EXTRA_IDS = ['fanout', 'convergence', 'routing', 'micro', 'negotiation'];

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const WORKER = join(here, 'worker.mjs');
/** Extra runs per cell to make up for failed ones. */
const MAX_RETRIES = 2;

function parseArgs(argv) {
  const args = { quick: false, runs: undefined, only: undefined, systems: undefined, out: join(here, 'results'), verbose: false };
  for (const arg of argv) {
    const [key, value] = arg.replace(/^--/, '').split('=');
    if (key === 'quick') args.quick = true;
    else if (key === 'runs') args.runs = Number(value);
    else if (key === 'only') args.only = value.split(',');
    else if (key === 'systems') args.systems = value.split(',');
    else if (key === 'out') args.out = value;
    else if (key === 'verbose' || key === 'v') args.verbose = true;
    else if (key === 'help' || key === 'h') {
      console.log(`usage: node bench/quic.mjs [--quick] [--runs=N] [--only=throughput,echo,stream-per-request,parallel,connect,memory,relay,${EXTRA_IDS.join(',')}] [--systems=${SYSTEMS.join(',')}] [--out=DIR] [--verbose]`);
      process.exit(0);
    } else {
      console.error(`unknown argument ${arg} (try --help)`);
      process.exit(2);
    }
  }
  if (args.runs !== undefined && !(Number.isInteger(args.runs) && args.runs >= 1)) {
    console.error('--runs must be a positive integer');
    process.exit(2);
  }
  return args;
}

/** Newest modification time of any file under `dir` (recursively). */
function newestMtime(dir) {
  let newest = 0;
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, name.name);
    newest = Math.max(newest, name.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

async function loadPnet() {
  const dist = join(root, 'dist', 'index.js');
  if (!existsSync(dist)) {
    console.error('dist/index.js is missing: run `npm run build` first (the bench measures the built package).');
    process.exit(1);
  }
  const stale = existsSync(join(root, 'src')) && newestMtime(join(root, 'src')) > statSync(dist).mtimeMs;
  return { pnet: await import(dist), stale };
}

/** A child process with a promise-based "send and wait for a reply type" helper. */
class Child {
  constructor(label) {
    this.label = label;
    this.proc = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', execArgv: ['--expose-gc'] });
    this.waiters = [];
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.proc.on('message', (message) => {
      if (message.type === 'error') {
        const error = new Error(`${label} failed: ${message.message}`);
        for (const w of this.waiters.splice(0)) w.reject(error);
        this.error = error;
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === message.type);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(message);
    });
    this.exited.then(({ code, signal }) => {
      const error = this.error ?? new Error(`${label} exited (code ${code}, signal ${signal})`);
      for (const w of this.waiters.splice(0)) w.reject(error);
    });
  }

  request(message, replyType) {
    if (this.error) return Promise.reject(this.error);
    const reply = new Promise((resolve, reject) => this.waiters.push({ type: replyType, resolve, reject }));
    this.proc.send(message);
    return reply;
  }

  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    try {
      this.proc.send({ type: 'exit' });
    } catch {
      // IPC already gone
    }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }

  kill() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

/** One run of one cell: fresh server and client processes. */
async function runOnce(cell, params, identities, timeoutMs) {
  // Both processes start at once and load the system's module in parallel
  // (nothing is measured until both are ready); the client is given the
  // server's address once the server listens.
  const server = new Child(`${cell.system} server`);
  const client = new Child(`${cell.system} client`);
  for (const child of [server, client]) child.proc.send({ type: 'preload', system: cell.system });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`run timed out after ${timeoutMs / 1000} s`)), timeoutMs);
  });
  const work = (async () => {
    const common = { system: cell.system, figure: cell.figure, params };
    const ready = await server.request({ type: 'init', role: 'server', ...common, identity: identities.server, peerCertPem: identities.client.certPem }, 'ready');
    await client.request(
      { type: 'init', role: 'client', ...common, identity: identities.client, peerCertPem: identities.server.certPem, address: ready.address, serverNodeId: ready.nodeId },
      'ready',
    );
    await server.request({ type: 'mark' }, 'marked');
    const result = await client.request({ type: 'go' }, 'result');
    const stats = await server.request({ type: 'report' }, 'stats');
    const metrics = { ...result.metrics, clientCpuS: result.cpuS, serverCpuS: stats.cpuS, clientRssMiB: result.rssMiB, serverRssMiB: stats.rssMiB };
    if (cell.figure === 'memory') {
      // per connection the server actually holds (a few may have been dropped under load)
      const conns = stats.connections ?? params.conns;
      if (conns < 0.9 * params.conns) throw new Error(`server holds ${conns} of ${params.conns} connections`);
      metrics.connectionsHeld = conns;
      metrics.serverRssDeltaMiB = stats.rssAfterMiB - stats.rssBeforeMiB;
      metrics.serverRssAfterMiB = stats.rssAfterMiB;
      metrics.kibPerConn = (metrics.serverRssDeltaMiB * 1024) / conns;
    }
    return { metrics };
  })();
  try {
    return await Promise.race([work, timeout]);
  } catch (error) {
    let message = String(error?.message ?? error).split('\n').slice(0, 6).join('\n');
    if (/timed out/.test(message)) {
      // Ask both sides what they were doing (a stalled stream, a lost connection...).
      const ask = (child) => (child ? Promise.race([child.request({ type: 'diag' }, 'diag').then((d) => d.state), new Promise((r) => setTimeout(() => r('no answer'), 1000))]).catch((e) => String(e)) : 'not started');
      const [serverState, clientState] = await Promise.all([ask(server), ask(client)]);
      message += `\n  server state: ${JSON.stringify(serverState)}\n  client state: ${JSON.stringify(clientState)}`;
    }
    server.kill();
    client?.kill();
    return { error: message };
  } finally {
    clearTimeout(timer);
    await Promise.all([client?.stop(), server.stop()]);
  }
}

function writeAtomically(path, text) {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const mode = args.quick ? 'quick' : 'full';
  // Quick mode is a smoke run: one run per cell (about 50 cells; every run
  // forks two fresh processes), so that it stays within 2 minutes on 2 cores.
  const runs = args.runs ?? (args.quick ? 1 : 3);
  const started = performance.now();
  const { pnet, stale } = await loadPnet();
  const machine = machineInfo();
  const notes = [];
  if (stale) {
    const warning = 'src/ is newer than dist/: these figures measure the last build (run `npm run build`).';
    console.warn(`warning: ${warning}`);
    notes.push(warning);
  }

  // Two identities (Ed25519, self-signed, made by pnet) for every system: the
  // same certificates in every run, so TLS costs are alike across systems.
  const [serverId, clientId] = await Promise.all([pnet.Identity.generate(), pnet.Identity.generate()]);
  const identities = {
    server: { keyPem: serverId.keyPem, certPem: serverId.certPem, nodeId: serverId.nodeId },
    client: { keyPem: clientId.keyPem, certPem: clientId.certPem, nodeId: clientId.nodeId },
  };

  const chosen = FIGURES.filter((f) => !args.only || args.only.includes(f.id) || args.only.includes(String(f.number)));
  // Figure 7 runs every node in its own process (runRelayFigure), not as server/client cells.
  const relayWanted = chosen.some((f) => f.id === 'relay') && (!args.systems || args.systems.includes('pnet'));
  const figures = chosen.filter((f) => f.id !== 'relay');
  // rows of a figure in SYSTEMS order (pnet's rows first), otherwise as listed
  const cells = CELLS.filter((c) => figures.some((f) => f.id === c.figure) && (!args.systems || args.systems.includes(c.system)) && !(args.quick && c.quickSkip))
    .map((c, i) => ({ c, i }))
    .sort((a, b) => SYSTEMS.indexOf(a.c.system) - SYSTEMS.indexOf(b.c.system) || a.i - b.i)
    .map(({ c }) => c);
  const extraIds = EXTRA_IDS.filter((id) => !args.only || args.only.includes(id));
  if (cells.length === 0 && extraIds.length === 0 && !relayWanted) {
    console.error('nothing to run with these filters');
    process.exit(2);
  }
  const timeoutMs = args.quick ? 20_000 : 90_000;
  const cellResults = cells.map((cell) => {
    const params = cell.params[mode];
    const primary = CELLS.find((c) => c.figure === cell.figure && c.primary);
    const scaled = isScaled(params, primary?.params[mode]);
    return { cell, params, scaled, workload: describeWorkload(cell.figure, params), runs: [] };
  });

  console.log(`pnet bench (${mode}, ${runs} runs per cell, ${cells.length} cells) on ${machine.cpuModel}, ${machine.cores} cores, Node ${machine.nodeVersion}`);
  // Runs are interleaved (run 1 of every cell of a figure, then run 2, ...) so
  // drifting load on a shared machine spreads over all systems alike.
  const runCell = async (figure, c, label) => {
    const t0 = performance.now();
    // 1,000 pnet dialer nodes take a while to set up (each makes its identity and certificate)
    const result = await runOnce(c.cell, c.params, identities, c.cell.figure === 'memory' ? timeoutMs * 3 : timeoutMs);
    c.runs.push(result);
    const took = ((performance.now() - t0) / 1000).toFixed(1);
    const head = figure.metrics[0];
    const shown = result.error
      ? `FAILED: ${result.error.split('\n')[0]}`
      : `${result.metrics[head.key]?.toFixed(head.unit === 'MiB/s' || head.unit === 'ms' ? 1 : 0)} ${head.unit}`;
    console.log(`  ${label.padEnd(9)} ${c.cell.system.padEnd(13)} ${c.cell.variant.padEnd(58)} ${shown}  (${took} s)`);
    if (result.error && args.verbose) console.log(result.error);
  };
  for (const figure of figures) {
    const figureCells = cellResults.filter((c) => c.cell.figure === figure.id);
    if (figureCells.length === 0) continue;
    console.log(`\n[${figure.number}] ${figure.title}`);
    for (let r = 0; r < runs; r++) {
      for (const c of figureCells) await runCell(figure, c, `run ${r + 1}/${runs}`);
    }
    // A failed run (recorded as such) is made up by at most MAX_RETRIES extra
    // runs, so the median still comes from `runs` successful runs if possible.
    for (const c of figureCells) {
      for (let extra = 1; extra <= MAX_RETRIES && c.runs.filter((x) => !x.error).length < runs; extra++) {
        await runCell(figure, c, `extra ${extra}`);
      }
    }
  }

  const relayEntries = relayWanted ? await runRelayFigure({ quick: args.quick, runs }) : [];
  const extras = [...relayEntries, ...(await runExtras({ ids: extraIds, quick: args.quick, runs, cellResults, systems: args.systems }))];

  const durationS = (performance.now() - started) / 1000;
  machine.loadAverageEnd = machineInfo().loadAverage;
  const { entries, ratios } = buildResults({ figures, cellResults });
  notes.push(
    '@matrixai/quic high-level classes are ~50× slower than pnet, so their workloads are scaled down (marked "scaled down"); ratios are given for rates and latencies, which do not depend on the amount of work, and omitted for totals.',
    'Certificates: Ed25519, self-signed, made by pnet\'s Identity.generate(); the same two key pairs serve pnet, pnet-h2, matrixai-quic and node-tls. Every side verifies its peer\'s self-signed certificate; clients pin the server key. js-libp2p nodes make their own Ed25519 libp2p keys (its TLS and noise handshakes carry libp2p keys); clients dial the server\'s multiaddr with its /p2p/ peer id, which libp2p checks.',
    'js-libp2p (libp2p-quic, libp2p-tcp): createLibp2p with one transport (QUIC; or TCP + noise + yamux), listening on 127.0.0.1, no services, library defaults for flow control; the connection manager\'s inbound rate limit, pending-connection and connection limits and the per-protocol stream limits are raised so that figures 4-6 can run. Every stream negotiates its protocol with multistream-select (libp2p\'s own channel negotiation, as pnet ★ negotiates a channel). Figure 5 reuses one client node: dial() + newStream() + echo + connection.close(); figure 6 uses one libp2p node per dialer (a node keeps one connection per peer).',
    'pnet-h2 is pnet over its HTTP/2 transport: the same bench code as the pnet rows, with nodes made with `quic: false` (the pnet rows use `h2: false`, so a slow QUIC handshake under load never falls back to HTTP/2); its dialers in figure 6 are H2Transports. The pnet-h2 section compares each of its rows with the pnet QUIC row measured the same way and with Node tls.',
    'node-tls rows for figures 3 and 4 use HTTP/2 (node:http2) over the same TLS 1.3 connection, since plain TLS has no streams; windows are raised to pnet\'s defaults (1 MiB per stream, 16 MiB per connection).',
    'pnet figure 5 reuses one client node and closes each connection with node.disconnect(id) (awaited), as a user keeping a node around would; the server node is the same throughout.',
    'CPU seconds: process CPU (user+system) over the measured part (client: its run; server: from just before the client starts until it finishes). Peak RSS: each process\'s lifetime maximum (includes startup).',
  );
  if (mode === 'quick') notes.push(`Quick mode: ${runs === 1 ? 'one run per cell and ' : ''}smaller workloads than the targets are defined on; PASS/FAIL and met/missed are indicative only.`);
  const failed = cellResults.flatMap((c) => c.runs.filter((r) => r.error).map((r) => `${c.cell.figure} / ${c.cell.system} / ${c.cell.variant}: ${r.error.split('\n')[0]}`));
  for (const f of failed) notes.push(`Failed run: ${f}`);

  const json = {
    tool: 'pnet bench/quic.mjs',
    mode,
    runsPerCell: runs,
    durationS: Number(durationS.toFixed(1)),
    filters: { only: args.only ?? null, systems: args.systems ?? null },
    machine,
    notes,
    figures: [...entries, ...extras],
    ratios,
  };
  const md = renderMarkdown({ figures, entries, ratios, machine, mode, notes, durationS, extras });
  mkdirSync(args.out, { recursive: true });
  const partial = Boolean(args.only || args.systems || args.runs !== undefined && args.runs < 3);
  const base = join(args.out, partial ? 'partial' : 'latest');
  // Partial (filtered) runs go to partial.{json,md}.tmp so they never replace a full result.
  writeAtomically(partial ? `${base}.json.tmp` : `${base}.json`, JSON.stringify(json, null, 2) + '\n');
  writeAtomically(partial ? `${base}.md.tmp` : `${base}.md`, md);

  const svg = await renderChart(json).catch((error) => {
    console.warn(`chart not rendered: ${error.message}`);
    return null;
  });
  if (svg) writeAtomically(partial ? `${base}.svg.tmp` : `${base}.svg`, svg);

  console.log('\n==== summary (median of runs) ====');
  console.log(renderConsole({ figures, entries }));
  const targets = baselineTargetResults({ figures, entries, ratios });
  if (targets.length) console.log(['targets against other stacks:', ...targets.map((t) => `   ${t.text.replace(/\*\*/g, '')}`)].join('\n'));
  if (extras.length) console.log(renderExtrasConsole(extras));
  console.log(`\n${failed.length ? `${failed.length} run(s) failed (see notes). ` : ''}Took ${durationS.toFixed(0)} s. Wrote ${base}.{json,md}${partial ? '.tmp (filtered run)' : ''}`);
}

// ---- Figure 7: relay v2 with every node in its own process -------------------------------
// A line n0-n1-n2-n3-n4 (one worker process per node; bench/systems/pnet.mjs relayBenchNode):
// n0 measures against n1 (direct), n2 (1 hop) and n4 (3 hops) in the same run; then n4 dials n0
// (a ring) and n1, the relay on n0's path to n2, is killed mid-transfer.

const RELAY_TITLE = 'Relay v2: every node in its own process (line n0-n1-n2-n3-n4, then a ring)';
const RELAY_NODES = 5;

/** Figure 7's workloads by mode. */
function relayWorkload(quick) {
  return quick
    ? { count: 300, warmup: 50, setups: 21, bytes: 16 * 1024 * 1024, flows: 10_000, perFlow: 3, ringBytes: 64 * 1024 * 1024, killAt: 16 * 1024 * 1024 }
    : { count: 2000, warmup: 200, setups: 51, bytes: 64 * 1024 * 1024, flows: 10_000, perFlow: 3, ringBytes: 64 * 1024 * 1024, killAt: 16 * 1024 * 1024 };
}

/** One run: five node processes, every measure; returns a flat object of numbers (or throws). */
async function relayRun(w) {
  const nodes = Array.from({ length: RELAY_NODES }, (_, i) => new Child(`relay node n${i}`));
  let seq = 0;
  const call = async (i, method, ...args) => {
    const id = ++seq;
    const reply = await nodes[i].request({ type: 'call', id, method, args }, `ret:${id}`);
    if (reply.failed) throw new Error(`n${i} ${method}: ${reply.failed.split('\n').slice(0, 3).join(' | ')}`);
    return reply.value;
  };
  const m = {};
  try {
    for (const child of nodes) child.proc.send({ type: 'preload', system: 'pnet' });
    const info = await Promise.all(nodes.map((child) => child.request({ type: 'init', role: 'relay-node', system: 'pnet', figure: 'relay', params: { size: 1024 } }, 'ready')));
    const id = info.map((x) => x.nodeId);
    for (let i = 1; i < RELAY_NODES; i++) await call(i, 'dial', info[i - 1].address, id[i - 1]);
    await call(0, 'waitPath', id[4], 5);
    await call(4, 'waitPath', id[0], 5);
    const far = { direct: 1, hop1: 2, hop3: 4 };
    // request(): sequential 1 KiB requests (the first relayed one opens the end-to-end connection in the warm-up)
    for (const [name, target] of Object.entries(far)) m[`req_${name}`] = (await call(0, 'requests', id[target], w.count, w.warmup)).rate;
    // stream setup: the first openStream to n3 (2 hops, no connection yet: one handshake), then later ones
    const fresh = await call(0, 'setups', id[3], w.setups);
    m.setup_first_hop2 = fresh.firstMs;
    for (const [name, target] of Object.entries(far)) m[`setup_${name}`] = (await call(0, 'setups', id[target], w.setups)).laterMs;
    // bulk, with every process's CPU over it
    for (const [name, target] of Object.entries(far)) {
      await Promise.all(nodes.map((_, i) => call(i, 'cpuMark')));
      const bulk = await call(0, 'bulk', id[target], w.bytes);
      const cpu = await Promise.all(nodes.map((_, i) => call(i, 'cpuRead')));
      const mib = w.bytes / 1024 / 1024;
      m[`bulk_${name}`] = bulk.mibps;
      m[`cpu_${name}_sender`] = (cpu[0] * 1000) / mib;
      m[`cpu_${name}_receiver`] = (cpu[target] * 1000) / mib;
      if (target > 1) m[`cpu_${name}_hop`] = (Math.max(...cpu.slice(1, target)) * 1000) / mib;
    }
    // memory per flow at a hop: synthetic flows (distinct source keys) n0 -> n2 through n1
    const before = await call(1, 'relayStats');
    await call(1, 'heapMark');
    const flows = await call(0, 'flows', id[1], id[2], w.flows, w.perFlow);
    const heap = await call(1, 'heapRead');
    const after = await call(1, 'relayStats');
    m.flow_forwarded = after.forwarder.forwarded - before.forwarder.forwarded;
    m.flow_received = after.forwarder.received - before.forwarder.received;
    m.flow_dropped_at_hop = ['malformed', 'overBudget', 'refused', 'hopLimit', 'noRoute', 'loop', 'tooBig'].reduce((n, k) => n + after.forwarder[k] - before.forwarder[k], 0);
    m.flow_sent = flows.sent;
    m.flow_heap_bytes = heap.heapDelta / w.flows;
    m.flow_rss_bytes = heap.rssDelta / w.flows;
    // the ring: n4 dials n0; n0 still reaches n2 through n1 (2 links against 3)
    await call(4, 'dial', info[0].address, id[0]);
    for (const [from, to] of [[0, 3], [3, 0], [2, 4]]) await call(from, 'waitPath', id[to], 3);
    const path = await call(0, 'path', id[2]);
    if (path[1] !== id[1]) throw new Error('n0 does not reach n2 through n1');
    await call(0, 'startTransfer', id[2], w.ringBytes);
    const t0 = performance.now();
    while ((await call(0, 'transferProgress')) < w.killAt) {
      if (performance.now() - t0 > 60_000) throw new Error('ring transfer did not reach the kill point');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const killedAt = performance.timeOrigin + performance.now();
    nodes[1].kill();
    const ring = await call(0, 'transferResult', 60_000);
    if (!ring.ended || !ring.exact) throw new Error(`ring transfer after the kill: ended ${ring.ended}, exact ${ring.exact}, error ${ring.error}, answer ${ring.text}`);
    // the stall: the longest wait for the next 256 KiB from the kill on (data already past n1 still arrives at first)
    const since = [killedAt, ...ring.ticks.filter((t) => t > killedAt)];
    let stall = 0;
    for (let i = 1; i < since.length; i++) stall = Math.max(stall, since[i] - since[i - 1]);
    let gapBefore = 0;
    const ticksBefore = ring.ticks.filter((t) => t <= killedAt);
    for (let i = 1; i < ticksBefore.length; i++) gapBefore = Math.max(gapBefore, ticksBefore[i] - ticksBefore[i - 1]);
    m.ring_pause = stall;
    m.ring_gap_before = gapBefore;
    m.ring_total = ring.t1 - ring.t0;
    m.ring_same = ring.sameConnection ? 1 : 0;
    return m;
  } finally {
    await Promise.all(nodes.map((child) => child.stop()));
  }
}

/** Figure 7's entries: `runs` runs of relayRun (medians), ratios against the direct rows of the same runs. */
async function runRelayFigure({ quick, runs }) {
  const w = relayWorkload(quick);
  console.log(`\n[7] ${RELAY_TITLE}`);
  const samples = {};
  const errors = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    let timer;
    try {
      const m = await Promise.race([relayRun(w), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('run timed out after 300 s')), 300_000)))]);
      // the machine's floor in the same run: plain UDP forwarder processes, no pnet
      for (const [name, hops] of [['direct', 0], ['hop1', 1], ['hop3', 3]]) m[`udp_${name}`] = await udpChainRoundTripUs(hops, quick ? 2000 : 5000);
      for (const name of ['hop1', 'hop3']) m[`setup_floor_${name}`] = m.setup_direct + (m[`udp_${name}`] - m.udp_direct) / 1000;
      for (const [k, v] of Object.entries(m)) (samples[k] ??= []).push(v);
      const f = (x) => x.toFixed(0);
      console.log(`  run ${r + 1}/${runs}: request/s ${f(m.req_direct)} / ${f(m.req_hop1)} / ${f(m.req_hop3)}; bulk MiB/s ${f(m.bulk_direct)} / ${f(m.bulk_hop1)} / ${f(m.bulk_hop3)}; later setup ms ${m.setup_direct.toFixed(2)} / ${m.setup_hop1.toFixed(2)} / ${m.setup_hop3.toFixed(2)}; ring pause ${f(m.ring_pause)} ms  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (error) {
      errors.push(String(error.message).split('\n')[0]);
      console.log(`  run ${r + 1}/${runs}: FAILED: ${errors.at(-1)}`);
    } finally {
      clearTimeout(timer);
    }
  }
  const med = (k) => {
    const v = [...(samples[k] ?? [])].sort((a, b) => a - b);
    return v.length === 0 ? null : v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
  };
  const ratio = (a, b) => (med(a) === null || !med(b) ? null : med(a) / med(b));
  const line = 'line n0-n1-n2-n3-n4, one process per node, measured from n0';
  const rows = [];
  const row = (metric, name, variant, workload, unit, better, key, target) => rows.push(extraEntry({ figure: 'relay', figureNumber: 7, title: RELAY_TITLE, metric, name, variant, workload, unit, better, samples: samples[key] ?? [], primary: variant.startsWith('direct'), target }));
  const hops = [['direct', 'direct (n0→n1)'], ['hop1', '1 hop (n0→n2 via n1)'], ['hop3', '3 hops (n0→n4)']];
  for (const [k, variant] of hops) {
    const target = k === 'hop1' ? { on: 'ratio', ratioName: '1 hop / direct', ratio: ratio('req_hop1', 'req_direct'), op: '>=', value: 0.6 } : k === 'hop3' ? { on: 'ratio', ratioName: '3 hops / direct', ratio: ratio('req_hop3', 'req_direct'), op: '>=', value: 0.4 } : undefined;
    row('requestRate', 'sequential 1 KiB request() rate', variant, `${w.count} requests after ${w.warmup}; ${line}`, 'req/s', 'higher', `req_${k}`, target);
  }
  for (const [k, variant] of hops) {
    const target = k === 'direct' ? undefined : { on: 'ratio', ratioName: `${k === 'hop1' ? '1 hop' : '3 hops'} / direct`, ratio: ratio(`setup_${k}`, 'setup_direct'), op: '<=', value: 1.5 };
    row('setupMs', 'openStream setup, 2nd and later streams (median)', variant, `${w.setups - 1} openStream + 1 KiB echo each`, 'ms', 'lower', `setup_${k}`, target);
  }
  for (const [k, variant] of hops) row('roundTripUs', "1 KiB UDP round trip through plain forwarder processes (no pnet: the machine's cost per crossing)", variant.replace(/ \(.*\)/, ''), `node:dgram, one process per forwarder, ${quick ? 2000 : 5000} sequential round trips`, 'µs', 'lower', `udp_${k}`);
  for (const [k, variant] of hops.slice(1)) row('setupMs', 'openStream setup floor: the direct setup plus the plain forwarders\' extra round trip (hops that cost nothing)', variant, 'same run', 'ms', 'lower', `setup_floor_${k}`);
  row('setupMs', 'openStream setup, first stream to a far node (handshake)', '2 hops (n0→n3), no relayed connection yet', 'one openStream', 'ms', 'lower', 'setup_first_hop2');
  for (const [k, variant] of hops) {
    const target = k === 'hop1' ? { on: 'ratio', ratioName: '1 hop / direct', ratio: ratio('bulk_hop1', 'bulk_direct'), op: '>=', value: 0.6 } : k === 'hop3' ? { on: 'ratio', ratioName: '3 hops / direct', ratio: ratio('bulk_hop3', 'bulk_direct'), op: '>=', value: 0.35 } : undefined;
    row('mibps', 'bulk on one stream', variant, `${w.bytes / 1024 / 1024} MiB`, 'MiB/s', 'higher', `bulk_${k}`, target);
  }
  for (const [k, variant] of hops) {
    row('cpuMsPerMiB', 'process CPU per MiB, sending end', variant, `bulk ${w.bytes / 1024 / 1024} MiB`, 'ms/MiB', 'lower', `cpu_${k}_sender`);
    row('cpuMsPerMiB', 'process CPU per MiB, receiving end', variant, `bulk ${w.bytes / 1024 / 1024} MiB`, 'ms/MiB', 'lower', `cpu_${k}_receiver`);
    if (k === 'direct') continue;
    const endpoint = Math.min(med(`cpu_${k}_sender`) ?? Infinity, med(`cpu_${k}_receiver`) ?? Infinity);
    const hopCpu = med(`cpu_${k}_hop`);
    const target = { on: 'ratio', ratioName: 'hop / cheaper end', ratio: hopCpu === null || !Number.isFinite(endpoint) ? null : hopCpu / endpoint, op: '<=', value: 0.6 };
    row('cpuMsPerMiB', `process CPU per MiB at a hop${k === 'hop3' ? ' (busiest of the 3)' : ''}`, variant, `bulk ${w.bytes / 1024 / 1024} MiB`, 'ms/MiB', 'lower', `cpu_${k}_hop`, target);
  }
  row('bytesPerFlow', 'hop heap growth per relayed flow (after GC)', `${w.flows.toLocaleString('en-US')} flows × ${w.perFlow} datagrams through n1`, 'distinct source keys n0→n2, 100-byte inner packets', 'B', 'lower', 'flow_heap_bytes', { on: 'value', op: '<=', value: 2048 });
  row('bytesPerFlow', 'hop RSS growth per relayed flow', `${w.flows.toLocaleString('en-US')} flows × ${w.perFlow} datagrams through n1`, 'distinct source keys n0→n2', 'B', 'lower', 'flow_rss_bytes');
  row('datagrams', 'datagrams the hop received in the flow test', `${w.flows * w.perFlow} sent`, 'forwarder.stats.received delta', 'datagrams', 'higher', 'flow_received');
  row('datagrams', 'datagrams the hop forwarded in the flow test', `${w.flows * w.perFlow} sent`, 'forwarder.stats.forwarded delta', 'datagrams', 'higher', 'flow_forwarded');
  row('datagrams', 'datagrams the hop dropped (any forwarder reason)', `${w.flows * w.perFlow} sent`, 'forwarder drop counters delta', 'datagrams', 'lower', 'flow_dropped_at_hop');
  row('pauseMs', 'pause when the relay on the path is killed (longest wait for the next 256 KiB from the kill on)', `ring n0..n4, n0→n2 via n1, SIGKILL of n1 at ${w.killAt / 1024 / 1024} MiB`, `${w.ringBytes / 1024 / 1024} MiB on one stream, byte-exact`, 'ms', 'lower', 'ring_pause');
  row('pauseMs', 'longest gap between 256 KiB received before the kill (baseline)', 'same transfer', `${w.ringBytes / 1024 / 1024} MiB`, 'ms', 'lower', 'ring_gap_before');
  row('sameConnection', 'the transfer ended on the same relayed connection (1 = yes)', 'same transfer', `${w.ringBytes / 1024 / 1024} MiB`, '', 'higher', 'ring_same');
  row('totalMs', 'whole ring transfer', 'same transfer', `${w.ringBytes / 1024 / 1024} MiB`, 'ms', 'lower', 'ring_total');
  const note = rows.find((e) => e.metric === 'pauseMs');
  if (note) note.notes = `Memory per flow: n0 sends DATA datagrams with ${w.flows.toLocaleString('en-US')} distinct source keys (a relayed flow is a source/destination pair) to n2 through n1; n1's heap (process.memoryUsage().heapUsed after 3 GCs) before and after, divided by the flows. The forwarder keeps no per-flow state (one budget per inbound neighbour), so this is what the hop holds per flow. The pause is dominated by the dead hop's detection (the links' QUIC idle timeout, 5 s) and the reroute; the relayed connection's idle timeout is 3× the links', so it outlives both.${errors.length ? ` Failed runs: ${errors.join('; ')}` : ''}`;
  return rows;
}

/** Runs a standalone bench script that writes JSON to --json=PATH; returns the parsed JSON. */
function runScript(script, args, timeoutMs) {
  const out = join(tmpdir(), `pnet-bench-${process.pid}-${script.replace(/\W/g, '_')}.json`);
  try {
    execFileSync(process.execPath, ['--expose-gc', join(here, script), ...args, `--json=${out}`], { stdio: ['ignore', 'ignore', 'inherit'], timeout: timeoutMs });
    return JSON.parse(readFileSync(out, 'utf8'));
  } finally {
    rmSync(out, { force: true });
  }
}

/**
 * Figures outside the server/client pairs: convergence (ring of real nodes),
 * routing table (native vs TS twin), micro-benchmarks, the negotiation cost
 * derived from figure 3, and "not built" entries.
 */
async function runExtras({ ids, quick, runs, cellResults, systems }) {
  const extras = [];
  const want = (id) => ids.includes(id) && (!systems || systems.includes('pnet'));
  if (want('fanout')) {
    const title = 'Fan-out to 100 and 1,000 nodes';
    // Quick mode: 100 nodes only; the 1,000-node network takes minutes to build in one process.
    for (const nodes of quick ? [100] : [100, 1000]) {
      console.log(`\n[8] Fan-out to 'all' of ${nodes} pnet nodes (one process)`);
      try {
        const r = runScript('fanout.mjs', [`--nodes=${nodes}`, `--runs=${Math.max(3, runs)}`], nodes > 200 ? 900_000 : 180_000);
        console.log(`  all answers in ${r.samplesMs.map((x) => x.toFixed(0)).join(', ')} ms; per target p50 ${r.perTargetP50Ms.toFixed(0)} ms, p99 ${r.perTargetP99Ms.toFixed(0)} ms${r.errors.length ? ` (errors: ${r.errors.join('; ')})` : ''}`);
        const variant = `${nodes} nodes, ${r.links} links (irregular tree + extra links), one process, up to ${r.maxHops} hops; origin sent ${r.legsSentPerRun} copies per fan-out (its neighbours: ${r.originNeighbours})`;
        const workload = `fanout('all') of a small request; network built in ${(r.setupMs / 1000).toFixed(0)} s`;
        const notes = `per target p50 ${r.perTargetP50Ms.toFixed(0)} ms, p99 ${r.perTargetP99Ms.toFixed(0)} ms (from the start of the fan-out)${r.errors.length ? `; errors: ${r.errors.join('; ')}` : ''}`;
        const target = nodes === 1000 ? { on: 'value', op: '<=', value: 1000 } : undefined;
        extras.push(extraEntry({ figure: 'fanout', figureNumber: 8, title, metric: 'allRepliesMs', name: `all replies from ${nodes} nodes`, variant, workload, unit: 'ms', better: 'lower', samples: r.samplesMs, primary: nodes === 1000, target, notes }));
      } catch (error) {
        extras.push({ ...notBuilt({ figure: 'fanout', figureNumber: 8, title, variant: `${nodes} nodes`, reason: `run failed: ${String(error.message).split('\n')[0]}` }), status: 'failed' });
      }
    }
  }
  if (want('negotiation')) {
    // figure 3's pnet rows: request() (negotiated) vs a raw transport stream
    const row = (api) => cellResults.find((c) => c.cell.figure === 'stream-per-request' && c.cell.system === 'pnet' && c.params.api === api);
    const req = row('request');
    const raw = row('transport');
    if (req && raw) {
      const n = Math.min(req.runs.length, raw.runs.length);
      const samples = [];
      for (let i = 0; i < n; i++) {
        const a = req.runs[i].metrics?.p50us;
        const b = raw.runs[i].metrics?.p50us;
        if (Number.isFinite(a) && Number.isFinite(b)) samples.push(a - b);
      }
      extras.push(extraEntry({ figure: 'negotiation', figureNumber: '3b', title: 'Channel negotiation cost (from figure 3)', metric: 'p50ExtraUs', name: 'p50 µs added by request() over a raw transport stream', variant: 'request() − raw transport stream, same run', workload: req.workload, unit: 'µs', better: 'lower', samples }));
    }
  }
  if (want('convergence')) {
    console.log('\n[9c] Convergence after a link cut (ring of 16 pnet nodes, one process)');
    try {
      const r = runScript('convergence.mjs', ['--nodes=16', `--runs=${Math.max(3, runs)}`], quick ? 60_000 : 180_000);
      console.log(`  cut → routed around: ${r.samplesMs.map((x) => x.toFixed(0)).join(', ')} ms${r.errors.length ? ` (errors: ${r.errors.join('; ')})` : ''}`);
      extras.push(extraEntry({ figure: 'convergence', figureNumber: '9c', title: 'Convergence after a link cut (real nodes on loopback)', metric: 'convergenceMs', name: 'cut → every node routes around it', variant: `ring of ${r.nodes} nodes, one process, default routing options`, workload: `${r.nodes}-node ring, node.disconnect() on one link`, unit: 'ms', better: 'lower', samples: r.samplesMs, notes: r.errors.length ? `errors: ${r.errors.join('; ')}` : undefined }));
    } catch (error) {
      extras.push({ ...notBuilt({ figure: 'convergence', figureNumber: '9c', title: 'Convergence after a link cut (real nodes on loopback)', reason: `run failed: ${String(error.message).split('\n')[0]}` }), status: 'failed' });
    }
    try {
      const r = runScript('convergence-sim.mjs', ['--nodes=100', `--runs=${Math.max(3, runs)}`], 120_000);
      console.log(`  simulated 100-node ring, cut → last route change: ${r.samplesMs.join(', ')} ms (virtual)${r.errors.length ? ` (errors: ${r.errors.join('; ')})` : ''}`);
      extras.push(extraEntry({ figure: 'convergence', figureNumber: '9c', title: 'Convergence after a link cut (real nodes on loopback)', metric: 'convergenceMs', name: 'cut → last route change (simulation)', variant: `ring of ${r.nodes} routers in the routing simulation (real Router code, virtual clock, 5 ms links)`, workload: `${r.nodes}-node ring, one link cut; routes checked against global shortest paths`, unit: 'ms (virtual)', better: 'lower', samples: r.samplesMs, notes: r.errors.length ? `errors: ${r.errors.join('; ')}` : undefined }));
    } catch (error) {
      extras.push({ ...notBuilt({ figure: 'convergence', figureNumber: '9c', title: 'Convergence after a link cut (real nodes on loopback)', variant: '100-node ring (simulation)', reason: `run failed: ${String(error.message).split('\n')[0]}` }), status: 'failed' });
    }
  }
  if (want('routing')) {
    console.log('\n[9] Routing table: native vs TypeScript twin');
    try {
      const r = runScript('routing-table.mjs', quick ? ['--quick'] : [], quick ? 60_000 : 240_000);
      const routes = `${r.routes / 1e6}M routes, batches of ${r.batch}`;
      const ratio = r.lookup_ts.nsPerIdBatch / r.lookup_native.nsPerIdBatch;
      const t = 'Routing table (bench/routing-table.mjs; each figure the median of its repetitions)';
      extras.push(
        extraEntry({ figure: 'routing', figureNumber: 9, title: t, metric: 'nextHopBatchNs', name: 'next hop, batch (ns/id)', system: 'pnet', variant: 'native addon', workload: routes, unit: 'ns/id', better: 'lower', samples: [r.lookup_native.nsPerIdBatch], primary: true, target: { on: 'ratio', ratioName: 'native speed-up over the twin', ratio, op: '>=', value: 3 } }),
        extraEntry({ figure: 'routing', figureNumber: 9, title: t, metric: 'nextHopBatchNs', name: 'next hop, batch (ns/id)', system: 'pnet-ts-twin', variant: 'TypeScript twin', workload: routes, unit: 'ns/id', better: 'lower', samples: [r.lookup_ts.nsPerIdBatch] }),
        extraEntry({ figure: 'routing', figureNumber: 9, title: t, metric: 'spfMs', name: 'all-destinations shortest paths (ms)', system: 'pnet', variant: 'native addon', workload: `100k nodes / ${Math.round(r.sp_native.links / 1e3)}k links`, unit: 'ms', better: 'lower', samples: [r.sp_native.fullMs], primary: true }),
        extraEntry({ figure: 'routing', figureNumber: 9, title: t, metric: 'spfMs', name: 'all-destinations shortest paths (ms)', system: 'pnet-ts-twin', variant: 'TypeScript twin', workload: `100k nodes / ${Math.round(r.sp_ts.links / 1e3)}k links`, unit: 'ms', better: 'lower', samples: [r.sp_ts.fullMs] }),
      );
      for (const e of extras.slice(-4)) e.runs = e.metric === 'spfMs' ? (e.system === 'pnet' ? 9 : 3) : e.system === 'pnet' ? 7 : 3; // repetitions inside the script
      console.log(`  next hop batch: native ${r.lookup_native.nsPerIdBatch.toFixed(1)} ns/id, twin ${r.lookup_ts.nsPerIdBatch.toFixed(1)} (${ratio.toFixed(1)}×); SPF native ${r.sp_native.fullMs.toFixed(1)} ms, twin ${r.sp_ts.fullMs.toFixed(1)} ms`);
    } catch (error) {
      extras.push({ ...notBuilt({ figure: 'routing', figureNumber: 9, title: 'Routing table', reason: `run failed: ${String(error.message).split('\n')[0]}` }), status: 'failed' });
    }
  }
  if (want('micro')) {
    console.log('\n[10] Micro-benchmarks (benchmark package)');
    try {
      const r = runScript('micro.mjs', quick ? ['--quick'] : [], 120_000);
      for (const c of r.results) {
        if (c.error) continue;
        extras.push(extraEntry({ figure: 'micro', figureNumber: 10, title: 'Micro-benchmarks (benchmark.js; median of its samples)', metric: 'opsps', name: c.name, variant: 'dist/ function', workload: 'one call', unit: 'ops/s', better: 'higher', samples: c.opsps }));
        console.log(`  ${c.name}: ${Math.round(c.hz).toLocaleString('en-US')} ops/s ±${c.rme.toFixed(1)}%`);
      }
    } catch (error) {
      extras.push({ ...notBuilt({ figure: 'micro', figureNumber: 10, title: 'Micro-benchmarks', reason: `run failed: ${String(error.message).split('\n')[0]}` }), status: 'failed' });
    }
  }
  return extras;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
