#!/usr/bin/env node
// One hub and thousands of leaves as real pnet nodes on loopback (issue 14's real-node target):
// one hub process (role router, default options) and the leaves in several other processes
// (role leaf, default options otherwise), each leaf dialling the hub. Measured:
//   - convergence: from the last leaf's first dial until the hub routes to every leaf and every
//     leaf has the hub as its default route (bootstrap dials that fail are retried, 50 at a time
//     per process, as a daemon's redial would);
//   - at rest (after a settle period): hub CPU (% of one core) and RSS, routing bytes per second
//     sent and received by the hub (every routing-channel message, hellos included), leaf
//     processes' CPU;
//   - an operator (a node of its own, role leaf) dials the hub: connect time, then
//     fanout('all') through the hub: answers and time to the last one;
//   - the operator CLI (dist/cli/main.js, as a user runs it): the hub and every leaf serve the
//     ops channels as the daemon does (serveOps, the operator's key allowed, command `true`);
//     the CLI's connect (its OperatorSession.connect, timed in this process), then
//     `pnet exec --targets all --json -- true` in a process of its own: answers, the last
//     answer's time from the fan-out's start, the process's wall time;
//   - the hub killed (SIGKILL) and started again with the same key and port: time until every
//     leaf has it as a neighbour again (the library's bootstrap redials, default schedule) and
//     it routes to all; then the CLI exec once more.
//
//   flock /tmp/bench.lock node bench/hub-real.mjs [--leaves=2000] [--procs=4] [--rest=30] [--out=bench/results/hub-real]
//   --quick: 200 leaves in 2 processes, 10 s at rest (a smoke run)
//   --restart-only: the join, then the hub kill and restart alone, printed as JSON (no result files)
//   --role=auto: the hub and the leaves are all role 'auto' (the hub must become the router by itself)
//   --links-ahead=routers|always|never: the nodes' fanout.linksAhead (default: the library's); --cli-probe
//     then also records the hub's and each leaf process's memory (after a GC) and the hub's link counters before the first exec
//   The hub runs with glibc's malloc on huge pages where `pnet node --huge-pages` would (src/cli/huge-pages.ts)
//   when PNET_HUGE_PAGES=1 is set here (off by default, as the daemon); GLIBC_TUNABLES set here is passed as is.
//
// Uses dist/ (npm run build first). Writes <out>.json and <out>.md.
import { fork, spawn } from 'node:child_process';
import { writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join as joinPath } from 'node:path';
import { once } from 'node:events';
import { cpus, loadavg, tmpdir } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const arg = (name, dflt) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;
const QUICK = process.argv.includes('--quick');
/** --restart-only: join, then the hub restart alone, printed (investigating; writes no results). */
const RESTART_ONLY = process.argv.includes('--restart-only');
/** --cli-probe: the join, then the CLI's exec against its parts (investigating; writes no results). */
const CLI_PROBE = process.argv.includes('--cli-probe');
/** --spawn-only: the join, then the CLI's exec with the real command alone (writes no results). */
const SPAWN_ONLY = process.argv.includes('--spawn-only');
/** --probe-quick: with --cli-probe, only the three CLI execs with the hub's timing (no session or library fan-outs). */
const QUICK_PROBE = process.argv.includes('--probe-quick');
const CHILD = arg('child', '');
/** 'auto': every node decides its role itself; otherwise the hub is a router and the leaves are leaves. */
const AUTO = arg('role', '') === 'auto';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));


/** Answers the parent's questions; `state()` is what one poll returns. */
function serve(state, handlers = {}) {
  // The parent gone (killed, timed out): so are we.
  process.on('disconnect', () => process.exit(0));
  process.on('message', async (msg) => {
    if (msg.type === 'poll') process.send({ type: 'state', id: msg.id, ...(await state()) });
    else if (handlers[msg.type]) process.send({ type: 'done', id: msg.id, ...(await handlers[msg.type](msg)) });
    else if (msg.type === 'exit') process.exit(0);
  });
}

/** The ops channels as the daemon serves them (runDaemon's serveOps): the bench's operator allowed, one command. */
async function serveOpsFor(node) {
  const { serveOps } = await import('../dist/cli/ops.js');
  const { validateOpsConfig } = await import('../dist/cli/config.js');
  serveOps(node, opsConfig(validateOpsConfig));
}

/** --links-ahead=MODE: the nodes' fanout.linksAhead (absent: the library's default; an older build ignores it). */
const LINKS_AHEAD = arg('links-ahead', '');
const fanoutOptions = () => (LINKS_AHEAD === '' ? {} : { fanout: { linksAhead: LINKS_AHEAD } });

/** The process's memory after a full GC (the hub runs with --expose-gc). */
async function memory() {
  globalThis.gc?.();
  const m = process.memoryUsage();
  return { gc: globalThis.gc !== undefined, rssMiB: m.rss / 2 ** 20, heapUsedMiB: m.heapUsed / 2 ** 20, externalMiB: m.external / 2 ** 20, arrayBuffersMiB: m.arrayBuffers / 2 ** 20 };
}

const opsConfig = (validateOpsConfig) => validateOpsConfig({ operators: [arg('operator', '')], commands: { true: { argv: ['true'] } } });

async function hubChild() {
  const { createNode } = await import('../dist/index.js');
  const { nodeServices } = await import('../dist/node/node.js');
  const hub = await createNode({ listen: arg('listen', '127.0.0.1:0'), keyFile: arg('key', ''), routing: { role: AUTO ? 'auto' : 'router' }, ...fanoutOptions() });
  hub.handleRequest('whoami', () => hub.id);
  await serveOpsFor(hub);
  const neighbours = nodeServices(hub).neighbours;
  const router = neighbours.router;
  const bytes = { sent: 0, received: 0 };
  const send = neighbours.send.bind(neighbours);
  neighbours.send = (to, message) => {
    bytes.sent += message.length;
    send(to, message);
  };
  const receive = router.recordReceived.bind(router);
  router.recordReceived = (from, message, now) => {
    bytes.received += message.length;
    return receive(from, message, now);
  };
  const timing = linkTiming(nodeServices(hub).fanouts);
  const loop = loopDelay();
  serve(() => ({
    loopDelayMaxMs: loop(),
    role: router.role,
    routes: router.routeCount,
    neighbours: router.neighbours().length,
    peers: [...nodeServices(hub).peers.entries()].length,
    cpu: process.cpuUsage(),
    rss: process.memoryUsage().rss,
    bytes: { ...bytes },
    stats: router.stats(),
    fragments: router.record(hub.id)?.fragments ?? 0,
    quic: quicOf(hub.stats()),
    links: nodeServices(hub).fanouts.linkCounters,
  }), { memory, 'timing-reset': async () => (timing.reset(), {}), timing: async () => timing.summary(), 'prof-start': profStart, 'prof-stop': profStop });
  process.send({ type: 'ready', id: hub.id, address: hub.address });
}

/** HUB_EXEC_PROF=DIR: the hub's CPU profile of each CLI exec of --cli-probe alone (node:inspector), written to DIR/exec-N.cpuprofile. */
let inspector;
async function profStart() {
  const { Session } = await import('node:inspector');
  inspector ??= new Session();
  inspector.connect?.();
  const post = (m, p) => new Promise((resolve, reject) => inspector.post(m, p, (e, r) => (e ? reject(e) : resolve(r))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 500 });
  await post('Profiler.start');
  return {};
}
async function profStop({ name }) {
  const post = (m, p) => new Promise((resolve, reject) => inspector.post(m, p, (e, r) => (e ? reject(e) : resolve(r))));
  const { profile } = await post('Profiler.stop');
  writeFileSync(joinPath(process.env.HUB_EXEC_PROF ?? process.env.HUB_REST_PROF, `${name}.cpuprofile`), JSON.stringify(profile));
  inspector.disconnect();
  inspector = undefined;
  return {};
}

/** The event loop's longest delay since the last call (ms): how late this process answers its sockets. */
function loopDelay() {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  return () => {
    const max = Math.round(h.max / 1e6);
    h.reset();
    return max;
  };
}

/**
 * Where a fan-out's time goes at the hub (--cli-probe): each leg from its send to its first
 * frame and its end, each link open from the call to its ACCEPT (bench-only wrappers around the
 * fan-out service), the hub's CPU and event-loop delay over the same span.
 */
function linkTiming(fanouts) {
  let t0 = performance.now();
  let cpu0 = process.cpuUsage();
  // Page faults: a first touch of memory in a VM can cost far more than the same work on warm pages.
  let usage0 = process.resourceUsage();
  let legs = [];
  let opens = [];
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const openLeg = fanouts.host.openLeg.bind(fanouts.host);
  fanouts.host.openLeg = (hop, link) => {
    const o = { at: performance.now(), link: link !== undefined && link !== false, acceptedAt: undefined };
    opens.push(o);
    const p = openLeg(hop, link);
    p.then(() => (o.acceptedAt = performance.now()), () => undefined);
    return p;
  };
  const sendLeg = fanouts.sendLeg.bind(fanouts);
  fanouts.sendLeg = (hop, bytes, maxFrameBytes, sink) => {
    const l = { at: performance.now(), firstAt: undefined, endAt: undefined };
    legs.push(l);
    return sendLeg(hop, bytes, maxFrameBytes, {
      frames: (f) => (l.firstAt ??= performance.now(), sink.frames(f)),
      closed: (c) => (l.endAt ??= performance.now(), sink.closed(c)),
    });
  };
  const pct = (xs, q) => (xs.length === 0 ? undefined : Math.round(xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]));
  const dist = (xs) => (xs.sort((a, b) => a - b), { n: xs.length, p50: pct(xs, 0.5), p90: pct(xs, 0.9), max: pct(xs, 1) });
  return {
    reset() {
      t0 = performance.now();
      cpu0 = process.cpuUsage();
      usage0 = process.resourceUsage();
      legs = [];
      opens = [];
      delay.reset();
    },
    summary() {
      const from = legs[0]?.at ?? t0;
      const rel = (xs) => dist(xs.filter((x) => x !== undefined).map((x) => x - from));
      const cpu = process.cpuUsage(cpu0);
      const usage = process.resourceUsage();
      return {
        pageFaults: { minor: usage.minorPageFault - usage0.minorPageFault, major: usage.majorPageFault - usage0.majorPageFault },
        legs: legs.length,
        linkOpens: opens.filter((o) => o.link).length,
        v1Opens: opens.filter((o) => !o.link).length,
        // Relative to the first leg sent: when legs left, their links were accepted, first frames and ends came.
        sentAt: rel(legs.map((l) => l.at)),
        linkAcceptedAt: rel(opens.filter((o) => o.link).map((o) => o.acceptedAt)),
        linkWait: dist(opens.filter((o) => o.link && o.acceptedAt !== undefined).map((o) => o.acceptedAt - o.at)),
        firstFrameAt: rel(legs.map((l) => l.firstAt)),
        endAt: rel(legs.map((l) => l.endAt)),
        cpuMs: Math.round((cpu.user + cpu.system) / 1000),
        wallMs: Math.round(performance.now() - t0),
        loopDelayMs: { p50: Math.round(delay.percentile(50) / 1e6), p99: Math.round(delay.percentile(99) / 1e6), max: Math.round(delay.max / 1e6) },
        links: fanouts.linkCounters,
      };
    },
  };
}

/** The hub's QUIC admission figures: handshakes completed inbound, in progress, and Initials turned away. */
function quicOf(stats) {
  const d = stats.datagramsDropped ?? {};
  return { inbound: stats.handshakes.completed.quic.inbound, h2Inbound: stats.handshakes.completed.h2.inbound, h2Connections: stats.connections?.h2 ?? 0, pending: stats.handshakes.pending, refused: d.refused ?? 0, admissionLimited: d.admissionLimited ?? 0, retried: d.retried ?? 0, retryLimited: d.retryLimited ?? 0, invalidToken: d.invalidToken ?? 0, unknownConnection: d.unknownConnection ?? 0 };
}

async function leavesChild() {
  const { createNode } = await import('../dist/index.js');
  const { nodeServices } = await import('../dist/node/node.js');
  const { spawnQueue } = await import('../dist/cli/spawn-queue.js');
  const count = Number(arg('count', 500));
  const hubAddress = arg('hub', '');
  const hubId = arg('hubId', '');
  const nodes = [];
  let firstDialAt = 0;
  let lastStartAt = 0;
  /** Why leaves lost the hub: peer:down error codes. */
  const drops = {};
  /** The same, by message: what closed them. */
  const dropReasons = {};
  /** Why redials failed: bootstrap event error codes. */
  const redialErrors = {};
  // Polls read the counters where they live, not node.stats() or peers(): a snapshot of 500 nodes
  // four times a second took a third of a leaf process's CPU in a hub restart (profiled 2026-12-07).
  const keeperStats = (node) => node.keeper?.stats ?? { redials: 0, redialFailures: 0, reconnected: 0 };
  const sum = (key) => nodes.reduce((n, node) => n + keeperStats(node)[key], 0);
  // Bench only: ops/exec answered without spawning (what the host's spawn costs is measured apart).
  // Bench only: ops/exec answered without spawning while `stubbed` (what the hosts' spawns cost is measured apart, last).
  let stubbed = false;
  let switched = false;
  const stubExec = async ({ on }) => {
    stubbed = on;
    if (switched) return {};
    switched = true;
    const { execService } = await import('../dist/cli/ops/exec.js');
    const { validateOpsConfig } = await import('../dist/cli/config.js');
    const config = opsConfig(validateOpsConfig);
    const reply = JSON.stringify({ exitCode: 0, signal: null, stdout: '', stderr: '', truncated: false, ms: 0, timedOut: false });
    const operator = arg('operator', '');
    for (const node of nodes) {
      const real = execService({ node, config, logger: undefined });
      node.unhandle('ops/exec');
      node.handleRequest('ops/exec', async (request, info) => (stubbed ? reply : JSON.stringify(await real.handler(request, info.remoteNodeId))), { authorise: ({ remoteNodeId }) => remoteNodeId === operator });
    }
    return {};
  };
  const loop = loopDelay();
  serve(() => ({
    loopDelayMaxMs: loop(),
    joined: nodes.filter((n) => nodeServices(n).peers.get(hubId) !== undefined).length,
    defaulted: nodes.filter((n) => nodeServices(n).neighbours.router.defaultRoute === hubId).length,
    leaves: nodes.filter((n) => nodeServices(n).neighbours.router.role === 'leaf').length,
    firstDialAt,
    lastStartAt,
    drops,
    dropReasons,
    redialErrors,
    failedAtStart: nodes.filter((n) => !n.bootstrapResults[0]?.ok).length,
    // The leaves' dial handshakes by transport: HTTP/2 joins a QUIC dial not answered within fallbackDelayMs.
    dials: nodes.reduce((acc, node) => {
      const started = nodeServices(node).dialer.stats;
      for (const key of ['quic', 'h2', 'fallbacks', 'quicRetries', 'quicRecovered']) acc[key] = (acc[key] ?? 0) + (started[key] ?? 0);
      return acc;
    }, {}),
    redials: sum('redials'),
    redialFailures: sum('redialFailures'),
    reconnected: sum('reconnected'),
    spawn: spawnQueue.stats(),
    cpu: process.cpuUsage(),
    rss: process.memoryUsage().rss,
  }), { memory, 'stub-exec': stubExec, 'prof-start': profStart, 'prof-stop': profStop });
  process.send({ type: 'ready' });
  await new Promise((resolve) => process.once('message', (msg) => msg.type === 'start' && resolve()));
  firstDialAt = Date.now();
  // 50 createNode in flight per process, each dialling the hub (createNode's bootstrap; the
  // library redials a failed one): a join storm the hub's handshake limits can take.
  let next = 0;
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < count) {
      next++;
      const node = await createNode({ listen: '127.0.0.1:0', bootstrap: [hubAddress], routing: { role: AUTO ? 'auto' : 'leaf' }, ...fanoutOptions() });
      node.handleRequest('whoami', () => node.id);
      node.on('peer:down', ({ nodeId, error }) => {
        if (nodeId !== hubId) return;
        drops[error?.code ?? 'none'] = (drops[error?.code ?? 'none'] ?? 0) + 1;
        // Why, in words (ids and numbers out): which end closed a fresh connection, and for what.
        const why = `${error?.code ?? 'none'}: ${(error?.message ?? '').replace(/[a-z2-7]{52,}/g, 'ID').replace(/\d+/g, 'N').slice(0, 120)}`;
        dropReasons[why] = (dropReasons[why] ?? 0) + 1;
      });
      node.on('bootstrap', (event) => !event.ok && (redialErrors[event.error?.code ?? 'none'] = (redialErrors[event.error?.code ?? 'none'] ?? 0) + 1));
      await serveOpsFor(node);
      nodes.push(node);
      lastStartAt = Date.now();
    }
  }));
}

/**
 * The hub's environment as `pnet node` gives itself one (src/cli/huge-pages.ts: glibc's malloc on
 * huge pages with PNET_HUGE_PAGES=1 set here, unless GLIBC_TUNABLES is). The daemon re-executes
 * itself with it; a forked child cannot (its IPC channel), so the hub is started with it. A build
 * before it: the environment as is. The leaves (500 nodes a process, not daemons) never get it.
 */
async function hubEnvironment() {
  const decide = await import('../dist/cli/huge-pages.js').catch(() => undefined);
  if (decide === undefined) return { env: process.env, hugePages: { enabled: false, reason: 'a build without src/cli/huge-pages.ts' } };
  const plan = decide.planHugePages({ ...decide.hugePagesFactsHere([]), forked: false });
  if (!plan.exec) return { env: process.env, hugePages: plan.state };
  return { env: { ...process.env, GLIBC_TUNABLES: decide.HUGE_PAGES_TUNABLE }, hugePages: { enabled: true, reason: `GLIBC_TUNABLES=${decide.HUGE_PAGES_TUNABLE}, as pnet node sets it` } };
}
let hubEnv;

function child(role, args) {
  // HUB_CPU_PROF=DIR / LEAVES_CPU_PROF=DIR: that child runs under --cpu-prof (a restarted hub's profile covers the leaves' return).
  const profDir = process.env[`${role.toUpperCase()}_CPU_PROF`];
  // HUB_NODE_FLAGS / LEAVES_NODE_FLAGS: more node flags for that child (space-separated), e.g. V8 heap sizes.
  const flags = (process.env[`${role.toUpperCase()}_NODE_FLAGS`] ?? '').split(' ').filter(Boolean);
  const execArgv = [...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), '--expose-gc', ...flags];
  const env = role === 'hub' ? hubEnv.env : process.env;
  const proc = fork(new URL(import.meta.url).pathname, [`--child=${role}`, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv, env });
  let seq = 0;
  const waiting = new Map();
  let ready;
  const readyP = new Promise((resolve) => (ready = resolve));
  // A leaves process that dies ends the run (its answers would never come).
  if (role === 'leaves') proc.on('exit', (code, signal) => code !== 0 && (console.error(`leaves process exited: ${code ?? signal}`), process.exit(1)));
  proc.on('message', (msg) => {
    if (msg.type === 'ready') ready(msg);
    else waiting.get(msg.id)?.(msg);
  });
  const ask = (type, extra = {}) =>
    new Promise((resolve) => {
      const id = ++seq;
      waiting.set(id, resolve);
      proc.send({ type, id, ...extra });
    });
  return { proc, ready: readyP, poll: () => ask('poll'), ask, send: (m) => proc.send(m) };
}

const cpuMs = (u) => (u.user + u.system) / 1000;

/** Polls until the hub routes to every leaf and every leaf is attached to it (default route and live peer). */
async function converge(hub, groups, leaves, since, limitMs) {
  let hubState;
  let leafStates;
  let convergedAt;
  let fewestJoined = Infinity;
  let lastLog = since;
  /** Every 2 s: seconds since `since`, leaves attached, the hub's neighbours and its handshakes in progress. */
  const timeline = [];
  /** When the hub first had 99% of the leaves as neighbours, and the last time any count moved. */
  let ninetyNineAt;
  let movedAt = since;
  let last = '';
  let hubDelay = 0;
  let leafDelay = 0;
  for (;;) {
    await sleep(250);
    hubState = await hub.poll();
    leafStates = await Promise.all(groups.map((g) => g.poll()));
    hubDelay = Math.max(hubDelay, hubState.loopDelayMaxMs ?? 0);
    leafDelay = Math.max(leafDelay, ...leafStates.map((s) => s.loopDelayMaxMs ?? 0));
    const joined = leafStates.reduce((n, s) => n + s.joined, 0);
    const defaulted = leafStates.reduce((n, s) => n + s.defaulted, 0);
    fewestJoined = Math.min(fewestJoined, joined);
    if (hubState.routes >= leaves && hubState.neighbours >= leaves && defaulted >= leaves && joined >= leaves) {
      convergedAt = Date.now();
      ninetyNineAt ??= convergedAt; // the last poll went from under 99% to all
      break;
    }
    const counts = `${joined}/${defaulted}/${hubState.neighbours}/${hubState.routes}`;
    if (counts !== last) [last, movedAt] = [counts, Date.now()];
    if (ninetyNineAt === undefined && hubState.neighbours >= 0.99 * leaves && hubState.routes >= 0.99 * leaves) ninetyNineAt = Date.now();
    // A few leaves connected but never the hub's neighbours (a lost hello) do not move again: stop after 40 s still.
    if (Date.now() - since > limitMs || (ninetyNineAt !== undefined && Date.now() - movedAt > 40_000)) break;
    if (Date.now() - lastLog >= 1000 && (lastLog = Date.now())) {
      // s, leaves attached, hub neighbours, handshakes pending, completed inbound, Initials held back by the admission, hub / worst leaf process loop delay (ms).
      timeline.push([Math.round((Date.now() - since) / 100) / 10, joined, hubState.neighbours, hubState.quic.pending, hubState.quic.inbound, hubState.quic.admissionLimited, hubDelay, leafDelay]);
      console.error(`t+${Date.now() - since} ms: joined ${joined}, hub neighbours ${hubState.neighbours}, routes ${hubState.routes}, defaulted ${defaulted}, loop delay hub ${hubDelay} ms leaves ${leafDelay} ms, hub quic ${JSON.stringify(hubState.quic)}`);
      hubDelay = 0;
      leafDelay = 0;
    }
  }
  return { convergedAt, hubState, leafStates, fewestJoined, timeline, ninetyNineAt, lastMovedAt: movedAt };
}

const total = (states, key) => states.reduce((n, s) => n + s[key], 0);
const mergeDrops = (states, key = 'drops') => {
  const out = {};
  for (const state of states) for (const [code, n] of Object.entries(state[key])) out[code] = (out[code] ?? 0) + n;
  return out;
};
const minus = (a, b) => Object.fromEntries(Object.entries(a).map(([code, n]) => [code, n - (b[code] ?? 0)]).filter(([, n]) => n !== 0));

/** The CLI's connect (its own OperatorSession.connect, a fresh node each time, as each CLI run makes). */
async function cliConnect(address, hubId, keyFile) {
  const { OperatorSession } = await import('../dist/cli/client.js');
  const times = [];
  for (let i = 0; i < 5; i++) {
    const c0 = performance.now();
    const session = await OperatorSession.connect({ node: address, nodeId: hubId, keyFile, connectTimeoutMs: 5000 });
    times.push(performance.now() - c0);
    await session.close();
  }
  return times;
}

/** `pnet exec --targets all --json -- true`, the real CLI in a process of its own. */
async function cliExec(address, hubId, keyFile) {
  const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
  const w0 = performance.now();
  // CLI_CPU_PROF=DIR: the CLI process runs under --cpu-prof.
  const prof = process.env.CLI_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CLI_CPU_PROF}`] : [];
  const proc = spawn(process.execPath, [...prof, cli, 'exec', '--node', address, '--node-id', hubId, '--key', keyFile, '--targets', 'all', '--json', '--no-progress', '--', 'true'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = [];
  const err = [];
  proc.stdout.on('data', (d) => out.push(d));
  proc.stderr.on('data', (d) => err.push(d));
  const [code] = await once(proc, 'exit');
  const wallMs = performance.now() - w0;
  try {
    const r = JSON.parse(Buffer.concat(out).toString());
    const ms = r.results.map((x) => x.ms).sort((a, b) => a - b);
    const reasons = {};
    for (const x of r.results) {
      if (x.status === 'ok') continue;
      const reason = (x.reason ?? x.status).replace(/[a-z2-7]{52,}/g, 'ID').replace(/last reachable \S+/, 'last reachable T');
      reasons[reason] = (reasons[reason] ?? 0) + 1;
    }
    return { code, wallMs, targets: r.targets, ok: r.ok, failed: r.failed, timedOut: r.timedOut, p50Ms: r.p50Ms, p99Ms: r.p99Ms, lastMs: ms.at(-1), notOk: Object.entries(reasons).slice(0, 5) };
  } catch {
    return { code, wallMs, error: Buffer.concat(err).toString().trim().slice(0, 500) };
  }
}

async function atRest(hub, groups, restS) {
  await sleep(10_000);
  const h0 = await hub.poll();
  const l0 = await Promise.all(groups.map((g) => g.poll()));
  const w0 = performance.now();
  // HUB_REST_PROF=DIR: the hub's CPU profile of the rest window, DIR/rest.cpuprofile (its CPU figure then carries the profiler).
  if (process.env.HUB_REST_PROF) await hub.ask('prof-start');
  await sleep(restS * 1000);
  if (process.env.HUB_REST_PROF) await hub.ask('prof-stop', { name: 'rest' });
  const h1 = await hub.poll();
  const l1 = await Promise.all(groups.map((g) => g.poll()));
  const wall = performance.now() - w0;
  return {
    seconds: wall / 1000,
    hubCpuPercent: (100 * (cpuMs(h1.cpu) - cpuMs(h0.cpu))) / wall,
    hubRssMiB: h1.rss / 2 ** 20,
    hubRoutingSentBps: ((h1.bytes.sent - h0.bytes.sent) * 1000) / wall,
    hubRoutingReceivedBps: ((h1.bytes.received - h0.bytes.received) * 1000) / wall,
    hubRecordsAccepted: h1.stats.recordsAccepted - h0.stats.recordsAccepted,
    hubPublished: h1.stats.published - h0.stats.published,
    hubRoutes: h1.routes,
    hubNeighbours: h1.neighbours,
    hubFragments: h1.fragments,
    leafProcessCpuPercent: l1.map((s, i) => (100 * (cpuMs(s.cpu) - cpuMs(l0[i].cpu))) / wall),
    leafProcessRssMiB: l1.map((s) => s.rss / 2 ** 20),
  };
}

/** The CLI's exec three ways: the CLI process, and in this process its session's fan-out of the id list and of 'all' through the hub. */
async function cliProbe(hub, address, hubId, keyFile, leaves) {
  const cli = [];
  const hubTiming = [];
  const leafCpu = [];
  for (let i = 0; i < 3; i++) {
    await hub.ask('timing-reset');
    const l0 = await Promise.all(hub.groups.map((g) => g.poll()));
    // With HUB_EXEC_PROF, the first leaves process is profiled over the same span.
    if (process.env.HUB_EXEC_PROF) await Promise.all([hub.ask('prof-start'), hub.groups[0].ask('prof-start')]);
    cli.push(await cliExec(address, hubId, keyFile));
    if (process.env.HUB_EXEC_PROF) await Promise.all([hub.ask('prof-stop', { name: `exec-${i + 1}` }), hub.groups[0].ask('prof-stop', { name: `leaves-exec-${i + 1}` })]);
    hubTiming.push(await hub.ask('timing'));
    const l1 = await Promise.all(hub.groups.map((g) => g.poll()));
    leafCpu.push(l1.map((s, j) => Math.round(cpuMs(s.cpu) - cpuMs(l0[j].cpu))));
    console.error('cli exec', i + 1, JSON.stringify(cli.at(-1)), JSON.stringify(hubTiming.at(-1)), 'leaf process CPU ms', JSON.stringify(leafCpu.at(-1)));
  }
  const out = { cli, hubTiming, leafCpuMs: leafCpu, ...(QUICK_PROBE ? {} : await sessionFanouts(address, hubId, keyFile)) };
  if (QUICK_PROBE) return out;
  out.library = (await libraryOperator(hub, address, hubId, leaves)).fanouts;
  console.error('probe', JSON.stringify(out));
  return out;
}

/** In this process, the CLI's session (OperatorSession): the inventory call, then its exec fan-out through the hub of the id list (as the CLI sends) and of 'all'. */
async function sessionFanouts(address, hubId, keyFile) {
  const { OperatorSession } = await import('../dist/cli/client.js');
  const out = {};
  const session = await OperatorSession.connect({ node: address, nodeId: hubId, keyFile, connectTimeoutMs: 5000 });
  const i0 = performance.now();
  const inventory = await session.call('ops/inventory', { facts: false }, 10_000);
  out.inventoryMs = performance.now() - i0;
  const ids = inventory.hosts.map((h) => h.nodeId);
  const request = JSON.stringify({ command: 'true' });
  const time = async (targets) => {
    const f0 = performance.now();
    let ok = 0;
    let last = 0;
    for await (const r of session.node.fanout(targets, 'ops/exec', request, { via: hubId, deadlineMs: 30_000, maxReplyBytes: 16 * 1024 * 1024 })) {
      if (r.ok) ok++;
      last = r.ms;
    }
    return { ok, lastMs: Math.round(last), wallMs: Math.round(performance.now() - f0) };
  };
  out.list = [await time(ids), await time(ids)];
  out.all = [await time('all'), await time('all')];
  out.list.push(await time(ids));
  await session.close();
  return out;
}

/** The operator as a library node (a leaf: its fanout('all') goes through the hub), 3 runs. */
async function libraryOperator(hub, address, hubId, leaves) {
  const { createNode } = await import('../dist/index.js');
  const operator = await createNode({ listen: '127.0.0.1:0', routing: { role: 'leaf' } });
  operator.handleRequest('whoami', () => operator.id);
  const c0 = performance.now();
  await operator.dial(address, { expectedNodeId: hubId });
  const connectMs = performance.now() - c0;
  for (let i = 0; i < 100 && (await hub.poll()).routes < leaves + 1; i++) await sleep(100);
  const fanouts = [];
  for (let run = 0; run < 3; run++) {
    const f0 = performance.now();
    let ok = 0;
    let failed = 0;
    let last = 0;
    for await (const result of operator.fanout('all', 'whoami', 'x', { deadlineMs: 10_000 })) {
      if (result.ok) ok++;
      else failed++;
      last = result.ms;
    }
    fanouts.push({ ok, failed, lastMs: last, wallMs: performance.now() - f0 });
  }
  await operator.close({ timeoutMs: 500 });
  return { connectMs, fanouts };
}

/** SIGKILL the hub, start it again with the same key and port, time the leaves' return. */
async function restartHub(hub, hubArgs, address, groups, leaves) {
  const before = await Promise.all(groups.map((g) => g.poll()));
  const killedAt = Date.now();
  hub.proc.kill('SIGKILL');
  await once(hub.proc, 'exit');
  const downFor = Number(arg('down', 2000));
  await sleep(downFor);
  const next = child('hub', [...hubArgs, `--listen=${address}`]);
  const ready = await next.ready;
  const backAt = Date.now();
  const r = await converge(next, groups, leaves, backAt, 120_000);
  const after = r.leafStates;
  const restart = {
    sameId: ready.id === hub.id,
    sameAddress: ready.address === address,
    downMs: backAt - killedAt,
    allBack: r.convergedAt !== undefined,
    fromReturnMs: r.convergedAt === undefined ? undefined : r.convergedAt - backAt,
    fromKillMs: r.convergedAt === undefined ? undefined : r.convergedAt - killedAt,
    fewestAttached: r.fewestJoined,
    ninetyNineFromReturnMs: r.ninetyNineAt === undefined ? undefined : r.ninetyNineAt - backAt,
    lastMovedFromReturnMs: r.lastMovedAt - backAt,
    hubNeighbours: r.hubState.neighbours,
    hubRoutes: r.hubState.routes,
    dials: minus(mergeDrops(after, 'dials'), mergeDrops(before, 'dials')),
    redials: total(after, 'redials') - total(before, 'redials'),
    redialFailures: total(after, 'redialFailures') - total(before, 'redialFailures'),
    reconnected: total(after, 'reconnected') - total(before, 'reconnected'),
    drops: mergeDrops(after),
    dropReasons: minus(mergeDrops(after, 'dropReasons'), mergeDrops(before, 'dropReasons')),
    redialErrors: minus(mergeDrops(after, 'redialErrors'), mergeDrops(before, 'redialErrors')),
    hubQuic: r.hubState.quic,
    timeline: r.timeline,
  };
  console.error('restart', JSON.stringify(restart));
  return { hub: next, restart };
}

async function main() {
  const leaves = Number(arg('leaves', QUICK ? 200 : 2000));
  const procs = Number(arg('procs', QUICK ? 2 : 4));
  const restS = Number(arg('rest', QUICK ? 10 : 30));
  const OUT = arg('out', new URL('./results/hub-real', import.meta.url).pathname);
  const dir = mkdtempSync(joinPath(tmpdir(), 'hub-real-'));
  const operatorKey = joinPath(dir, 'operator.key');
  const { loadOrCreateIdentity } = await import('../dist/index.js');
  const operatorId = (await loadOrCreateIdentity(operatorKey)).nodeId;
  // The children read their own argv: the role and links-ahead flags are passed on.
  const roleArgs = [...(AUTO ? ['--role=auto'] : []), ...(LINKS_AHEAD === '' ? [] : [`--links-ahead=${LINKS_AHEAD}`])];
  const hubArgs = [`--key=${joinPath(dir, 'hub.key')}`, `--operator=${operatorId}`, ...roleArgs];
  hubEnv = await hubEnvironment();
  console.error('hub huge pages', JSON.stringify(hubEnv.hugePages));
  let hub = child('hub', hubArgs);
  const { id: hubId, address } = await hub.ready;
  hub.id = hubId;
  const per = Math.ceil(leaves / procs);
  const groups = Array.from({ length: procs }, (_, i) => child('leaves', [`--count=${Math.min(per, leaves - i * per)}`, `--hub=${address}`, `--hubId=${hubId}`, `--operator=${operatorId}`, ...roleArgs]));
  await Promise.all(groups.map((g) => g.ready));
  for (const g of groups) g.send({ type: 'start' });
  const startedAt = Date.now();
  const first = await converge(hub, groups, leaves, startedAt, 300_000);
  const join = {
    converged: first.convergedAt !== undefined,
    ninetyNineFromFirstDialMs: first.ninetyNineAt === undefined ? undefined : first.ninetyNineAt - startedAt,
    hubNeighbours: first.hubState.neighbours,
    fromFirstDialMs: first.convergedAt === undefined ? undefined : first.convergedAt - startedAt,
    fromLastStartMs: first.convergedAt === undefined ? undefined : first.convergedAt - Math.max(...first.leafStates.map((x) => x.lastStartAt)),
    drops: mergeDrops(first.leafStates),
    dropReasons: mergeDrops(first.leafStates, 'dropReasons'),
    hubQuic: first.hubState.quic,
    failedAtStart: total(first.leafStates, 'failedAtStart'),
    redials: total(first.leafStates, 'redials'),
    hubRoutes: first.hubState.routes,
    hubRoutingBytes: first.hubState.bytes,
    hubRole: first.hubState.role,
    leafRoles: total(first.leafStates, 'leaves'),
  };
  console.error('join', JSON.stringify(join));
  if (SPAWN_ONLY) {
    // The real command alone on a settled hub: every leaf spawns `true` through its process's spawn queue.
    await sleep(10_000);
    const before = mergeDrops(await Promise.all(groups.map((g) => g.poll())));
    const exec = await cliExec(address, hubId, operatorKey);
    await sleep(3000);
    const after = await Promise.all(groups.map((g) => g.poll()));
    const spawn = after.map((x) => x.spawn);
    console.log(JSON.stringify({ leaves, procs, join: { fromLastStartMs: join.fromLastStartMs }, exec, drops: minus(mergeDrops(after), before), spawn }));
    for (const g of [hub, ...groups]) g.send({ type: 'exit' });
    await sleep(2000);
    process.exit(0);
  }
  if (CLI_PROBE) {
    // Investigation mode: where the CLI's exec spends its time over the library fan-out (no result files).
    await sleep(10_000);
    await Promise.all(groups.map((g) => g.ask('stub-exec', { on: true })));
    hub.groups = groups;
    // Before the first exec: the hub's memory and the links it opened ahead (if any); after the third, the same.
    const leafMemory = () => Promise.all(groups.map((g) => g.ask('memory')));
    const before = { memory: await hub.ask('memory'), links: (await hub.poll()).links, leafMemory: await leafMemory() };
    const probe = await cliProbe(hub, address, hubId, operatorKey, leaves);
    const after = { memory: await hub.ask('memory'), links: (await hub.poll()).links, leafMemory: await leafMemory() };
    console.log(JSON.stringify({ leaves, linksAhead: LINKS_AHEAD || 'default', hugePages: hubEnv.hugePages, load: loadavg(), join: { fromLastStartMs: join.fromLastStartMs, fromFirstDialMs: join.fromFirstDialMs }, hubBefore: before, hubAfter: after, probe }));
    for (const g of [hub, ...groups]) g.send({ type: 'exit' });
    await sleep(2000);
    process.exit(0);
  }
  if (RESTART_ONLY) {
    // Investigation mode: the restart alone, printed, no result files.
    const joinLoad = loadavg();
    await sleep(5000);
    const restarted = await restartHub(hub, hubArgs, address, groups, leaves);
    const restart = restarted.restart;
    console.log(JSON.stringify({ leaves, procs, load: { atJoin: joinLoad, atEnd: loadavg() }, join, restart }));
    for (const g of [restarted.hub, ...groups]) g.send({ type: 'exit' });
    await sleep(3000);
    process.exit(0);
  }
  const rest = await atRest(hub, groups, restS);
  console.error('rest', JSON.stringify(rest));
  // The CLI first: the library operator below joins the map as a leaf, and a host that left stays in the hub's inventory.
  // Leaves answer ops/exec without spawning until the end: 500 spawns in one leaf process stall it past the hub's idle timeout.
  await Promise.all(groups.map((g) => g.ask('stub-exec', { on: true })));
  const cli = { connectMs: await cliConnect(address, hubId, operatorKey), stubbed: [await cliExec(address, hubId, operatorKey), await cliExec(address, hubId, operatorKey), await cliExec(address, hubId, operatorKey)] };
  cli.session = await sessionFanouts(address, hubId, operatorKey);
  console.error('cli', JSON.stringify(cli));
  const operator = await libraryOperator(hub, address, hubId, leaves);
  console.error('fanout', JSON.stringify(operator));
  await sleep(2000);
  const restarted = await restartHub(hub, hubArgs, address, groups, leaves);
  hub = restarted.hub;
  const cliAfter = { exec: [await cliExec(address, hubId, operatorKey), await cliExec(address, hubId, operatorKey)] };
  console.error('cli after restart', JSON.stringify(cliAfter));
  // Last: the real command, spawned by every leaf (500 per process here).
  const dropsBefore = mergeDrops(await Promise.all(groups.map((g) => g.poll())));
  await Promise.all(groups.map((g) => g.ask('stub-exec', { on: false })));
  cli.exec = [await cliExec(address, hubId, operatorKey)];
  await sleep(3000);
  const spawned = (await Promise.all(groups.map((g) => g.poll()))).map((x) => x.spawn);
  cli.spawnQueue = `${spawned.reduce((n, x) => n + x.started, 0)} started, ${spawned.reduce((n, x) => n + x.waited, 0)} waited a turn, peak ${Math.max(...spawned.map((x) => x.peakQueued))} waiting in one process, ${spawned.reduce((n, x) => n + x.refusedQueueFull, 0)} refused`;
  cli.execDrops = Object.fromEntries(Object.entries(mergeDrops(await Promise.all(groups.map((g) => g.poll())))).map(([code, n]) => [code, n - (dropsBefore[code] ?? 0)]));
  console.error('cli spawn', JSON.stringify(cli.exec), JSON.stringify(cli.execDrops));
  for (const g of [hub, ...groups]) g.send({ type: 'exit' });
  rmSync(dir, { recursive: true, force: true });
  const result = { date: new Date().toISOString(), machine: { cpus: cpus().length, model: cpus()[0]?.model }, roles: AUTO ? 'auto' : 'router/leaf', hugePages: hubEnv.hugePages, leaves, procs, join, rest, operator, cli, restart: restarted.restart, cliAfter };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(`${OUT}.json`, JSON.stringify(result, null, 2));
  const md = markdown(result);
  writeFileSync(`${OUT}.md`, md);
  console.log(md);
  process.exit(0);
}

function drops(d) {
  const entries = Object.entries(d ?? {}).filter(([, n]) => n > 0);
  return entries.length === 0 ? '0' : entries.map(([code, n]) => `${n} ${code}`).join(', ');
}

function execCell(x) {
  if (x.ok === undefined) return `failed (exit ${x.code}): ${x.error}`;
  const notOk = x.notOk.length > 0 ? `; not ok: ${x.notOk.map(([reason, n]) => `${n}× ${reason}`).join(', ')}` : '';
  return `${x.ok}/${x.targets}, ${x.p50Ms} / ${x.p99Ms} / ${Math.round(x.lastMs)} ms, ${Math.round(x.wallMs)} ms wall${notOk}`;
}

function markdown(r) {
  const f = (x, d = 1) => (x === undefined ? 'n/a' : x.toFixed(d));
  const kb = (x) => (x >= 1000 ? `${(x / 1000).toFixed(2)} KB/s` : `${x.toFixed(1)} B/s`);
  const lines = [
    '# One hub and many leaves, real nodes on loopback',
    '',
    `\`node bench/hub-real.mjs${r.roles === 'auto' ? ' --role=auto' : ''}\` on ${r.date.slice(0, 10)} (${r.machine.cpus} cores shared with other work: CPU figures are pessimistic); ${r.roles === 'auto' ? `every node role auto (the hub became ${r.join.hubRole}, ${r.join.leafRoles} of the others leaves)` : 'hub role router, leaves role leaf'}; ${r.leaves.toLocaleString('en')} leaves in ${r.procs} processes, default options otherwise.`,
    '',
    '| measure | value | target (issue 14) |',
    '|---|---:|---:|',
    `| converged (hub routes to all, all leaves default to the hub), from the first leaf's start / from the last leaf's start (createNode with bootstrap, 50 at a time per process) | ${r.join.converged ? `${f(r.join.fromFirstDialMs / 1000, 2)} s / ${f(r.join.fromLastStartMs / 1000, 2)} s` : `NO: ${r.join.hubNeighbours} neighbours; 99% ${f(r.join.ninetyNineFromFirstDialMs / 1000, 1)} s after the first dial`} | ≤ 30 s after the last start |`,
    `| bootstrap dials failed at createNode / library redials during the join / hub connections the leaves lost (by code) | ${r.join.failedAtStart} / ${r.join.redials} / ${drops(r.join.drops)} | |`,
    `| hub CPU at rest (${f(r.rest.seconds, 0)} s) | ${f(r.rest.hubCpuPercent)} % of a core | ≤ 10 % |`,
    `| hub RSS at rest (malloc on huge pages: ${r.hugePages.enabled ? 'yes' : `no, ${r.hugePages.reason}`}) | ${f(r.rest.hubRssMiB, 0)} MiB | ≤ 300 MiB |`,
    `| hub routing at rest, sent / received | ${kb(r.rest.hubRoutingSentBps)} / ${kb(r.rest.hubRoutingReceivedBps)} | ≤ 20 KB/s |`,
    `| leaf processes at rest (CPU % of a core each, RSS MiB each) | ${r.rest.leafProcessCpuPercent.map((x) => f(x)).join(', ')}; ${r.rest.leafProcessRssMiB.map((x) => f(x, 0)).join(', ')} | |`,
    `| CLI connects to the hub (OperatorSession.connect: key, node, handshake; 5 tries) | ${r.cli.connectMs.map((x) => f(x)).join(', ')} ms | ≤ 100 ms |`,
    ...r.cli.stubbed.map((x, i) => `| CLI \`pnet exec --targets all -- true\`, the leaves answering ops/exec without spawning (bench only), run ${i + 1}${i === 0 ? ' (the first: the inventory asked with { facts: false } reads no facts)' : ''}: ok/targets, p50 / p99 / last answer, CLI process wall | ${execCell(x)} | all in ≤ 2 s |`),
    `| the CLI's session in the bench process: ops/inventory { facts: false } / its exec fan-out through the hub of the 2,001 ids (as the CLI sends them), 3 runs / of 'all', 2 runs: ok, last answer | ${f(r.cli.session.inventoryMs, 0)} ms / ${r.cli.session.list.map((x) => `${x.ok} in ${x.lastMs} ms`).join(', ')} / ${r.cli.session.all.map((x) => `${x.ok} in ${x.lastMs} ms`).join(', ')} | |`,
    `| library operator connects to the hub | ${f(r.operator.connectMs)} ms | ≤ 100 ms |`,
    `| library operator fanout('all') through the hub: answers ok/failed, last answer | ${r.operator.fanouts.map((x) => `${x.ok}/${x.failed} in ${f(x.lastMs, 0)} ms`).join('; ')} | all in ≤ 2 s |`,
    `| hub SIGKILLed, started again ${f(r.restart.downMs / 1000, 1)} s later (same key ${r.restart.sameId ? 'yes' : 'NO'}, same port ${r.restart.sameAddress ? 'yes' : 'NO'}): every leaf its neighbour again and the hub routing to all | ${r.restart.allBack ? `${f(r.restart.fromReturnMs / 1000, 2)} s after its return (${f(r.restart.fromKillMs / 1000, 2)} s after the kill)` : `NO (${r.restart.hubNeighbours} neighbours, the last of them ${f(r.restart.lastMovedFromReturnMs / 1000, 1)} s after its return)`}; 99% ${f(r.restart.ninetyNineFromReturnMs / 1000, 1)} s after its return | all back ≤ 30 s |`,
    `| leaves' redials after the restart: dials / failed / connected; why they failed | ${r.restart.redials} / ${r.restart.redialFailures} / ${r.restart.reconnected}; ${drops(r.restart.redialErrors)} | |`,
    `| the restarted hub's handshakes: completed inbound / Initials turned away by the admission limit / retried / refused | ${r.restart.hubQuic?.inbound ?? 'n/a'} / ${r.restart.hubQuic?.admissionLimited ?? 'n/a'} / ${r.restart.hubQuic?.retried ?? 'n/a'} / ${r.restart.hubQuic?.refused ?? 'n/a'} | |`,
    `| after the return, every second: s, leaves attached, hub neighbours, hub handshakes in progress, completed inbound, Initials held back, hub / worst leaf process event-loop delay ms | ${(r.restart.timeline ?? []).map((x) => x.join('/')).join(', ')} | |`,
    ...r.cliAfter.exec.map((x, i) => `| after the restart, CLI \`pnet exec --targets all\`, leaves not spawning (run ${i + 1}${i === 0 ? ", the new hub's first" : ''}) | ${execCell(x)} | all in ≤ 2 s |`),
    ...r.cli.exec.map((x) => `| last, CLI \`pnet exec --targets all -- true\` with the real command: every leaf spawns \`true\` (${r.leaves / r.procs} per process, through the process's spawn queue: ${r.cli.spawnQueue ?? 'n/a'}); hub connections lost by the leaves meanwhile | ${execCell(x)}; lost: ${drops(r.cli.execDrops)} | all in ≤ 2 s |`),
    '',
    `Hub at rest: ${r.rest.hubNeighbours} neighbours, ${r.rest.hubRoutes} routes, ${r.rest.hubFragments} fragments of its own record; ${r.rest.hubRecordsAccepted} records accepted and ${r.rest.hubPublished} published during the rest window. Join: the hub moved ${r.join.hubRoutingBytes.sent} B of routing out and ${r.join.hubRoutingBytes.received} B in.`,
  ];
  return `${lines.join('\n')}\n`;
}

if (CHILD === 'hub') await hubChild();
else if (CHILD === 'leaves') await leavesChild();
else await main();
