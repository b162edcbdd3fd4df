import t from 'tap';
import { Duplex } from 'node:stream';
import { Identity } from '../src/identity/index.js';
import type { NodeId } from '../src/identity/index.js';
import { keyBytesOf } from '../src/routing/index.js';
import { STATUS_OK, encodeEnvelope, encodeResult, verifyResultAsync, type ResultFrame } from '../src/node/fanout-codec.js';
import { emptyLimitStats } from '../src/node/fanout-limits.js';
import { Spread } from '../src/node/spread.js';
import { LINK_HEADER_BYTES, sendV1Leg, type LegSink } from '../src/node/fanout-link.js';

// The origin checks answers' signatures off the main thread (issue 14: 10,000 Ed25519 verifies
// in one event loop). While an answer is being checked its target stays outstanding but off its
// leg: the leg's normal end must not retry it; a forgery puts it back on its leg, or retries it
// when the leg is gone.

/** A leg stream the test drives: what the Spread writes is dropped, frames are pushed up by hand. */
function legStream(): Duplex {
  return new Duplex({ read() {}, write: (_chunk, _enc, done) => done(), final: (done) => done() });
}

async function setup() {
  const [origin, hop, target] = await Promise.all([Identity.generate(), Identity.generate(), Identity.generate()]);
  const envelope = encodeEnvelope(origin, { all: true, ttlMs: 5000, maxReplyBytes: 1024, channel: 'x', metadata: {}, payload: Buffer.from('p') });
  const legs: Duplex[] = [];
  const stats = { forged: 0, legsServed: 0, legsSent: 0, retried: 0, ...emptyLimitStats() };
  const owner = {
    host: {
      identity: origin,
      groupByNextHop: (packed: Uint8Array) => [{ hop: hop.nodeId as NodeId | undefined, ids: packed, indexes: Uint32Array.from({ length: packed.length / 32 }, (_, i) => i) }],
    },
    stats,
    sendLeg: (to: NodeId, bytes: Buffer, maxFrameBytes: number, sink: LegSink) => {
      const stream = legStream();
      legs.push(stream);
      return sendV1Leg(Promise.resolve(stream), to, bytes.subarray(LINK_HEADER_BYTES), maxFrameBytes, sink);
    },
    deliver: () => Promise.reject(new Error('not a target here')),
  };
  const key = keyBytesOf(target.nodeId);
  const genuine = encodeResult(target, envelope.requestId, key, STATUS_OK, Buffer.from('real'));
  const forged = encodeResult(hop, envelope.requestId, key, STATUS_OK, Buffer.from('fake'));
  return { envelope, owner, stats, legs, key, genuine, forged };
}

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));
/** Waits for `ok` (bounded): thread-pool checks take longer on a loaded machine. */
async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await tick(10);
}

t.test("an answer being checked when its leg ends is not retried; taken once its check passes", async (t) => {
  const { envelope, owner, stats, legs, key, genuine } = await setup();
  let release!: (ok: boolean) => void;
  const taken: ResultFrame[] = [];
  let idle = 0;
  const spread = new Spread(owner, envelope, performance.now() + 5000, 8, {
    result: (frame) => new Promise<boolean>((resolve) => (release = resolve)).then((ok) => (ok && taken.push(frame), ok)),
    idle: () => void idle++,
  });
  t.teardown(() => spread.end());
  spread.add(key, undefined);
  await until(() => legs.length === 1);
  t.equal(legs.length, 1, 'one leg');
  legs[0]!.push(genuine);
  legs[0]!.push(null);
  await tick(400); // past the first retry delay (250 ms)
  t.equal(stats.legsSent, 1, 'the leg ended while the answer was checked: no retry');
  t.equal(idle, 0, 'still busy: the target is outstanding');
  release(true);
  await until(() => idle === 1);
  t.equal(taken.length, 1, 'the answer is taken');
  t.equal(idle, 1, 'then idle');
});

t.test('a forgery checked while its leg is open: the target waits on that leg for the real answer', async (t) => {
  const { envelope, owner, stats, legs, key, genuine, forged } = await setup();
  const taken: string[] = [];
  let checked = 0;
  const spread = new Spread(owner, envelope, performance.now() + 5000, 8, {
    result: (frame) => verifyResultAsync(envelope.requestId, frame).then((ok) => (checked++, ok && taken.push(frame.body.toString()), ok)),
    idle: () => undefined,
  });
  t.teardown(() => spread.end());
  spread.add(key, undefined);
  await until(() => legs.length === 1);
  legs[0]!.push(forged);
  await until(() => checked === 1);
  legs[0]!.push(genuine);
  legs[0]!.push(null);
  await until(() => taken.length === 1);
  t.same(taken, ['real'], 'the forgery is dropped, the real answer on the same leg taken');
  t.equal(stats.legsSent, 1, 'no retry');
});

t.test('a forgery whose leg ended meanwhile: the target is sent again', async (t) => {
  const { envelope, owner, stats, legs, key, genuine, forged } = await setup();
  const taken: string[] = [];
  let release!: (ok: boolean) => void;
  let calls = 0;
  const spread = new Spread(owner, envelope, performance.now() + 5000, 8, {
    result: (frame) => {
      if (calls++ > 0) return verifyResultAsync(envelope.requestId, frame).then((ok) => (ok && taken.push(frame.body.toString()), ok));
      return new Promise<boolean>((resolve) => (release = resolve));
    },
    idle: () => undefined,
  });
  t.teardown(() => spread.end());
  spread.add(key, undefined);
  await until(() => legs.length === 1);
  legs[0]!.push(forged);
  legs[0]!.push(null);
  await tick(20);
  release(false);
  await tick(400);
  await until(() => legs.length === 2);
  t.equal(stats.legsSent, 2, 'retried on a new leg');
  legs[1]!.push(genuine);
  legs[1]!.push(null);
  await until(() => taken.length === 1);
  t.same(taken, ['real'], 'the real answer from the retry is taken');
});
