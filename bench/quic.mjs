#!/usr/bin/env node
// pnet benchmark: five loopback figures for pnet (the built package in
// ../dist) beside two baselines, @matrixai/quic's high-level classes and
// Node's TLS 1.3. Every run of every cell forks a fresh server process and a
// fresh client process (bench/worker.mjs); this process only orchestrates.
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
import { CELLS, FIGURES, describeWorkload, isScaled } from './scenarios.mjs';
import { machineInfo } from './lib/machine.mjs';
import { buildResults, renderConsole, renderMarkdown } from './lib/report.mjs';

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
      console.log('usage: node bench/quic.mjs [--quick] [--runs=N] [--only=throughput,echo,stream-per-request,parallel,connect] [--systems=pnet,matrixai-quic,node-tls] [--out=DIR] [--verbose]');
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
    this.proc = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
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
  const server = new Child(`${cell.system} server`);
  let client;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`run timed out after ${timeoutMs / 1000} s`)), timeoutMs);
  });
  const work = (async () => {
    const common = { system: cell.system, figure: cell.figure, params };
    const ready = await server.request({ type: 'init', role: 'server', ...common, identity: identities.server, peerCertPem: identities.client.certPem }, 'ready');
    client = new Child(`${cell.system} client`);
    await client.request(
      { type: 'init', role: 'client', ...common, identity: identities.client, peerCertPem: identities.server.certPem, address: ready.address, serverNodeId: ready.nodeId },
      'ready',
    );
    await server.request({ type: 'mark' }, 'marked');
    const result = await client.request({ type: 'go' }, 'result');
    const stats = await server.request({ type: 'report' }, 'stats');
    return {
      metrics: { ...result.metrics, clientCpuS: result.cpuS, serverCpuS: stats.cpuS, clientRssMiB: result.rssMiB, serverRssMiB: stats.rssMiB },
    };
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
  const runs = args.runs ?? 3;
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

  const figures = FIGURES.filter((f) => !args.only || args.only.includes(f.id) || args.only.includes(String(f.number)));
  const cells = CELLS.filter((c) => figures.some((f) => f.id === c.figure) && (!args.systems || args.systems.includes(c.system)));
  if (cells.length === 0) {
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
    const result = await runOnce(c.cell, c.params, identities, timeoutMs);
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

  const durationS = (performance.now() - started) / 1000;
  machine.loadAverageEnd = machineInfo().loadAverage;
  const { entries, ratios } = buildResults({ figures, cellResults });
  notes.push(
    '@matrixai/quic high-level classes are ~50× slower than pnet, so their workloads are scaled down (marked "scaled down"); ratios are given for rates and latencies, which do not depend on the amount of work, and omitted for totals.',
    'Certificates: Ed25519, self-signed, made by pnet\'s Identity.generate(); the same two key pairs serve every system. Every side verifies its peer\'s self-signed certificate; clients pin the server key.',
    'node-tls rows for figures 3 and 4 use HTTP/2 (node:http2) over the same TLS 1.3 connection, since plain TLS has no streams; windows are raised to pnet\'s defaults (1 MiB per stream, 16 MiB per connection).',
    'pnet figure 5 reuses one client node and closes each connection with node.disconnect(id) (awaited), as a user keeping a node around would; the server node is the same throughout.',
    'CPU seconds: process CPU (user+system) over the measured part (client: its run; server: from just before the client starts until it finishes). Peak RSS: each process\'s lifetime maximum (includes startup).',
  );
  if (mode === 'quick') notes.push('Quick mode: smaller workloads than the targets are defined on; PASS/FAIL is indicative only.');
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
    figures: entries,
    ratios,
  };
  const md = renderMarkdown({ figures, entries, ratios, machine, mode, notes, durationS });
  mkdirSync(args.out, { recursive: true });
  const partial = Boolean(args.only || args.systems || args.runs !== undefined && args.runs < 3);
  const base = join(args.out, partial ? 'partial' : 'latest');
  // Partial (filtered) runs go to partial.{json,md}.tmp so they never replace a full result.
  writeAtomically(partial ? `${base}.json.tmp` : `${base}.json`, JSON.stringify(json, null, 2) + '\n');
  writeAtomically(partial ? `${base}.md.tmp` : `${base}.md`, md);

  console.log('\n==== summary (median of runs) ====');
  console.log(renderConsole({ figures, entries }));
  console.log(`\n${failed.length ? `${failed.length} run(s) failed (see notes). ` : ''}Took ${durationS.toFixed(0)} s. Wrote ${base}.{json,md}${partial ? '.tmp (filtered run)' : ''}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
