// Issue 15 item 8: per-peer fairness. A peer with 64 requests in flight used to cut a
// one-request peer to 3-7% of the rate it had alone. The node now takes up each peer's new
// streams a turn of the event loop at a time, and while another peer is active a busy peer's
// waiting streams only after three other peers' starts, 1 ms of idle event loop or 20 ms
// (src/node/turns.ts; the rest wait unread in flow control, before negotiation). Each peer is its
// own process, as on separate hosts, and the busy one is paused and resumed, so "alone" and
// "beside" windows alternate and load from elsewhere on the machine falls on both. Asserted: the
// light peer's rate beside the busy peer over its rate alone, median over the rounds, at least
// half (medians 0.57-1.02 over 5 windows and 0.71-0.88 over 7 at load 2-10 with the turns,
// 0.19-0.23 without: docs/LIMITS.md; bench/fairness.mjs compares the rules). Its share of the replies while both ran is commented,
// not asserted: ~70%, less where the server's idle time lets the busy peer's waiting streams go.
import t from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createNode } from '../src/index.js';
import type { NodeId, PnetNode } from '../src/index.js';
import type { Test } from 'tap';
import { nodeServices } from '../src/node/node.js';
import { BACKLOG_IDLE_MS, OTHERS_PER_BACKLOG_START, PeerTurns } from '../src/node/turns.js';
import { PassThrough } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { childEnv } from './fixtures/child-env.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const WINDOW_MS = 1_000;
const ROUNDS = 7;

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** A peer in its own process keeping `inFlight` requests to `server` on 'svc' going while told to run (test/fixtures/heavy-peer.mts). */
function spawnPeer(t: Test, server: PnetNode, inFlight: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/heavy-peer.mts', import.meta.url).pathname], {
    env: childEnv({ TARGET: server.address, TARGET_ID: server.id, IN_FLIGHT: String(inFlight), MAX_MS: '90000' }),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    next: async (): Promise<Record<string, unknown>> => JSON.parse(String((await lines.next()).value)) as Record<string, unknown>,
    say: (line: 'run' | 'pause' | 'exit'): void => void child.stdin!.write(line + '\n'),
  };
}

t.test('a one-request peer keeps half its rate beside a peer with 64 in flight (each its own process)', async (t) => {
  const server = await createNode({ listen: '127.0.0.1:0', h2: false });
  t.teardown(() => server.close({ timeoutMs: 200 }));
  const replies = new Map<string, number>();
  server.handleRequest('svc', (request, info) => {
    replies.set(info.remoteNodeId, (replies.get(info.remoteNodeId) ?? 0) + 1);
    return request;
  });
  const heavy = spawnPeer(t, server, 64);
  const light = spawnPeer(t, server, 1);
  const { id: heavyId } = await heavy.next();
  const { id: lightId } = await light.next();
  t.ok(typeof heavyId === 'string' && typeof lightId === 'string', 'both peers are connected');
  /** The light peer's rate over a window (its own count and clock, from its first request to its last reply). */
  const lightRate = async (): Promise<number> => {
    light.say('run');
    await light.next();
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    light.say('pause');
    const { window, ms } = (await light.next()) as { window: number; ms: number };
    return window / (ms / 1000);
  };
  for (let i = 0; i < 2; i++) await lightRate(); // warm-up (the first windows' rates still climb)
  /** The process's RSS after a GC and the finalizers it queued. */
  const settledRss = async (): Promise<number> => {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    return process.memoryUsage.rss();
  };
  const rssBefore = await settledRss();
  let rssPeak = rssBefore;
  const ratios: number[] = [];
  const shares: number[] = [];
  const figures: string[] = [];
  // Why the heavy peer's waiting streams were taken up, per window (node.stats().streamTurns).
  const released = (): Record<string, number> => server.stats().streamTurns.released;
  for (let round = 0; round < ROUNDS; round++) {
    const alone = await lightRate();
    heavy.say('run');
    t.match(await heavy.next(), { running: true });
    replies.clear();
    const before = released();
    const beside = await lightRate();
    const after = released();
    rssPeak = Math.max(rssPeak, process.memoryUsage.rss());
    const why = Object.keys(after).map((k) => `${k} ${after[k]! - before[k]!}`).join(' ');
    const [l, h] = [replies.get(lightId as string) ?? 0, replies.get(heavyId as string) ?? 0];
    heavy.say('pause');
    await heavy.next();
    ratios.push(beside / alone);
    shares.push(l / (l + h));
    figures.push(`${alone.toFixed(0)}/${beside.toFixed(0)} (${((l / (l + h)) * 100).toFixed(0)}%; released: ${why})`);
  }
  heavy.say('exit');
  light.say('exit');
  const ratio = median(ratios);
  const share = median(shares);
  t.comment(`light alone/beside 64 in flight, per second (its share of the replies): ${figures.join(', ')}; median ratio ${(ratio * 100).toFixed(0)}%, share ${(share * 100).toFixed(0)}%`);
  // The goal. Medians of 7: 0.71-0.88 at load 2-10, in CI too; with the turns off (medians of 5) 0.19-0.23.
  t.ok(ratio >= 0.5, `the light peer kept ${(ratio * 100).toFixed(0)}% of its rate (median of ${ROUNDS})`);
  // The busy peer's waiting streams are held unread in flow control: a stream each, not their bytes. What the rounds leave
  // behind, after a GC: measured -68 to +10 MiB (peaks beside the busy peer up to +132 MiB: garbage not yet collected).
  const retainedMiB = ((await settledRss()) - rssBefore) / 2 ** 20;
  t.ok(retainedMiB < 64, `the server's process kept ${retainedMiB.toFixed(0)} MiB after the rounds (peak ${((rssPeak - rssBefore) / 2 ** 20).toFixed(0)} MiB over its RSS before; bound 64)`);
  t.ok(server.stats().limits.streamPeerTurn > 0, "the heavy peer's extra streams waited for their turns, counted");
  t.equal(nodeServices(server).streams.turnWaits, server.stats().limits.streamPeerTurn);
  const turnStats = server.stats().streamTurns;
  t.equal(turnStats.waited, server.stats().limits.streamPeerTurn, 'stats().streamTurns counts the same waits...');
  const taken = Object.values(turnStats.released).reduce((a, b) => a + b, 0);
  // A stream still waiting, or closed while waiting, is not released.
  t.ok(taken > 0 && taken <= turnStats.waited, `...and why ${taken} of them were taken up (${JSON.stringify(turnStats.released)})`);
});

t.test('PeerTurns: while another peer is active, a waiting stream at least two turns apart and after three other starts, in arrival order; a stream that closes while waiting leaves the queue; a peer alone is not paced', async (t) => {
  // No idle time, maxWait or 'alone' within the test (a loaded machine's pauses): only other peers' starts release a waiting stream.
  const startsOnly = { idle: (): number => 0, maxWait: 60_000, activeFor: 60_000 };
  const turns = new PeerTurns(1, { ...startsOnly, othersPerStart: 1 }); // one other start per waiting stream: the sequence is shorter
  const a = 'a' as NodeId;
  const b = 'b' as NodeId;
  const started: string[] = [];
  const nextTurn = (): Promise<unknown> => new Promise((resolve) => setImmediate(resolve));
  const take = (queue: PeerTurns, peer: NodeId, name: string, stream = new PassThrough()): true | Promise<boolean> => {
    const turn = queue.acquire(peer, stream);
    if (turn === true) started.push(name);
    else void turn.then((taken) => taken && started.push(name));
    return turn;
  };
  t.equal(take(turns, b, 'b0'), true, 'another peer is active');
  const streams = Array.from({ length: 4 }, () => new PassThrough());
  const results = streams.map((stream, i) => take(turns, a, `a${i}`, stream));
  t.equal(results[0], true, "a peer's first stream is taken up at once");
  t.equal(take(turns, b, 'b1') === true, false, "the other peer's second waits for a later turn too");
  streams[2]!.destroy();
  await nextTurn();
  t.same(started, ['b0', 'a0'], 'not in the next turn');
  await nextTurn();
  t.same(started, ['b0', 'a0', 'b1'], "two turns on, b's waiting one (a's started after b's last); a waits for another peer's start");
  await nextTurn();
  t.same(started, ['b0', 'a0', 'b1', 'a1'], 'a turn later, a: b started since its last');
  await nextTurn();
  t.equal(take(turns, b, 'b2'), true, "b's stream with none of its own waiting: at once");
  await nextTurn();
  t.same(started, ['b0', 'a0', 'b1', 'a1', 'b2'], "the turn b2 brought: a is due (b started since its last) but one turn after its last: turns are not spun while it waits, so this was a's first since");
  await nextTurn();
  t.same(started, ['b0', 'a0', 'b1', 'a1', 'b2', 'a3'], 'a next turn, a; the closed one was skipped');
  t.equal(await results[2], false);
  t.equal(turns.waited, 4);
  t.same(turns.released, { others: 3, idle: 0, maxWait: 0, alone: 0 }, 'each taken up after another peer\'s start, counted');

  started.length = 0;
  const byDefault = new PeerTurns(1, startsOnly);
  take(byDefault, b, 'b0');
  take(byDefault, a, 'a0');
  take(byDefault, a, 'a1');
  for (const name of ['b1', 'b2']) {
    await nextTurn();
    take(byDefault, b, name);
  }
  await nextTurn();
  t.same(started, ['b0', 'a0', 'b1', 'b2'], `by default (${OTHERS_PER_BACKLOG_START}) two other starts are not enough...`);
  take(byDefault, b, 'b3');
  await nextTurn();
  t.same(started, ['b0', 'a0', 'b1', 'b2', 'b3', 'a1'], '...three are');
});

t.test('PeerTurns: beside an idle peer a waiting stream goes after maxWait ms, and waiting spins no turns; after activeFor ms with no other start the peer is alone', async (t) => {
  const a = 'a' as NodeId;
  const b = 'b' as NodeId;
  // PeerTurns' timer does not hold a process open (a waiting stream's connection does): this test holds it.
  const keepAlive = setInterval(() => undefined, 1_000);
  t.teardown(() => clearInterval(keepAlive));
  let clockReads = 0;
  const clock = (): number => (clockReads++, performance.now());
  const maxWait = 30;
  const turns = new PeerTurns(1, { maxWait, idleWait: 60_000, activeFor: 60_000, now: clock });
  turns.acquire(b, new PassThrough());
  const since = performance.now();
  t.equal(turns.acquire(a, new PassThrough()), true);
  const second = turns.acquire(a, new PassThrough());
  t.not(second, true, 'another peer active: the second waits');
  t.equal(await second, true, 'taken up with no other start...');
  t.ok(performance.now() - since >= maxWait, `...after ${maxWait} ms`);
  t.same(turns.released, { others: 0, idle: 0, maxWait: 1, alone: 0 });
  // Three acquires, then a turn or two and the timer's: a spinning loop would have read the clock once per turn, thousands of times.
  t.ok(clockReads <= 20, `the clock read ${clockReads} times while a stream waited ${maxWait} ms (turns are not spun)`);

  const idling = new PeerTurns(1, { maxWait: 60_000, activeFor: 60_000 });
  idling.acquire(b, new PassThrough());
  idling.acquire(a, new PassThrough());
  t.equal(await idling.acquire(a, new PassThrough()), true, 'with the loop idle (nothing else to do here), a waiting stream is taken up...');
  t.same(idling.released, { others: 0, idle: 1, maxWait: 0, alone: 0 }, `...after ${BACKLOG_IDLE_MS} ms of idle loop`);

  const activeFor = 40;
  const lone = new PeerTurns(1, { maxWait: 60_000, activeFor, idle: () => 0 });
  lone.acquire(b, new PassThrough());
  lone.acquire(a, new PassThrough());
  const rest = Array.from({ length: 3 }, () => lone.acquire(a, new PassThrough()));
  t.same(await Promise.all(rest), [true, true, true], `no other start for ${activeFor} ms: the peer is alone, its backlog taken up`);
  t.same(lone.released, { others: 0, idle: 0, maxWait: 0, alone: 3 });

  const hub = new PeerTurns(1);
  for (let i = 0; i < 2_000; i++) hub.acquire(`p${i}` as NodeId, new PassThrough());
  for (let i = 0; i < 8; i++) hub.acquire(a, new PassThrough());
  t.equal(hub.backloggedPeers, 1, "2,000 peers with one stream each: a turn visits only the busy peer's backlog");

  const alone = new PeerTurns(1);
  t.ok(Array.from({ length: 5 }, () => alone.acquire(a, new PassThrough())).every((turn) => turn === true), 'a peer alone is not paced');
  const oneEach = new PeerTurns(1, { spacing: 1, maxWait: 0 });
  oneEach.acquire(b, new PassThrough());
  oneEach.acquire(a, new PassThrough());
  const next = oneEach.acquire(a, new PassThrough());
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(await Promise.race([next, new Promise((resolve) => setImmediate(() => resolve('waiting')))]), true, 'spacing 1, maxWait 0: one per peer per turn, as the first rule');
});
