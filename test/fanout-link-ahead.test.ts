// Fan-out links opened ahead (issue 14, the first exec after a 2,000-leaf join): a router opens its
// link to each next hop as the routes name it, at a bounded pace, so the first fan-out finds its
// links open. The scheduler on in-memory streams (pace, REJECT), then real nodes on loopback: the
// first fan-out uses the links opened ahead, a neighbour that REJECTs them still gets its legs,
// a restarted neighbour's link is reopened. The scheduler runs in virtual time; the real nodes'
// asserts are on counters, never on time.
import t from 'tap';
import type { Test } from 'tap';
import { createNode } from '../src/index.js';
import type { NodeId, NodeOptions, PnetNode } from '../src/index.js';
import { ChannelRejectedError } from '../src/channel/index.js';
import { Identity } from '../src/identity/index.js';
import { nodeServices } from '../src/node/node.js';
import { LinksAhead, linksAheadSettings } from '../src/node/fanout-link-ahead.js';
import type { LinksAheadClock } from '../src/node/fanout-link-ahead.js';
import { LINK_KEY, LINK_VERSION, LegLinks } from '../src/node/fanout-link.js';
import type { RouteChange } from '../src/routing/index.js';
import { collect, fakeOpener, keep, legBytes, linkCounters, sleep, until } from './fixtures/fanout-link.js';

t.setTimeout(120_000);

const hops = (n: number) => Array.from({ length: n }, (_, i) => `hop${i}` as unknown as NodeId);
const named = (ids: NodeId[]): RouteChange[] => ids.map((id) => ({ dest: id, nextHop: id, previousNextHop: undefined }));

/** Virtual time for the scheduler: its timers run in order as time is advanced, promises and streams settled after each. */
function virtualClock(): { clock: LinksAheadClock; advance: (ms: number) => Promise<void> } {
  let time = 0;
  const timers = new Set<{ at: number; fn: () => void }>();
  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const clock: LinksAheadClock = {
    now: () => time,
    setTimer: (fn, ms) => {
      const timer = { at: time + ms, fn };
      timers.add(timer);
      return timer;
    },
    clearTimer: (handle) => void timers.delete(handle as { at: number; fn: () => void }),
  };
  const advance = async (ms: number): Promise<void> => {
    const end = time + ms;
    await settle();
    for (;;) {
      const next = [...timers].sort((a, b) => a.at - b.at)[0];
      if (next === undefined || next.at > end) break;
      timers.delete(next);
      time = next.at;
      next.fn();
      await settle();
    }
    time = end;
  };
  return { clock, advance };
}

const ROUTER = { role: () => 'router' as const, isNeighbour: () => true };

t.test('scheduler: links open at the pace, at most a second of it (20) awaiting their ACCEPT; the first leg goes on the open link', async (t) => {
  let accept!: () => void;
  const accepted = new Promise<void>((resolve) => (accept = resolve));
  const { opens, open } = fakeOpener(async (fake) => {
    await accepted;
    fake.stream.remoteMetadata = { [LINK_KEY]: LINK_VERSION };
  });
  const links = new LegLinks(open, () => true);
  const { clock, advance } = virtualClock();
  const ahead = new LinksAhead(links, ROUTER, { linksAheadPerSecond: 20 }, clock);
  t.teardown(() => links.close());
  const ids = hops(50);
  ahead.routesChanged(named(ids));
  await advance(500);
  t.equal(opens.length, 10, 'two per 100 ms tick (20 a second)');
  await advance(800);
  t.equal(opens.length, 20, '20 opened, none past that while unanswered (three more ticks)');
  t.ok(opens.every((o) => o.how === true), 'each as a version 2 link, no leg on it');
  accept();
  await advance(1500);
  t.equal(links.counters.ahead, 50, 'the other 30 followed once the first were answered, at the pace (15 ticks)');
  t.equal(ahead.waiting, 0);
  const leg = keep();
  links.send(ids[7]!, legBytes(0xaa), 1 << 20, leg.sink);
  await advance(0);
  t.equal(opens.length, 50, 'the leg opened nothing');
  t.equal(links.counters.aheadUsed, 1, 'it went on the link opened ahead');
  t.equal(opens.find((o) => o.hop === ids[7])!.written.length, 1, 'as one LEG frame');
  ahead.routesChanged(named(ids));
  await advance(1000);
  t.equal(opens.length, 50, 'route changes naming hops with links open nothing more');
});

t.test('scheduler: a REJECTed link ahead is not asked again for 10 minutes; the leg then goes v1; a leaf opens nothing; bad options refused', async (t) => {
  const { opens, open } = fakeOpener(async () => {
    throw new ChannelRejectedError('OVERLOADED', 'two links here already');
  });
  const links = new LegLinks(open, () => true);
  const { clock, advance } = virtualClock();
  const ahead = new LinksAhead(links, ROUTER, {}, clock);
  t.teardown(() => links.close());
  ahead.routesChanged(named(hops(1)));
  await advance(100);
  t.equal(links.counters.rejected, 1, 'the REJECT is counted');
  ahead.routesChanged(named(hops(1)));
  await advance(9 * 60_000);
  t.equal(opens.length, 1, 'not asked ahead again within 10 minutes');
  const leg = keep();
  links.send(hops(1)[0]!, legBytes(0xbb), 1 << 20, leg.sink);
  await until(() => links.counters.v1Legs === 1);
  t.equal(links.counters.v1Legs, 1, 'the leg asked for a link, was REJECTed, and went as a v1 leg');
  t.equal(opens.at(-1)!.how, false);
  // The v1 answer (no links) renewed the 10 minutes.
  await advance(10 * 60_000 + 1);
  ahead.routesChanged(named(hops(1)));
  await advance(100);
  t.equal(opens.at(-1)!.how, true, 'asked ahead again 10 minutes after the last refusal');

  const leaf = fakeOpener();
  const leafLinks = new LegLinks(leaf.open, () => true);
  new LinksAhead(leafLinks, { role: () => 'leaf', isNeighbour: () => true }, {}, clock).routesChanged(named(hops(3)));
  await advance(1000);
  t.equal(leaf.opens.length, 0, "a leaf (default 'routers') opens no link ahead");
  leafLinks.close();
  t.throws(() => linksAheadSettings({ linksAhead: 'sometimes' as never }), { code: 'ERR_BAD_OPTION' });
  t.throws(() => linksAheadSettings({ linksAheadPerSecond: 0 }), { code: 'ERR_BAD_OPTION' });
});

t.test("scheduler: an 'auto' node's next hops named before it became a router get their links once it is one", async (t) => {
  const { opens, open } = fakeOpener(async (fake) => void (fake.stream.remoteMetadata = { [LINK_KEY]: LINK_VERSION }));
  const links = new LegLinks(open, () => true);
  t.teardown(() => links.close());
  let role: 'leaf' | 'router' = 'leaf';
  const { clock, advance } = virtualClock();
  const ahead = new LinksAhead(links, { role: () => role, isNeighbour: () => true }, {}, clock);
  const ids = hops(3);
  ahead.routesChanged(named(ids.slice(0, 2)));
  await advance(1000);
  t.equal(opens.length, 0, 'nothing while a leaf');
  role = 'router';
  ahead.routesChanged(named(ids.slice(2)));
  await advance(100);
  t.equal(links.counters.ahead, 3);
  t.same(opens.map((o) => o.hop).sort(), [...ids].sort(), 'all three once a router, in one tick (the first two were kept)');
});

// ---- real nodes ----------------------------------------------------------------

const QUIC: NodeOptions = { quic: { idleTimeoutMs: 10_000 } };

async function hubWithLeaves(t: Test, count: number, leafOptions: (i: number) => NodeOptions = () => ({})): Promise<{ hub: PnetNode; leaves: PnetNode[] }> {
  const hub = await createNode({ ...QUIC, routing: { role: 'router' } });
  const leaves = await Promise.all(Array.from({ length: count }, (_, i) => createNode({ ...QUIC, routing: { role: 'leaf' }, ...leafOptions(i) })));
  t.teardown(() => Promise.all([hub, ...leaves].map((node) => node.close({ timeoutMs: 100 }))).then(() => undefined));
  for (const node of [hub, ...leaves]) node.handleRequest('job', (request) => `${node.id}:${request.toString()}`);
  return { hub, leaves };
}

async function attach(hub: PnetNode, leaves: PnetNode[]): Promise<void> {
  for (const leaf of leaves) await leaf.dial(hub.address);
  await until(() => hub.routes().length >= leaves.length && leaves.every((leaf) => leaf.routes().length >= 1), 30_000);
}

t.test('real nodes: a router opens a link to each leaf ahead; the first fan-out uses them and opens none', async (t) => {
  const { hub, leaves } = await hubWithLeaves(t, 3);
  await attach(hub, leaves);
  await until(() => linkCounters(hub).ahead === 3, 30_000);
  t.equal(linkCounters(hub).ahead, 3, 'one link ahead per leaf');
  t.same(leaves.map((leaf) => linkCounters(leaf).ahead), [0, 0, 0], 'leaves open none');
  const before = linkCounters(hub);
  const results = await collect(hub.fanout(leaves.map((leaf) => leaf.id), 'job', 'first', { deadlineMs: 10_000 }));
  t.same(results.map((r) => r.ok), [true, true, true], 'every leaf answered');
  const after = linkCounters(hub);
  t.equal(after.aheadUsed, 3, 'each leg went on a link opened ahead');
  t.equal(after.opened, before.opened, 'the fan-out opened no link');
  t.equal(after.leads, 0, 'no link opened with a lead leg');
});

t.test('real nodes: a leaf that REJECTs links still gets its legs (v1)', async (t) => {
  const { hub, leaves } = await hubWithLeaves(t, 2);
  // The second leaf's link limit is full for the hub already: every link OPEN from the hub is REJECTed OVERLOADED.
  (nodeServices(leaves[1]!).fanouts as unknown as { linksServed: Map<NodeId, number> }).linksServed.set(hub.id, 2);
  await attach(hub, leaves);
  await until(() => linkCounters(hub).ahead === 1 && linkCounters(hub).rejected === 1, 30_000);
  t.same([linkCounters(hub).ahead, linkCounters(hub).rejected], [1, 1], 'one link ahead, one REJECTed');
  const results = await collect(hub.fanout(leaves.map((leaf) => leaf.id), 'job', 'x', { deadlineMs: 10_000 }));
  t.same(results.map((r) => r.ok), [true, true], 'both answered');
  t.equal(linkCounters(hub).v1Legs, 1, 'the rejecting leaf got a v1 leg');
  t.equal(linkCounters(hub).aheadUsed, 1, 'the other its link ahead');
});

t.test("real nodes: a restarted leaf's link is reopened ahead and used", async (t) => {
  const identity = await Identity.generate();
  const { hub, leaves } = await hubWithLeaves(t, 1, () => ({ identity }));
  await attach(hub, leaves);
  await until(() => linkCounters(hub).ahead === 1, 30_000);
  t.equal(linkCounters(hub).ahead, 1);
  await leaves[0]!.close({ timeoutMs: 100 });
  await until(() => hub.routes().length === 0, 30_000);
  const again = await createNode({ ...QUIC, routing: { role: 'leaf' }, identity });
  t.teardown(() => again.close({ timeoutMs: 100 }));
  again.handleRequest('job', (request) => `again:${request.toString()}`);
  await attach(hub, [again]);
  await until(() => linkCounters(hub).ahead === 2, 30_000);
  t.equal(linkCounters(hub).ahead, 2, 'a second link ahead, to the leaf back on a new connection');
  const opened = linkCounters(hub).opened;
  const results = await collect(hub.fanout([again.id], 'job', 'back', { deadlineMs: 10_000 }));
  t.equal(results[0]?.ok === true ? results[0].data.toString() : 'failed', 'again:back', 'the restarted leaf answered');
  t.equal(linkCounters(hub).opened, opened, 'on the reopened link');
  t.equal(linkCounters(hub).aheadUsed, 1);
});
