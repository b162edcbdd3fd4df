// The opener's negotiation keeps its outcome for the channel's life; the bytes after ACCEPT (`rest`,
// a view of the chunk they came in, often empty) are handed over once and not kept: a kept view
// pinned the transport's whole 256 KiB read pool for as long as the channel lived (the soak's
// heap snapshot: 149 such views in one worker, each long-lived routing or fan-out stream holding a pool).
import t from 'tap';
import { encodeAccept } from '../src/channel/codec.js';
import { OpenerNegotiation } from '../src/channel/negotiate.js';

t.test('the opener keeps no view of the chunk its ACCEPT came in', async (t) => {
  const pool = Buffer.alloc(256 * 1024);
  const accept = encodeAccept({ leg: '2' });
  accept.copy(pool, 0);
  pool.write('abc', accept.length);
  const negotiation = new OpenerNegotiation();
  const outcome = negotiation.push(pool.subarray(0, accept.length + 3));
  t.equal(outcome?.type, 'accepted');
  if (outcome?.type !== 'accepted') return;
  t.equal(outcome.rest.toString(), 'abc', 'the payload after ACCEPT is handed over');
  t.same(outcome.metadata, { leg: '2' });
  const kept = negotiation.end();
  t.equal(kept.type, 'accepted', 'the outcome is kept');
  if (kept.type !== 'accepted') return;
  t.not(kept.rest.buffer, pool.buffer, 'the kept outcome holds no view of the read pool');
  t.equal(kept.rest.length, 0);
});
