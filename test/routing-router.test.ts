import t from 'tap';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { Identity, nodeIdToBytes, verifySignature, type NodeId } from '../src/identity/index.js';
import {
  Router,
  TablePathComputer,
  decodeMessage,
  decodeRecord,
  encodeMessage,
  encodeRecord,
  packMessages,
  recordBytes,
  verifyRecord,
  idOrderKey,
  MAX_COST,
  MAX_SEQUENCE,
  MESSAGE_HEADER_BYTES,
  ENTRY_HEADER_BYTES,
  type Link,
  type RecordSigner,
  type RouterAction,
  type RouterOptions,
} from '../src/routing/router/index.js';
import { RoutingSimulation, seededSigner, simulationSigner } from '../src/routing/testing.js';
import { IMMEDIATE } from './fixtures/router-options.js';

// A pool of cheap deterministic signers shared by the tests.
const SIGNERS: RecordSigner[] = Array.from({ length: 40 }, (_, i) => seededSigner(4242, i));
const ID = SIGNERS.map((s) => s.nodeId);
const byId = (a: NodeId, b: NodeId): number => (a < b ? -1 : a > b ? 1 : 0);
const byKey = (a: NodeId, b: NodeId): number => (idOrderKey(a) < idOrderKey(b) ? -1 : idOrderKey(a) > idOrderKey(b) ? 1 : 0);


function router(i: number, options: Omit<RouterOptions, 'signer'> = {}): Router {
  return new Router({ ...IMMEDIATE, ...options, signer: SIGNERS[i]! });
}

function sends(actions: readonly RouterAction[]): { to: NodeId; bytes: Uint8Array }[] {
  return actions.flatMap((a) => (a.type === 'send' ? [{ to: a.to, bytes: a.bytes }] : []));
}

function routeActions(actions: readonly RouterAction[]) {
  return actions.flatMap((a) => (a.type === 'routes-changed' ? a.changed : []));
}

/** A signed record of signer i as a one-record message. */
function message(i: number, seq: bigint, links: Link[], remainingMs = 60_000, lifetimeMs = 60_000): Uint8Array {
  const record = encodeRecord({ origin: ID[i]!, seq, lifetimeMs, links }, (d) => SIGNERS[i]!.sign(d));
  return encodeMessage([{ remainingMs, record }]);
}

function recordOf(msg: Uint8Array): Buffer {
  return Buffer.from(msg).subarray(MESSAGE_HEADER_BYTES + ENTRY_HEADER_BYTES);
}

/** Rewraps (possibly altered) record bytes into a message. */
function wrap(record: Uint8Array, remainingMs = 60_000): Uint8Array {
  return encodeMessage([{ remainingMs, record }]);
}

/** Router 0 with neighbour 1 up, having received router 1's record listing 0 and 2, and router 2's record listing 1. */
function lineAtZero(): Router {
  const r = router(0);
  r.neighbourUp(ID[1]!, 0, 10);
  r.recordReceived(ID[1]!, message(1, 5n, [{ to: ID[0]!, cost: 11 }, { to: ID[2]!, cost: 11 }]), 1);
  r.recordReceived(ID[1]!, message(2, 7n, [{ to: ID[1]!, cost: 11 }]), 2);
  return r;
}

t.test('record codec', async (t) => {
  t.test('round trip, canonical link order, signature by the origin', async (t) => {
    const links = [
      { to: ID[3]!, cost: 7 },
      { to: ID[1]!, cost: 1 },
      { to: ID[2]!, cost: MAX_COST },
    ];
    const bytes = encodeRecord({ origin: ID[0]!, seq: MAX_SEQUENCE, lifetimeMs: 60_000, links }, (d) => SIGNERS[0]!.sign(d));
    t.equal(bytes.length, recordBytes(3));
    const d = decodeRecord(bytes);
    t.ok(d.ok);
    if (!d.ok) return;
    t.equal(d.value.origin, ID[0]);
    t.equal(d.value.seq, MAX_SEQUENCE, 'u64 sequence numbers survive');
    t.equal(d.value.lifetimeMs, 60_000);
    const keyOrder = [...links].sort((a, b) => Buffer.compare(Buffer.from(recordKey(a.to)), Buffer.from(recordKey(b.to))));
    t.same(d.value.links, keyOrder, 'links in ascending key-byte order');
    t.equal(d.value.linkCost.get(ID[2]!), MAX_COST);
    t.equal(verifyRecord(d.value), 'ok');
    t.equal(verifyRecord(d.value, verifySignature), 'ok');
  });

  t.test('property: any record round-trips and verifies', async () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: SIGNERS.length - 1 }),
        fc.bigInt({ min: 0n, max: MAX_SEQUENCE }),
        fc.integer({ min: 1, max: 0xffffffff }),
        fc.uniqueArray(fc.integer({ min: 0, max: SIGNERS.length - 1 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: MAX_COST }), { minLength: 20, maxLength: 20 }),
        (o, seq, lifetimeMs, peers, costs) => {
          const links = peers.filter((p) => p !== o).map((p, k) => ({ to: ID[p]!, cost: costs[k]! }));
          const bytes = encodeRecord({ origin: ID[o]!, seq, lifetimeMs, links }, (d) => SIGNERS[o]!.sign(d));
          const d = decodeRecord(bytes);
          if (!d.ok) return false;
          const got = new Map(d.value.links.map((l) => [l.to, l.cost]));
          return (
            d.value.origin === ID[o] &&
            d.value.seq === seq &&
            d.value.lifetimeMs === lifetimeMs &&
            got.size === links.length &&
            links.every((l) => got.get(l.to) === l.cost) &&
            verifyRecord(d.value) === 'ok'
          );
        },
      ),
      { numRuns: 60 },
    );
  });

  t.test('bounds and malformed records', async (t) => {
    const good = Buffer.from(encodeRecord({ origin: ID[0]!, seq: 1n, lifetimeMs: 1000, links: [{ to: ID[1]!, cost: 3 }, { to: ID[2]!, cost: 4 }] }, (d) => SIGNERS[0]!.sign(d)));
    const reason = (b: Uint8Array, maxLinks?: number) => {
      const d = decodeRecord(b, maxLinks);
      return d.ok ? 'ok' : d.reason;
    };
    t.equal(reason(good), 'ok');
    t.equal(reason(good.subarray(0, 50)), 'malformed', 'shorter than a header');
    t.equal(reason(good.subarray(0, good.length - 1)), 'malformed', 'truncated');
    t.equal(reason(Buffer.concat([good, Buffer.alloc(1)])), 'malformed', 'trailing byte');
    const mut = (f: (b: Buffer) => void) => {
      const b = Buffer.from(good);
      f(b);
      return b;
    };
    t.equal(reason(mut((b) => (b[0] = 0))), 'malformed', 'magic');
    t.equal(reason(mut((b) => (b[4] = 1))), 'malformed', 'version (1 is the flat format before fragments)');
    t.equal(reason(mut((b) => (b[5] = 2))), 'malformed', 'unknown flags');
    t.equal(reason(mut((b) => b.writeUInt32BE(0, 46))), 'malformed', 'zero lifetime');
    t.equal(reason(mut((b) => b.writeUIntBE(0, 54 + 33, 3))), 'malformed', 'zero cost');
    t.equal(reason(mut((b) => (b[54 + 32] = 2))), 'malformed', 'unknown link flag');
    t.equal(reason(mut((b) => b.copy(b, 54 + 36, 54, 54 + 32))), 'malformed', 'repeated neighbour');
    t.equal(
      reason(
        mut((b) => {
          const first = Buffer.from(b.subarray(54, 90));
          b.copy(b, 54, 90, 126);
          first.copy(b, 90);
        }),
      ),
      'malformed',
      'links out of order',
    );
    t.equal(reason(mut((b) => b.copy(b, 54, 6, 38))), 'malformed', 'link to itself');
    t.equal(reason(mut((b) => b.writeUInt16BE(3, 52))), 'malformed', 'count disagrees with length');
    t.equal(reason(good, 1), 'oversized', 'more links than maxLinks');
    // A header claiming 65535 links is refused before anything is allocated for them.
    t.equal(reason(mut((b) => b.writeUInt16BE(0xffff, 52))), 'oversized');
    t.throws(() => encodeRecord({ origin: ID[0]!, seq: -1n, lifetimeMs: 1, links: [] }, (d) => SIGNERS[0]!.sign(d)), RangeError);
    t.throws(() => encodeRecord({ origin: ID[0]!, seq: 1n, lifetimeMs: 1, links: [{ to: ID[0]!, cost: 1 }] }, (d) => SIGNERS[0]!.sign(d)), RangeError);
    t.throws(() => encodeRecord({ origin: ID[0]!, seq: 1n, lifetimeMs: 1, links: [{ to: ID[1]!, cost: 0 }] }, (d) => SIGNERS[0]!.sign(d)), RangeError);
    t.throws(() => encodeRecord({ origin: ID[0]!, seq: 1n, lifetimeMs: 1, links: [{ to: ID[1]!, cost: MAX_COST + 1 }] }, (d) => SIGNERS[0]!.sign(d)), RangeError, 'cost over the bound');
    t.throws(() => encodeRecord({ origin: ID[0]!, fragment: 0x10000, seq: 1n, lifetimeMs: 1, links: [] }, (d) => SIGNERS[0]!.sign(d)), RangeError, 'fragment number over u16');
    const leafFrag = decodeRecord(encodeRecord({ origin: ID[0]!, fragment: 7, leaf: true, seq: 2n, lifetimeMs: 5, links: [{ to: ID[1]!, cost: MAX_COST, stub: true }] }, (d) => SIGNERS[0]!.sign(d)));
    t.ok(leafFrag.ok && leafFrag.value.leaf && leafFrag.value.fragment === 7 && leafFrag.value.links[0]!.stub === true && leafFrag.value.links[0]!.cost === MAX_COST, 'flags, fragment and stub links round-trip');
  });

  t.test('signature checks', async (t) => {
    const good = Buffer.from(encodeRecord({ origin: ID[0]!, seq: 1n, lifetimeMs: 1000, links: [{ to: ID[1]!, cost: 3 }] }, (d) => SIGNERS[0]!.sign(d)));
    const verdict = (b: Uint8Array) => {
      const d = decodeRecord(b);
      return d.ok ? verifyRecord(d.value) : d.reason;
    };
    const tampered = Buffer.from(good);
    tampered.writeUIntBE(1, 54 + 33, 3);
    t.equal(verdict(tampered), 'forged', 'tampered cost');
    const unsigned = Buffer.from(good);
    unsigned.fill(0, unsigned.length - 64);
    t.equal(verdict(unsigned), 'unsigned');
    // Signed by node 1's key while claiming node 0 as origin.
    const wrongKey = Buffer.from(encodeRecord({ origin: ID[0]!, seq: 1n, lifetimeMs: 1000, links: [{ to: ID[1]!, cost: 3 }] }, (d) => SIGNERS[1]!.sign(d)));
    t.equal(verdict(wrongKey), 'forged', 'signature by a key other than the origin');
  });
});

t.test('message codec', async (t) => {
  const recs = [0, 1, 2].map((i) => encodeRecord({ origin: ID[i]!, seq: BigInt(i + 1), lifetimeMs: 5000, links: [] }, (d) => SIGNERS[i]!.sign(d)));
  const msg = encodeMessage(recs.map((record, i) => ({ remainingMs: 1000 * (i + 1), record })));
  const d = decodeMessage(msg, 1 << 16);
  t.ok(d.ok);
  if (d.ok) {
    t.same(
      d.value.map((e) => e.remainingMs),
      [1000, 2000, 3000],
    );
    t.same(
      d.value.map((e) => Buffer.from(e.record!)),
      recs.map((r) => Buffer.from(r)),
    );
  }
  const reason = (b: Uint8Array, max = 1 << 16, limit?: number) => {
    const r = decodeMessage(b, max, limit);
    return r.ok ? (r.value.some((e) => e.record === undefined) ? 'entry-oversized' : 'ok') : r.reason;
  };
  t.equal(reason(msg, msg.length - 1), 'oversized', 'over maxMessageBytes');
  t.equal(reason(msg.subarray(0, 3)), 'malformed', 'no header');
  t.equal(reason(Buffer.concat([msg, Buffer.alloc(1)])), 'malformed', 'trailing byte');
  t.equal(reason(msg.subarray(0, msg.length - 1)), 'malformed', 'truncated');
  const mut = (f: (b: Buffer) => void) => {
    const b = Buffer.from(msg);
    f(b);
    return b;
  };
  t.equal(reason(mut((b) => (b[0] = 0xb2))), 'malformed', 'type');
  t.equal(reason(mut((b) => (b[1] = 9))), 'malformed', 'version');
  t.equal(reason(mut((b) => b.writeUInt16BE(0, 2))), 'malformed', 'no entries');
  t.equal(reason(mut((b) => b.writeUInt16BE(0xffff, 2))), 'malformed', 'count larger than the bytes can hold');
  t.equal(reason(mut((b) => b.writeUInt32BE(0xffffffff, 8))), 'malformed', 'entry length past the end');
  t.equal(reason(msg, 1 << 16, 100), 'entry-oversized', 'record over the record bound is flagged, others kept');

  const many = Array.from({ length: 30 }, (_, i) => ({ remainingMs: 1, record: recs[i % 3]! }));
  const packed = packMessages(many, 1000);
  t.ok(packed.length > 1, 'split into several messages');
  t.ok(packed.every((m) => m.length <= 1000));
  t.equal(
    packed.reduce((n, m) => n + (decodeMessage(m, 1000) as { ok: true; value: unknown[] }).value.length, 0),
    30,
  );

  t.test('property: decoders never throw on arbitrary bytes', async () => {
    const r = router(0);
    r.neighbourUp(ID[1]!, 0);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: 599 }), (noise, at) => {
        decodeMessage(noise, 1 << 16);
        decodeRecord(noise);
        // Also mutate a valid message at one place.
        const m = Buffer.from(msg);
        m[at % m.length] = m[at % m.length]! ^ 0xff;
        decodeMessage(m, 1 << 16);
        r.recordReceived(ID[1]!, noise, 1);
        r.recordReceived(ID[1]!, m, 1);
        return true;
      }),
      { numRuns: 300 },
    );
  });
});

t.test('router drops and counts bad records; they change no route', async (t) => {
  const r = lineAtZero();
  const routesBefore = r.routes();
  const recordsBefore = [...r.records().values()].map((x) => `${x.origin}:${x.seq}`);
  t.equal(r.nextHop(ID[2]!), ID[1], 'reaches 2 through 1');
  const base = r.stats().dropped;
  t.same(base, { forged: 0, unsigned: 0, replayed: 0, oversized: 0, malformed: 0, expired: 0, notNeighbour: 0, tableFull: 0 });

  // A newer record for node 2 that would move it next to 0, with its signature broken.
  const lure = recordOf(message(2, 8n, [{ to: ID[0]!, cost: 1 }, { to: ID[1]!, cost: 11 }]));
  const tampered = Buffer.from(lure);
  tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 1;
  const unsigned = Buffer.from(lure);
  unsigned.fill(0, unsigned.length - 64);
  // Signed by node 3 while naming node 2 as its origin.
  const wrongKey = encodeRecord({ origin: ID[2]!, seq: 9n, lifetimeMs: 60_000, links: [{ to: ID[0]!, cost: 1 }] }, (d) => SIGNERS[3]!.sign(d));
  // Tampered after signing: raised sequence number.
  const raised = Buffer.from(recordOf(message(2, 7n, [{ to: ID[1]!, cost: 11 }])));
  raised.writeBigUInt64BE(100n, 38);
  const attempts: [string, Uint8Array, NodeId][] = [
    ['forged', wrap(tampered), ID[1]!],
    ['unsigned', wrap(unsigned), ID[1]!],
    ['forged', wrap(wrongKey), ID[1]!],
    ['forged', wrap(raised), ID[1]!],
    ['replayed', message(2, 6n, [{ to: ID[0]!, cost: 1 }]), ID[1]!],
    ['replayed', message(1, 5n, [{ to: ID[0]!, cost: 1 }]), ID[1]!], // same number, other content
    ['expired', wrap(lure, 0), ID[1]!],
    ['oversized', new Uint8Array(70_000), ID[1]!],
    ['malformed', Buffer.from('not a routing message'), ID[1]!],
    ['notNeighbour', wrap(lure), ID[3]!],
  ];
  for (const [why, bytes, from] of attempts) {
    const before = r.stats().dropped[why as keyof typeof base];
    const actions = r.recordReceived(from, bytes, 10);
    t.equal(r.stats().dropped[why as keyof typeof base], before + 1, `${why} counted`);
    t.same(routeActions(actions), [], `${why}: no route change`);
    t.ok(
      sends(actions).every((s) => !Buffer.from(s.bytes).includes(Buffer.from(bytes).subarray(MESSAGE_HEADER_BYTES + ENTRY_HEADER_BYTES, MESSAGE_HEADER_BYTES + ENTRY_HEADER_BYTES + 60))),
      `${why}: not flooded`,
    );
  }
  t.same(r.routes(), routesBefore, 'routes unchanged');
  t.same(
    [...r.records().values()].map((x) => `${x.origin}:${x.seq}`),
    recordsBefore,
    'map unchanged',
  );
  t.equal(r.nextHop(ID[2]!), ID[1]);

  // An oversized record inside an otherwise valid message.
  const r2 = router(0, { maxLinks: 2 });
  r2.neighbourUp(ID[1]!, 0);
  r2.recordReceived(ID[1]!, message(5, 1n, [6, 7, 8].map((i) => ({ to: ID[i]!, cost: 1 }))), 1);
  t.equal(r2.stats().dropped.oversized, 1, 'record with more links than maxLinks');
  t.equal(r2.records().has(ID[5]!), false);

  // The map is bounded.
  const r3 = router(0, { maxRecords: 3 });
  r3.neighbourUp(ID[1]!, 0);
  for (const i of [1, 2, 3]) r3.recordReceived(ID[1]!, message(i, 1n, []), 1);
  t.equal(r3.stats().dropped.tableFull, 1, 'our own record counts too');
  t.equal(r3.records().size, 3);
});

t.test('a real Identity signs records that others verify', async (t) => {
  const a = await Identity.generate();
  const ra = new Router({ ...IMMEDIATE, signer: a });
  const rb = router(1);
  const up = ra.neighbourUp(ID[1]!, 0, 4);
  rb.neighbourUp(a.nodeId, 0, 4);
  const out = sends(up);
  t.ok(out.length >= 1);
  for (const s of out) rb.recordReceived(a.nodeId, s.bytes, 1);
  t.equal(rb.records().get(a.nodeId)?.seq, 1n);
  t.equal(rb.stats().dropped.forged, 0);
});

t.test('flooding, de-duplication, newer wins, whole map to a new neighbour', async (t) => {
  // Router 0 with neighbours 1 and 2.
  const r = router(0);
  r.neighbourUp(ID[1]!, 0, 2);
  r.neighbourUp(ID[2]!, 0, 2);
  const m5 = message(5, 3n, []);
  const a1 = sends(r.recordReceived(ID[1]!, m5, 1));
  t.same(
    a1.map((s) => s.to),
    [ID[2]],
    'flooded to every neighbour except the sender',
  );
  t.same(Buffer.from(recordOf(a1[0]!.bytes)), Buffer.from(recordOf(m5)), 'same signed bytes forwarded');
  const a2 = sends(r.recordReceived(ID[2]!, m5, 2));
  t.same(a2, [], 'same origin+seq is not flooded again');
  t.equal(r.stats().duplicates, 1);
  const a3 = sends(r.recordReceived(ID[2]!, message(5, 4n, []), 3));
  t.same(
    a3.map((s) => s.to),
    [ID[1]],
    'newer sequence number accepted and flooded',
  );
  t.equal(r.records().get(ID[5]!)?.seq, 4n);
  // An older copy from a neighbour: dropped, and the neighbour gets our newer one back.
  const a4 = sends(r.recordReceived(ID[1]!, m5, 4));
  t.equal(r.stats().dropped.replayed, 1);
  t.same(
    a4.map((s) => s.to),
    [ID[1]],
  );
  t.equal(decodeRecord(recordOf(a4[0]!.bytes)).ok && (decodeRecord(recordOf(a4[0]!.bytes)) as { value: { seq: bigint } }).value.seq, 4n);

  // A new neighbour gets the whole map (own record included) in one message.
  const a5 = sends(r.neighbourUp(ID[9]!, 5, 2));
  const toNew = a5.filter((s) => s.to === ID[9]);
  t.equal(toNew.length, 1);
  const d = decodeMessage(toNew[0]!.bytes, 1 << 16);
  t.ok(d.ok);
  const origins = d.ok ? d.value.map((e) => (decodeRecord(e.record!) as { value: { origin: NodeId } }).value.origin).sort(byId) : [];
  t.same(origins, [ID[0]!, ID[5]!].sort(byId));
  // Remaining lifetime travels and counts down.
  const entry = d.ok ? d.value.find((e) => Buffer.from(e.record!).equals(recordOf(message(5, 4n, [])))) : undefined;
  t.equal(entry?.remainingMs, 60_000 - 2, 'lifetime left when forwarded');
});

t.test('flood pacing batches records and skips what a neighbour already sent', async (t) => {
  const r = router(0, { floodPacingMs: 10 });
  r.neighbourUp(ID[1]!, 0, 2);
  r.neighbourUp(ID[2]!, 0, 2);
  t.equal(r.nextDeadline(), 10, 'second publication paced');
  t.equal(sends(r.tick(10)).length, 2);
  const first = sends(r.recordReceived(ID[1]!, message(5, 1n, []), 20));
  t.equal(first.length, 1, 'first record after a quiet period leaves at once');
  t.same(sends(r.recordReceived(ID[1]!, message(6, 1n, []), 21)), [], 'next one waits');
  t.same(sends(r.recordReceived(ID[1]!, message(7, 1n, []), 22)), []);
  // Neighbour 2 sends record 7 itself: it must not get it back.
  r.recordReceived(ID[2]!, message(7, 1n, []), 23);
  t.equal(r.nextDeadline(), 30);
  t.ok(r.hasPendingWork());
  const batch = sends(r.tick(30));
  t.equal(batch.length, 1);
  t.equal(batch[0]!.to, ID[2]);
  const d = decodeMessage(batch[0]!.bytes, 1 << 16);
  t.equal(d.ok && d.value.length, 1, 'records 6 only (7 came from there)');
});

t.test('routes: two-way check, costs, paths, routes-changed only on next-hop change', async (t) => {
  const r = lineAtZero();
  t.equal(r.nextHop(ID[1]!), ID[1]);
  t.equal(r.nextHop(ID[2]!), ID[1]);
  t.same(r.path(ID[2]!), [ID[0], ID[1], ID[2]]);
  t.same(r.path(ID[0]!), [ID[0]]);
  t.same(
    r.routes().sort((a, b) => byId(a.dest, b.dest)),
    [
      { dest: ID[1], nextHop: ID[1], cost: 11, hops: 1 },
      { dest: ID[2], nextHop: ID[1], cost: 22, hops: 2 },
    ].sort((a, b) => byId(a.dest!, b.dest!)),
  );
  t.equal(r.neighbourCost(ID[1]!), 11, 'cost = 1 + RTT in ms');

  // Node 3 claims a link to 2, but 2 does not announce 3: not usable.
  r.recordReceived(ID[1]!, message(3, 1n, [{ to: ID[2]!, cost: 1 }]), 3);
  t.equal(r.nextHop(ID[3]!), undefined, 'one-sided link ignored');
  // Node 2 now announces 3 as well: reachable, and a route change is reported.
  const ch = routeActions(r.recordReceived(ID[1]!, message(2, 8n, [{ to: ID[1]!, cost: 11 }, { to: ID[3]!, cost: 1 }]), 4));
  t.same(ch, [{ dest: ID[3], nextHop: ID[1], previousNextHop: undefined, cost: 23, hops: 3 }]);
  // A cost change that moves no next hop reports nothing.
  const ch2 = routeActions(r.recordReceived(ID[1]!, message(2, 9n, [{ to: ID[1]!, cost: 11 }, { to: ID[3]!, cost: 5 }]), 5));
  t.same(ch2, [], 'cost-only change: no routes-changed');
  t.equal(r.routes().find((x) => x.dest === ID[3])?.cost, 27, 'but costs follow');

  // Node 1 goes down: its record stays but no longer attracts traffic (two-way check with our own table).
  const ch3 = routeActions(r.neighbourDown(ID[1]!, 6));
  t.same(new Set(ch3.map((c) => c.dest)), new Set([ID[1], ID[2], ID[3]]));
  t.ok(ch3.every((c) => c.nextHop === undefined));
  t.ok(r.records().has(ID[1]!), 'stale record kept until it expires');
  t.equal(r.routes().length, 0);
});

t.test('equal-cost ties go to the smaller next-hop id (key-byte order)', async (t) => {
  // 0 -- a -- 3 and 0 -- b -- 3, all costs equal.
  const [a, b] = [ID[1]!, ID[2]!].sort(byKey);
  // Key-byte order is not the order of the base32 text.
  const disagree = ID.some((x) => ID.some((y) => (x < y) !== (idOrderKey(x) < idOrderKey(y)) && x !== y));
  t.ok(disagree, 'the pool has ids whose text and key orders differ');
  for (const implementation of ['native', 'ts'] as const) {
  const pc = new TablePathComputer(ID[0]!, implementation);
  pc.setLinks(ID[0]!, [
    { to: b!, cost: 1 },
    { to: a!, cost: 1 },
  ]);
  pc.setLinks(b!, [{ to: ID[3]!, cost: 1 }]);
  pc.setLinks(a!, [{ to: ID[3]!, cost: 1 }]);
  t.equal(pc.nextHop(ID[3]!), a);
  t.same(pc.path(ID[3]!), [ID[0], a, ID[3]]);
  pc.removeNode(a!);
  t.equal(pc.nextHop(ID[3]!), b);
  t.equal(pc.nextHop(a!), a, 'a still reachable (links towards it remain)');
  pc.setLinks(ID[0]!, [{ to: b!, cost: 1 }]);
  t.equal(pc.nextHop(a!), undefined);
  t.equal(pc.path(a!), undefined);
  }
});

/** Reference: Bellman-Ford distances, next hop = smallest neighbour on a shortest path. */
function referenceNextHops(src: number, n: number, edges: [number, number, number][], ids: NodeId[]): (NodeId | undefined)[] {
  const distFrom = (s: number) => {
    const d = new Array(n).fill(Infinity);
    d[s] = 0;
    for (let k = 0; k < n; k++) for (const [u, v, c] of edges) if (d[u] + c < d[v]) d[v] = d[u] + c;
    return d;
  };
  const all = Array.from({ length: n }, (_, i) => distFrom(i));
  return Array.from({ length: n }, (_, dest) => {
    if (dest === src || all[src]![dest] === Infinity) return undefined;
    let best: NodeId | undefined;
    for (const [u, v, c] of edges) if (u === src && c + all[v]![dest] === all[src]![dest] && (best === undefined || idOrderKey(ids[v]!) < idOrderKey(best))) best = ids[v]!;
    return best;
  });
}

t.test('property: the routing table (native and twin) behind the router matches a brute-force reference', async () => {
  const graph = fc.integer({ min: 2, max: 12 }).chain((n) =>
    fc.record({
      n: fc.constant(n),
      edges: fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: n - 1 }), fc.integer({ min: 0, max: n - 1 }), fc.integer({ min: 1, max: 4 })), {
        maxLength: 40,
        selector: ([u, v]) => `${u}-${v}`,
      }),
      removed: fc.uniqueArray(fc.integer({ min: 1, max: n - 1 }), { maxLength: 3 }),
    }),
  );
  fc.assert(
    fc.property(graph, ({ n, edges, removed }) => {
      const loopFree = edges.filter(([u, v]) => u !== v);
      for (const implementation of ['native', 'ts'] as const) {
      const pc = new TablePathComputer(ID[0]!, implementation);
      for (let u = 0; u < n; u++) pc.setLinks(ID[u]!, loopFree.filter(([a]) => a === u).map(([, v, c]) => ({ to: ID[v]!, cost: c })));
      for (const x of removed) pc.removeNode(ID[x]!);
      // removeNode drops the node's own links; links towards it stay.
      const want = referenceNextHops(0, n, loopFree.filter(([u]) => !removed.includes(u)), ID.slice(0, n));
      for (let d = 1; d < n; d++) {
        if (pc.nextHop(ID[d]!) !== want[d]) return false;
        const p = pc.path(ID[d]!);
        if ((p === undefined) !== (want[d] === undefined)) return false;
        if (p !== undefined && (p[0] !== ID[0] || p[1] !== want[d] || p[p.length - 1] !== ID[d])) return false;
      }
      if (pc.routes().length !== want.filter((x) => x !== undefined).length) return false;
      }
      return true;
    }),
    { numRuns: 300 },
  );
});

t.test('RTT to cost: smoothing and hysteresis', async (t) => {
  const r = router(0, { publishDelayMs: 0, minPublishIntervalMs: 0, cost: { holdMs: 0 } });
  r.neighbourUp(ID[1]!, 0, 20);
  t.equal(r.neighbourCost(ID[1]!), 21);
  const seqAfterUp = r.sequence;
  for (let i = 1; i <= 50; i++) r.rttSample(ID[1]!, 20 + (i % 2 === 0 ? 1.5 : -1.5), i);
  t.equal(r.neighbourCost(ID[1]!), 21, 'jitter does not move the cost');
  t.equal(r.sequence, seqAfterUp, 'so nothing is re-published');
  for (let i = 51; i <= 120; i++) r.rttSample(ID[1]!, 60, i);
  t.ok(r.neighbourCost(ID[1]!)! > 50, 'a real change does');
  t.ok(r.sequence > seqAfterUp, 'and is published');
  r.rttSample(ID[1]!, Number.NaN, 121);
  r.rttSample(ID[1]!, -5, 121);
  r.rttSample(ID[7]!, 5, 121);
  t.ok(r.neighbourCost(ID[1]!)! > 50, 'nonsense samples ignored');
  t.equal(r.costFromRtt(0), 1);
  t.equal(r.costFromRtt(1e12), MAX_COST);
  // Neighbour without any sample uses the default RTT.
  r.neighbourUp(ID[2]!, 122);
  t.equal(r.neighbourCost(ID[2]!), 101);
});

t.test('timers: publish delay, refresh before expiry, nextDeadline', async (t) => {
  const r = new Router({ signer: SIGNERS[0]!, recordLifetimeMs: 3000, refreshIntervalMs: 1000, refreshJitter: 0 });
  t.equal(r.nextDeadline(), undefined);
  t.same(r.neighbourUp(ID[1]!, 1000, 2), [], 'nothing yet: no record');
  t.equal(r.sequence, 0n);
  t.equal(r.nextDeadline(), 1010, 'spf first (10 ms)');
  r.tick(1010);
  t.equal(r.nextHop(ID[1]!), ID[1]);
  t.equal(r.nextDeadline(), 1050, 'publication 50 ms after the change');
  const pub = sends(r.tick(1050));
  t.equal(r.sequence, 1n);
  t.same(
    pub.map((s) => s.to),
    [ID[1]],
  );
  t.equal(r.nextDeadline(), 2050, 'refresh');
  r.neighbourUp(ID[2]!, 1100, 2);
  r.tick(1150);
  t.equal(r.sequence, 1n, 'min publish interval holds the next one back');
  t.equal(r.nextDeadline(), 2050);
  r.tick(2050);
  t.equal(r.sequence, 2n);
  let now = 2050;
  for (let i = 0; i < 10; i++) {
    now = r.nextDeadline()!;
    t.ok(now > 2050 && Number.isFinite(now));
    r.tick(now);
  }
  t.ok(r.sequence > 5n, 'keeps refreshing');
  t.throws(() => r.tick(Number.NaN), TypeError);
  t.throws(() => new Router({ signer: SIGNERS[0]!, refreshIntervalMs: 3_600_000 }), { code: 'ERR_BAD_OPTION' });
  t.throws(() => new Router({ signer: SIGNERS[0]!, maxMessageBytes: 100 }), { code: 'ERR_BAD_OPTION' });
  t.throws(() => new Router({ signer: SIGNERS[0]!, initialSequence: 0n }), { code: 'ERR_BAD_OPTION' });
  t.throws(() => new Router({} as RouterOptions), { code: 'ERR_BAD_OPTION' });
});

t.test('own record: restart recovery from the network', async (t) => {
  const r = router(0);
  r.neighbourUp(ID[1]!, 0, 2);
  t.equal(r.sequence, 1n);
  // The network still holds seq 41 from an earlier run of ours.
  const old = message(0, 41n, [{ to: ID[1]!, cost: 3 }, { to: ID[4]!, cost: 3 }]);
  const out = sends(r.recordReceived(ID[1]!, old, 1));
  t.equal(r.sequence, 42n, 'jumped above it');
  t.equal(r.stats().sequenceRecovered, 1);
  t.equal(out.length, 1);
  const d = decodeRecord(recordOf(out[0]!.bytes));
  t.ok(d.ok && d.value.seq === 42n && d.value.origin === ID[0], 're-published at once');
  t.same(sends(r.recordReceived(ID[1]!, old, 2)).length, 1, 'older copy again: answered with ours');
  t.equal(r.sequence, 42n);
  // A forged "own" record with a huge number is ignored.
  const forged = encodeRecord({ origin: ID[0]!, seq: MAX_SEQUENCE, lifetimeMs: 1000, links: [] }, (d) => SIGNERS[1]!.sign(d));
  r.recordReceived(ID[1]!, wrap(forged), 3);
  t.equal(r.sequence, 42n);
  t.equal(r.stats().dropped.forged, 1);
  // Same number, other content (a previous run used it): jump too.
  const clash = message(0, 42n, []);
  r.recordReceived(ID[1]!, clash, 4);
  t.equal(r.sequence, 43n);
});

t.test('simulation: small topologies converge to shortest paths', async (t) => {
  const shapes: [string, number, (n: number) => [number, number][]][] = [
    ['line', 8, (n) => Array.from({ length: n - 1 }, (_, i) => [i, i + 1])],
    ['ring', 8, (n) => Array.from({ length: n }, (_, i) => [i, (i + 1) % n])],
    ['tree', 15, (n) => Array.from({ length: n - 1 }, (_, i) => [Math.floor(i / 2), i + 1])],
    ['grid', 16, () => {
      const e: [number, number][] = [];
      for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) {
        if (x < 3) e.push([y * 4 + x, y * 4 + x + 1]);
        if (y < 3) e.push([y * 4 + x, (y + 1) * 4 + x]);
      }
      return e;
    }],
  ];
  for (const [name, n, edges] of shapes) {
    const sim = new RoutingSimulation({ seed: n, delayMs: 2 });
    const ids = sim.addNodes(n);
    for (const [a, b] of edges(n)) sim.connect(ids[a]!, ids[b]!);
    t.ok(sim.runUntilIdle(10_000), `${name}: idle`);
    const check = sim.checkRoutes();
    t.equal(check.mismatches, 0, `${name}: next hops equal global shortest paths (${check.checked} pairs)`);
    for (const id of ids) t.equal(sim.router(id).records().size, n, `${name}: full map`);
    if (name === 'line') {
      t.same(sim.router(ids[0]!).path(ids[7]!), ids, 'line: path is the whole line');
      t.equal(sim.router(ids[0]!).routes().find((r) => r.dest === ids[7])?.hops, 7);
    }
    if (name === 'ring') {
      // Cut one link: everyone goes the other way round.
      sim.cut(ids[0]!, ids[1]!);
      t.ok(sim.runUntilIdle(10_000));
      t.equal(sim.checkRoutes().mismatches, 0, 'ring: after a cut');
      t.same(sim.router(ids[0]!).path(ids[1]!), [ids[0], ids[7], ids[6], ids[5], ids[4], ids[3], ids[2], ids[1]]);
    }
  }
});

t.test('simulation: a joining node gets the whole map from its first neighbour', async (t) => {
  const sim = new RoutingSimulation({ seed: 3, delayMs: 5 });
  const ids = sim.addNodes(20);
  for (let i = 1; i < 20; i++) sim.connect(ids[i]!, ids[Math.floor(sim.random() * i)]!);
  t.ok(sim.runUntilIdle());
  const j = sim.addNode();
  sim.connect(j, ids[7]!);
  sim.runFor(5); // one link delay: the map has arrived, nothing has been re-published yet
  t.equal(sim.router(j).records().size, 20, 'all 20 records in the first message');
  t.equal(sim.router(j).stats().messagesReceived, 1);
  t.ok(sim.runUntilIdle());
  t.equal(sim.checkRoutes().mismatches, 0);
  for (const id of ids) t.ok(sim.router(id).nextHop(j), 'everyone reaches the newcomer');
});

t.test('simulation: restart recovers the sequence number', async (t) => {
  const sim = new RoutingSimulation({ seed: 5, delayMs: 3, router: { recordLifetimeMs: 60_000, minPublishIntervalMs: 1000 } });
  const ids = sim.addNodes(6);
  const edges: [number, number][] = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0], [1, 4]];
  for (const [a, b] of edges) sim.connect(ids[a]!, ids[b]!);
  t.ok(sim.runUntilIdle());
  const x = ids[2]!;
  // A few publications so the network holds a sequence number well above 1.
  for (let k = 0; k < 4; k++) {
    sim.cut(x, ids[3]!);
    sim.runFor(2000);
    sim.restore(x, ids[3]!);
    sim.runFor(2000);
  }
  t.ok(sim.runUntilIdle());
  const before = sim.router(x).sequence;
  t.ok(before >= 5n, `published ${before} versions`);
  sim.kill(x);
  t.ok(sim.runUntilIdle());
  t.equal(sim.router(ids[0]!).nextHop(x), undefined, 'dead node unreachable at once (two-way check), long before expiry');
  t.equal(sim.router(ids[0]!).records().get(x)?.seq, before, 'its stale record is still in the map');
  sim.restart(x); // fresh router: sequence starts at 1 again
  t.ok(sim.runUntilIdle());
  const after = sim.router(x).sequence;
  t.ok(after > before, `jumped from 1 to ${after} > ${before}`);
  t.ok(sim.router(x).stats().sequenceRecovered >= 1);
  for (const id of ids) t.equal(sim.router(id).records().get(x)?.seq, after, 'everyone holds the new record');
  t.equal(sim.checkRoutes().mismatches, 0);
});

t.test('simulation: expiry removes a silent node', async (t) => {
  // The node dies without its neighbour noticing (no neighbourDown): only expiry can remove it.
  const sim = new RoutingSimulation({ seed: 9, delayMs: 2, detectDelayMs: 1e9, router: { recordLifetimeMs: 6000, refreshIntervalMs: 2000 } });
  const [a, b, c] = sim.addNodes(3);
  sim.connect(a!, b!);
  sim.connect(b!, c!);
  t.ok(sim.runUntilIdle());
  t.equal(sim.router(a!).nextHop(c!), b);
  sim.runFor(20_000);
  t.equal(sim.router(a!).nextHop(c!), b, 'refreshed records never expire');
  t.equal(sim.router(a!).stats().expiredRecords, 0);
  const lastSeen = sim.now;
  sim.kill(c!);
  sim.runFor(3000);
  t.equal(sim.router(a!).nextHop(c!), b, 'still routed while its record lives (b still lists it)');
  sim.runFor(4000);
  t.equal(sim.router(a!).nextHop(c!), undefined, 'gone after the lifetime');
  t.equal(sim.router(a!).records().has(c!), false);
  t.equal(sim.router(a!).stats().expiredRecords, 1);
  t.ok(sim.now - lastSeen <= 7000);
  t.same(sim.router(a!).routes().map((r) => r.dest), [b]);
});

t.test('simulation: a forged record injected into a running network changes no route', async (t) => {
  const sim = new RoutingSimulation({ seed: 11, delayMs: 2 });
  const ids = sim.addNodes(10);
  for (let i = 0; i < 10; i++) sim.connect(ids[i]!, ids[(i + 1) % 10]!);
  t.ok(sim.runUntilIdle());
  const snapshot = () => ids.map((id) => JSON.stringify(sim.router(id).routes().sort((a, b) => byId(a.dest, b.dest))));
  const before = snapshot();
  // Node 5's id, a newer sequence number, a direct link to everyone - signed by node 0.
  const seq5 = sim.router(ids[0]!).records().get(ids[5]!)!.seq;
  const links = ids.filter((x) => x !== ids[5]).map((to) => ({ to, cost: 1 }));
  const signer0 = seededSigner(11, 0);
  const forged = encodeRecord({ origin: ids[5]!, seq: seq5 + 10n, lifetimeMs: 60_000, links }, (d) => signer0.sign(d));
  sim.inject(ids[1]!, ids[0]!, encodeMessage([{ remainingMs: 60_000, record: forged }]));
  // An old record of node 3 replayed.
  const old = encodeRecord({ origin: ids[3]!, seq: 1n, lifetimeMs: 60_000, links: links.filter((l) => l.to !== ids[3]) }, (d) => seededSigner(11, 3).sign(d));
  sim.inject(ids[1]!, ids[0]!, encodeMessage([{ remainingMs: 60_000, record: old }]));
  t.ok(sim.runUntilIdle());
  t.same(snapshot(), before, 'no router changed a route');
  t.equal(sim.router(ids[0]!).stats().dropped.forged, 1);
  t.ok(sim.router(ids[0]!).stats().dropped.replayed >= 1);
});

function recordKey(id: NodeId): Uint8Array {
  return nodeIdToBytes(id);
}

t.test('docs/ROUTING.md test vector', async (t) => {
  const doc = readFileSync(new URL('../docs/ROUTING.md', import.meta.url), 'utf8');
  const m = /<!-- routing-vector:record -->\s*```\n([0-9a-f\n]+)```/.exec(doc);
  t.ok(m, 'vector found');
  const hex = m![1]!.replace(/\s+/g, '');
  const signer = simulationSigner(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'));
  t.equal(signer.nodeId, '25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenjbb6t');
  const zero = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaap7syp' as NodeId;
  const rec = encodeRecord({ origin: signer.nodeId, fragment: 1, seq: 1n, lifetimeMs: 3_600_000, links: [{ to: zero, cost: 5, stub: true }] }, (d) => signer.sign(d));
  t.equal(Buffer.from(rec).toString('hex'), hex, 'encoder output equals the documented bytes (Ed25519 is deterministic)');
  const d = decodeRecord(Buffer.from(hex, 'hex'));
  t.ok(d.ok && verifyRecord(d.value) === 'ok');
  if (d.ok) {
    t.same(d.value.links, [{ to: zero, cost: 5, stub: true }]);
    t.equal(d.value.fragment, 1);
    t.equal(d.value.leaf, false);
  }
  t.equal(Buffer.from(encodeMessage([{ remainingMs: 45_000, record: rec }])).subarray(0, 12).toString('hex'), 'b10200010000afc80000009a');
});
