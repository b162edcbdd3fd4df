import t from 'tap';
import type { Test } from 'tap';
import type { Duplex } from 'node:stream';
import { createNode } from '../src/index.js';
import type { FanoutResult, NodeId, NodeOptions, PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

t.setTimeout(240_000);

// Issue 15, items 1 and 3, over real QUIC nodes on loopback: an attacker node and a good node,
// both neighbours of a victim. Each attack runs at a bounded size; the good node's fan-outs to
// the victim are counted without and with the attack, in the same test.

const base = { quic: { idleTimeoutMs: 5000 }, routing: { rttSampleMs: 60_000 } };

async function trio(t: Test, victimOptions: Partial<NodeOptions> = {}): Promise<{ good: PnetNode; victim: PnetNode; attacker: PnetNode }> {
  const good = await createNode(base);
  const victim = await createNode({ ...base, ...victimOptions } as NodeOptions);
  const attacker = await createNode(base);
  t.teardown(() => Promise.all([good, victim, attacker].map((node) => node.close({ timeoutMs: 100 }))).then(() => undefined));
  for (const node of [good, victim, attacker]) node.handleRequest('work', (request) => `done:${request.toString()}`);
  await good.dial(victim.address);
  await attacker.dial(victim.address);
  const deadline = Date.now() + 30_000;
  while (![good, attacker].every((node) => node.routes().some((route) => route.nodeId === victim.id)) || victim.routes().length < 2) {
    if (Date.now() > deadline) throw new Error('routes did not converge');
    await sleep(50);
  }
  return { good, victim, attacker };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function collect(results: AsyncIterable<FanoutResult>): Promise<FanoutResult[]> {
  const out: FanoutResult[] = [];
  for await (const result of results) out.push(result);
  return out;
}

/** `count` fan-outs from `from` to `to`, `parallel` at a time: how many came back ok, and the failure codes. */
async function fanouts(from: PnetNode, to: PnetNode, count: number, options: { channel?: string; parallel?: number; deadlineMs?: number } = {}): Promise<{ ok: number; codes: Set<string> }> {
  let ok = 0;
  const codes = new Set<string>();
  const parallel = options.parallel ?? 1;
  for (let i = 0; i < count; i += parallel) {
    const batch = Array.from({ length: Math.min(parallel, count - i) }, (_, k) =>
      collect(from.fanout([to.id], options.channel ?? 'work', `${i + k}`, { deadlineMs: options.deadlineMs ?? 3000 })),
    );
    for (const [result] of await Promise.all(batch)) {
      if (result?.ok) ok++;
      else if (result) codes.add(result.error.code);
    }
  }
  return { ok, codes };
}

type Limits = Record<string, number>;

t.test('item 1: fan-outs that fill the request-id memory do not lock others out', async (t) => {
  // The mechanism of 10,000 × 1 h, at a bounded size: a memory of 400 ids.
  const { good, victim, attacker } = await trio(t, { fanout: { maxRememberedRequests: 400 } as Limits });
  const before = await fanouts(good, victim, 40, { parallel: 4 });
  // Unknown channel (never authorised) with the longest lifetime, then an authorised channel: 500 each, 25 at a time.
  const unknown = await fanouts(attacker, victim, 500, { channel: 'nothing-here', parallel: 25, deadlineMs: 3_600_000 });
  const authorised = await fanouts(attacker, victim, 500, { parallel: 25, deadlineMs: 3_600_000 });
  t.equal(unknown.ok, 0, `the attacker's unknown-channel fan-outs failed (${[...unknown.codes]})`);
  t.ok(authorised.ok >= 400, `the attacker's own authorised fan-outs kept succeeding: ${authorised.ok}/500 (its own ids evict its own)`);
  const during = await fanouts(good, victim, 40, { parallel: 4 });
  t.comment(`good node: ${before.ok}/40 without the attack, ${during.ok}/40 after it (${[...during.codes]})`);
  t.ok(before.ok >= 36, 'the good node succeeds without the attack');
  t.ok(during.ok >= before.ok / 2, `after the attack the good node keeps >= 50%: ${during.ok} vs ${before.ok}`);
  const stats = victim.fanoutStats as unknown as Limits;
  t.ok(stats.rememberedEvictedOwn! >= 1, `${stats.rememberedEvictedOwn} ids evicted within their own origin`);
});

t.test('item 1: a well-behaved node doing back-to-back fan-outs never hits the memory wall', async (t) => {
  const { good, victim } = await trio(t, { fanout: { maxRememberedRequests: 400 } as Limits });
  const run = await fanouts(good, victim, 600, { parallel: 20 });
  t.comment(`${run.ok}/600 back-to-back fan-outs succeeded (${[...run.codes]})`);
  t.ok(run.ok >= 570, 'past the memory size, its own oldest ids make room');
});

/** Opens `count` legs from `attacker` to `victim` that send `prefix` and never finish; resolves once each is open or refused. */
async function hangingLegs(attacker: PnetNode, victim: PnetNode, count: number, write: (stream: Duplex) => void): Promise<Duplex[]> {
  const host = nodeServices(attacker).fanouts.host;
  const legs: Duplex[] = [];
  await Promise.all(
    Array.from({ length: count }, async () => {
      const stream = await host.openLeg(victim.id).catch(() => undefined);
      if (stream === undefined) return;
      stream.on('error', () => undefined);
      write(stream);
      legs.push(stream);
    }),
  );
  return legs;
}

t.test('item 3: 256 legs that never finish do not take every slot', async (t) => {
  const { good, victim, attacker } = await trio(t, { fanout: { legReadTimeoutMs: 60_000 } as Limits });
  const before = await fanouts(good, victim, 30, { parallel: 3 });
  // A leg header that promises a large envelope, then nothing more.
  const header = Buffer.from([1, 0, 8, 0, 0, 0x27, 0x10, 0, 0x10, 0, 0]);
  const legs = await hangingLegs(attacker, victim, 256, (stream) => stream.write(header));
  t.teardown(() => legs.forEach((leg) => leg.destroy()));
  await sleep(500);
  const during = await fanouts(good, victim, 30, { parallel: 3 });
  t.comment(`good node: ${before.ok}/30 without the attack, ${during.ok}/30 with 256 hanging legs (${[...during.codes]})`);
  t.ok(before.ok >= 27, 'the good node succeeds without the attack');
  t.ok(during.ok >= before.ok / 2, `with the attack the good node keeps >= 50%: ${during.ok} vs ${before.ok}`);
  const stats = victim.fanoutStats as unknown as Limits;
  t.ok(stats.legsRefusedPeerLimit! >= 1, `${stats.legsRefusedPeerLimit} of the attacker's legs refused at its share`);
});

t.test('item 3: hanging legs are cut at the read deadline', async (t) => {
  const { victim, attacker } = await trio(t, { fanout: { legReadTimeoutMs: 1000 } as Limits });
  await hangingLegs(attacker, victim, 8, (stream) => stream.write(Buffer.from([1, 0])));
  const deadline = Date.now() + 20_000;
  while ((victim.fanoutStats as unknown as Limits).legReadTimeouts! < 8 && Date.now() < deadline) await sleep(100);
  t.equal((victim.fanoutStats as unknown as Limits).legReadTimeouts, 8, 'every hanging leg was cut');
});

t.test('item 3: 48 legs that buffer 12 MiB each are held to the per-peer share; memory stays bounded', async (t) => {
  const { good, victim, attacker } = await trio(t);
  const before = await fanouts(good, victim, 30, { parallel: 3 });
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  // 48 legs of 12 MiB each (the old reader buffered up to 13.8 MB per leg): 576 MiB if all were kept.
  const chunk = Buffer.alloc(1024 * 1024, 1);
  chunk.set([1, 0, 8, 0, 0, 0x27, 0x10, 0, 0xd0, 0, 0], 0);
  let peak = rssBefore;
  let peakBuffered = 0;
  const victimFanouts = nodeServices(victim).fanouts;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
    peakBuffered = Math.max(peakBuffered, victimFanouts.bufferedLegBytes);
  }, 50);
  t.teardown(() => clearInterval(sampler));
  // One chunk in flight per leg (the attacker's own queue would otherwise be concatenated, in this same process).
  const legs = await hangingLegs(attacker, victim, 48, (stream) => {
    let sent = 0;
    const next = (): void => {
      while (sent < 12 && !stream.destroyed) {
        sent++;
        if (!stream.write(chunk)) return void stream.once('drain', next);
      }
    };
    next();
  });
  t.teardown(() => legs.forEach((leg) => leg.destroy()));
  // Let the bytes flow (the attacker's writes drain or its legs are cut), measuring during the good node's fan-outs.
  const settle = Date.now() + 15_000;
  while (legs.some((leg) => !leg.destroyed && leg.writableLength > 0) && Date.now() < settle) await sleep(100);
  t.comment(`${legs.filter((leg) => leg.destroyed).length}/48 attacker legs destroyed after the flow`);
  const during = await fanouts(good, victim, 30, { parallel: 3 });
  clearInterval(sampler);
  const cuts = victim.fanoutStats as unknown as Limits;
  t.comment(`victim cut ${cuts.legBytesPeerLimit} legs at the per-peer byte share, ${cuts.legReadTimeouts} at the read deadline`);
  const grownMiB = (peak - rssBefore) / 2 ** 20;
  t.comment(`RSS ${(rssBefore / 2 ** 20).toFixed(0)} MiB before, peak ${(peak / 2 ** 20).toFixed(0)} MiB (+${grownMiB.toFixed(0)} MiB); good node ${before.ok}/30 → ${during.ok}/30`);
  // The attacker's 576 MiB are allocated in this same process, so RSS is only a comment here; what the
  // victim holds is its buffered leg bytes, bounded by the node's leg byte budget (64 MiB by default).
  t.ok(peakBuffered <= 64 * 2 ** 20, `the victim buffered at most ${(peakBuffered / 2 ** 20).toFixed(1)} MiB of leg bytes (budget 64 MiB)`);
  t.ok(during.ok >= before.ok / 2, `the good node keeps >= 50%: ${during.ok} vs ${before.ok}`);
  const stats = victim.fanoutStats as unknown as Limits;
  t.ok(stats.legBytesPeerLimit! >= 1, `${stats.legBytesPeerLimit} legs cut at the per-peer byte share`);
});
