import t from 'tap';
import { Buffer } from 'node:buffer';
import type { NodeId } from '../src/identity/index.js';
import { Router, encodeMessage, encodeRecord, type Link, type RecordSigner, type RouterOptions } from '../src/routing/router/index.js';
import { seededSigner } from '../src/routing/testing.js';
import { IMMEDIATE } from './fixtures/router-options.js';

// Issue 15, routing records (docs/LIMITS.md): a neighbour that floods records of keys it mints
// cannot fill the link-state map for everyone (the neighbour that brought the most gives back its
// oldest origins to one that brought less, and is refused itself), and one origin holds at most
// maxOriginBytes. Sans-IO, in virtual time.

const SIGNERS: RecordSigner[] = Array.from({ length: 20 }, (_, i) => seededSigner(1515, i));
const ID = SIGNERS.map((s) => s.nodeId);
/** Keys an attacker mints: origins are signed, but anyone can make keys. */
const MINTED: RecordSigner[] = Array.from({ length: 40 }, (_, i) => seededSigner(6666, i));


function record(signer: RecordSigner, links: Link[], fragment = 0): Uint8Array {
  return encodeRecord({ origin: signer.nodeId, seq: 1n, lifetimeMs: 600_000, links, fragment }, (d) => signer.sign(d));
}

function message(rec: Uint8Array): Uint8Array {
  return encodeMessage([{ remainingMs: 600_000, record: rec }]);
}

/** Router 0 with a good neighbour (1) and an attacker (2). */
function victim(options: Omit<RouterOptions, 'signer'>): Router {
  const r = new Router({ ...IMMEDIATE, ...options, signer: SIGNERS[0]! });
  r.neighbourUp(ID[1]!, 0, 10);
  r.neighbourUp(ID[2]!, 0, 10);
  return r;
}

const held = (r: Router, ids: readonly NodeId[]): number => ids.filter((id) => r.records().has(id)).length;

t.test('a full map: the flooding neighbour is refused, a good neighbour evicts its oldest origins until they hold equal shares', async (t) => {
  const r = victim({ maxRecords: 21 }); // ours + 20
  const minted = MINTED.map((s) => s.nodeId);
  let now = 1;
  for (const s of MINTED) r.recordReceived(ID[2]!, message(record(s, [{ to: ID[2]!, cost: 1 }])), now++);
  t.equal(held(r, minted), 20, 'the attacker filled the map');
  t.equal(r.stats().dropped.tableFull, 20, 'its records past the cap refused, counted');
  t.equal(r.stats().evicted, 0, 'it evicted nothing: it brought the most');

  // A good neighbour's new origins (same size of record): they take the attacker's oldest slots.
  const good = SIGNERS.slice(3, 15);
  for (const s of good) r.recordReceived(ID[1]!, message(record(s, [{ to: ID[1]!, cost: 1 }])), now++);
  const goodIds = good.map((s) => s.nodeId);
  t.equal(held(r, goodIds), 10, 'the good neighbour got ten origins in (none on the old code: tableFull)');
  t.equal(held(r, minted), 10, 'the attacker kept ten');
  t.equal(r.stats().evicted, 10, 'ten evictions counted');
  t.notOk(r.records().has(minted[0]!), "the attacker's oldest went first");
  t.ok(r.records().has(minted[19]!), 'its newest stayed');
  t.equal(r.stats().dropped.tableFull, 22, 'past equal shares the good neighbour is refused too');
  t.equal(r.records().size, 21, 'the map stays at its cap');

  // The attacker goes on: it holds as much as anyone, so it is refused and evicts nothing.
  for (const s of MINTED.slice(0, 5)) r.recordReceived(ID[2]!, message(record(s, [{ to: ID[2]!, cost: 1 }])), now++);
  t.equal(r.stats().evicted, 10, 'the attacker evicts nothing back');
  t.equal(held(r, goodIds), 10);

  // A forged record evicts nothing (room is made only after the signature checked).
  const forged = Buffer.from(record(SIGNERS[16]!, [{ to: ID[1]!, cost: 1 }]));
  forged[forged.length - 1]! ^= 1;
  const r2 = victim({ maxRecords: 3 });
  r2.recordReceived(ID[2]!, message(record(MINTED[0]!, [{ to: ID[2]!, cost: 1 }])), 1);
  r2.recordReceived(ID[2]!, message(record(MINTED[1]!, [{ to: ID[2]!, cost: 1 }])), 2);
  r2.recordReceived(ID[1]!, message(forged), 3);
  t.equal(r2.stats().dropped.forged, 1, 'forged');
  t.equal(r2.stats().evicted, 0, 'and nothing evicted for it');
});

t.test('the map byte cap: large records of one neighbour give way to another neighbour\'s', async (t) => {
  const wide = (s: RecordSigner): Uint8Array => record(s, SIGNERS.slice(3, 13).map((o) => ({ to: o.nodeId, cost: 1 })));
  const size = wide(MINTED[0]!).length;
  const r = victim({ maxTableBytes: 5 * size, maxLinks: 10 }); // maxLinks: the cap must hold one largest record
  let now = 1;
  for (const s of MINTED.slice(0, 10)) r.recordReceived(ID[2]!, message(wide(s)), now++);
  t.equal(held(r, MINTED.map((s) => s.nodeId)), 5, 'five large records fill the bytes');
  t.equal(r.stats().dropped.tableFull, 5, 'the rest refused, counted');
  r.recordReceived(ID[1]!, message(record(SIGNERS[3]!, [{ to: ID[1]!, cost: 1 }])), now++);
  t.ok(r.records().has(ID[3]!), "a small record of the good neighbour got in (the attacker's oldest evicted)");
  t.equal(r.stats().evicted, 1);
});

t.test('one origin holds at most maxOriginBytes (default 4 MiB) whatever its fragment count', async (t) => {
  const r = victim({});
  const targets = Array.from({ length: 1024 }, (_, i) => seededSigner(7777, i).nodeId);
  const links = targets.map((to) => ({ to, cost: 1 }));
  const origin = MINTED[0]!;
  let size = 0;
  for (let frag = 0; frag < 120; frag++) {
    const rec = record(origin, links, frag);
    size = rec.length;
    r.recordReceived(ID[2]!, message(rec), 1 + frag);
  }
  const fits = Math.floor((4 * 1024 * 1024) / size);
  t.equal(r.records().get(origin.nodeId)?.fragments, fits, `${fits} fragments of ${size} bytes kept (all 120 on the old code)`);
  t.equal(r.stats().originFull, 120 - fits, 'the rest refused, counted');
});

t.test('options are checked', async (t) => {
  t.throws(() => new Router({ signer: SIGNERS[0]!, maxOriginBytes: 10 }), { code: 'ERR_BAD_OPTION' }, 'less than one largest record');
  t.throws(() => new Router({ signer: SIGNERS[0]!, maxTableBytes: 1_000_000, maxOriginBytes: 2_000_000 }), { code: 'ERR_BAD_OPTION' }, 'over the map');
});
