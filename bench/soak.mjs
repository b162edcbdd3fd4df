// The soak (issue 15): many nodes in a few processes, with churn (nodes killed and restarted
// with the same key, links cut and dialed again), requests, relayed streams and fan-outs
// throughout, and after a warm-up an attacker process doing each attack of issue 15 at a
// bounded rate. Every sample period (a minute; 5 s with --quick) each worker's RSS and heap
// (after a GC) are taken: nodes share their worker's process, so memory is per worker, with its
// node count. At the end: the memory curve, good traffic before and during the attack (to the
// attacked nodes and to the rest), requests lost (to targets that were up and stable), the
// attacker's counts and the victims' limit counters. Writes <out>.json and <out>.md.
//
//   node --import tsx bench/soak.mjs                 10 minutes, 100 nodes in 4 workers
//   node --import tsx bench/soak.mjs --minutes=2     shorter
//   node --import tsx bench/soak.mjs --quick         30 s of traffic, 16 nodes in 2 workers (test/soak.test.ts)
//   options: --seconds=N --nodes=N --workers=N --sample-seconds=N --out=PATH (default bench/results/soak)
//            --no-attack (no attacker: its effect by comparison), --no-churn, --restart-bootstrap=random
//            (a restarted node dials two random live nodes instead of its link peers, on a new port: the runs before 21:50)
//            --malloc-trim-ms=N (the nodes' QUIC option mallocTrimPeriodMs; 0: no malloc_trim after closes),
//            --trim-at-sample (experiment: malloc_trim(0) just before each sample's memory, its release recorded),
//            --churn-seconds=N (a kill or cut every N s), --worker-exec=I[,J]:PATH (workers I, J run by PATH, e.g. a heaptrack wrapper), --snapshot-at=S[,S] (--snapshot-worker=i: a heap snapshot
//            with the closed connections still alive held in globalThis.__closedAlive), --hang-test=busy|block (the watchdog's check)
// A worker silent for 20 s is looked at before it is killed (the watchdog: <out>-hang-w<i>.json/.diag.json).
// A failed call counts as lost only if both ends were up 10 s before it and the network was whole
// between them (polled every 5 s); the rest are churn, by reason. Lost calls are logged by cause.
//   SOAK_ATTACKS=heavyRequests,undecryptableInitials,... runs only those attacks (the attacker's count names)
// Run the long one under the bench lock: flock /tmp/bench.lock node --import tsx bench/soak.mjs
// Every loop is bounded by the run's end; nothing binds beyond 127.0.0.1.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';

/**
 * What the watchdog evaluates in a hung worker's top frames: a QUIC machine in scope (the 23:34 and
 * r2 hangs were a transmit loop) is described, with the next few packets quiche writes (first byte: long or short header).
 */
const HANG_PROBE = `(() => { try {
  if (typeof machine !== 'object' || !machine?.quiche) return undefined;
  const q = machine.quiche;
  const big = (k, v) => (typeof v === 'bigint' ? String(v) : v);
  const state = { closed: machine.closed, established: machine.established, direction: machine.direction, closeRequest: machine.closeRequest, transmits: machine.transmits, sentSinceRecv: machine.sentSinceRecv, streams: machine.streams?.size,
    qClosed: q.isClosed(), qDraining: q.isDraining(), qEstablished: q.isEstablished(), qTimeout: q.timeout(), qTimedOut: q.isTimedOut(), stats: q.stats(), localError: q.localError(), peerError: q.peerError(),
    locals: { sent: typeof sent === 'undefined' ? undefined : sent, budget: typeof budget === 'undefined' ? undefined : budget, length: typeof length === 'undefined' ? undefined : length } };
  const b = Buffer.alloc(1500);
  state.next = [];
  for (let i = 0; i < 8; i++) { const r = q.send(b); if (r === null) { state.next.push(null); break; } state.next.push({ len: r[0], first: b[0].toString(16), head: b.subarray(0, 12).toString('hex') }); }
  return JSON.stringify(state, big);
} catch (e) { return 'probe failed: ' + e; } })()`;

/** Steps that had not settled this long after they began (each should end within its own 5 s deadline), by kind. */
const STEP_LIMIT_MS = 20_000;
const hung = {};

const SELF = fileURLToPath(import.meta.url);
const ROLE = process.env.SOAK_ROLE;
if (ROLE === 'worker') await worker();
else if (ROLE === 'attacker') await attacker();
else await parent();

// ---- shared helpers ------------------------------------------------------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

/**
 * Runs `step` about `perSecond` times a second until `until` (performance.now() time), at most
 * `inFlight` at once. A step still pending after STEP_LIMIT_MS is counted in `hung[name]` and no
 * longer waited for (a call that never settles is a finding, not a reason to hang the soak).
 */
async function paced(until, perSecond, inFlight, step, name = 'step') {
  const gap = 1000 / perSecond;
  const running = new Set();
  const bounded = () =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        hung[name] = (hung[name] ?? 0) + 1;
        resolve();
      }, STEP_LIMIT_MS);
      Promise.resolve()
        .then(step)
        .catch(() => undefined)
        .finally(() => {
          clearTimeout(timer);
          resolve();
        });
    });
  while (performance.now() < until) {
    if (running.size < inFlight) {
      const p = bounded().finally(() => running.delete(p));
      running.add(p);
    }
    await sleep(gap);
  }
  await Promise.all(running);
}

/** A GC, then turns of the event loop until the finalizers it queued have run (Node-API frees native objects there), then a GC again. */
async function settleFinalizers() {
  globalThis.gc?.();
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  await sleep(50);
  globalThis.gc?.();
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

function memory() {
  globalThis.gc?.();
  const m = process.memoryUsage();
  const mib = (n) => Math.round((n / 1048576) * 10) / 10;
  // Native: what is neither V8's heap nor Buffers (quiche's connections, the allocator's holdings).
  return { rssMiB: mib(m.rss), heapUsedMiB: mib(m.heapUsed), heapTotalMiB: mib(m.heapTotal), externalMiB: mib(m.external), arrayBuffersMiB: mib(m.arrayBuffers), nativeMiB: mib(m.rss - m.heapTotal - m.external) };
}

/**
 * glibc malloc's totals (mallinfo2 over all arenas, MiB: in use, free but held) after a GC, the
 * library's trims so far and, with `trim`, what malloc_trim(0) gives back now (RSS before − after).
 */
async function mallocLook(trim) {
  const { loadNativeAddon } = await import('../src/native-addons.js');
  const { mallocTrimmer } = await import('../src/transport/quic/malloc-trim.js');
  const addon = loadNativeAddon('pnet_udp');
  if (typeof addon.mallocInfo !== 'function') return {};
  globalThis.gc?.();
  const mib = (n) => Math.round((n / 1048576) * 10) / 10;
  // Native objects a GC found dead are freed by their finalizers, which Node-API runs from an
  // immediate: read once at once (what the samples read before 2026-12-07 07:15), then after the queue ran.
  const unsettled = addon.mallocInfo().uordblks;
  await settleFinalizers();
  const info = addon.mallocInfo();
  const out = { mallocInUseUnsettledMiB: mib(unsettled), mallocArenaMiB: mib(info.arena), mallocInUseMiB: mib(info.uordblks), mallocFreeMiB: mib(info.fordblks), mallocMmapMiB: mib(info.hblkhd), ...arenasInUse(addon, mib), libraryTrims: mallocTrimmer.stats() };
  if (!trim) return out;
  const before = process.memoryUsage.rss();
  const start = performance.now();
  addon.mallocTrim();
  return { ...out, sampleTrimMs: Math.round((performance.now() - start) * 10) / 10, sampleTrimReleasedMiB: mib(before - process.memoryUsage.rss()) };
}

/**
 * In use by arena (malloc_info: an arena's current size less its free chunks): the main thread's
 * (heap 0) apart from the other threads' (the thread pool's crypto jobs, worker threads, V8's helpers).
 */
function arenasInUse(addon, mib) {
  if (typeof addon.mallocArenas !== 'function') return {};
  const inUse = [];
  for (const part of addon.mallocArenas().split('<heap nr=').slice(1)) {
    const heap = part.slice(0, part.indexOf('</heap>'));
    const current = Number(/<system type="current" size="(\d+)"/.exec(heap)?.[1] ?? 0);
    const free = [...heap.matchAll(/<total type="(?:fast|rest)" count="\d+" size="(\d+)"/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    inUse.push(current - free);
  }
  return { mallocMainInUseMiB: mib(inUse[0] ?? 0), mallocThreadsInUseMiB: mib(inUse.slice(1).reduce((a, b) => a + b, 0)), mallocArenas: inUse.length };
}

/** IPC request/reply with a child: send {type, ...} with a request id, wait for the reply carrying it. */
function channelTo(child) {
  const waiting = new Map();
  let next = 0;
  child.on('message', (message) => {
    const resolve = message.rid === undefined ? undefined : waiting.get(message.rid);
    if (resolve) {
      waiting.delete(message.rid);
      resolve(message);
    }
  });
  // A child that died answers nothing: its pending and later requests get { dead: true }.
  child.once('exit', () => {
    for (const resolve of waiting.values()) resolve({ dead: true });
    waiting.clear();
  });
  return (message) =>
    new Promise((resolve) => {
      if (!child.connected) return resolve({ dead: true });
      const rid = ++next;
      waiting.set(rid, resolve);
      child.send({ ...message, rid });
    });
}

/** The reply to a parent's request (same request id). */
function reply(request, message) {
  process.send({ ...message, rid: request.rid });
}

// ---- worker: a share of the nodes, their traffic, their churn ---------------

/** --hang-test: a busy loop for `ms` (the watchdog must show this function on top). */
function hangOnPurpose(ms) {
  const end = Date.now() + ms;
  let n = 0;
  while (Date.now() < end) n++;
  return n;
}

async function worker() {
  const { createNode, Identity } = await import('../src/index.js');
  const { nodeServices } = await import('../src/node/node.js');
  const { monitorEventLoopDelay } = await import('node:perf_hooks');
  // The watchdog (bench/lib/soak-watchdog.mjs): a stale event loop gets its JS stack written to SOAK_HANG_FILE.
  if (process.env.SOAK_HANG_FILE) (await import('./lib/soak-watchdog.mjs')).startWatchdog({ file: process.env.SOAK_HANG_FILE, staleMs: Number(process.env.SOAK_STALE_MS ?? 15_000) });
  // The last messages handled and their ends: what the watchdog reads from a paused worker.
  const trace = (globalThis.__soakTrace = []);
  const note = (what) => {
    trace.push(`${((Date.now() - trafficStarted) / 1000).toFixed(1)}s ${what}`);
    if (trace.length > 60) trace.shift();
  };
  const loopDelay = monitorEventLoopDelay({ resolution: 20 });
  loopDelay.enable();
  let cpuAt = process.cpuUsage();
  // Objects that should be collected once closed: connections (direct, spare, relayed) seen by a
  // scan every 2 s, and killed nodes. Counted alive after a GC at each sample (a leak shows here).
  const tracked = { connections: new WeakSet(), connectionRefs: [], nodesKilled: [], closedAt: new WeakMap() };
  const scanConnections = () => {
    for (const slot of slots) {
      if (!slot.up) continue;
      const table = nodeServices(slot.node)?.peers;
      if (!table) continue;
      for (const c of [...(table.connections?.values() ?? []), ...(table.spares?.keys() ?? []), ...(table.relayed ?? [])]) {
        if (tracked.connections.has(c)) continue;
        tracked.connections.add(c);
        tracked.connectionRefs.push(new WeakRef(c));
        c.once?.('close', () => tracked.closedAt.set(c, performance.now()));
      }
    }
  };
  setInterval(scanConnections, 2000).unref();
  const aliveCounts = () => {
    tracked.connectionRefs = tracked.connectionRefs.filter((r) => r.deref() !== undefined);
    const alive = tracked.connectionRefs.map((r) => r.deref());
    tracked.nodesKilled = tracked.nodesKilled.filter((r) => r.deref() !== undefined);
    // What the closed ones still alive are waiting for (private fields read for the diagnosis: the
    // connection's disposal, its timer, quiche's closed/draining state and next timeout).
    const closedStates = {};
    for (const c of alive) {
      if (!c.closed) continue;
      let key;
      try {
        const q = c.machine?.quiche;
        const t = q?.timeout();
        const bucket = (ms) => (ms === undefined || !Number.isFinite(ms) ? '-' : ms < 10_000 ? '<10s' : ms < 60_000 ? '10-60s' : ms < 300_000 ? '1-5min' : '>5min');
        const closedAt = tracked.closedAt.get(c);
        key = [c.path?.constructor?.name ?? '-', c.direction, c.disposed ? 'disposed' : 'not disposed', c.timer ? `timer in ${bucket(c.timerAt - performance.now())}` : 'no timer', q?.isClosed() ? 'quiche closed' : q?.isDraining() ? 'quiche draining' : 'quiche open', t === null ? 'no timeout' : `quiche timeout ${bucket(t)}`, c.machine?.established ? 'established' : 'not established', `closed ${closedAt === undefined ? '?' : bucket(performance.now() - closedAt)} ago`].join(' ');
      } catch (error) {
        key = `unreadable: ${String(error).slice(0, 60)}`;
      }
      closedStates[key] = (closedStates[key] ?? 0) + 1;
    }
    return { connectionsAlive: alive.length, closedConnectionsAlive: alive.filter((c) => c.closed).length, killedNodesAlive: tracked.nodesKilled.length, closedStates };
  };
  /** @type {Array<{identity: any, node: any, up: boolean, address: string, victim: boolean}>} */
  const slots = [];
  /** Every node of the run: id -> { address, up, stableSince, victim, lastEvent: {kind, at} | undefined } (from the parent). */
  const everyone = new Map();
  const counters = newCounters();
  let phase = 'warm-up';
  let trafficStarted = Date.now();

  const make = async (identity, bootstrap = [], listen = '127.0.0.1:0') => {
    const node = await createNode({ identity, listen, h2: false, bootstrap, ...(process.env.SOAK_MALLOC_TRIM_MS ? { quic: { mallocTrimPeriodMs: Number(process.env.SOAK_MALLOC_TRIM_MS) } } : {}) });
    node.on('error', () => undefined);
    node.handleRequest('svc', (request) => request);
    node.handle('echo', (stream) => stream.pipe(stream));
    return node;
  };

  process.on('message', async (message) => {
    if (message.type !== 'everyone' && message.type !== 'ping') note(`${message.type}${message.index === undefined ? '' : ` ${message.index}`} begins`);
    switch (message.type) {
      case 'ping':
        reply(message, { type: 'pong' });
        break;
      case 'hang-test':
        // The watchdog's own check (--hang-test): this worker's loop stops on purpose, busy in JS or blocked outside it.
        setTimeout(() => (message.how === 'block' ? Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, message.ms) : hangOnPurpose(message.ms)), message.afterMs);
        break;
      case 'start': {
        for (let i = 0; i < message.count; i++) {
          const identity = await Identity.generate();
          const node = await make(identity);
          slots.push({ identity, node, up: true, address: node.address, victim: false, startedAt: Date.now() });
        }
        reply(message, { type: 'nodes', nodes: slots.map((s) => ({ id: s.node.id, address: s.address })) });
        break;
      }
      case 'links': {
        await Promise.all(message.links.map(([index, address]) => slots[index].node.dial(address).catch(() => undefined)));
        reply(message, { type: 'linked' });
        break;
      }
      case 'everyone':
        for (const entry of message.nodes) everyone.set(entry.id, { address: entry.address, up: entry.up, stableSince: entry.stableSince, victim: entry.victim, lastEvent: entry.lastEvent, component: entry.component });
        for (const slot of slots) slot.victim = everyone.get(slot.node.id)?.victim ?? false;
        break;
      case 'routes': {
        const live = slots.filter((s) => s.up);
        reply(message, { type: 'routes', min: Math.min(...live.map((s) => s.node.routes().length)) });
        break;
      }
      case 'phase':
        phase = message.phase;
        break;
      case 'traffic':
        void traffic(message.until, message.rates).then(() => process.send({ type: 'traffic-done' }));
        break;
      case 'kill': {
        const slot = slots[message.index];
        slot.up = false;
        tracked.nodesKilled.push(new WeakRef(slot.node));
        counters.closingSendsCut += slot.node.stats().limits.quicClosingSendsCut ?? 0;
        await slot.node.close({ timeoutMs: 0 });
        // Only its id until the restart: the slot held the closed node 5 s, counted as a killed node alive.
        slot.node = { id: slot.node.id };
        note(`kill ${message.index} done`);
        reply(message, { type: 'killed', id: slot.node.id });
        break;
      }
      case 'restart': {
        const slot = slots[message.index];
        // Back at its address (a restarted daemon keeps its port): the bootstrap addresses others
        // redial stay valid. A port taken meanwhile: a new one (counted).
        slot.node = message.samePort
          ? await make(slot.identity, message.bootstrap, slot.address).catch(() => {
              counters.portsLost++;
              return make(slot.identity, message.bootstrap);
            })
          : await make(slot.identity, message.bootstrap);
        slot.address = slot.node.address;
        slot.startedAt = Date.now();
        slot.up = true;
        note(`restart ${message.index} done`);
        reply(message, { type: 'restarted', id: slot.node.id, address: slot.address });
        break;
      }
      case 'cut': {
        const slot = slots[message.index];
        const peers = slot.up ? slot.node.peers().filter((p) => p.transport !== 'relay') : [];
        const peer = peers.length > 1 ? pick(peers) : undefined;
        if (peer) {
          counters.linkCuts++;
          await slot.node.disconnect(peer.nodeId, { timeoutMs: 0 }).catch(() => undefined);
          // The link comes back a few seconds later, dialed by the same end.
          setTimeout(() => {
            const target = everyone.get(peer.nodeId);
            if (slot.up && target?.up) slot.node.dial(target.address).catch(() => undefined);
          }, 3000).unref();
        }
        reply(message, { type: 'cut-done', peer: peer?.nodeId });
        break;
      }
      case 'topology':
        // Each live node's direct links (relayed connections are not links of the graph).
        reply(message, { type: 'topology', nodes: slots.filter((s) => s.up).map((s) => ({ id: s.node.id, peers: s.node.peers().filter((p) => p.transport !== 'relay').map((p) => p.nodeId) })) });
        break;
      case 'sample': {
        const malloc = await mallocLook(process.env.SOAK_TRIM_AT_SAMPLE === '1');
        const mem = memory(); // after a GC: what is alive now is held
        const cpu = process.cpuUsage(cpuAt);
        cpuAt = process.cpuUsage();
        const loop = { loopDelayP99Ms: Math.round(loopDelay.percentile(99) / 1e6), loopDelayMaxMs: Math.round(loopDelay.max / 1e6), cpuSeconds: Math.round((cpu.user + cpu.system) / 1e5) / 10 };
        loopDelay.reset();
        reply(message, { type: 'sample', memory: { ...mem, ...malloc }, nodes: slots.filter((s) => s.up).length, peers: slots.reduce((n, s) => n + (s.up ? s.node.peers().length : 0), 0), ...connectionCounts(), ...aliveCounts(), ...loop });
        break;
      }
        break;
      case 'snapshot': {
        // --snapshot-at: the closed connections still alive after a GC, held in globalThis.__closedAlive for the
        // snapshot's reader (their retainers are what to find), then a heap snapshot.
        globalThis.gc?.();
        const alive = tracked.connectionRefs.map((r) => r.deref()).filter((c) => c?.closed);
        globalThis.__closedAlive = alive;
        const { writeHeapSnapshot } = await import('node:v8');
        writeHeapSnapshot(message.file, { exposeNumericValues: true });
        delete globalThis.__closedAlive;
        reply(message, { type: 'snapshot', closedAlive: alive.length, kinds: alive.map((c) => `${c.constructor.name}/${c.path?.constructor?.name ?? '-'}/${c.direction ?? '-'}`) });
        break;
      }
      case 'report': {
        // Closes cut at CLOSING_PACKETS (quiche's endless close, the 23:34 hang): the killed nodes' and the live ones'.
        const closingSendsCut = counters.closingSendsCut + slots.filter((x) => x.up).reduce((n, x) => n + (x.node.stats().limits.quicClosingSendsCut ?? 0), 0);
        reply(message, { type: 'report', counters: { ...counters, closingSendsCut, hung }, victims: victimStats() });
        break;
      }
      case 'exit':
        await Promise.all(slots.filter((s) => s.up).map((s) => s.node.close({ timeoutMs: 200 })));
        process.exit(0);
    }
  });
  process.once('disconnect', () => process.exit(1)); // the parent is gone
  process.send({ type: 'ready' });

  /** QUIC connections the nodes' transports hold (draining ones too) and, for the attacked nodes, what holds them. */
  function connectionCounts() {
    const live = slots.filter((s) => s.up);
    const quicConnections = live.reduce((n, s) => n + s.node.stats().connections.quic, 0);
    // Bootstrap redials (a restarted node keeps its bootstrap peers connected): a dead address is redialed for good.
    const redialFailures = live.reduce((n, s) => n + (s.node.stats().bootstrap?.redialFailures ?? 0), 0);
    const victims = live.filter((s) => s.victim).map((s) => {
      const st = s.node.stats();
      // The victim's connections' streams: open now, and used over each connection's life (quiche keeps every finished id).
      const table = nodeServices(s.node)?.peers;
      const conns = table ? [...table.connections.values(), ...table.spares.keys(), ...table.relayed] : [];
      const streamsOpen = conns.reduce((n, c) => n + (c.streamCount ?? 0), 0);
      const streamsUsedMax = Math.max(0, ...conns.map((c) => c.streamsUsed ?? 0));
      return { quic: st.connections.quic, peers: s.node.peers().length, rotation: st.rotation, leftOpen: st.limits.quicStreamsLeftOpen, streamsOpen, streamsUsedMax, pendingHandshakes: st.handshakes.pending, streams: st.streams };
    });
    // Stream ids quiche holds (~20 B each, until its connection closes): every live connection's streams so far.
    const idsOf = (conns) => conns.reduce((m, c) => m + (c.streamsUsed ?? 0), 0);
    const tables = live.map((s) => nodeServices(s.node)?.peers).filter((table) => table !== undefined);
    const streamIdsHeld = tables.reduce((n, table) => n + idsOf([...table.connections.values(), ...table.spares.keys()]), 0);
    const streamIdsHeldRelayed = tables.reduce((n, table) => n + idsOf([...table.relayed]), 0);
    const mostIdsOnOne = Math.max(0, ...tables.flatMap((table) => [...table.connections.values(), ...table.spares.keys(), ...table.relayed].map((c) => c.streamsUsed ?? 0)));
    return { quicConnections, redialFailures, victims, streamIdsHeld, streamIdsHeldRelayed, mostIdsOnOne };
  }

  function victimStats() {
    return slots.filter((s) => s.victim && s.up).map((s) => ({ id: s.node.id, limits: s.node.stats().limits, datagramsDropped: s.node.stats().datagramsDropped }));
  }

  /** A target for good traffic: up, not `self`. */
  function target(self) {
    const ids = [...everyone.entries()].filter(([id, e]) => e.up && id !== self).map(([id]) => id);
    return ids.length > 0 ? pick(ids) : undefined;
  }

  /**
   * How a call to `id` from `source` that began at `started` (Date.now()) and failed counts: lost if
   * both ends were up and stable for 10 s before it and still up, and the network between them was
   * whole (the last topology poll put them in one component); else the churn reason.
   */
  function failureKind(id, started, source, path) {
    const e = everyone.get(id);
    if (!e || !e.up || e.stableSince >= started - 10_000) return 'target churned';
    const slot = slots.find((s) => s.node === source);
    if (!slot || !slot.up || slot.startedAt >= started - 10_000) return 'source churned';
    const from = everyone.get(source.id);
    if (from?.component !== undefined && e.component !== undefined && from.component !== e.component) return 'network split';
    if (pathChurned(path, started)) return 'path churned during the call';
    return 'lost';
  }

  /** A hop of the path the call began on was killed, or one of its links was cut, after the call began. */
  function pathChurned(path, started) {
    if (path === undefined) return false;
    for (let i = 0; i < path.length; i++) {
      const event = everyone.get(path[i])?.lastEvent;
      if (event === undefined || event.at < started) continue;
      if (event.kind !== 'cut' && i > 0 && i < path.length - 1) return true;
      if (event.kind === 'cut' && (event.peer === path[i - 1] || event.peer === path[i + 1])) return true;
    }
    return false;
  }

  function tally(kind, id, started, error, source, path) {
    const bucket = counters[phase][everyone.get(id)?.victim ? 'victims' : 'others'][kind];
    if (error === undefined) bucket.ok++;
    else {
      const how = failureKind(id, started, source, path);
      if (how === 'lost') bucket.lost++;
      else {
        bucket.churn++;
        counters.churnReasons[how] = (counters.churnReasons[how] ?? 0) + 1;
      }
      if (how === 'lost') {
        counters.lostCodes[error.code ?? 'other'] = (counters.lostCodes[error.code ?? 'other'] ?? 0) + 1;
        lostCause(kind, id, error, source, started, path);
      }
    }
  }

  /** Where a lost call's cause is looked for: its code and message, and how long before it each end last churned. */
  function lostCause(kind, id, error, source, started, path) {
    const code = error.code ?? 'other';
    const add = (map, key) => (map[key] = (map[key] ?? 0) + 1);
    add(counters.lostMessages, `${code}: ${messagePattern(error.message)}`);
    const now = Date.now();
    const slot = slots.find((s) => s.node === source);
    const dst = everyone.get(id)?.lastEvent;
    const srcCut = source ? everyone.get(source.id)?.lastEvent : undefined;
    const srcState = !slot || !slot.up ? 'source closed' : `source started ${ageBucket(now - slot.startedAt)}${srcCut?.kind === 'cut' ? `, cut ${ageBucket(now - srcCut.at)}` : ''}`;
    const dstState = dst ? `target ${dst.kind} ${ageBucket(now - dst.at)}` : 'target never churned';
    // Whether the source's router has a way to the target once the call failed (a hole in the map, or a hop's).
    const routeNow = source && slot?.up ? (source.path(id) ? 'source routes to it' : 'source has no route') : '';
    // A node between the two (on the source's path when the call began) that churned from 10 s before the call on.
    const hop = (path ?? []).slice(1, -1).find((h) => (everyone.get(h)?.lastEvent?.at ?? 0) >= started - 10_000);
    const pathState = path === undefined ? 'no path at start' : hop ? `hop ${everyone.get(hop).lastEvent.kind} on its path` : `path of ${path.length - 1} hops`;
    add(counters.lostByState, `${kind} ${code} | ${srcState} | ${dstState} | ${pathState}${code === 'UNREACHABLE' ? ` | ${routeNow}` : ''}`);
    add((counters.lostByMinute[Math.floor((now - trafficStarted) / 60_000)] ??= {}), code);
    if (counters.lostSamples.length < 40) counters.lostSamples.push({ kind, code, message: String(error.message).slice(0, 300), ms: now - started, srcState, dstState, phase });
  }

  function localNode() {
    const live = slots.filter((s) => s.up);
    return live.length > 0 ? pick(live).node : undefined;
  }

  async function traffic(untilEpoch, rates) {
    trafficStarted = Date.now();
    const until = performance.now() + (untilEpoch - Date.now());
    const payload = Buffer.alloc(256, 7);
    const request = async () => {
      const node = localNode();
      const id = node && target(node.id);
      if (!id) return;
      const started = Date.now();
      const t0 = performance.now();
      const path = node.path(id);
      try {
        await node.request(id, 'svc', payload, { timeoutMs: 5000 });
        tally('requests', id, started);
        counters.latency[phase].push(performance.now() - t0);
      } catch (error) {
        tally('requests', id, started, error, node, path);
      }
    };
    const stream = async () => {
      const node = localNode();
      const id = node && target(node.id);
      if (!id) return;
      const started = Date.now();
      const path = node.path(id);
      try {
        const s = await node.openStream(id, 'echo', { timeoutMs: 5000 });
        const chunks = [];
        const done = new Promise((resolve, reject) => {
          s.on('data', (c) => chunks.push(c));
          s.on('end', resolve);
          s.on('error', reject);
        });
        const data = Buffer.alloc(4096, 3);
        s.end(data);
        const timer = setTimeout(() => s.destroy(Object.assign(new Error('echo timeout'), { code: 'ERR_REQUEST_TIMEOUT' })), 5000);
        await done.finally(() => clearTimeout(timer));
        if (!Buffer.concat(chunks).equals(data)) throw Object.assign(new Error('echo mismatch'), { code: 'MISMATCH' });
        tally('streams', id, started);
        if (node.path(id)?.length > 2) counters.relayedStreams++;
      } catch (error) {
        tally('streams', id, started, error, node, path);
      }
    };
    const fanout = async () => {
      const node = localNode();
      if (!node) return;
      const ids = new Set();
      for (let i = 0; i < 10; i++) {
        const id = target(node.id);
        if (id) ids.add(id);
      }
      const started = Date.now();
      const paths = new Map([...ids].map((id) => [id, node.path(id)]));
      for await (const result of node.fanout([...ids], 'svc', 'f', { deadlineMs: 5000 })) {
        tally('fanoutTargets', result.nodeId, started, result.ok ? undefined : result.error, node, paths.get(result.nodeId));
      }
    };
    await Promise.all([
      paced(until, rates.requests, 64, request, 'requests'),
      paced(until, rates.streams, 16, stream, 'streams'),
      paced(until, rates.fanouts, 4, fanout, 'fanouts'),
    ]);
  }
}

/** A process's CPU over 3 s (busy loop or idle), RSS and its threads' states and CPU, from /proc. */
async function procLook(pid) {
  const read = (path) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return '';
    }
  };
  // /proc/<pid>/stat: the name is in parentheses; after it, state is field 3, utime 14, stime 15 (clock ticks of 10 ms).
  const stat = (text) => {
    const close = text.lastIndexOf(')');
    const rest = text.slice(close + 2).split(' ');
    return { name: text.slice(text.indexOf('(') + 1, close), state: rest[0], ticks: Number(rest[11]) + Number(rest[12]) };
  };
  const threads = () => Object.fromEntries(readdirSync(`/proc/${pid}/task`, { withFileTypes: false }).map((tid) => [tid, { ...stat(read(`/proc/${pid}/task/${tid}/stat`)), wchan: read(`/proc/${pid}/task/${tid}/wchan`) }]));
  try {
    const before = { all: stat(read(`/proc/${pid}/stat`)), threads: threads() };
    await sleep(3000);
    const after = { all: stat(read(`/proc/${pid}/stat`)), threads: threads() };
    const rss = /VmRSS:\s+(\d+)/.exec(read(`/proc/${pid}/status`));
    const byThread = Object.entries(after.threads)
      .map(([tid, t]) => ({ tid, name: t.name, state: t.state, wchan: t.wchan, cpuPercent: Math.round(((t.ticks - (before.threads[tid]?.ticks ?? t.ticks)) / 3) * 10) / 10 }))
      .sort((a, b) => b.cpuPercent - a.cpuPercent);
    return { cpuPercent: Math.round((after.all.ticks - before.all.ticks) / 3), state: after.all.state, rssMiB: rss ? Math.round(Number(rss[1]) / 1024) : undefined, threads: byThread };
  } catch (error) {
    return { error: String(error) };
  }
}

/** Every thread's native stack (gdb attaches, prints and detaches; bounded by 120 s). */
function gdbStacks(pid) {
  return new Promise((resolve) => {
    execFile('timeout', ['120', '/usr/bin/gdb', '-p', String(pid), '-batch', '-ex', 'thread apply all bt 30'], { maxBuffer: 16 << 20 }, (error, stdout, stderr) => resolve((stdout || String(stderr || error)).slice(0, 200_000)));
  });
}

/** A time since an event, in coarse steps (a lost call is only counted 10 s after its target's last restart). */
function ageBucket(ms) {
  for (const [limit, name] of [[5_000, '<5s'], [10_000, '5-10s'], [20_000, '10-20s'], [40_000, '20-40s'], [80_000, '40-80s']]) if (ms < limit) return `${name} ago`;
  return '>80s ago';
}

/** An error message with node ids, addresses and numbers taken out, so that messages of one cause count together. */
function messagePattern(message) {
  return String(message)
    .replace(/[a-z2-7]{40,}/g, '<id>')
    .replace(/\d+\.\d+\.\d+\.\d+:\d+/g, '<addr>')
    .replace(/\d+/g, 'N')
    .slice(0, 160);
}

function newCounters() {
  const kinds = () => ({
    requests: { ok: 0, lost: 0, churn: 0 },
    streams: { ok: 0, lost: 0, churn: 0 },
    fanoutTargets: { ok: 0, lost: 0, churn: 0 },
  });
  return {
    'warm-up': { victims: kinds(), others: kinds() },
    attack: { victims: kinds(), others: kinds() },
    latency: { 'warm-up': [], attack: [] },
    lostCodes: {},
    lostMessages: {},
    lostByState: {},
    lostSamples: [],
    lostByMinute: [],
    churnReasons: {},
    portsLost: 0,
    linkCuts: 0,
    relayedStreams: 0,
    closingSendsCut: 0,
  };
}

// ---- attacker: every attack of issue 15, each at a bounded rate -----------------

async function attacker() {
  const dgram = await import('node:dgram');
  const { randomBytes } = await import('node:crypto');
  const { createNode } = await import('../src/index.js');
  const { nodeServices } = await import('../src/node/node.js');
  const counts = {};
  const count = (name, n = 1) => (counts[name] = (counts[name] ?? 0) + n);
  let victims = [];
  let node;
  process.on('message', async (message) => {
    if (message.type === 'attack') {
      victims = message.victims;
      // Never says hello: it stays a non-neighbour of its victims (its legs and routing streams are a stranger's).
      node = await createNode({ listen: '127.0.0.1:0', h2: false, routing: { neighbourHoldDownMs: 10 * 60_000 } });
      node.on('error', () => undefined);
      await Promise.all(victims.map((v) => node.dial(v.address).catch(() => undefined)));
      reply(message, { type: 'attacking' });
      await attack(performance.now() + (message.until - Date.now()));
      process.send({ type: 'attack-done', counts });
    } else if (message.type === 'exit') {
      await node?.close({ timeoutMs: 0 });
      process.exit(0);
    }
  });
  process.once('disconnect', () => process.exit(1)); // the parent is gone
  process.send({ type: 'ready' });

  /** Keeps `target` raw streams of `channel` per victim open, each fed `bytes` and never ended; reopened as they die. */
  async function holdStreams(until, channel, target, bytes, name) {
    const held = new Map(victims.map((v) => [v.id, new Set()]));
    while (performance.now() < until) {
      for (const v of victims) {
        const set = held.get(v.id);
        for (let i = set.size; i < target; i++) {
          const opening = channel === null ? openRaw(v.id) : nodeServices(node).streams.openDirect(v.id, channel, { optimistic: true });
          const entry = {};
          set.add(entry);
          count(name);
          opening.then(
            (s) => {
              s.on('error', () => undefined);
              s.on('close', () => set.delete(entry));
              s.resume();
              s.write(bytes);
              entry.stream = s;
            },
            () => set.delete(entry),
          );
        }
      }
      await sleep(500);
    }
    for (const set of held.values()) for (const entry of set) entry.stream?.destroy();
  }

  /** A bare stream on the connection to a victim (no negotiation: the bytes written are the attack). */
  async function openRaw(id) {
    const connection = nodeServices(node).peers.live(id);
    if (!connection) throw new Error('not connected');
    return connection.openStream();
  }

  async function datagrams(until, perSecond, make, name) {
    const socket = dgram.createSocket('udp4');
    await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
    await paced(until, perSecond, 1, async () => {
      const v = pick(victims);
      const [host, port] = [v.address.slice(0, v.address.lastIndexOf(':')), Number(v.address.slice(v.address.lastIndexOf(':') + 1))];
      socket.send(make(), port, host);
      count(name);
    });
    socket.close();
  }

  /** A long-header Initial of `version`, 8-byte connection ids, no token, 1,200 bytes: well formed, undecryptable (random payload). */
  function initial(version) {
    const packet = randomBytes(1200);
    packet[0] = 0xc0 | (packet[0] & 0x0f);
    packet.writeUInt32BE(version, 1);
    packet[5] = 8; // DCID length, DCID at 6..13
    packet[14] = 8; // SCID length, SCID at 15..22
    packet[23] = 0; // token length
    packet.writeUInt16BE(0x4000 | (1200 - 26), 24); // the rest of the datagram, as a 2-byte varint
    return packet;
  }

  async function attack(until) {
    // Re-dial victims a link cut or their restart took away.
    const redial = (async () => {
      while (performance.now() < until) {
        for (const v of victims) if (!nodeServices(node).peers.live(v.id)) node.dial(v.address).catch(() => undefined);
        await sleep(2000);
      }
    })();
    // SOAK_ATTACKS=name,name (the counts' names) runs only those: for finding which attack a cost follows.
    const only = process.env.SOAK_ATTACKS?.split(',');
    const chosen = (name, run) => (only === undefined || only.includes(name) ? run() : undefined);
    await Promise.all([
      redial,
      // 1. fan-out replay memory: fan-outs with an hour's deadline to a channel nobody serves.
      chosen('fanoutReplay', () =>
        paced(until, 50, 50, async () => {
          count('fanoutReplay');
          for await (const _ of node.fanout([pick(victims).id], 'nochannel', 'x', { deadlineMs: 3_600_000 })) void _;
        }),
      ),
      // 2. pending negotiations: partial OPENs held (2 bytes of header, 1 byte of body).
      chosen('partialOpens', () => holdStreams(until, null, 200, Buffer.from('a101001000', 'hex'), 'partialOpens')),
      // 3. fan-out legs that never finish.
      chosen('heldLegs', () => holdStreams(until, 'pnet/fanout', 64, Buffer.alloc(64, 1), 'heldLegs')),
      // item 9: routing streams from a non-neighbour, never ended.
      chosen('heldRoutingStreams', () => holdStreams(until, 'pnet/routing', 100, Buffer.alloc(2048, 0xb1), 'heldRoutingStreams')),
      // 4. undecryptable Initials (version 1) and 7. unknown versions (Version Negotiation), from one silent address (5. amplification).
      chosen('undecryptableInitials', () => datagrams(until, 300, () => initial(1), 'undecryptableInitials')),
      chosen('unknownVersion', () => datagrams(until, 100, () => initial(0x0a0a0a0a), 'unknownVersion')),
      // 8. fairness: 64 requests in flight at the first victim.
      chosen('heavyRequests', () =>
        paced(until, 2000, 64, async () => {
          count('heavyRequests');
          await node.request(victims[0].id, 'svc', 'x', { timeoutMs: 5000 });
        }),
      ),
    ]);
  }
}

// ---- parent: layout, churn, samples, report -------------------------------------

async function parent() {
  const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')).map(([k, v]) => [k, v ?? 'true']));
  const quick = args.quick === 'true';
  const seconds = Number(args.seconds ?? (args.minutes !== undefined ? Number(args.minutes) * 60 : quick ? 30 : 600));
  const nodeCount = Number(args.nodes ?? (quick ? 16 : 100));
  const workerCount = Number(args.workers ?? (quick ? 2 : 4));
  const sampleMs = Number(args['sample-seconds'] ?? (quick ? 5 : 60)) * 1000;
  const out = args.out ?? 'bench/results/soak';
  // --no-attack: the same run without the attacker (its effect on good traffic by comparison); --no-churn: no kills or cuts.
  const attackOn = args['no-attack'] !== 'true';
  const churnOn = args['no-churn'] !== 'true';
  const restartRandom = args['restart-bootstrap'] === 'random';
  // The attack starts within the first minute (15% of the run, at most 30 s), so the flat rule's
  // minute-2 reference and the last minute both run under it.
  const warmupMs = Math.max(5_000, Math.min(30_000, Math.round(seconds * 1000 * 0.15)));
  // --churn-seconds=N: one kill or cut every N s (default 3; 2 with --quick): more same-port restarts per run when hunting a hang.
  const churnEveryMs = args['churn-seconds'] !== undefined ? Number(args['churn-seconds']) * 1000 : quick ? 2_000 : 3_000;
  const rates = quick ? { requests: 20, streams: 4, fanouts: 1 } : { requests: 20, streams: 4, fanouts: 1 };
  const started = Date.now();
  const log = (...m) => console.error(`[soak ${((Date.now() - started) / 1000).toFixed(0)}s]`, ...m);

  // The watchdog's files: <out>-hang-w<i>.json (the worker's JS stack, written by its own watchdog thread)
  // and <out>-hang-w<i>.diag.json (the parent's look: CPU, threads, pending requests, gdb). A new run clears them.
  const hangFile = (i) => resolvePath(`${out}-hang-w${i}.json`);
  mkdirSync(dirname(resolvePath(out)), { recursive: true });
  const prefix = `${resolvePath(out).split('/').pop()}-hang-w`;
  for (const f of readdirSync(dirname(resolvePath(out)))) if (f.startsWith(prefix)) rmSync(`${dirname(resolvePath(out))}/${f}`);
  const spawnChild = (role, index) => {
    const trimEnv = { ...(args['malloc-trim-ms'] !== undefined ? { SOAK_MALLOC_TRIM_MS: String(Number(args['malloc-trim-ms'])) } : {}), ...(args['trim-at-sample'] === 'true' ? { SOAK_TRIM_AT_SAMPLE: '1' } : {}) };
    const env = { ...process.env, SOAK_ROLE: role, SOAK_INDEX: String(index), ...(role === 'worker' ? { SOAK_HANG_FILE: hangFile(index), SOAK_HANG_EVAL: HANG_PROBE, ...trimEnv } : {}) };
    // --worker-exec=I[,J]:PATH runs workers I, J through PATH (a wrapper such as `exec heaptrack -o F node "$@"`: diagnosis).
    const [execIndex, execPath] = (args['worker-exec'] ?? '').split(':');
    const wrapped = role === 'worker' && execPath !== undefined && execIndex.split(',').map(Number).includes(index) ? { execPath } : {};
    const child = fork(SELF, [], { env, execArgv: ['--import', 'tsx', '--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...wrapped });
    const channel = channelTo(child);
    // The last requests to the child and when they were answered (a hung worker's report lists them).
    const sent = [];
    const ask = (message) => {
      const entry = { type: message.type, index: message.index, atSeconds: Math.round((Date.now() - started) / 100) / 10 };
      if (message.type !== 'ping') {
        sent.push(entry);
        if (sent.length > 40) sent.shift();
      }
      return channel(message).then((answer) => ((entry.answeredAfterMs = Math.round((Date.now() - started) - entry.atSeconds * 1000)), answer));
    };
    const ready = new Promise((resolve) => child.once('message', resolve));
    return { child, ask, sent, ready, exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))) };
  };
  const workers = Array.from({ length: workerCount }, (_, i) => spawnChild('worker', i));
  const attackerProc = spawnChild('attacker', 0);
  await Promise.all([...workers.map((w) => w.ready), attackerProc.ready]);
  const crashes = [];
  for (const [i, w] of workers.entries()) w.exited.then(({ code, signal }) => (w.done ? undefined : crashes.push(`worker ${i} exited ${code ?? signal}`)));
  // A crash ends the run (the report says so): the loops below watch `crashes`.
  attackerProc.exited.then(({ code, signal }) => (attackerProc.done ? undefined : crashes.push(`attacker exited ${code ?? signal}`)));

  // Nodes, then links: a ring plus two random chords per node.
  /** @type {Array<{id: string, address: string, worker: number, index: number, up: boolean, stableSince: number, victim: boolean, churnable: boolean}>} */
  const nodes = [];
  for (const [w, proc] of workers.entries()) {
    const count = Math.floor(nodeCount / workerCount) + (w < nodeCount % workerCount ? 1 : 0);
    const { nodes: made } = await proc.ask({ type: 'start', count });
    made.forEach((n, index) => nodes.push({ ...n, worker: w, index, up: true, stableSince: Date.now(), victim: false, churnable: true }));
  }
  // Victims: three nodes of the first worker, never churned (the attack's effect is measured on them).
  for (const n of nodes.filter((n) => n.worker === 0).slice(0, 3)) Object.assign(n, { victim: true, churnable: false });
  const links = new Map(workers.map((_, w) => [w, []]));
  nodes.forEach((n, i) => {
    const peers = new Set([nodes[(i + 1) % nodes.length]]);
    for (let k = 0; k < 2; k++) peers.add(pick(nodes));
    peers.delete(n);
    for (const p of peers) links.get(n.worker).push([n.index, p.address]);
    // Each link's two ends: what a restarted node dials again (its configured peers, in a deployment).
    for (const p of peers) for (const [a, b] of [[n, p], [p, n]]) (a.neighbours ??= new Set()).add(b);
  });
  await Promise.all(workers.map((w, i) => w.ask({ type: 'links', links: links.get(i) })));
  const broadcast = () => {
    const message = { type: 'everyone', nodes: nodes.map(({ id, address, up, stableSince, victim, lastEvent, component }) => ({ id, address, up, stableSince, victim, lastEvent, component })) };
    for (const w of workers) if (w.child.connected) w.child.send(message);
  };
  broadcast();
  const convergeUntil = Date.now() + 60_000;
  for (;;) {
    const mins = await Promise.all(workers.map((w) => w.ask({ type: 'routes' })));
    const min = Math.min(...mins.filter((m) => !m.dead).map((m) => m.min));
    if (min >= nodeCount - 1 || Date.now() > convergeUntil) {
      log(`routes: every node knows at least ${min} of ${nodeCount - 1}`);
      break;
    }
    await sleep(500);
  }

  const t0 = Date.now();
  const until = t0 + seconds * 1000;
  for (const w of workers) w.child.send({ type: 'traffic', until, rates });
  const trafficDone = Promise.all(workers.map((w) => new Promise((resolve) => w.child.on('message', (m) => m.type === 'traffic-done' && resolve()))));

  // Samples, from the start of traffic, every sampleMs (and one at the end).
  const samples = [];
  // The one after the traffic stopped is marked: the rule reads the last minute's, not that one.
  const sample = async (afterStop = false) => {
    const at = Math.round((Date.now() - t0) / 1000);
    const perWorker = (await Promise.all(workers.map((w) => w.ask({ type: 'sample' })))).filter((m) => !m.dead);
    const row = { atSeconds: at, workers: perWorker.map(({ memory, nodes: n, peers, quicConnections, redialFailures, victims: v, connectionsAlive, closedConnectionsAlive, killedNodesAlive, loopDelayP99Ms, loopDelayMaxMs, cpuSeconds, closedStates, streamIdsHeld, streamIdsHeldRelayed, mostIdsOnOne }) => ({ ...memory, nodes: n, peers, quicConnections, redialFailures, streamIdsHeld, streamIdsHeldRelayed, mostIdsOnOne, connectionsAlive, closedConnectionsAlive, closedStates, killedNodesAlive, loopDelayP99Ms, loopDelayMaxMs, cpuSeconds, ...(v?.length ? { victims: v } : {}) })) };
    // A sample begun once the traffic's time is up reads the wind-down (loops ending, relayed connections
    // closing, freed pages not yet trimmed: +35 MiB RSS a worker at 602 s on 2026-12-07 with malloc's in-use
    // unchanged), not the last minute under load.
    if (afterStop || Date.now() >= until) row.afterStop = true;
    row.loadAverage = Number(loadavg()[0].toFixed(1));
    row.totalRssMiB = Math.round(row.workers.reduce((s, w) => s + w.rssMiB, 0));
    row.totalHeapUsedMiB = Math.round(row.workers.reduce((s, w) => s + w.heapUsedMiB, 0));
    row.totalExternalMiB = Math.round(row.workers.reduce((s, w) => s + w.externalMiB, 0));
    samples.push(row);
    log(`memory: rss ${row.totalRssMiB} MiB, heap ${row.totalHeapUsedMiB} MiB, external ${row.totalExternalMiB} MiB over ${workers.length} workers`);
  };
  await sample();
  const sampler = setInterval(() => void sample(), sampleMs);

  // The watchdog: every worker is pinged every 5 s; one that has not answered in 20 s is looked at
  // (its CPU and threads from /proc, its own JS stack, gdb's native stacks if no JS ran) before it
  // is killed, so the run goes on and says where it hung. --hang-test=busy|block checks this.
  const hangs = [];
  const watchdog = setInterval(() => {
    for (const [i, w] of workers.entries()) {
      if (w.hung || w.done || !w.child.connected || w.pinging) continue;
      w.pinging = true;
      void Promise.race([w.ask({ type: 'ping' }), sleep(20_000).then(() => 'late')]).then(async (answer) => {
        if (answer === 'late' && !w.done) await diagnose(i, w);
        w.pinging = false;
      });
    }
  }, 5_000);
  const diagnose = async (i, w) => {
    w.hung = true;
    const at = Math.round((Date.now() - t0) / 1000);
    log(`watchdog: worker ${i} (pid ${w.child.pid}) has not answered a ping for 20 s; looking`);
    const record = { worker: i, pid: w.child.pid, atSeconds: at, proc: await procLook(w.child.pid), requests: w.sent.slice(-25), lastSample: samples.at(-1)?.workers[i] };
    // Its own watchdog thread writes the JS stack ~15 s into the stall plus ~6 s of pauses.
    for (let k = 0; k < 30 && !existsSync(hangFile(i)); k++) await sleep(1000);
    record.js = existsSync(hangFile(i)) ? JSON.parse(readFileSync(hangFile(i), 'utf8')) : undefined;
    if (!record.js?.pauses?.some((p) => p.paused)) record.gdb = await gdbStacks(w.child.pid);
    const answered = await Promise.race([w.ask({ type: 'ping' }), sleep(10_000).then(() => undefined)]);
    record.recovered = answered !== undefined && !answered.dead;
    writeFileSync(`${out}-hang-w${i}.diag.json`, JSON.stringify(record, null, 1) + '\n');
    const top = record.js?.pauses?.find((p) => p.paused)?.frames?.slice(0, 3).map((f) => `${f.fn} ${f.url.split('/').pop()}:${f.line}`).join(' < ');
    hangs.push({ worker: i, atSeconds: at, cpuPercent: record.proc.cpuPercent, rssMiB: record.proc.rssMiB, top: top ?? (record.gdb ? 'no JS ran: see gdb' : 'no stack'), recovered: record.recovered, file: `${out}-hang-w${i}.diag.json` });
    log(`watchdog: worker ${i}: CPU ${record.proc.cpuPercent}%, ${top ?? 'no JS frame'}; ${record.recovered ? 'recovered' : 'killed'}`);
    if (record.recovered) return void (w.hung = false);
    w.done = true; // its exit is this record, not a crash of its own
    crashes.push(`worker ${i} hung at ${at} s (watchdog: ${top ?? 'no JS frame'}), killed`);
    w.child.kill('SIGKILL');
    // Its nodes are gone: calls to them count as churn from now on (the hang is reported on its own).
    for (const n of nodes) if (n.worker === i) Object.assign(n, { up: false, churnable: false, stableSince: Date.now(), lastEvent: { kind: 'kill', at: Date.now() } });
    broadcast();
  };
  // --snapshot-at=S[,S...]: worker --snapshot-worker (default 1; 0 holds the victims) writes <out>-w<i>-<S>s.heapsnapshot.
  for (const at of args['snapshot-at']?.split(',') ?? []) {
    const i = Number(args['snapshot-worker'] ?? 1);
    setTimeout(async () => {
      const file = resolvePath(`${out}-w${i}-${at}s.heapsnapshot`);
      const r = await workers[i].ask({ type: 'snapshot', file });
      log(`snapshot ${file}: ${r.closedAlive} closed connections alive (${JSON.stringify(Object.fromEntries(Object.entries((r.kinds ?? []).reduce((m, k) => ((m[k] = (m[k] ?? 0) + 1), m), {}))))})`);
    }, Number(at) * 1000).unref();
  }
  if (args['hang-test'] !== undefined) {
    // The watchdog's check: the last worker's loop stops 20 s into traffic (busy: a JS loop; block: Atomics.wait).
    workers.at(-1).child.send({ type: 'hang-test', how: args['hang-test'], afterMs: 20_000, ms: 180_000 });
  }

  // Topology every 5 s: the components of the live nodes' direct links. Churn can split the network
  // (a restarted node has only its two bootstrap links, and they may die later): calls across a
  // split are counted as churn, and the splits are reported.
  const topology = [];
  const pollTopology = async () => {
    const replies = (await Promise.all(workers.map((w) => w.ask({ type: 'topology' })))).filter((m) => !m.dead);
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const parent = new Map();
    const root = (id) => {
      while (parent.get(id) !== id) id = parent.get(id);
      return id;
    };
    const live = replies.flatMap((r) => r.nodes).filter((n) => byId.get(n.id)?.up);
    for (const n of live) parent.set(n.id, n.id);
    for (const n of live) for (const p of n.peers) if (parent.has(p)) parent.set(root(n.id), root(p));
    const sizes = new Map();
    for (const n of live) sizes.set(root(n.id), (sizes.get(root(n.id)) ?? 0) + 1);
    let changed = false;
    for (const n of nodes) {
      const component = parent.has(n.id) ? root(n.id) : undefined;
      if (n.component !== component) [n.component, changed] = [component, true];
    }
    const largest = Math.max(0, ...sizes.values());
    topology.push({ atSeconds: Math.round((Date.now() - t0) / 1000), components: sizes.size, largest, outside: live.length - largest, isolated: [...sizes.values()].filter((n) => n === 1).length });
    if (changed) broadcast();
  };
  const topologyPoller = setInterval(() => void pollTopology(), 5_000);

  // The attacker starts after the warm-up.
  const victims = nodes.filter((n) => n.victim).map(({ id, address }) => ({ id, address }));
  const attackStarted = sleep(warmupMs).then(async () => {
    for (const w of workers) w.child.send({ type: 'phase', phase: 'attack' });
    if (!attackOn) return log('no attacker (--no-attack)');
    log('attacker starts');
    await attackerProc.ask({ type: 'attack', victims, until });
  });
  const attackDone = attackStarted.then(() => new Promise((resolve) => attackerProc.child.on('message', (m) => m.type === 'attack-done' && resolve(m.counts))));

  // Churn: kill (restarted 5 s later with the same key) or cut a link, one every churnEveryMs.
  const churn = { kills: 0, restarts: 0, cuts: 0 };
  const churning = (async () => {
    while (churnOn && Date.now() < until - 6_000 && crashes.length === 0) {
      await sleep(churnEveryMs);
      const candidates = nodes.filter((n) => n.up && n.churnable);
      const n = candidates.length > nodeCount / 2 ? pick(candidates) : undefined;
      if (!n) continue;
      if (Math.random() < 0.5) {
        churn.kills++;
        n.up = false;
        n.stableSince = Date.now();
        n.lastEvent = { kind: 'kill', at: Date.now() };
        broadcast();
        await workers[n.worker].ask({ type: 'kill', index: n.index });
        setTimeout(async () => {
          // Its link peers that are up (those down dial it when they return), or (--restart-bootstrap=random,
          // the runs before 21:50) two random live nodes: the network then lost links at every restart.
          const live = nodes.filter((m) => m.up && m !== n);
          const peers = restartRandom ? [] : [...(n.neighbours ?? [])].filter((m) => m.up).map((m) => m.address);
          const bootstrap = peers.length > 0 ? peers : [pick(live).address, pick(live).address];
          const { address, dead } = await workers[n.worker].ask({ type: 'restart', index: n.index, bootstrap, samePort: !restartRandom });
          if (dead) return;
          Object.assign(n, { address, up: true, stableSince: Date.now(), lastEvent: { kind: 'restart', at: Date.now() } });
          churn.restarts++;
          broadcast();
        }, 5_000);
      } else {
        churn.cuts++;
        const { peer } = await workers[n.worker].ask({ type: 'cut', index: n.index });
        // Both ends of the cut link churned (the time since is in the lost calls' causes).
        const other = nodes.find((m) => m.id === peer);
        if (peer !== undefined) for (const [m, far] of [[n, other], [other, n]]) if (m?.up) m.lastEvent = { kind: 'cut', at: Date.now(), peer: far?.id };
        broadcast();
      }
    }
  })();

  // Workers end their traffic by `until` plus at most one step's limit; a worker past that is reported, not waited for.
  let trafficEnded = false;
  const trafficLate = sleep(Math.max(0, until - Date.now()) + STEP_LIMIT_MS + 10_000).then(() => trafficEnded || crashes.push('traffic did not end in time'));
  await Promise.race([trafficDone.then(() => (trafficEnded = true)), trafficLate, (async () => { while (crashes.length === 0) await sleep(500); })()]);
  await churning;
  clearInterval(sampler);
  clearInterval(topologyPoller);
  clearInterval(watchdog);
  await sleep(500);
  await sample(true);
  const attackCounts = !attackOn ? { note: 'no attacker (--no-attack)' } : await Promise.race([attackDone, sleep(15_000).then(() => ({ note: 'attacker did not report' }))]);
  const reports = (await Promise.all(workers.map((w) => w.ask({ type: 'report' })))).filter((r) => !r.dead);
  const summary = summarise({ seconds, nodeCount, workerCount, warmupMs, sampleMs, rates, churn, samples, reports, attackCounts, crashes, quick, attackOn, churnOn, topology, restartRandom, mallocTrimPeriodMs: args['malloc-trim-ms'] === undefined ? undefined : Number(args['malloc-trim-ms']) });
  summary.hangs = hangs;
  writeFileSync(`${out}.json`, JSON.stringify(summary, null, 1) + '\n');
  writeFileSync(`${out}.md`, markdown(summary));
  log(`wrote ${out}.json and ${out}.md`);
  for (const proc of [...workers, attackerProc]) {
    proc.done = true;
    // A worker that hung was killed already: its channel is closed.
    if (proc.child.connected) proc.child.send({ type: 'exit' });
  }
  await Promise.race([Promise.all([...workers, attackerProc].map((p) => p.exited)), sleep(5_000)]);
  for (const proc of [...workers, attackerProc]) if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
  console.log(JSON.stringify({ ok: crashes.length === 0, memoryFlat: summary.memory.flat, good: summary.traffic.goodSuccess }));
  process.exit(crashes.length === 0 ? 0 : 1);
}

function summarise({ seconds, nodeCount, workerCount, warmupMs, sampleMs, rates, churn, samples, reports, attackCounts, crashes, quick, attackOn, churnOn, topology, restartRandom, mallocTrimPeriodMs }) {
  const add = (a, b) => ({ ok: a.ok + b.ok, lost: a.lost + b.lost, churn: a.churn + b.churn });
  const zero = { ok: 0, lost: 0, churn: 0 };
  const sum = (phase, who, kind) => reports.reduce((acc, r) => add(acc, r.counters[phase][who][kind]), zero);
  const traffic = {};
  for (const phase of ['warm-up', 'attack']) {
    traffic[phase] = {};
    for (const who of ['victims', 'others']) {
      traffic[phase][who] = {};
      for (const kind of ['requests', 'streams', 'fanoutTargets']) traffic[phase][who][kind] = sum(phase, who, kind);
    }
  }
  const all = [];
  for (const phase of ['warm-up', 'attack']) for (const who of ['victims', 'others']) for (const kind of ['requests', 'streams', 'fanoutTargets']) all.push(traffic[phase][who][kind]);
  const total = all.reduce(add, zero);
  const rate = (c) => (c.ok + c.lost === 0 ? null : Number((c.ok / (c.ok + c.lost)).toFixed(4)));
  const lat = (phase) => {
    const xs = reports.flatMap((r) => r.counters.latency[phase]).sort((a, b) => a - b);
    const q = (p) => (xs.length ? Number(xs[Math.min(xs.length - 1, Math.floor(p * xs.length))].toFixed(1)) : null);
    return { n: xs.length, p50Ms: q(0.5), p99Ms: q(0.99) };
  };
  const merged = (field) => {
    const acc = {};
    for (const r of reports) for (const [key, n] of Object.entries(r.counters[field])) acc[key] = (acc[key] ?? 0) + n;
    return Object.fromEntries(Object.entries(acc).sort((a, b) => b[1] - a[1]));
  };
  const lostCodes = merged('lostCodes');
  // Memory: the curve of the workers' total RSS. Flat (issue 15): the last minute's sample <= 1.1x
  // the second minute's, the one at its end (120 s); the 60-s one is printed beside it. Runs too
  // short for it use their second sample.
  const workersSum = (row, key) => Math.round(row.workers.reduce((n, w) => n + (w[key] ?? 0), 0));
  const curve = samples.map((s) => ({ atSeconds: s.atSeconds, ...(s.afterStop ? { afterStop: true } : {}), rssMiB: s.totalRssMiB, heapUsedMiB: s.totalHeapUsedMiB, externalMiB: s.totalExternalMiB, mallocInUseMiB: workersSum(s, 'mallocInUseMiB'), mallocFreeMiB: workersSum(s, 'mallocFreeMiB'), mallocMainInUseMiB: workersSum(s, 'mallocMainInUseMiB'), mallocThreadsInUseMiB: workersSum(s, 'mallocThreadsInUseMiB') }));
  const during = curve.filter((c) => !c.afterStop);
  const second = during[1];
  const minute2 = during.find((c) => c.atSeconds >= 119) ?? second;
  const last = during.at(-1);
  const end = curve.at(-1);
  const ratio = (a, b) => (a && b ? Number((a.rssMiB / b.rssMiB).toFixed(3)) : null);
  const flat = minute2 && last ? last.rssMiB <= 1.1 * minute2.rssMiB : null;
  // A spike at the reference sample flatters the ratio: also the last over the lowest since.
  const lowest = during.length > 1 ? Math.min(...during.slice(during.indexOf(minute2)).map((c) => c.rssMiB)) : null;
  const victimLimits = reports.flatMap((r) => r.victims);
  const perSecond = (c, ms) => Number(((c.ok + c.lost + c.churn) / (ms / 1000)).toFixed(1));
  return {
    when: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    attackOn,
    churnOn,
    restartBootstrap: restartRandom ? 'random' : 'link peers',
    seconds,
    nodes: nodeCount,
    workers: workerCount,
    warmupSeconds: warmupMs / 1000,
    sampleSeconds: sampleMs / 1000,
    mallocTrimPeriodMs,
    ratesPerWorker: rates,
    churn,
    crashes,
    memory: {
      flat,
      rule: 'last minute\'s sample <= 1.1x the second minute\'s (its end)',
      minute2AtSeconds: minute2?.atSeconds ?? null,
      secondAtSeconds: second?.atSeconds ?? null,
      lastAtSeconds: last?.atSeconds ?? null,
      lastOverMinute2: ratio(last, minute2),
      lastOverSecond: ratio(last, second),
      endOverMinute2: ratio(end, minute2),
      lastOverLowestSinceMinute2: lowest && last ? Number((last.rssMiB / lowest).toFixed(3)) : null,
      curve,
      maxWorkerRssMiB: Math.max(...samples.flatMap((s) => s.workers.map((w) => w.rssMiB))),
      samples,
    },
    traffic: {
      goodSuccess: rate(total),
      lost: total.lost,
      failedByChurn: total.churn,
      ok: total.ok,
      lostCodes,
      churnReasons: merged('churnReasons'),
      lostMessages: merged('lostMessages'),
      lostByState: merged('lostByState'),
      lostSamples: reports.flatMap((r) => r.counters.lostSamples).slice(0, 60),
      lostByMinute: Array.from({ length: Math.max(0, ...reports.map((r) => r.counters.lostByMinute.length)) }, (_, m) => {
        const acc = {};
        for (const r of reports) for (const [code, n] of Object.entries(r.counters.lostByMinute[m] ?? {})) acc[code] = (acc[code] ?? 0) + n;
        return acc;
      }),
      byPhase: traffic,
      successByPhase: Object.fromEntries(
        ['warm-up', 'attack'].map((phase) => [
          phase,
          Object.fromEntries(['victims', 'others'].map((who) => [who, Object.fromEntries(['requests', 'streams', 'fanoutTargets'].map((k) => [k, rate(traffic[phase][who][k])]))])),
        ]),
      ),
      victimRequestsPerSecond: {
        'warm-up': perSecond(traffic['warm-up'].victims.requests, warmupMs),
        attack: perSecond(traffic.attack.victims.requests, seconds * 1000 - warmupMs),
      },
      latency: { 'warm-up': lat('warm-up'), attack: lat('attack') },
      relayedStreams: reports.reduce((s, r) => s + r.counters.relayedStreams, 0),
      hungSteps: reports.reduce((acc, r) => {
        for (const [k, n] of Object.entries(r.counters.hung ?? {})) acc[k] = (acc[k] ?? 0) + n;
        return acc;
      }, {}),
      linkCuts: reports.reduce((s, r) => s + r.counters.linkCuts, 0),
      closingSendsCut: reports.reduce((s, r) => s + (r.counters.closingSendsCut ?? 0), 0),
      portsLost: reports.reduce((s, r) => s + (r.counters.portsLost ?? 0), 0),
    },
    topology: {
      polls: topology.length,
      split: topology.filter((p) => p.components > 1).length,
      maxOutside: Math.max(0, ...topology.map((p) => p.outside)),
      byMinute: Array.from({ length: Math.ceil(seconds / 60) }, (_, m) => {
        const inMinute = topology.filter((p) => p.atSeconds >= m * 60 && p.atSeconds < (m + 1) * 60);
        return { minute: m, maxComponents: Math.max(0, ...inMinute.map((p) => p.components)), maxOutside: Math.max(0, ...inMinute.map((p) => p.outside)) };
      }),
      polled: topology,
    },
    attacker: attackCounts,
    victims: victimLimits,
  };
}

/** The library's malloc trims in the run (per worker, at the last sample) and, with --trim-at-sample, what a trim at each sample gave back. */
function mallocTrimLine(s) {
  const lastRow = s.memory.samples.at(-1);
  const trims = lastRow.workers.map((w) => w.libraryTrims).filter(Boolean);
  const library = trims.length === 0 ? 'not available (no mallocTrim in the UDP addon)' : `${trims.map((t) => t.trims).join(', ')} trims per worker (${s.mallocTrimPeriodMs === 0 ? 'off: --malloc-trim-ms=0' : `at most one per ${s.mallocTrimPeriodMs ?? 10000} ms after a close`}), ${trims.map((t) => t.totalMs).join(', ')} ms in all, longest ${Math.max(...trims.map((t) => t.maxMs))} ms, RSS given back ${trims.map((t) => Math.round(t.releasedBytes / 1048576)).join(', ')} MiB`;
  const atSample = s.memory.samples.filter((row) => row.workers.some((w) => w.sampleTrimReleasedMiB !== undefined));
  const sampled = atSample.length === 0 ? '' : ` A malloc_trim(0) before each sample (--trim-at-sample) gave back (MiB, all workers): ${atSample.map((row) => `${row.atSeconds} s: ${Math.round(row.workers.reduce((n, w) => n + (w.sampleTrimReleasedMiB ?? 0), 0))} (longest ${Math.max(...row.workers.map((w) => w.sampleTrimMs ?? 0))} ms)`).join('; ')}.`;
  return `Library malloc trims: ${library}.${sampled}`;
}

function markdown(s) {
  const lines = [];
  lines.push(`# Soak (${s.mode}): ${s.nodes} nodes in ${s.workers} processes, ${s.seconds} s`, '');
  lines.push(`Run ${s.when}. Churn: ${s.churn.kills} kills (each restarted 5 s later with its key${s.restartBootstrap === 'random' ? ', dialing two random live nodes' : ', on its port, dialing its link peers that are up'}), ${s.churn.cuts} link cuts (redialed 3 s later). ${s.attackOn === false ? 'No attacker (--no-attack); the "attack" phase is the same time without it.' : `Attacker from ${s.warmupSeconds} s on.`}${s.churnOn === false ? ' No churn.' : ''} Crashes: ${s.crashes.length ? s.crashes.join('; ') : 'none'}.`, '');
  lines.push('## Memory (all workers, after a GC)', '', '| at (s) | RSS (MiB) | heap used (MiB) | external (MiB) | malloc in use (MiB) | malloc free, held (MiB) |', '|---:|---:|---:|---:|---:|---:|');
  for (const c of s.memory.curve) lines.push(`| ${c.atSeconds}${c.afterStop ? ' (after the stop)' : ''} | ${c.rssMiB} | ${c.heapUsedMiB} | ${c.externalMiB ?? '-'} | ${c.mallocInUseMiB ?? '-'} | ${c.mallocFreeMiB ?? '-'} |`);
  const m = s.memory;
  lines.push('', `**Flat (the last minute's sample ≤ 1.1× the second minute's): ${m.flat}**: the ${m.lastAtSeconds}-s sample / the ${m.minute2AtSeconds}-s one ${m.lastOverMinute2}; the sample after the stop / the ${m.minute2AtSeconds}-s one ${m.endOverMinute2}; the ${m.lastAtSeconds}-s one / the second sample (${m.secondAtSeconds} s; the rule's reference before 2026-12-07 04:40) ${m.lastOverSecond}; last / lowest since minute 2: ${m.lastOverLowestSinceMinute2}. Largest worker RSS: ${m.maxWorkerRssMiB} MiB. External counts Buffers; V8 keeps heap it no longer uses (its heap total) in RSS; malloc's columns are glibc's mallinfo2 over all arenas (uordblks, fordblks).`, '');
  lines.push(mallocTrimLine(s), '');
  lines.push('Native memory per worker (RSS − heap total − external, MiB; worker 0 holds the attacked nodes):', '', '| at (s) | ' + s.memory.samples[0].workers.map((_, i) => `worker ${i}`).join(' | ') + ' |', '|---:|' + s.memory.samples[0].workers.map(() => '---:').join('|') + '|');
  for (const row of s.memory.samples) lines.push(`| ${row.atSeconds} | ${row.workers.map((w) => w.nativeMiB ?? Math.round(w.rssMiB - w.heapTotalMiB - w.externalMiB)).join(' | ')} |`);
  lines.push('');
  lines.push('Per sample: the machine\'s load (1 min), the workers\' event-loop delay p99 (max over workers, ms), closed connections and killed nodes still alive after the GC (sum over workers; they should be collected):', '', '| at (s) | load | loop p99 (ms) | CPU s (workers) | closed connections alive | killed nodes alive |', '|---:|---:|---:|---:|---:|---:|');
  for (const row of s.memory.samples) lines.push(`| ${row.atSeconds} | ${row.loadAverage ?? '-'} | ${Math.max(...row.workers.map((w) => w.loopDelayP99Ms ?? 0))} | ${row.workers.reduce((n, w) => n + (w.cpuSeconds ?? 0), 0).toFixed(1)} | ${row.workers.reduce((n, w) => n + (w.closedConnectionsAlive ?? 0), 0)} | ${row.workers.reduce((n, w) => n + (w.killedNodesAlive ?? 0), 0)} |`);
  lines.push('');
  const lastRow = s.memory.samples[s.memory.samples.length - 1];
  lines.push(`QUIC connections held per worker at the end: ${lastRow.workers.map((w) => w.quicConnections ?? '-').join(', ')}; bootstrap redials that failed (a dead address is redialed until its node closes): ${lastRow.workers.map((w) => w.redialFailures ?? '-').join(', ')}. Restarts that could not have their port back: ${s.traffic.portsLost ?? '-'}.`, '');
  lines.push('## Good traffic', '', `Success (ok / (ok + lost)): ${s.traffic.goodSuccess}; ${s.traffic.ok} ok, ${s.traffic.lost} lost (both ends up and stable 10 s, in one part of the network), ${s.traffic.failedByChurn} failed for churn (the target or the source restarted within 10 s before the call, or the network was split between them). Lost by code: ${JSON.stringify(s.traffic.lostCodes)}.`, '');
  lines.push('Lost calls by the state of their ends (the time since the source node started and since the target last churned; a call is lost only if its target was up 10 s before it began):', '');
  for (const [key, n] of Object.entries(s.traffic.lostByState ?? {}).slice(0, 20)) lines.push(`- ${n}: ${key}`);
  lines.push('', `Lost calls by minute of traffic: ${(s.traffic.lostByMinute ?? []).map((m, i) => `${i}: ${JSON.stringify(m)}`).join('; ')}.`);
  lines.push('', 'Lost calls by message:', '');
  for (const [key, n] of Object.entries(s.traffic.lostMessages ?? {}).slice(0, 15)) lines.push(`- ${n}: ${key}`);
  lines.push('');
  if (s.topology) lines.push(`Failures not counted as lost, by reason: ${JSON.stringify(s.traffic.churnReasons)}. The network (live nodes, direct links) was split in ${s.topology.split} of ${s.topology.polls} polls (every 5 s); most nodes outside the largest part at once: ${s.topology.maxOutside}; by minute (most parts / most nodes outside): ${s.topology.byMinute.map((m) => `${m.maxComponents}/${m.maxOutside}`).join(', ')}.`, '');
  lines.push('| phase | to | requests | streams | fan-out targets |', '|---|---|---:|---:|---:|');
  for (const phase of ['warm-up', 'attack']) {
    for (const who of ['victims', 'others']) {
      const r = s.traffic.successByPhase[phase][who];
      const c = s.traffic.byPhase[phase][who];
      const cell = (k) => `${r[k] ?? '-'} (${c[k].ok}/${c[k].ok + c[k].lost})`;
      lines.push(`| ${phase} | ${who} | ${cell('requests')} | ${cell('streams')} | ${cell('fanoutTargets')} |`);
    }
  }
  lines.push('', `Requests to the attacked nodes per second: ${s.traffic.victimRequestsPerSecond['warm-up']} before the attack, ${s.traffic.victimRequestsPerSecond.attack} during. Request latency p50/p99: ${s.traffic.latency['warm-up'].p50Ms}/${s.traffic.latency['warm-up'].p99Ms} ms before, ${s.traffic.latency.attack.p50Ms}/${s.traffic.latency.attack.p99Ms} ms during. Streams that crossed a relay: ${s.traffic.relayedStreams}. Calls that had not settled ${STEP_LIMIT_MS / 1000} s after they began (each has a 5 s deadline): ${JSON.stringify(s.traffic.hungSteps)}.`, '');
  lines.push('## Watchdog', '', `Closing connections stopped after 16 packets (quiche 0.18's endless close after a Handshake PTO, the 23:34 hang; limits.quicClosingSendsCut): ${s.traffic.closingSendsCut ?? '-'}.`, '', s.hangs?.length ? 'Workers that did not answer a ping for 20 s (seconds of traffic; CPU of the process over 3 s while its own watchdog paused it now and then; its JS stack, threads and pending requests in the file named):' : 'No worker missed a ping for 20 s (pinged every 5 s).', '');
  for (const h of s.hangs ?? []) lines.push(`- worker ${h.worker} at ${h.atSeconds} s: CPU ${h.cpuPercent}%, RSS ${h.rssMiB} MiB; ${h.top}; ${h.recovered ? 'recovered' : 'killed'} (${h.file})`);
  if (s.hangs?.length) lines.push('');
  lines.push('## Attacker', '', '```', JSON.stringify(s.attacker), '```', '');
  lines.push('## Limits that tripped at the attacked nodes', '');
  for (const v of s.victims) {
    const tripped = Object.entries(v.limits).filter(([, n]) => n > 0);
    lines.push(`- ${v.id.slice(0, 12)}…: ${tripped.map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}; datagrams dropped ${JSON.stringify(Object.fromEntries(Object.entries(v.datagramsDropped ?? {}).filter(([, n]) => n > 0)))}`);
  }
  return lines.join('\n') + '\n';
}
