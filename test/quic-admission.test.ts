// The Initial gate's admission limit (src/transport/quic/gate.ts), sans-IO: handshakes from proven
// addresses start only while fewer are in progress than the endpoint completed lately (a hub
// restart's storm of returning leaves); spoofable unvalidated ones never shut them out.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { native } from '@matrixai/quic';
import { Identity } from '../src/identity/index.js';
import { makeQuicConfig } from '../src/transport/index.js';
import { InitialGate } from '../src/transport/quic/gate.js';

const quiche = native.quiche;
const SERVER = { host: '127.0.0.1', port: 4433 };
const config = makeQuicConfig(await Identity.generate(), { idleTimeoutMs: 30_000, connectionWindow: 1 << 20, streamWindow: 1 << 20, maxStreamsPerConnection: 100, maxDatagramSize: 1350 });

function initialFrom(host: string): Buffer {
  const connection = quiche.Connection.connect('pnet', randomBytes(16), { host, port: 5000 }, SERVER, config);
  const out = Buffer.alloc(1500);
  const sent = connection.send(out);
  if (sent === null) throw new Error('no Initial');
  return out.subarray(0, sent[0]);
}

const gateAt = (now: number): InitialGate => new InitialGate({ retry: 'auto', maxConnections: 100_000, maxPendingHandshakes: 10_000, cidLength: 16 }, now);
const verdict = (gate: InitialGate, host: string, now: number, pending: number): string => gate.check(initialFrom(host), host, 5000, now, { closing: false, connections: 0, pendingHandshakes: pending }).action;

t.test('a proven host: admitted below the floor (64), turned away above it until completions raise the limit', async (t) => {
  const gate = gateAt(0);
  gate.noteValidated('10.0.0.1', 0);
  t.equal(verdict(gate, '10.0.0.1', 10, 63), 'accept', 'under the floor');
  t.equal(verdict(gate, '10.0.0.1', 10, 64), 'drop', 'at the floor, with 1 completion lately');
  t.equal(gate.dropped.admissionLimited, 1, 'counted');
  // 100 completions a second for 3 s: the limit is what completed in the last 2-3 s.
  for (let ms = 0; ms < 3000; ms += 10) gate.noteValidated('10.0.0.1', 1000 + ms);
  t.equal(verdict(gate, '10.0.0.1', 3990, 250), 'accept', '250 in progress, ~300 completed lately');
  t.equal(verdict(gate, '10.0.0.1', 3990, 320), 'drop', '320 in progress: more than completes in 2-3 s');
  t.equal(verdict(gate, '10.0.0.1', 9000, 64), 'drop', 'completions long past: back to the floor');
  t.equal(verdict(gate, '10.0.0.1', 9000, 10), 'accept');
});

t.test('an unvalidated host keeps its own budget and Retry; its handshakes in progress do not shut proven hosts out', async (t) => {
  const gate = gateAt(0);
  // Unvalidated Initials spend their 100/s budget and are then retried, whatever the limit.
  const fresh: Record<string, number> = {};
  for (let i = 0; i < 120; i++) {
    const action = verdict(gate, `10.1.0.${i}`, 100, 0);
    fresh[action] = (fresh[action] ?? 0) + 1;
  }
  t.same(fresh, { accept: 100, retry: 20 }, 'unvalidated: the 100/s budget, then Retry');
  // Those 100 may be spoofed and never finish: with 150 in progress a proven host still gets in.
  gate.noteValidated('10.0.0.2', 100);
  t.equal(verdict(gate, '10.0.0.2', 200, 150), 'accept', 'the unvalidated in progress do not count against proven hosts');
  t.equal(verdict(gate, '10.0.0.2', 200, 170), 'drop', 'past the floor plus them');
  t.equal(verdict(gate, '10.0.0.2', 7000, 70), 'drop', '5 s later they no longer count');
});
