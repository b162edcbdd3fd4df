// The process's shared record cache keeps the newest version of each origin's fragment only, and a
// router's kept records own their bytes. Under churn every republication is a new version: the
// cache kept them all (up to 32,768), each pinning an 8 KiB slice of Node's Buffer pool, and a
// soak worker's memory grew with it (~3 records a second, issue 15).
import t from 'tap';
import { Buffer } from 'node:buffer';
import { Router, SharedRecordCache, decodeRecord, encodeMessage, encodeRecord, type Link, type RecordSigner } from '../src/routing/router/index.js';
import { seededSigner } from '../src/routing/testing.js';
import { IMMEDIATE } from './fixtures/router-options.js';

const SIGNERS: RecordSigner[] = Array.from({ length: 6 }, (_, i) => seededSigner(1515, i));
const ID = SIGNERS.map((s) => s.nodeId);

function record(i: number, seq: bigint, links: Link[] = [{ to: ID[(i + 1) % ID.length]!, cost: 10 }], fragment = 0) {
  const bytes = encodeRecord({ origin: ID[i]!, fragment, seq, lifetimeMs: 60_000, links }, (d) => SIGNERS[i]!.sign(d));
  const decoded = decodeRecord(bytes);
  if (!decoded.ok) throw new Error('bad test record');
  return decoded.value;
}

t.test('one version per origin and fragment: the newest', async (t) => {
  const cache = new SharedRecordCache();
  const versions = Array.from({ length: 200 }, (_, k) => record(0, BigInt(k + 1)));
  for (const r of versions) cache.add(r);
  cache.add(record(0, 7n, undefined, 1));
  t.equal(cache.size, 2, '200 versions of fragment 0 and one of fragment 1 keep two records (kept all 201 before)');
  t.equal(cache.get(Buffer.from(versions.at(-1)!.bytes))?.seq, 200n, 'the newest is served');
  t.equal(cache.get(Buffer.from(versions[0]!.bytes)), undefined, 'an old version is gone');
  cache.add(versions[10]!);
  t.equal(cache.get(Buffer.from(versions[10]!.bytes)), undefined, 'an older version added late is not kept');
  t.equal(cache.get(Buffer.from(versions.at(-1)!.bytes))?.seq, 200n, 'nor does it displace the newest');
});

t.test('the limit still holds, and an evicted origin comes back', async (t) => {
  const cache = new SharedRecordCache(3);
  for (let i = 0; i < 5; i++) cache.add(record(i, 1n));
  t.equal(cache.size, 3, 'at most the limit');
  t.equal(cache.get(Buffer.from(record(0, 1n).bytes)), undefined, 'the oldest origin was evicted');
  cache.add(record(0, 2n));
  cache.add(record(0, 3n));
  t.equal(cache.size, 3, 'its newer versions replace each other');
  t.equal(cache.get(Buffer.from(record(0, 3n).bytes))?.seq, 3n, 'and the newest is served');
});

t.test("a record a router took owns its bytes (no pooled slab pinned)", async (t) => {
  const cache = new SharedRecordCache();
  const r = new Router({ ...IMMEDIATE, signer: SIGNERS[0]!, recordCache: cache });
  r.neighbourUp(ID[1]!, 0, 10);
  const sent = record(1, 5n, [{ to: ID[0]!, cost: 10 }]);
  r.recordReceived(ID[1]!, encodeMessage([{ remainingMs: 60_000, record: sent.bytes }]), 1);
  const kept = cache.get(Buffer.from(sent.bytes));
  t.ok(kept !== undefined, 'the router verified and cached it');
  t.equal(kept!.bytes.buffer.byteLength, kept!.bytes.length, `its ArrayBuffer is its own ${kept!.bytes.length} bytes (was an 8 KiB pool slab)`);
});
