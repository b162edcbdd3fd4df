// The bootstrap keeper in virtual time: its backoff, and 2,000 leaves whose hub restarts.
import t from 'tap';
import { PnetError } from '../src/errors.js';
import { BootstrapKeeper, DEFAULT_REDIAL, redialDelay, redialSchedule } from '../src/node/bootstrap.js';
import type { KeeperIo, RedialSchedule } from '../src/node/bootstrap.js';
import type { BootstrapEvent, NodeId } from '../src/index.js';

/** A virtual clock: timers fire in time order, each followed by the promise continuations it woke. */
class Clock {
  now = 0;
  private timers: Array<{ at: number; seq: number; fn: () => void }> = [];
  private seq = 0;

  setTimer = (fn: () => void, ms: number): unknown => {
    const timer = { at: this.now + ms, seq: this.seq++, fn };
    this.timers.push(timer);
    return timer;
  };

  clearTimer = (handle: unknown): void => {
    this.timers = this.timers.filter((timer) => timer !== handle);
  };

  /** Runs every timer due by `until` (virtual ms). */
  async run(until: number): Promise<void> {
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers[0];
      if (next === undefined || next.at > until) break;
      this.timers.shift();
      this.now = next.at;
      next.fn();
      // Let the continuations the timer woke (a dial's outcome) run at this virtual instant.
      for (let i = 0; i < 4; i++) await Promise.resolve();
    }
    this.now = until;
  }

  /** A promise settled by this clock after `ms`. */
  after(ms: number, settle: () => NodeId | Error): Promise<NodeId> {
    return new Promise((resolve, reject) =>
      this.setTimer(() => {
        const outcome = settle();
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      }, ms),
    );
  }
}

const HUB = 'hub' as NodeId;

t.test('the schedule: a drop spreads over the window; failures double from min to the cap, in the upper half of each', async (t) => {
  const s: RedialSchedule = { minDelayMs: 500, maxDelayMs: 10_000, spreadMs: 3000 };
  t.equal(redialDelay(s, 0, () => 0), 0);
  t.equal(redialDelay(s, 0, () => 0.999), 2997);
  t.equal(redialDelay(s, 1, () => 1), 500);
  t.equal(redialDelay(s, 1, () => 0), 250, 'never below half of the base');
  t.equal(redialDelay(s, 3, () => 1), 2000);
  t.equal(redialDelay(s, 60, () => 1), 10_000, 'capped (and no overflow at many failures)');
  t.equal(redialDelay(s, 60, () => 0), 5000);
  t.same(redialSchedule(undefined), DEFAULT_REDIAL, 'on by default');
  t.equal(redialSchedule(false), undefined, 'false: off');
  t.same(redialSchedule({ minDelayMs: 100, maxDelayMs: 1000 }), { minDelayMs: 100, maxDelayMs: 1000, spreadMs: DEFAULT_REDIAL.spreadMs });
  t.same(redialSchedule({ minDelayMs: 20_000 })?.maxDelayMs, 20_000, 'the default cap grows to a larger min');
  t.throws(() => redialSchedule({ minDelayMs: 0 }), { code: 'ERR_BAD_OPTION' });
  t.throws(() => redialSchedule({ minDelayMs: 1000, maxDelayMs: 500 }), { code: 'ERR_BAD_OPTION' });
  t.throws(() => redialSchedule({ spreadMs: -1 }), { code: 'ERR_BAD_OPTION' });
  t.throws(() => redialSchedule(3 as never), { code: 'ERR_BAD_OPTION' });
});

/** One keeper of one leaf against a scripted peer. */
function leaf(clock: Clock, dial: (address: string) => Promise<NodeId>, connected: () => boolean, ok: boolean) {
  const events: BootstrapEvent[] = [];
  const io: KeeperIo = { dial, connected, setTimer: clock.setTimer, clearTimer: clock.clearTimer, event: (e) => events.push(e), random: Math.random };
  const error = new PnetError('UNREACHABLE', 'down');
  const keeper = new BootstrapKeeper(DEFAULT_REDIAL, io, [ok ? { address: 'hub:1', ok: true, nodeId: HUB } : { address: 'hub:1', ok: false, error }]);
  return { keeper, events };
}

t.test('createNode failed: redialed on the backoff, reported after createNode; reached: a drop redials within the spread', async (t) => {
  const clock = new Clock();
  let up = false;
  let linked = false;
  const dial = (): Promise<NodeId> => clock.after(10, () => (up ? ((linked = true), HUB) : new PnetError('ERR_CONNECTION_REFUSED', 'refused')));
  const { keeper, events } = leaf(clock, dial, () => linked, false);
  await clock.run(0);
  t.match(events[0], { attempt: 1, ok: false }, "createNode's failure reported (deferred), with its retry");
  t.ok((events[0] as { retryMs: number }).retryMs >= DEFAULT_REDIAL.minDelayMs / 2 && (events[0] as { retryMs: number }).retryMs <= DEFAULT_REDIAL.minDelayMs);
  await clock.run(5000);
  // waits of 0.5–1 s then 1–2 s (random jitter): two failures in 5 s whatever the draw, a third only with luck
  t.ok(keeper.stats.redialFailures >= 2, `failed while away (${keeper.stats.redialFailures})`);
  up = true;
  const back = clock.now;
  await clock.run(back + 10_000);
  t.ok(linked, 'connected once the peer is back');
  const connected = events.find((e) => e.ok)!;
  t.match(connected, { ok: true, nodeId: HUB });
  t.same({ ...keeper.stats, redialFailures: 0 }, { addresses: 1, redials: connected.attempt - 1, redialFailures: 0, reconnected: 1 });
  const redials = keeper.stats.redials;
  await clock.run(clock.now + 60_000);
  t.equal(keeper.stats.redials, redials, 'nothing dialed while connected');
  linked = false;
  const dropped = clock.now;
  keeper.peerDown(HUB);
  keeper.peerDown(HUB);
  await clock.run(dropped + DEFAULT_REDIAL.spreadMs + 20);
  t.ok(linked, 'a drop is redialed within the spread window');
  t.equal(keeper.stats.redials, redials + 1, 'once, although told twice');
  keeper.peerDown('other' as NodeId);
  linked = false;
  keeper.peerDown(HUB);
  keeper.close();
  await clock.run(clock.now + 60_000);
  t.notOk(linked, 'closed: no more redials');
});

/**
 * 2,000 leaves of one hub that dies at 0 and returns at `downMs`. Each leaf notices at its idle
 * timeout (5 s after the last keep-alive, which came in the last 1.7 s). While down a dial is
 * refused in 500 ms; once back the hub completes at most `rate` handshakes per second (one queue)
 * and a dial still waiting after 5 s times out: with `admission` (a hub that starts only the
 * handshakes it can finish in time; the QUIC gate has no such limit yet) it never took the hub's
 * time, without it the hub spent its turn on it anyway.
 */
async function restart(downMs: number, rate: number, schedule: RedialSchedule = DEFAULT_REDIAL, admission = true) {
  const clock = new Clock();
  const leaves = 2000;
  const linked = new Array<boolean>(leaves).fill(true);
  let queueFreeAt = 0;
  const arrivals: number[] = [];
  const keepers = Array.from({ length: leaves }, (_, i) => {
    const dial = (): Promise<NodeId> => {
      if (clock.now < downMs) return clock.after(500, () => new PnetError('ERR_CONNECTION_REFUSED', 'refused'));
      arrivals.push(clock.now);
      const start = Math.max(clock.now, queueFreeAt);
      if (start - clock.now > 5000) {
        // Without admission the hub still does the crypto of a handshake that will time out: its turn is spent.
        if (!admission) queueFreeAt = start + 1000 / rate;
        return clock.after(5000, () => new PnetError('ERR_CONNECT_TIMEOUT', 'timeout'));
      }
      queueFreeAt = start + 1000 / rate;
      return clock.after(queueFreeAt - clock.now, () => ((linked[i] = true), HUB));
    };
    const io: KeeperIo = { dial, connected: () => linked[i]!, setTimer: clock.setTimer, clearTimer: clock.clearTimer, event: () => undefined };
    return new BootstrapKeeper(schedule, io, [{ address: 'hub:1', ok: true, nodeId: HUB }]);
  });
  keepers.forEach((keeper, i) =>
    clock.setTimer(() => {
      linked[i] = false;
      keeper.peerDown(HUB);
    }, 3300 + Math.random() * 1700),
  );
  let allBackAt: number | undefined;
  for (let at = 100; at <= downMs + 60_000 && allBackAt === undefined; at += 100) {
    await clock.run(at);
    // Every leaf has noticed by 5 s; none can be back before the hub is.
    if (at > Math.max(5000, downMs) && linked.every(Boolean)) allBackAt = at;
  }
  // Dials reaching the hub per second once it is back: the storm.
  const perSecond = new Map<number, number>();
  for (const at of arrivals) perSecond.set(Math.floor(at / 1000), (perSecond.get(Math.floor(at / 1000)) ?? 0) + 1);
  const peak = Math.max(...perSecond.values());
  const failures = keepers.reduce((n, k) => n + k.stats.redialFailures, 0);
  return { backMs: allBackAt === undefined ? undefined : allBackAt - downMs, peak, failures };
}

t.test('2,000 leaves, hub back at once (before they notice): spread, all back well within 30 s', async (t) => {
  const r = await restart(1000, 300);
  t.ok(r.backMs !== undefined && r.backMs <= 30_000, `all back ${r.backMs} ms after the hub's return`);
  // Noticing spreads the leaves over 1.7 s, the window over 5 s more: at most ~2,000/5 per second.
  t.ok(r.peak <= 500, `at most ${r.peak} dials reach the hub in one second (of 2,000 leaves); ${r.failures} failed`);
});

t.test('2,000 leaves, hub away 20 s (at the cap when it returns), 200 handshakes/s: all back within 30 s', async (t) => {
  const r = await restart(20_000, 200);
  t.ok(r.backMs !== undefined && r.backMs <= 30_000, `all back ${r.backMs} ms after the hub's return`);
  t.ok(r.peak <= 500, `at most ${r.peak} dials reach the hub in one second; ${r.failures} failed`);
});

t.test('without the spread and the cap (the old daemon schedule: 250 ms to 1.5 s) the storm is much larger', async (t) => {
  const herd = await restart(1000, 300, { minDelayMs: 250, maxDelayMs: 1500, spreadMs: 0 });
  const spread = await restart(1000, 300);
  t.comment(`old: peak ${herd.peak}/s, ${herd.failures} failed, back in ${herd.backMs} ms; new: peak ${spread.peak}/s, ${spread.failures} failed, back in ${spread.backMs} ms`);
  t.ok(herd.peak > 1.4 * spread.peak, `peak dials per second: ${herd.peak} at once vs ${spread.peak} spread`);
});

t.test('a hub that completes only 100 handshakes/s (a loaded machine): all back within 30 s if it admitted only what it finishes; without that the queue collapses', async (t) => {
  const admitted = await restart(2700, 100);
  t.ok(admitted.backMs !== undefined && admitted.backMs <= 30_000, `admission: all back ${admitted.backMs} ms after the hub's return (${admitted.failures} failed dials, turned away at its door)`);
  const wasted = await restart(2700, 100, DEFAULT_REDIAL, false);
  t.comment(`without admission: ${wasted.backMs === undefined ? 'not all back in 60 s' : `back in ${wasted.backMs} ms`}, ${wasted.failures} failed dials`);
  t.ok(wasted.backMs === undefined || wasted.backMs > admitted.backMs! + 10_000, 'handshakes that time out after the hub did their work keep it from ever catching up');
});
