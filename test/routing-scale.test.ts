import t from 'tap';
import { Buffer } from 'node:buffer';
import type { NodeId } from '../src/identity/index.js';
import { Router, decodeMessage, decodeRecord, encodeMessage, encodeRecord, type Link, type RouterAction, type RouterOptions } from '../src/routing/router/index.js';
import { seededSigner } from '../src/routing/testing.js';

// Timers and rates of a protocol that runs at scale: defaults, rate limits, cost hysteresis.

const SIGNERS = Array.from({ length: 12 }, (_, i) => seededSigner(777, i));
const ID = SIGNERS.map((s) => s.nodeId);

function router(i: number, options: Omit<RouterOptions, 'signer'> = {}): Router {
  return new Router({ ...options, signer: SIGNERS[i]! });
}

function sends(actions: readonly RouterAction[]): { to: NodeId; bytes: Uint8Array }[] {
  return actions.flatMap((a) => (a.type === 'send' ? [{ to: a.to, bytes: a.bytes }] : []));
}

function message(i: number, seq: bigint, links: Link[], lifetimeMs = 3_600_000): Uint8Array {
  const record = encodeRecord({ origin: ID[i]!, seq, lifetimeMs, links }, (d) => SIGNERS[i]!.sign(d));
  return encodeMessage([{ remainingMs: lifetimeMs, record }]);
}

/** Runs a router's timers up to `until` (the glue's job). */
function runTimers(r: Router, until: number, out: RouterAction[] = []): RouterAction[] {
  for (let d = r.nextDeadline(); d !== undefined && d <= until; d = r.nextDeadline()) out.push(...r.tick(d));
  return out;
}

t.test('defaults: records live an hour and are refreshed every 27-30 minutes', async (t) => {
  const r = router(0);
  r.neighbourUp(ID[1]!, 0, 2);
  const out = sends(runTimers(r, 100));
  t.equal(out.length, 1, 'published once, 50 ms after the change');
  const entries = decodeMessage(out[0]!.bytes, 1 << 16);
  t.ok(entries.ok);
  const rec = entries.ok ? decodeRecord(entries.value[0]!.record!) : undefined;
  t.equal(rec?.ok && rec.value.lifetimeMs, 3_600_000);
  const refresh = r.nextDeadline()!;
  t.ok(refresh >= 50 + 27 * 60_000 && refresh <= 50 + 30 * 60_000, `refresh at ${refresh} ms`);
  runTimers(r, 4 * 3_600_000);
  t.ok(r.sequence >= 8n && r.sequence <= 10n, `${r.sequence} publications in 4 h`);
});

t.test('origination rate limit: one publication per 5 s, the changes in between coalesce', async (t) => {
  const r = router(0);
  r.neighbourUp(ID[1]!, 0, 2);
  runTimers(r, 100);
  t.equal(r.sequence, 1n);
  r.neighbourUp(ID[2]!, 1000, 2);
  r.neighbourUp(ID[3]!, 2000, 2);
  r.neighbourDown(ID[1]!, 3000);
  runTimers(r, 5049);
  t.equal(r.sequence, 1n, 'held until 5 s after the last publication');
  runTimers(r, 5050);
  t.equal(r.sequence, 2n, 'one publication for three changes');
  t.equal(r.stats().publishRateLimited, 1);
  t.same(r.record(ID[0]!)!.links.map((l) => l.to).sort(), [ID[2], ID[3]].sort());
  // A change undone before it leaves publishes nothing.
  r.neighbourDown(ID[2]!, 20_000);
  r.neighbourUp(ID[2]!, 20_010, 2);
  runTimers(r, 30_000);
  t.equal(r.sequence, 2n, 'down and up again within the publish delay: no new version');
});

t.test('acceptance rate limit: versions within 1 s wait, the newest is taken, nothing is lost', async (t) => {
  const r = router(0, { publishDelayMs: 0, floodPacingMs: 0, spfDelayMs: 0, spfMinIntervalMs: 0 });
  r.neighbourUp(ID[1]!, 0, 2);
  r.neighbourUp(ID[2]!, 0, 2);
  runTimers(r, 10);
  const flooded = (actions: readonly RouterAction[]) => sends(actions).filter((s) => s.to === ID[2]);
  t.equal(flooded(r.recordReceived(ID[1]!, message(5, 1n, [{ to: ID[1]!, cost: 3 }]), 100)).length, 1, 'first version flooded at once');
  t.same(flooded(r.recordReceived(ID[1]!, message(5, 2n, [{ to: ID[1]!, cost: 4 }]), 300)), [], 'second waits');
  t.same(flooded(r.recordReceived(ID[1]!, message(5, 3n, [{ to: ID[1]!, cost: 5 }]), 400)), [], 'third replaces it');
  t.same(flooded(r.recordReceived(ID[1]!, message(5, 3n, [{ to: ID[1]!, cost: 5 }]), 500)), [], 'a copy of the waiting one is a duplicate');
  t.equal(r.record(ID[5]!)!.seq, 1n);
  t.equal(r.nextDeadline(), 1100);
  const later = flooded(runTimers(r, 1100));
  t.equal(r.record(ID[5]!)!.seq, 3n, 'the newest is accepted when the second is over');
  t.equal(later.length, 1, 'and flooded');
  const s = r.stats();
  t.equal(s.arrivalRateLimited, 2);
  t.equal(s.arrivalSuperseded, 1);
  t.equal(s.recordsAccepted, 2, 'version 2 was never verified nor stored');
});

t.test('cost hysteresis: a busy event loop does not re-flood, a lasting change does', async (t) => {
  const r = router(0);
  r.neighbourUp(ID[1]!, 0, 2);
  runTimers(r, 100);
  const seq = r.sequence;
  // 10 minutes of 1 s RTT samples around 2 ms, with a 10-second stall of 50-80 ms every minute.
  let now = 1000;
  for (let i = 0; i < 600; i++, now += 1000) {
    const stalled = i % 60 < 10;
    r.rttSample(ID[1]!, stalled ? 50 + (i % 3) * 15 : 2 + (i % 2), now);
    runTimers(r, now);
  }
  t.equal(r.sequence, seq, 'no re-publication from RTT noise and stalls');
  t.equal(r.neighbourCost(ID[1]!), 3);
  // The path really got slower: 40 ms for a minute.
  for (let i = 0; i < 60; i++, now += 1000) {
    r.rttSample(ID[1]!, 40, now);
    runTimers(r, now);
  }
  runTimers(r, now + 10_000);
  t.equal(r.sequence, seq + 1n, 'one re-publication');
  t.ok(r.neighbourCost(ID[1]!)! > 30, `cost now ${r.neighbourCost(ID[1]!)}`);
});
