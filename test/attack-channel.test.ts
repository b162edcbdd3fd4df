// Issue 15, item 2 (and 9): attackers holding partial OPENs must not lock a good peer out of the
// node's channel negotiations. Real negotiations (openChannel/acceptChannel) over in-memory duplex
// pairs; the good peer's rate is a count of successes out of a fixed number of attempts, with and
// without the attack, in the same test (no wall-clock thresholds). Every refusal is counted.
import t from 'tap';
import { Duplex } from 'node:stream';
import type { NodeId } from '../src/identity/index.js';
import {
  ChannelRegistry,
  DEFAULT_MAX_PENDING,
  DEFAULT_MAX_PENDING_PER_PEER,
  acceptChannel,
  encodeOpen,
  openChannel,
  tryDecodeFrame,
  type AcceptResult,
  type ChannelStream,
  type NegotiationStats,
} from '../src/channel/index.js';

/** Push-based in-memory pair: what one side writes the other reads, in order; end is a FIN. */
function pair(): [Duplex, Duplex] {
  const make = (): Duplex & { peer?: Duplex } =>
    new Duplex({
      allowHalfOpen: true,
      read() {},
      write(this: Duplex & { peer?: Duplex }, chunk: Buffer, _enc, cb) {
        const peer = this.peer!;
        setImmediate(() => peer.destroyed || peer.push(chunk));
        cb();
      },
      final(this: Duplex & { peer?: Duplex }, cb) {
        const peer = this.peer!;
        setImmediate(() => peer.destroyed || peer.push(null));
        cb();
      },
    });
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  return [a, b];
}

const GOOD = 'good-peer' as NodeId;
const ATTEMPTS = 100; // the good peer's OPENs per phase
const BATCH = 10; // of which this many in flight at once

interface Harness {
  readonly registry: ChannelRegistry;
  readonly streams: Duplex[];
  readonly results: Promise<AcceptResult>[];
  /** A stream from `peer` whose acceptor side runs acceptChannel with the node's defaults. */
  connect(peer: NodeId): Duplex;
  close(): Promise<void>;
}

function harness(): Harness {
  const registry = new ChannelRegistry();
  const serve = (ch: ChannelStream): void => {
    ch.stream.resume();
    ch.stream.end('ok');
  };
  registry.register('svc', serve);
  // an async authorise hook that answers the good peer at once and keeps everyone else waiting
  registry.register('gate', serve, { authorise: (info) => (info.remoteNodeId === GOOD ? Promise.resolve(true) : new Promise<boolean>(() => undefined)) });
  const streams: Duplex[] = [];
  const results: Promise<AcceptResult>[] = [];
  return {
    registry,
    streams,
    results,
    connect(peer) {
      const [opener, acceptor] = pair();
      streams.push(opener, acceptor);
      results.push(acceptChannel(acceptor, registry, peer));
      return opener;
    },
    async close() {
      for (const s of streams) s.destroy();
      await Promise.all(results);
    },
  };
}

/** The good peer's phase: ATTEMPTS opens, BATCH at a time; how many were accepted. */
async function goodPhase(h: Harness, channel = 'svc'): Promise<number> {
  let ok = 0;
  for (let i = 0; i < ATTEMPTS; i += BATCH) {
    const batch = [];
    for (let j = 0; j < BATCH; j++) {
      const ch = openChannel(h.connect(GOOD), channel);
      ch.stream.end();
      batch.push(ch.accepted.then(() => 1, () => 0));
    }
    for (const r of await Promise.all(batch)) ok += r;
  }
  return ok;
}

/** Partial OPENs: a header promising 16 body bytes and one of them, or just 2 header bytes. */
const PARTIALS = [Buffer.from('a101001000', 'hex'), Buffer.from('a101', 'hex')];

/** `count` streams from `peer`, each holding a partial OPEN (or sending `open`); resolves once they reached the acceptor. */
async function attack(h: Harness, peer: NodeId, count: number, open?: Buffer): Promise<Duplex[]> {
  const held: Duplex[] = [];
  for (let i = 0; i < count; i++) {
    const s = h.connect(peer);
    s.write(open ?? PARTIALS[i % PARTIALS.length]);
    held.push(s);
  }
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  return held;
}

/** `p`, or a rejection after `ms` (a generous guard so a regression fails instead of hanging). */
function within<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, guard]).finally(() => clearTimeout(timer));
}

/** Answers the attacker's streams got, by reject code ('none' while still held). */
function answers(held: Duplex[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of held) {
    const chunk = s.read() as Buffer | null;
    let code = 'none';
    if (chunk !== null) {
      const got = tryDecodeFrame(chunk);
      code = got === 'need-more' ? 'partial' : got.frame.type === 'reject' ? got.frame.code : got.frame.type;
    }
    out[code] = (out[code] ?? 0) + 1;
  }
  return out;
}

function report(t: { comment: (message: string) => void }, label: string, without: number, withAttack: number, stats: NegotiationStats, attempts = ATTEMPTS): void {
  t.comment(`${label}: good peer ${without}/${attempts} without the attack, ${withAttack}/${attempts} with it`);
  t.comment(`${label}: stats ${JSON.stringify(stats)}`);
}

t.test('one attacker key holding partial OPENs on many streams: the good peer keeps opening', async (t) => {
  const h = harness();
  const without = await goodPhase(h);
  const attackers = DEFAULT_MAX_PENDING + 100; // more than the whole node's table (3 connections' worth in the issue)
  const held = await attack(h, 'attacker' as NodeId, attackers);
  t.equal(h.registry.pendingNegotiations, DEFAULT_MAX_PENDING, 'the attacker fills the free table (a burst is allowed)...');
  const withAttack = await goodPhase(h);
  const stats = h.registry.negotiationStats();
  report(t, 'one key', without, withAttack, stats);
  t.equal(without, ATTEMPTS, 'every open succeeds without the attack');
  t.ok(withAttack >= without * 0.5, `good peer keeps >= 50% of its successes (${withAttack} vs ${without})`);
  t.equal(stats.rejectedNodeLimit, attackers - DEFAULT_MAX_PENDING, '...and its OPENs beyond the node cap are refused and counted');
  t.ok(stats.evicted >= 1, '...and it loses its oldest ones to the good peer (counted)');
  t.equal(stats.accepted, without + withAttack);
  const got = answers(held);
  t.equal(got.OVERLOADED, stats.rejectedNodeLimit + stats.evicted, 'each refusal reached the attacker as OVERLOADED at once');
  await h.close();
  t.equal(h.registry.pendingNegotiations, 0, 'every slot given back');
  t.equal(h.registry.negotiationStats().streamFailures, got.none, 'the held ones ended when their streams closed');
});

t.test('many attacker keys (a Sybil set) fill the node cap: fair eviction lets the good peer in', async (t) => {
  const h = harness();
  const without = await goodPhase(h);
  const keys = 24; // 24 keys x 64 streams = 1,536 > the node cap of 1,024
  const held: Duplex[] = [];
  for (let k = 0; k < keys; k++) held.push(...(await attack(h, `sybil-${k}` as NodeId, 64)));
  t.equal(h.registry.pendingNegotiations, DEFAULT_MAX_PENDING, 'the node cap is full');
  const withAttack = await goodPhase(h);
  const stats = h.registry.negotiationStats();
  report(t, 'sybil', without, withAttack, stats);
  t.equal(without, ATTEMPTS);
  t.ok(withAttack >= without * 0.5, `good peer keeps >= 50% of its successes (${withAttack} vs ${without})`);
  t.ok(stats.evicted > 0, 'attackers were evicted for newcomers');
  t.ok(stats.rejectedNodeLimit > 0, 'attackers at the level share were refused at the node cap');
  t.equal(stats.pendingPeers, keys, 'the cap is shared among the attacker keys');
  t.ok(stats.peakPending <= DEFAULT_MAX_PENDING, 'the node cap held');
  const got = answers(held);
  t.comment(`sybil: attacker streams by answer ${JSON.stringify(got)}`);
  t.equal(got.OVERLOADED, stats.evicted + stats.rejectedNodeLimit + stats.rejectedPeerLimit, 'each refusal reached its attacker as OVERLOADED');
  await h.close();
  t.equal(h.registry.pendingNegotiations, 0);
});

t.test('an attacker renewing its partial OPENs round after round cannot keep the good peer out', async (t) => {
  const h = harness();
  const without = await goodPhase(h);
  let withAttack = 0;
  const rounds = 5;
  const held: Duplex[] = [];
  for (let r = 0; r < rounds; r++) {
    held.push(...(await attack(h, 'renewing' as NodeId, 300)));
    withAttack += await goodPhase(h);
  }
  const stats = h.registry.negotiationStats();
  report(t, 'renewing', without * rounds, withAttack, stats, ATTEMPTS * rounds);
  t.ok(withAttack >= without * rounds * 0.5, `good peer keeps >= 50% (${withAttack} of ${without * rounds})`);
  t.ok(stats.rejectedNodeLimit > 0 && stats.evicted > 0, 'refused at the cap and evicted, both counted');
  t.equal(answers(held).OVERLOADED, stats.rejectedNodeLimit + stats.evicted);
  t.ok(stats.peakPending <= DEFAULT_MAX_PENDING);
  await h.close();
});

t.test('Sybil keys holding complete OPENs in a slow authorise hook: the per-peer share and eviction of hooks', async (t) => {
  const h = harness();
  const without = await goodPhase(h, 'gate');
  const keys = 5; // 5 keys x 300 OPENs, each key's hooks held to its share of 256: more than the node cap together
  const held: Duplex[] = [];
  for (let k = 0; k < keys; k++) held.push(...(await attack(h, `hook-${k}` as NodeId, 300, encodeOpen('gate'))));
  t.equal(h.registry.pendingNegotiations, DEFAULT_MAX_PENDING, 'the node cap is full of hooks');
  const withAttack = await goodPhase(h, 'gate');
  const stats = h.registry.negotiationStats();
  report(t, 'hooks', without, withAttack, stats);
  t.equal(without, ATTEMPTS);
  t.ok(withAttack >= without * 0.5, `good peer keeps >= 50% of its successes (${withAttack} vs ${without})`);
  t.ok(stats.rejectedPeerLimit >= 3 * (300 - DEFAULT_MAX_PENDING_PER_PEER), 'the first keys: their hooks beyond the share refused, counted');
  t.ok(stats.evicted > 0, 'hooks of the heaviest keys evicted for the fifth key and the good peer');
  t.equal(answers(held).OVERLOADED, stats.rejectedPeerLimit + stats.rejectedNodeLimit + stats.evicted, 'each refusal reached its attacker');
  await h.close();
  t.equal(h.registry.pendingNegotiations, 0, 'hooks still running give their slot back when the stream closes');
});

t.test('slowloris: no header within headerTimeoutMs is BAD_FRAME and counted; a header in time waits for its body', async (t) => {
  const registry = new ChannelRegistry();
  registry.register('svc', (ch) => {
    ch.stream.end();
  });
  const [silentA, silentB] = pair();
  const [halfA, halfB] = pair();
  const [headerA, headerB] = pair();
  const options = { headerTimeoutMs: 50, timeoutMs: 60_000 };
  const silent = acceptChannel(silentB, registry, 'slow' as NodeId, options);
  const half = acceptChannel(halfB, registry, 'slow' as NodeId, options);
  const header = acceptChannel(headerB, registry, 'slow' as NodeId, options);
  halfA.write(Buffer.from('a101', 'hex'));
  headerA.write(Buffer.from('a101001000', 'hex'));
  const [r1, r2] = await Promise.all([silent, half]);
  t.equal(!r1.accepted && r1.error.code, 'BAD_FRAME');
  t.match(!r1.accepted && r1.error.message, /no OPEN header within 50 ms/);
  t.equal(!r2.accepted && r2.error.code, 'BAD_FRAME', 'two bytes of header are not a header');
  t.equal(registry.negotiationStats().headerTimeouts, 2);
  t.equal(registry.pendingNegotiations, 1, 'the one with a whole header is still waiting for its body');
  headerA.destroy();
  headerB.destroy();
  const r3 = await header;
  t.equal(!r3.accepted && r3.error.code, 'ERR_STREAM_RESET');
  t.equal(registry.negotiationStats().streamFailures, 1);
  t.equal(registry.negotiationStats().headerTimeouts, 2);
  for (const s of [silentA, silentB, halfA, halfB]) s.destroy();
});

t.test('item 9: the first bytes decide: a1 02 is REJECT VERSION at once, a bad first byte BAD_FRAME at once', async (t) => {
  const registry = new ChannelRegistry();
  registry.register('svc', (ch) => {
    ch.stream.end();
  });
  const cases: Array<[string, string]> = [
    ['a102', 'VERSION'],
    ['a1ff', 'VERSION'],
    ['ff', 'BAD_FRAME'],
    ['a501', 'BAD_FRAME'],
    ['a1', 'none'],
  ];
  const pending: Array<Promise<unknown>> = [];
  for (const [hex, code] of cases) {
    const [a, b] = pair();
    // a deadline far beyond the test's own timeout: only an answer decided on the bytes can come
    const result = acceptChannel(b, registry, 'probe' as NodeId, { timeoutMs: 600_000, headerTimeoutMs: 600_000 });
    a.write(Buffer.from(hex, 'hex'));
    if (code === 'none') {
      await new Promise((resolve) => setTimeout(resolve, 20));
      t.equal(registry.pendingNegotiations, 1, `${hex}: one byte decides nothing yet`);
      a.destroy();
      b.destroy();
      pending.push(result);
      continue;
    }
    const r = await within(result, 20_000, `${hex}: no answer within 20 s`);
    t.equal(!r.accepted && r.error.code, code, `${hex} → ${code}`);
    await new Promise((resolve) => setImmediate(resolve));
    const answer = a.read() as Buffer | null;
    const got = answer === null ? 'need-more' : tryDecodeFrame(answer);
    t.equal(got !== 'need-more' && got.frame.type === 'reject' && got.frame.code, code, `${hex}: the REJECT reached the opener`);
    a.destroy();
  }
  await Promise.all(pending);
  const stats = registry.negotiationStats();
  t.equal(stats.versionRejects, 2);
  t.equal(stats.badFrames, 2);
  t.equal(registry.pendingNegotiations, 0);
});

t.test('the payload behind a split OPEN stays in the stream (partial header reads never over-read)', async (t) => {
  const registry = new ChannelRegistry();
  let body = '';
  registry.register('svc', async (ch) => {
    for await (const c of ch.stream.iterator({ destroyOnReturn: false })) body += String(c);
    ch.stream.end();
  });
  const [a, b] = pair();
  const result = acceptChannel(b, registry, GOOD);
  const open = Buffer.concat([encodeOpen('svc'), Buffer.from('payload')]);
  for (let i = 0; i < open.length; i++) {
    a.write(open.subarray(i, i + 1)); // one byte per turn: the header arrives as 1, 2, 3 bytes
    await new Promise((resolve) => setImmediate(resolve));
  }
  a.end();
  const r = await result;
  t.ok(r.accepted);
  await new Promise((resolve) => b.once('finish', resolve));
  t.equal(body, 'payload');
});
