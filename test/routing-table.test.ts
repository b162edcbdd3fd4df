import t from 'tap';
import { deepStrictEqual } from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { childEnv } from './fixtures/child-env.js';
import {
  createRoutingTable,
  loadNativeRouting,
  nativeRoutingError,
  routingImplementation,
  MAX_LINK_COST,
  type RoutingTable,
} from '../src/routing/table/index.js';

// Node ids: 32 bytes. id(n) is ordered like n (big-endian in the first two bytes), so tie-breaking
// by id bytes is easy to predict in the unit tests.
function id(n: number): Buffer {
  const b = Buffer.alloc(32, 0x5a);
  b.writeUInt16BE(n, 0);
  return b;
}
const ids = (...ns: number[]) => Buffer.concat(ns.map(id));
const num = (b: Buffer | null | undefined) => (b ? b.readUInt16BE(0) : null);

const impls = ['native', 'ts'] as const;

t.test('the native addon is built and selected here', async (t) => {
  const error = nativeRoutingError();
  t.equal(error, undefined, error ? `addon failed to load: ${error.message}` : 'addon loads');
  t.ok(loadNativeRouting(), 'loadNativeRouting() returns the addon');
  if (process.env['PNET_ROUTING'] === undefined) t.equal(routingImplementation(), 'native', 'the default is native');
  t.equal(createRoutingTable(id(0), { implementation: 'native' }).implementation, 'native');
  t.equal(createRoutingTable(id(0), { implementation: 'ts' }).implementation, 'ts');
});

t.test('without the addon: the twin, one warning; PNET_ROUTING chooses', async (t) => {
  const entry = fileURLToPath(new URL('../src/routing/table/index.ts', import.meta.url));
  const script = [
    `import { createRoutingTable, routingImplementation } from ${JSON.stringify(entry)};`,
    'let a, b;',
    "try { a = createRoutingTable(Buffer.alloc(32, 1)).implementation; } catch (e) { a = 'threw'; }",
    "try { b = createRoutingTable(Buffer.alloc(32, 2)).implementation; } catch (e) { b = 'threw'; }",
    'console.log(JSON.stringify([routingImplementation(), a, b]));',
  ].join('\n');
  const run = (env: Record<string, string>) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      // node-gyp-build looks for the addon under $PNET_PREBUILD when it is set: a missing addon
      env: childEnv({ PNET_ROUTING: '', ...env }),
      timeout: 30_000,
    });
    return { out: JSON.parse(r.stdout.trim() || 'null') as unknown, warnings: r.stderr.split('PNET_ROUTING_TS_FALLBACK').length - 1 };
  };
  t.same(run({ PNET_PREBUILD: '/nonexistent' }), { out: ['ts', 'ts', 'ts'], warnings: 1 }, 'addon missing: twin, one warning for two tables');
  t.same(run({ PNET_PREBUILD: '/nonexistent', PNET_ROUTING: 'ts' }), { out: ['ts', 'ts', 'ts'], warnings: 0 }, 'PNET_ROUTING=ts: twin, silently');
  t.same(run({ PNET_PREBUILD: '/nonexistent', PNET_ROUTING: 'native' }), { out: ['native', 'threw', 'threw'], warnings: 0 }, 'PNET_ROUTING=native: no silent fallback');
  t.same(run({}), { out: ['native', 'native', 'native'], warnings: 0 }, 'addon built: native');
});

for (const impl of impls) {
  t.test(`${impl}: small known graphs`, async (t) => {
    const make = () => createRoutingTable(id(0), { implementation: impl });

    t.test('line 0-1-2-3-4 (links both ways)', async (t) => {
      const r = make();
      for (let i = 0; i < 5; i++) {
        const links = [];
        if (i > 0) links.push({ id: id(i - 1), cost: 1 });
        if (i < 4) links.push({ id: id(i + 1), cost: 1 });
        r.setLinks(id(i), links);
      }
      t.same(r.recompute(), { mode: 'full', changed: 4, freed: 0 });
      for (let i = 1; i < 5; i++) {
        t.equal(num(r.nextHop(id(i))), 1);
        t.equal(r.distance(id(i)), i);
      }
      t.same(r.path(id(4))!.map(num), [0, 1, 2, 3, 4]);
      t.same(r.path(id(0))!.map(num), [0], 'path to self');
      t.equal(num(r.nextHop(id(0))), 0, 'next hop of the local node is itself');
      t.equal(r.distance(id(0)), 0);
      t.same(r.routes().map((x) => [num(x.destination), num(x.nextHop), x.cost, x.hops]), [
        [1, 1, 1, 1],
        [2, 1, 2, 2],
        [3, 1, 3, 3],
        [4, 1, 4, 4],
      ]);
      // cut the line between 2 and 3
      r.setLinks(id(2), [{ id: id(1), cost: 1 }]);
      r.setLinks(id(3), [{ id: id(4), cost: 1 }]);
      const res = r.recompute();
      t.equal(res.changed, 2);
      t.same(r.lastChanges().map((c) => [num(c.destination), num(c.nextHop), c.cost]), [
        [3, null, -1],
        [4, null, -1],
      ]);
      t.equal(r.nextHop(id(4)), null, 'unreachable: null');
      t.equal(r.distance(id(4)), -1, 'unreachable: -1');
      t.equal(r.path(id(4)), null);
      t.equal(r.nextHopHandle(id(4)), -1);
      t.same(r.recompute(), { mode: 'none', changed: 0, freed: 0 }, 'nothing changed: nothing to do');
    });

    t.test('ring of 6: both directions, ties broken by the smaller next-hop id', async (t) => {
      const r = make();
      const n = 6;
      for (let i = 0; i < n; i++) {
        r.setLinks(id(i), [
          { id: id((i + 1) % n), cost: 1 },
          { id: id((i + n - 1) % n), cost: 1 },
        ]);
      }
      t.equal(num(r.nextHop(id(2))), 1);
      t.equal(num(r.nextHop(id(4))), 5);
      t.equal(num(r.nextHop(id(3))), 1, 'two paths of cost 3: next hop 1 < 5');
      t.same(r.path(id(3))!.map(num), [0, 1, 2, 3]);
      // make the way through 5 cheaper
      r.setLinks(id(0), [
        { id: id(1), cost: 2 },
        { id: id(5), cost: 1 },
      ]);
      t.equal(num(r.nextHop(id(3))), 5);
      t.equal(r.distance(id(3)), 3);
      t.equal(num(r.nextHop(id(2))), 1, 'cost 3 both ways: 1 < 5');
      t.equal(r.distance(id(2)), 3);
    });

    t.test('ties between parents: the smaller parent id', async (t) => {
      const r = make();
      // 0 -> 1 -> {2, 3} -> 4, all cost 1: two equal paths with the same next hop
      r.setLinks(id(0), [{ id: id(1), cost: 1 }]);
      r.setLinks(id(1), [
        { id: id(3), cost: 1 },
        { id: id(2), cost: 1 },
      ]);
      r.setLinks(id(3), [{ id: id(4), cost: 1 }]);
      r.setLinks(id(2), [{ id: id(4), cost: 1 }]);
      t.same(r.path(id(4))!.map(num), [0, 1, 2, 4]);
      r.setLinks(id(2), [{ id: id(4), cost: 2 }]);
      t.same(r.path(id(4))!.map(num), [0, 1, 3, 4]);
    });

    t.test('disconnected parts, orphans and removal', async (t) => {
      const r = make();
      r.setLinks(id(0), [{ id: id(1), cost: 3 }]);
      r.setLinks(id(7), [{ id: id(8), cost: 1 }]); // an island
      t.equal(r.size, 4);
      t.same(r.routes().map((x) => num(x.destination)), [1]);
      t.equal(r.nextHop(id(8)), null);
      t.equal(r.distance(id(7)), -1);
      t.equal(r.nextHop(id(99)), null, 'unknown id');
      t.equal(r.handleOf(id(99)), -1);
      t.ok(r.has(id(8)));
      // dropping the island's only link leaves two nodes nothing refers to: both are forgotten
      r.setLinks(id(7), []);
      const res = r.recompute();
      t.equal(res.freed, 2);
      t.notOk(r.has(id(7)));
      t.notOk(r.has(id(8)));
      t.equal(r.size, 2);
      // a node with links pointing at it stays known without links of its own
      r.setLinks(id(1), []);
      t.ok(r.has(id(1)));
      t.equal(r.distance(id(1)), 3);
      // removeNode drops the node and the links to it
      r.setLinks(id(2), [{ id: id(1), cost: 1 }]);
      r.setLinks(id(1), [{ id: id(2), cost: 1 }]);
      t.equal(r.distance(id(2)), 4);
      t.ok(r.removeNode(id(1)));
      t.notOk(r.removeNode(id(1)), 'already gone');
      t.notOk(r.has(id(1)));
      t.same(r.links(id(0)), [], 'the link 0 -> 1 went with the node');
      t.equal(r.distance(id(2)), -1);
      t.throws(() => r.removeNode(id(0)), RangeError, 'the local node stays');
    });

    t.test('handles: interned integers, freed and reused smallest first', async (t) => {
      const r = make();
      t.equal(r.handleOf(id(0)), 0);
      r.setLinks(id(0), [
        { id: id(5), cost: 1 },
        { id: id(6), cost: 1 },
        { id: id(7), cost: 1 },
      ]);
      t.same([5, 6, 7].map((n) => r.handleOf(id(n))), [1, 2, 3]);
      t.ok(r.idOf(2)!.equals(id(6)));
      r.removeNode(id(6));
      r.removeNode(id(5));
      t.equal(r.handleOf(id(5)), -1, 'removed: unknown at once');
      r.recompute();
      t.equal(r.idOf(2), null);
      r.setLinks(id(0), [{ id: id(9), cost: 1 }, { id: id(8), cost: 1 }]);
      t.equal(r.handleOf(id(9)), 1, 'smallest free handle first');
      t.equal(r.handleOf(id(8)), 2);
    });

    t.test('batch and group lookups', async (t) => {
      const r = make();
      r.setLinks(id(0), [
        { id: id(3), cost: 1 },
        { id: id(2), cost: 1 },
      ]);
      r.setLinks(id(3), [{ id: id(4), cost: 1 }]);
      r.setLinks(id(2), [{ id: id(5), cost: 1 }]);
      const q = ids(4, 5, 0, 9, 3, 2, 5);
      const out = r.nextHopBatch(q);
      t.same([...out].map((h) => num(r.hopId(h))), [3, 2, 0, null, 3, 2, 2]);
      const reuse = new Int32Array(16).fill(77);
      t.equal(r.nextHopBatch(q, reuse), reuse, 'fills the array given');
      t.equal(reuse[7], 77, 'and nothing past n');
      const groups = r.groupByNextHop(q);
      t.same(
        groups.map((g) => [num(g.hop), [...g.indexes]]),
        [
          [0, [2]],
          [2, [1, 5, 6]],
          [3, [0, 4]],
          [null, [3]],
        ],
      );
      const g2 = groups[1]!;
      t.same(
        Array.from({ length: g2.ids.length / 32 }, (_, i) => g2.ids.readUInt16BE(i * 32)),
        [5, 2, 5],
        'the group carries its ids packed',
      );
      t.same(r.groupByNextHop(Buffer.alloc(0)), [], 'empty batch');
      t.same(r.nextHopBatch(new Uint8Array(0)).length, 0);
    });

    t.test('links: replace, duplicates and self links', async (t) => {
      const r = make();
      t.notOk(r.setLinks(id(4), []), 'an unknown node without links: nothing to do');
      t.notOk(r.has(id(4)));
      t.ok(r.setLinks(id(0), [{ id: id(1), cost: 5 }, { id: id(1), cost: 2 }, { id: id(0), cost: 1 }]));
      t.same(r.links(id(0))!.map((l) => [num(Buffer.from(l.id)), l.cost]), [[1, 2]]);
      t.notOk(r.setLinks(id(0), [{ id: id(1), cost: 2 }]), 'the same links: no change');
      t.ok(r.setLinksPacked(id(0), ids(3, 1), [4, 2]));
      t.same(r.links(id(0))!.map((l) => [num(Buffer.from(l.id)), l.cost]), [[1, 2], [3, 4]]);
      t.equal(r.links(id(42)), null);
      t.equal(r.linkCount, 2);
    });

    t.test('argument checks', async (t) => {
      const r = make();
      t.throws(() => r.nextHop(Buffer.alloc(31)), RangeError);
      t.throws(() => r.nextHop('abc' as unknown as Uint8Array), TypeError);
      t.throws(() => r.nextHopBatch(Buffer.alloc(33)), RangeError);
      t.throws(() => r.setLinks(id(0), [{ id: id(1), cost: 0 }]), RangeError);
      t.throws(() => r.setLinks(id(0), [{ id: id(1), cost: 1.5 }]), RangeError);
      t.throws(() => r.setLinks(id(0), [{ id: id(1), cost: MAX_LINK_COST + 1 }]), RangeError);
      t.throws(() => r.setLinksPacked(id(0), ids(1, 2), [1]), RangeError);
      t.throws(() => r.nextHopBatch(ids(1, 2), new Int32Array(1)), RangeError);
      t.ok(r.setLinks(id(0), [{ id: id(1), cost: MAX_LINK_COST }]));
      r.setLinks(id(1), [{ id: id(2), cost: MAX_LINK_COST }]);
      t.equal(r.distance(id(2)), 2 * MAX_LINK_COST, 'large costs add up exactly');
      t.equal(num(r.nextHop(new Uint8Array(id(2)))), 1, 'a plain Uint8Array works as an id');
    });
  });
}

t.test('the native functions check their arguments too', async (t) => {
  const a = loadNativeRouting()!;
  const h = a.create(id(0));
  t.throws(() => a.nextHop({} as never, id(1)), TypeError);
  t.throws(() => a.nextHop(h, Buffer.alloc(5)), RangeError);
  t.throws(() => a.nextHopBatch(h, ids(1), new Uint32Array(1) as never), TypeError);
  t.throws(() => a.setLinks(h, id(0), ids(1), new Uint32Array([0])), RangeError);
  t.throws(() => a.setLinks(h, id(0), ids(1), new Uint32Array([1, 2])), RangeError);
  t.equal(a.nextHop(h, id(1)), -1);
  t.equal(a.idOf(h, 1.5), null);
  t.equal(a.idOf(h, -1), null);
});

// ---- property tests: native == twin, and both == a brute-force reference ---------------------------

/** A pool of ids; some share their first 16 bytes (same hash input prefix) to exercise probing. */
function makePool(size: number, seed: number): Buffer[] {
  const pool: Buffer[] = [];
  let x = seed >>> 0 || 1;
  const rnd = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) & 0xff;
  };
  for (let i = 0; i < size; i++) {
    const b = Buffer.alloc(32);
    for (let j = 0; j < 32; j++) b[j] = rnd();
    if (i % 5 === 4) pool[i - 1]!.copy(b, 0, 0, 16);
    pool.push(b);
  }
  return pool;
}

type Op =
  | { kind: 'set'; node: number; links: [number, number][] }
  | { kind: 'remove'; node: number }
  | { kind: 'check' }
  | { kind: 'full' };

const opArb = (poolSize: number, maxCost: number): fc.Arbitrary<Op> =>
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant('set' as const),
        node: fc.nat({ max: poolSize - 1 }).map((n) => (n % 4 === 3 ? 0 : n)),
        links: fc.array(fc.tuple(fc.nat({ max: poolSize - 1 }), fc.integer({ min: 1, max: maxCost })), { maxLength: 5 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), node: fc.integer({ min: 1, max: poolSize - 1 }) }) },
    { weight: 2, arbitrary: fc.constant({ kind: 'check' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'full' as const }) },
  );

function apply(r: RoutingTable, pool: Buffer[], op: Op): unknown {
  if (op.kind === 'set') return r.setLinks(pool[op.node]!, op.links.map(([to, cost]) => ({ id: pool[to]!, cost })));
  if (op.kind === 'remove') return r.removeNode(pool[op.node]!);
  if (op.kind === 'full') {
    const res = r.recompute({ full: true });
    return [res.changed, res.freed];
  }
  const res = r.recompute();
  return [res.changed, res.freed];
}

const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('hex'));

/** Everything observable about a table, as plain data. */
function observe(r: RoutingTable, pool: Buffer[]) {
  const packed = Buffer.concat([...pool, ...pool.slice(0, 3)]);
  const batch = [...r.nextHopBatch(packed)];
  return {
    changes: r.lastChanges().map((c) => [hex(c.destination), hex(c.nextHop), c.cost]),
    size: r.size,
    linkCount: r.linkCount,
    handles: pool.map((p) => r.handleOf(p)),
    nextHop: pool.map((p) => hex(r.nextHop(p))),
    batch,
    batchIds: batch.map((h) => hex(r.hopId(h))),
    groups: r.groupByNextHop(packed).map((g) => [hex(g.hop), g.handle, [...g.indexes], g.ids.toString('hex')]),
    distance: pool.map((p) => r.distance(p)),
    path: pool.map((p) => r.path(p)?.map(hex) ?? null),
    routes: r.routes().map((x) => [hex(x.destination), hex(x.nextHop), x.cost, x.hops]),
    links: pool.map((p) => r.links(p)?.map((l) => [hex(l.id), l.cost]) ?? null),
  };
}

/** Brute force: Bellman-Ford from the local node and from each neighbour, then the tie rules. */
function referenceMismatches(r: RoutingTable, pool: Buffer[], local: Buffer): number {
  const known = pool.filter((p) => r.has(p));
  const key = (b: Uint8Array) => Buffer.from(b).toString('hex');
  const out = new Map<string, { to: string; cost: number }[]>();
  for (const p of known) out.set(key(p), (r.links(p) ?? []).map((l) => ({ to: key(l.id), cost: l.cost })));
  const bf = (src: string) => {
    const d = new Map<string, number>([[src, 0]]);
    for (let round = 0; round < known.length; round++) {
      let moved = false;
      for (const [u, links] of out) {
        const du = d.get(u);
        if (du === undefined) continue;
        for (const l of links) {
          if (du + l.cost < (d.get(l.to) ?? Infinity)) {
            d.set(l.to, du + l.cost);
            moved = true;
          }
        }
      }
      if (!moved) break;
    }
    return d;
  };
  const me = key(local);
  const dist = bf(me);
  const neighbours = (out.get(me) ?? []).slice().sort((a, b) => (a.to < b.to ? -1 : 1));
  const fromNeighbour = new Map(neighbours.map((n) => [n.to, bf(n.to)]));
  let bad = 0;
  for (const p of known) {
    const k = key(p);
    if (k === me) continue;
    const d = dist.get(k);
    const got = r.distance(p);
    if ((d ?? -1) !== got) bad++;
    if (d === undefined) {
      if (r.nextHop(p) !== null) bad++;
      continue;
    }
    // the next hop: the smallest neighbour id starting a shortest path
    const best = neighbours.find((n) => n.cost + (fromNeighbour.get(n.to)!.get(k) ?? Infinity) === d);
    if (best?.to !== hex(r.nextHop(p))) bad++;
    // the path: real links, right total, starts with the next hop, smallest parent at each step
    const path = r.path(p)!.map(key);
    let total = 0;
    for (let i = 1; i < path.length; i++) {
      const l = out.get(path[i - 1]!)!.find((x) => x.to === path[i]);
      if (!l) bad++;
      else total += l.cost;
    }
    if (total !== d || path[0] !== me || (path.length > 1 && path[1] !== best?.to)) bad++;
  }
  return bad;
}

const scenario = fc
  .tuple(fc.integer({ min: 3, max: 14 }), fc.integer({ min: 1, max: 5 }))
  .chain(([poolSize, maxCost]) =>
    fc.record({
      poolSize: fc.constant(poolSize),
      seed: fc.integer(),
      ops: fc.array(opArb(poolSize, maxCost), { minLength: 1, maxLength: 40 }),
    }),
  );

t.test('property: native and twin give identical answers on random graphs and edit sequences', async (t) => {
  let cases = 0;
  fc.assert(
    fc.property(scenario, ({ poolSize, seed, ops }) => {
      const pool = makePool(poolSize, seed);
      const native = createRoutingTable(pool[0]!, { implementation: 'native' });
      const twin = createRoutingTable(pool[0]!, { implementation: 'ts' });
      const fullNative = createRoutingTable(pool[0]!, { implementation: 'native' });
      for (const op of ops) {
        const a = apply(native, pool, op);
        const b = apply(twin, pool, op);
        apply(fullNative, pool, op.kind === 'check' ? { kind: 'full' } : op);
        deepStrictEqual(a, b, `op ${JSON.stringify(op)}`);
        if (op.kind === 'check' || op.kind === 'full') {
          const on = observe(native, pool);
          deepStrictEqual(on, observe(twin, pool), 'native == twin');
          deepStrictEqual({ ...observe(fullNative, pool), changes: [] }, { ...on, changes: [] }, 'native incremental == native full');
        }
      }
      deepStrictEqual(observe(native, pool), observe(twin, pool), 'native == twin at the end');
      deepStrictEqual(referenceMismatches(native, pool, pool[0]!), 0, 'native == brute force');
      deepStrictEqual(referenceMismatches(twin, pool, pool[0]!), 0, 'twin == brute force');
      cases++;
    }),
    { numRuns: 200 },
  );
  t.equal(cases, 200, 'native, twin, native-full and a brute-force reference agreed on 200 random edit sequences');
});

t.test('property: larger random graphs with many edits (incremental paths at scale)', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 200, max: 600 }), fc.integer({ min: 1, max: 20 }), fc.integer(), (n, maxCost, seed) => {
      const pool = makePool(n, seed);
      let x = (seed >>> 0) | 1;
      const rnd = (m: number) => {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        return (x >>> 0) % m;
      };
      const native = createRoutingTable(pool[0]!, { implementation: 'native' });
      const twin = createRoutingTable(pool[0]!, { implementation: 'ts' });
      const both = (f: (r: RoutingTable) => unknown) => {
        const a = f(native);
        const b = f(twin);
        if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`diverged: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
      };
      for (let i = 0; i < n; i++) {
        const links = Array.from({ length: 1 + rnd(4) }, () => ({ id: pool[rnd(n)]!, cost: 1 + rnd(maxCost) }));
        both((r) => r.setLinks(pool[i]!, links));
      }
      both((r) => r.recompute().changed);
      for (let round = 0; round < 30; round++) {
        const edits = 1 + rnd(4);
        for (let e = 0; e < edits; e++) {
          const u = rnd(n);
          if (rnd(10) === 0 && u !== 0) both((r) => r.removeNode(pool[u]!));
          else {
            const links = Array.from({ length: rnd(5) }, () => ({ id: pool[rnd(n)]!, cost: 1 + rnd(maxCost) }));
            both((r) => r.setLinks(pool[u]!, links));
          }
        }
        both((r) => {
          const res = r.recompute();
          return [res.changed, res.freed, r.lastChanges().map((c) => [hex(c.destination), hex(c.nextHop), c.cost])];
        });
        both((r) => r.routes().map((x) => [hex(x.destination), hex(x.nextHop), x.cost, x.hops]));
      }
      const packed = Buffer.concat(pool);
      both((r) => [...r.nextHopBatch(packed)]);
      both((r) => r.groupByNextHop(packed).map((g) => [g.handle, [...g.indexes]]));
      both((r) => pool.map((p) => r.path(p)?.map(hex) ?? null));
    }),
    { numRuns: 6 },
  );
  t.pass('native and twin agreed through every edit');
});
