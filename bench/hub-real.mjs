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
//     fanout('all') through the hub: answers and time to the last one.
//
//   flock /tmp/bench.lock node bench/hub-real.mjs [--leaves=2000] [--procs=4] [--rest=30] [--out=bench/results/hub-real]
//   --quick: 200 leaves in 2 processes, 10 s at rest (a smoke run)
//   --role=auto: the hub and the leaves are all role 'auto' (the hub must become the router by itself)
//
// Uses dist/ (npm run build first). Writes <out>.json and <out>.md.
import { fork } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus } from 'node:os';

const arg = (name, dflt) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;
const QUICK = process.argv.includes('--quick');
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

async function hubChild() {
  const { createNode } = await import('../dist/index.js');
  const { nodeServices } = await import('../dist/node/node.js');
  const hub = await createNode({ listen: '127.0.0.1:0', routing: { role: AUTO ? 'auto' : 'router' } });
  hub.handleRequest('whoami', () => hub.id);
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
  serve(() => ({
    role: router.role,
    routes: router.routeCount,
    neighbours: router.neighbours().length,
    peers: hub.peers().length,
    cpu: process.cpuUsage(),
    rss: process.memoryUsage().rss,
    bytes: { ...bytes },
    stats: router.stats(),
    fragments: router.record(hub.id)?.fragments ?? 0,
  }));
  process.send({ type: 'ready', id: hub.id, address: hub.address });
}

async function leavesChild() {
  const { createNode } = await import('../dist/index.js');
  const { nodeServices } = await import('../dist/node/node.js');
  const count = Number(arg('count', 500));
  const hubAddress = arg('hub', '');
  const hubId = arg('hubId', '');
  const nodes = [];
  for (let i = 0; i < count; i++) {
    const node = await createNode({ listen: '127.0.0.1:0', routing: { role: AUTO ? 'auto' : 'leaf' } });
    node.handleRequest('whoami', () => node.id);
    nodes.push(node);
  }
  let firstDialAt = 0;
  let redials = 0;
  const joined = new Set();
  const join = async (node) => {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await node.dial(hubAddress, { expectedNodeId: hubId });
        joined.add(node);
        return;
      } catch {
        redials++;
        await sleep(200 + Math.random() * 800);
      }
    }
  };
  serve(() => ({
    joined: joined.size,
    defaulted: nodes.filter((n) => nodeServices(n).neighbours.router.defaultRoute === hubId).length,
    leaves: nodes.filter((n) => nodeServices(n).neighbours.router.role === 'leaf').length,
    firstDialAt,
    redials,
    cpu: process.cpuUsage(),
    rss: process.memoryUsage().rss,
  }));
  process.send({ type: 'ready' });
  await new Promise((resolve) => process.once('message', (msg) => msg.type === 'start' && resolve()));
  firstDialAt = Date.now();
  // 50 dials in flight per process: a join storm the hub's handshake limits can take.
  let next = 0;
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < nodes.length) await join(nodes[next++]);
  }));
}

function child(role, args) {
  const proc = fork(new URL(import.meta.url).pathname, [`--child=${role}`, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let seq = 0;
  const waiting = new Map();
  let ready;
  const readyP = new Promise((resolve) => (ready = resolve));
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
  return { proc, ready: readyP, poll: () => ask('poll'), send: (m) => proc.send(m) };
}

const cpuMs = (u) => (u.user + u.system) / 1000;

async function main() {
  const leaves = Number(arg('leaves', QUICK ? 200 : 2000));
  const procs = Number(arg('procs', QUICK ? 2 : 4));
  const restS = Number(arg('rest', QUICK ? 10 : 30));
  const OUT = arg('out', new URL('./results/hub-real', import.meta.url).pathname);
  const t0 = performance.now();
  const hub = child('hub', AUTO ? ['--role=auto'] : []);
  const { id: hubId, address } = await hub.ready;
  const per = Math.ceil(leaves / procs);
  const roleArgs = AUTO ? ['--role=auto'] : [];
  const groups = Array.from({ length: procs }, (_, i) => child('leaves', [`--count=${Math.min(per, leaves - i * per)}`, `--hub=${address}`, `--hubId=${hubId}`, ...roleArgs]));
  await Promise.all(groups.map((g) => g.ready));
  console.error(`created ${leaves} leaves in ${procs} processes: ${Math.round(performance.now() - t0)} ms`);
  for (const g of groups) g.send({ type: 'start' });
  const startedAt = Date.now();
  let hubState;
  let leafStates;
  let convergedAt;
  for (;;) {
    await sleep(250);
    hubState = await hub.poll();
    leafStates = await Promise.all(groups.map((g) => g.poll()));
    const joined = leafStates.reduce((n, s) => n + s.joined, 0);
    const defaulted = leafStates.reduce((n, s) => n + s.defaulted, 0);
    if (hubState.routes >= leaves && defaulted >= leaves) {
      convergedAt = Date.now();
      break;
    }
    if (Date.now() - startedAt > 300_000) break;
    if ((Date.now() - startedAt) % 5000 < 260) console.error(`t+${Date.now() - startedAt} ms: joined ${joined}, hub routes ${hubState.routes}, defaulted ${defaulted}`);
  }
  const lastDialStart = Math.max(...leafStates.map((s) => s.firstDialAt));
  const join = {
    converged: convergedAt !== undefined,
    fromFirstDialMs: convergedAt === undefined ? undefined : convergedAt - startedAt,
    redials: leafStates.reduce((n, s) => n + s.redials, 0),
    hubRoutes: hubState.routes,
    hubRoutingBytes: hubState.bytes,
    hubRole: hubState.role,
    leafRoles: leafStates.reduce((n, s) => n + s.leaves, 0),
    lastDialStartMs: lastDialStart - startedAt,
  };
  console.error('join', JSON.stringify(join));
  // At rest: settle, then measure over restS seconds.
  await sleep(10_000);
  const h0 = await hub.poll();
  const l0 = await Promise.all(groups.map((g) => g.poll()));
  const w0 = performance.now();
  await sleep(restS * 1000);
  const h1 = await hub.poll();
  const l1 = await Promise.all(groups.map((g) => g.poll()));
  const wall = performance.now() - w0;
  const rest = {
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
  console.error('rest', JSON.stringify(rest));
  // The operator: a node of its own (a leaf: its fanout('all') goes through the hub).
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
  console.error('fanout', JSON.stringify({ connectMs, fanouts }));
  await operator.close({ timeoutMs: 500 });
  for (const g of [hub, ...groups]) g.send({ type: 'exit' });
  const result = { date: new Date().toISOString(), machine: { cpus: cpus().length, model: cpus()[0]?.model }, roles: AUTO ? 'auto' : 'router/leaf', leaves, procs, join, rest, operator: { connectMs, fanouts } };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(`${OUT}.json`, JSON.stringify(result, null, 2));
  writeFileSync(`${OUT}.md`, markdown(result));
  console.log(markdown(result));
  process.exit(0);
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
    `| converged (hub routes to all, all leaves default to the hub), from the first dial | ${r.join.converged ? `${f(r.join.fromFirstDialMs / 1000, 2)} s` : 'NO'} | ≤ 30 s after the last start |`,
    `| bootstrap redials during the join | ${r.join.redials} | |`,
    `| hub CPU at rest (${f(r.rest.seconds, 0)} s) | ${f(r.rest.hubCpuPercent)} % of a core | ≤ 10 % |`,
    `| hub RSS at rest | ${f(r.rest.hubRssMiB, 0)} MiB | ≤ 300 MiB |`,
    `| hub routing at rest, sent / received | ${kb(r.rest.hubRoutingSentBps)} / ${kb(r.rest.hubRoutingReceivedBps)} | ≤ 20 KB/s |`,
    `| leaf processes at rest (CPU % of a core each, RSS MiB each) | ${r.rest.leafProcessCpuPercent.map((x) => f(x)).join(', ')}; ${r.rest.leafProcessRssMiB.map((x) => f(x, 0)).join(', ')} | |`,
    `| operator connects to the hub | ${f(r.operator.connectMs)} ms | ≤ 100 ms |`,
    `| operator fanout('all') through the hub: answers ok/failed, last answer | ${r.operator.fanouts.map((x) => `${x.ok}/${x.failed} in ${f(x.lastMs, 0)} ms`).join('; ')} | all in ≤ 2 s |`,
    '',
    `Hub at rest: ${r.rest.hubNeighbours} neighbours, ${r.rest.hubRoutes} routes, ${r.rest.hubFragments} fragments of its own record; ${r.rest.hubRecordsAccepted} records accepted and ${r.rest.hubPublished} published during the rest window. Join: the hub moved ${r.join.hubRoutingBytes.sent} B of routing out and ${r.join.hubRoutingBytes.received} B in.`,
  ];
  return `${lines.join('\n')}\n`;
}

if (CHILD === 'hub') await hubChild();
else if (CHILD === 'leaves') await leavesChild();
else await main();
