// Per-peer fairness (issue 15 item 8): one server node; a light peer with 1 request in flight,
// first alone, then beside a heavy peer with 64 in flight. Each node is its own process (so the
// peers' own work does not share the server's event loop). Prints the light peer's rate alone and
// beside the heavy one, and the ratio; three times: with the per-peer turns off (as before issue
// 15), the turn-clock rule (the library's rule until 2026-12-06 18:30, frozen in
// bench/lib/turns-turn-clock.ts: waiting streams after two other peers' starts or 64 turns,
// another peer active for 1,024 turns, turns spun while a stream waits), and the library's
// default (src/node/turns.ts: STREAMS_PER_TURN, BACKLOG_SPACING, OTHERS_PER_BACKLOG_START,
// BACKLOG_IDLE_MS, MAX_BACKLOG_WAIT_MS, ACTIVE_MS), or --share=N / --spacing=N / --othersPerStart=N
// / --idleWait=N / --maxWait=N / --activeFor=N, or
// --settings='[[share, spacing, othersPerStart, idleWait, maxWait, activeFor, clock], ...]' for
// other phases ('default' keeps one; clock 'turns' runs the frozen rule, its maxWait and activeFor
// in turns, idleWait unused).
//   node --import tsx bench/fairness.mjs [--seconds=3] [--heavy=64] [--share=N] [--spacing=N] [--othersPerStart=N] [--idleWait=N] [--maxWait=N] [--activeFor=N] [--settings=JSON] [--probe] [--json]
// --probe: where the server's time goes while both run (and, as probeAlone, while the light peer
// runs alone), per phase: per peer connection the
// datagrams in and the time in receive / drive / transmit, the garbage collector's time, the
// light peer's residence in the server (its datagram in to the transmit after the server's first
// write to it: mean and quantiles, ms) and its segments (lightSegmentsMs: datagram in → its stream
// taken up by the turns (toStart) → the server's first write on it (toWrite) → the transmit's
// start (toSend) → its end (send: the sendmsg calls)), the server's turns (src/node/turns.ts) per light request, and the streams it
// took up (starts) and of those the ones that waited for their turn (waited), and why waiting
// ones were taken up (released: after other peers' starts, the loop's idle time, maxWait, the
// peer alone).
// Run under the bench lock: flock /tmp/bench.lock node --import tsx bench/fairness.mjs
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const args = Object.fromEntries(process.argv.slice(2).map((arg) => arg.replace(/^--/, '').split('=')).map(([k, v]) => [k, v ?? 'true']));
const SECONDS = Number(args.seconds ?? 3);
const HEAVY = Number(args.heavy ?? 64);

if (process.env.FAIRNESS_ROLE) await child(process.env.FAIRNESS_ROLE);
else await parent();

async function child(role) {
  let probe;
  const { createNode } = await import('../src/index.js');
  const { nodeServices } = await import('../src/node/node.js');
  const node = await createNode({ listen: '127.0.0.1:0', h2: false });
  const { PeerTurns } = await import('../src/node/turns.js');
  const { TurnClockPeerTurns } = await import('./lib/turns-turn-clock.ts');
  const streams = nodeServices(node).streams; // its PeerTurns (private) is the bench's knob: replaced per phase
  if (role === 'server') {
    node.handleRequest('svc', (request) => request);
    process.send({ type: 'ready', id: node.id, address: node.address });
  } else {
    process.send({ type: 'ready' });
  }
  process.on('message', async (message) => {
    if (message.type === 'dial') {
      await node.dial(message.address);
      process.send({ type: 'dialed' });
    } else if (message.type === 'share') {
      // The bench's knob: the rule is the library's, its constants set per phase on a new instance.
      const [share, spacing, othersPerStart, idleWait, maxWait, activeFor, clock = 'time'] = message.value.map((v) => (v === 'default' ? undefined : v));
      const perTurn = share === 'off' ? Infinity : share ?? 1;
      const optional = (v) => (v === undefined ? undefined : Number(v));
      streams.turns = clock === 'turns'
        ? new TurnClockPeerTurns(perTurn, optional(spacing), optional(maxWait), optional(othersPerStart), optional(activeFor))
        : new PeerTurns(perTurn, Object.fromEntries(Object.entries({ spacing, othersPerStart, idleWait, maxWait, activeFor }).filter(([, v]) => v !== undefined).map(([k, v]) => [k, Number(v)])));
      const t = streams.turns;
      process.send({ type: 'shared', max: t.perTurn, spacing: t.spacing, othersPerStart: t.othersPerStart, idleWait: t.idleWait, maxWait: t.maxWait ?? t.maxSpacing, activeFor: t.activeFor ?? t.activeTurns, clock });
    } else if (message.type === 'probe-start') {
      probe ??= await installProbe(() => streams.turns);
      probe.start(message.lightPort);
    } else if (message.type === 'probe-report') {
      process.send({ type: 'probed', ...probe.report() });
    } else if (message.type === 'run') {
      process.send({ type: 'result', ...(await load(node, message.target, message.concurrency, message.ms)) });
    } else if (message.type === 'exit') {
      await node.close({ timeoutMs: 200 });
      process.exit(0);
    }
  });
}

/** `concurrency` request loops for `ms`: replies counted, errors counted. */
async function load(node, target, concurrency, ms) {
  const until = performance.now() + ms;
  let ok = 0;
  let failed = 0;
  const payload = Buffer.alloc(64, 1);
  const loop = async () => {
    while (performance.now() < until) {
      try {
        await node.request(target, 'svc', payload, { timeoutMs: 10_000 });
        ok++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { ok, failed, perSecond: ok / (ms / 1000), port: Number(node.address.slice(node.address.lastIndexOf(':') + 1)) };
}

/** The --probe instruments: wraps QuicConnection's receive/drive/transmit in this (server) process. */
async function installProbe(current) {
  let turns = current();
  const { QuicConnection } = await import('../src/transport/quic/connection.js');
  const { PerformanceObserver } = await import('node:perf_hooks');
  const proto = QuicConnection.prototype;
  let peers = new Map();
  let lightPort = -1;
  let pendingSince = null;
  let residence = [];
  // The light request's way through the server: datagram in → its stream taken up (turns) → reply written → sent.
  let lightId;
  let segments = { toStart: [], toWrite: [], toSend: [], send: [] };
  let startedAt = null;
  let wroteAt = null;
  let gcMs = 0;
  let turns0 = 0;
  let waited0 = 0;
  let starts0 = 0;
  let released0 = {};
  new PerformanceObserver((list) => list.getEntries().forEach((e) => (gcMs += e.duration))).observe({ entryTypes: ['gc'] });
  const of = (c) => {
    const key = c.remoteAddress.port === lightPort ? 'light' : 'heavy';
    let a = peers.get(key);
    if (!a) peers.set(key, (a = { datagrams: 0, receiveMs: 0, driveMs: 0, transmits: 0, transmitMs: 0 }));
    return a;
  };
  const timed = (name, field, after) => {
    const original = proto[name];
    proto[name] = function (...args) {
      const t = performance.now();
      const result = original.apply(this, args);
      const a = of(this);
      a[field] += performance.now() - t;
      after?.(this, a);
      return result;
    };
  };
  timed('receive', 'receiveMs', (c, a) => {
    a.datagrams++;
    if (c.remoteAddress.port === lightPort) {
      lightId ??= c.remoteNodeId;
      if (pendingSince === null) pendingSince = performance.now();
    }
  });
  timed('drive', 'driveMs');
  const write = proto.streamWrite;
  proto.streamWrite = function (...args) {
    if (this.remoteAddress.port === lightPort && pendingSince !== null && wroteAt === null) wroteAt = performance.now();
    return write.apply(this, args);
  };
  const { PeerTurns } = await import('../src/node/turns.js');
  const acquire = PeerTurns.prototype.acquire;
  PeerTurns.prototype.acquire = function (peer, stream) {
    if (peer === lightId && pendingSince !== null && startedAt === null) startedAt = performance.now();
    return acquire.call(this, peer, stream);
  };
  const transmit = proto.transmit;
  proto.transmit = function (...args) {
    const light = this.remoteAddress.port === lightPort;
    const t = performance.now();
    const result = transmit.apply(this, args);
    const end = performance.now();
    const a = of(this);
    a.transmits++;
    a.transmitMs += end - t;
    if (light && pendingSince !== null && wroteAt !== null) {
      residence.push(end - pendingSince);
      if (startedAt !== null) {
        segments.toStart.push(startedAt - pendingSince);
        segments.toWrite.push(wroteAt - startedAt);
      }
      segments.toSend.push(t - wroteAt);
      segments.send.push(end - t);
      pendingSince = startedAt = wroteAt = null;
    }
    return result;
  };
  const round = (n) => Number(n.toFixed(3));
  return {
    start(port) {
      lightPort = port;
      turns = current();
      peers = new Map();
      residence = [];
      segments = { toStart: [], toWrite: [], toSend: [], send: [] };
      pendingSince = startedAt = wroteAt = null;
      gcMs = 0;
      turns0 = turns.turnNumber;
      waited0 = turns.waited;
      starts0 = turns.starts;
      released0 = { ...(turns.released ?? {}) };
    },
    report() {
      const sorted = residence.sort((a, b) => a - b);
      const q = (p) => round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0);
      const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length);
      const split = Object.fromEntries([...peers].map(([k, a]) => [k, Object.fromEntries(Object.entries(a).map(([f, v]) => [f, round(v)]))]));
      const stat = (values) => {
        const v = [...values].sort((a, b) => a - b);
        return { mean: round(v.reduce((a, b) => a + b, 0) / Math.max(1, v.length)), p50: round(v[Math.floor(v.length / 2)] ?? 0), p90: round(v[Math.floor(v.length * 0.9)] ?? 0) };
      };
      const lightSegmentsMs = Object.fromEntries(Object.entries(segments).map(([k, v]) => [k, stat(v)]));
      return { peers: split, gcMs: round(gcMs), lightResidenceMs: { n: sorted.length, mean: round(mean), p50: q(0.5), p90: q(0.9), p99: q(0.99) }, lightSegmentsMs, turns: turns.turnNumber - turns0, starts: turns.starts - starts0, waited: turns.waited - waited0, released: Object.fromEntries(Object.entries(turns.released ?? {}).map(([k, v]) => [k, v - (released0[k] ?? 0)])) };
    },
  };
}

function spawn(role) {
  const child = fork(fileURLToPath(import.meta.url), process.argv.slice(2), { env: { ...process.env, FAIRNESS_ROLE: role }, execArgv: ['--import', 'tsx'] });
  const next = (type) => new Promise((resolve) => child.on('message', function on(message) {
    if (message.type === type) {
      child.off('message', on);
      resolve(message);
    }
  }));
  return { child, next, ready: next('ready') };
}

async function parent() {
  const server = spawn('server');
  const light = spawn('client');
  const heavy = spawn('client');
  const { id, address } = await server.ready;
  await light.ready;
  await heavy.ready;
  for (const peer of [light, heavy]) {
    const dialed = peer.next('dialed');
    peer.child.send({ type: 'dial', address });
    await dialed;
  }
  const run = (peer, concurrency) => {
    const result = peer.next('result');
    peer.child.send({ type: 'run', target: id, concurrency, ms: SECONDS * 1000 });
    return result;
  };
  const phases = [];
  const settings = args.settings ? JSON.parse(args.settings) : [['off'], [1, 2, 2, 'default', 64, 1024, 'turns'], [args.share ?? 'default', args.spacing ?? 'default', args.othersPerStart ?? 'default', args.idleWait ?? 'default', args.maxWait ?? 'default', args.activeFor ?? 'default']];
  for (const setting of settings) {
    const shared = server.next('shared');
    server.child.send({ type: 'share', value: setting });
    const { max, spacing, othersPerStart, idleWait, maxWait, activeFor, clock } = await shared;
    const { port: lightPort } = await run(light, 1); // warm-up: connections, JIT
    const report = async () => {
      const reply = server.next('probed');
      server.child.send({ type: 'probe-report' });
      const { type, ...rest } = await reply;
      return rest;
    };
    if (args.probe) server.child.send({ type: 'probe-start', lightPort });
    const alone = await run(light, 1);
    const probedAlone = args.probe ? await report() : undefined;
    if (args.probe) server.child.send({ type: 'probe-start', lightPort });
    const [beside, heavyResult] = await Promise.all([run(light, 1), run(heavy, HEAVY)]);
    let probed;
    if (args.probe) {
      const rest = await report();
      probed = { ...rest, turnsPerLightRequest: Number((rest.turns / Math.max(1, beside.ok)).toFixed(2)), heavyStartsPerLightRequest: Number(((rest.starts - beside.ok) / Math.max(1, beside.ok)).toFixed(2)), lightRoundTripMs: Number(((SECONDS * 1000) / Math.max(1, beside.ok)).toFixed(3)) };
    }
    phases.push({
      streamsPerTurn: max === null ? 'unlimited' : max,
      spacing,
      othersPerStart,
      idleWait,
      maxWait,
      activeFor,
      clock,
      lightAlonePerSecond: Math.round(alone.perSecond),
      lightBesideHeavyPerSecond: Math.round(beside.perSecond),
      heavyPerSecond: Math.round(heavyResult.perSecond),
      ratio: Number((beside.perSecond / alone.perSecond).toFixed(3)),
      failed: { alone: alone.failed, beside: beside.failed, heavy: heavyResult.failed },
      ...(probed ? { probe: probed, probeAlone: { peers: probedAlone.peers, gcMs: probedAlone.gcMs, lightResidenceMs: probedAlone.lightResidenceMs, lightSegmentsMs: probedAlone.lightSegmentsMs } } : {}),
    });
  }
  const summary = { seconds: SECONDS, heavyInFlight: HEAVY, phases };
  console.log(args.json ? JSON.stringify(summary) : JSON.stringify(summary, null, 1));
  for (const peer of [server, light, heavy]) peer.child.send({ type: 'exit' });
}
