// Giving glibc malloc's free pages back after connections close (src/transport/quic/malloc-trim.ts,
// issue 15's native drift): the decision, the addon's trim on a fragmented heap, and real QUIC
// transports on 127.0.0.1 whose closes trigger it (or not, with mallocTrimPeriodMs 0).
import t from 'tap';
import type { Test } from 'tap';
import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Identity } from '../src/identity/index.js';
import { QuicTransport } from '../src/transport/index.js';
import { findNativeAddon } from '../src/native-addons.js';
import { mallocTrimmer, nextTrimAt, MALLOC_TRIM_PERIOD_MS } from '../src/transport/quic/malloc-trim.js';
import { childEnv } from './fixtures/child-env.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;
const fixture = new URL('./fixtures/mmap-threshold.mts', import.meta.url).pathname;
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const require = createRequire(import.meta.url);
interface MallocAddon {
  mallocTrim?: () => boolean;
  mallocInfo?: () => { arena: number; uordblks: number; fordblks: number };
}
const found = findNativeAddon('pnet_udp');
const addon = (found === undefined ? {} : require(found.path)) as MallocAddon;
const glibc = typeof addon.mallocTrim === 'function';

t.test('the next trim waits the period, or 100x the last trim when that is longer', async (t) => {
  t.equal(nextTrimAt(-Infinity, 0, MALLOC_TRIM_PERIOD_MS), -Infinity, 'never trimmed: now');
  t.equal(nextTrimAt(1000, 2, 10_000), 11_000, 'a 2 ms trim: the period');
  t.equal(nextTrimAt(1000, 300, 10_000), 31_000, 'a 300 ms trim: 30 s, at most 1% of the loop');
});

t.test('malloc_trim gives back the free pages between live chunks', { skip: glibc ? false : 'not glibc or no UDP addon' }, async (t) => {
  // 64 KiB native buffers (under malloc's mmap threshold), every 16th kept: the freed 15 between
  // cannot go back by the heap's top, only by a trim. 1,600 × 64 KiB = 100 MiB at most.
  const held: Buffer[] = [];
  let all: Buffer[] | undefined = [];
  for (let i = 0; i < 1600; i++) {
    const b = Buffer.allocUnsafeSlow(64 * 1024).fill(i & 0xff);
    all.push(b);
    if (i % 16 === 0) held.push(b);
  }
  all = undefined;
  for (let i = 0; i < 3; i++) gc();
  await delay(50);
  const freeBefore = addon.mallocInfo!().fordblks;
  const before = process.memoryUsage.rss();
  const trims = mallocTrimmer.stats().trims;
  t.ok(mallocTrimmer.trim(), 'the trimmer ran');
  const released = before - process.memoryUsage.rss();
  t.equal(mallocTrimmer.stats().trims, trims + 1, 'counted');
  t.ok(freeBefore > 40 * MiB, `malloc held ${(freeBefore / MiB).toFixed(1)} MiB free`);
  t.ok(released > 20 * MiB, `RSS fell by ${(released / MiB).toFixed(1)} MiB`);
  t.equal(held.length, 100, 'the kept buffers lived through it');
});

/** Dials and closes `count` connections; resolves once both ends have let go of them (a close drains ~5 s). */
async function closeSome(t: Test, mallocTrimPeriodMs: number, count: number): Promise<void> {
  const server = await QuicTransport.listen({ identity: await Identity.generate(), host: '127.0.0.1', port: 0, mallocTrimPeriodMs });
  t.teardown(() => server.close({ timeoutMs: 0 }));
  const client = await QuicTransport.listen({ identity: await Identity.generate(), host: '127.0.0.1', port: 0, mallocTrimPeriodMs });
  t.teardown(() => client.close({ timeoutMs: 0 }));
  for (let i = 0; i < count; i++) {
    const connection = await client.dial(server.address, { expectedNodeId: server.localNodeId });
    await connection.close({ graceful: false });
  }
  for (let i = 0; i < 300 && client.stats().connections + server.stats().connections > 0; i++) await delay(50);
  t.equal(client.stats().connections + server.stats().connections, 0, 'both ends forgot the connections');
}

t.test('closed QUIC connections trim at most once per period', { skip: glibc ? false : 'not glibc or no UDP addon' }, async (t) => {
  const start = mallocTrimmer.stats().trims;
  await closeSome(t, 200, 3);
  // The disposals come within a few ms of each other: one trim armed (a second if they straddle it).
  for (let i = 0; i < 40 && mallocTrimmer.stats().trims === start; i++) await delay(50);
  const after = mallocTrimmer.stats();
  t.ok(after.trims >= start + 1 && after.trims <= start + 2, `trims ${after.trims - start} for 6 closed ends`);
  t.ok(after.maxMs >= 0 && after.totalMs >= after.maxMs, 'time counted');
});

t.test('mallocTrimPeriodMs 0: closes trim nothing', { skip: glibc ? false : 'not glibc or no UDP addon' }, async (t) => {
  // The previous test's closes may have armed a trim up to a period away: let it fire first.
  const armed = (): boolean => (mallocTrimmer as unknown as { timer: unknown }).timer !== undefined;
  for (let i = 0; i < 300 && armed(); i++) await delay(50);
  t.notOk(armed(), 'no trim pending before');
  const start = mallocTrimmer.stats().trims;
  await closeSome(t, 0, 3);
  await delay(300);
  t.notOk(armed(), 'the closes armed no trim');
  t.equal(mallocTrimmer.stats().trims, start, 'no trim');
});

t.test("glibc's mmap threshold is pinned: a 1 MiB chunk stays mmapped after one was freed", { skip: glibc ? false : 'not glibc or no UDP addon' }, async (t) => {
  const run = (periodMs: number): Promise<{ pinned: boolean; mmappedGrowth: number; heapGrowth: number }> =>
    new Promise((resolve, reject) =>
      execFile(process.execPath, ['--expose-gc', '--import', 'tsx', fixture, String(periodMs)], { env: childEnv(), timeout: 60_000 }, (error, out, err) =>
        error ? reject(new Error(`${error.message}\n${err}`)) : resolve(JSON.parse(out) as { pinned: boolean; mmappedGrowth: number; heapGrowth: number }),
      ),
    );
  const pinned = await run(MALLOC_TRIM_PERIOD_MS);
  t.ok(pinned.pinned, 'pinned when the transport started');
  t.ok(pinned.mmappedGrowth >= MiB && pinned.heapGrowth < MiB / 2, `the second chunk is mmapped (${JSON.stringify(pinned)})`);
  const dynamic = await run(0);
  t.notOk(dynamic.pinned, 'mallocTrimPeriodMs 0 leaves malloc alone');
  t.ok(dynamic.heapGrowth >= MiB && dynamic.mmappedGrowth < MiB / 2, `glibc's own rule put it in the heap (${JSON.stringify(dynamic)})`);
});
