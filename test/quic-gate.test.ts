// The endpoint's Initial gate (src/transport/quic/gate.ts), sans-IO: real quiche Initials, a fed clock.
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

const load = { closing: false, connections: 0, pendingHandshakes: 0 };

/** Verdicts for `count` Initials from `host` at time `now`, by action. */
function verdicts(gate: InitialGate, host: string, count: number, now: number): Record<string, number> {
  const datagram = initialFrom(host);
  const seen: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const { action } = gate.check(datagram, host, 5000 + i, now, load);
    seen[action] = (seen[action] ?? 0) + 1;
  }
  return seen;
}

t.test("retry 'auto': past 100 unvalidated handshakes a second, Retry; a host that completed a handshake lately is not retried", async (t) => {
  const gate = new InitialGate({ retry: 'auto', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16 }, 0);
  t.same(verdicts(gate, '127.0.0.2', 150, 0), { accept: 100, retry: 50 }, 'a new host: the unvalidated budget, then Retry');
  gate.noteValidated('127.0.0.3', 0);
  t.same(verdicts(gate, '127.0.0.3', 150, 0), { accept: 150 }, 'a validated host: no Retry round trip');
  t.same(verdicts(gate, '127.0.0.3', 150, 11 * 60_000), { accept: 100, retry: 50 }, 'after 10 minutes it shares the unvalidated budget again');
  t.same(verdicts(gate, '127.0.0.3', 1, 11 * 60_000 + 100), { accept: 1 }, 'its budget refills at 100/s');
  gate.noteValidated('127.0.0.4', 0);
  const busy = { ...load, pendingHandshakes: 500 };
  t.equal(gate.check(initialFrom('127.0.0.4'), '127.0.0.4', 5000, 1, busy).action, 'retry', 'past half the pending handshakes, even a validated host is retried');
});

t.test('the validated-host memory is bounded (oldest forgotten)', async (t) => {
  const gate = new InitialGate({ retry: 'auto', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16 }, 0);
  gate.noteValidated('10.0.0.1', 0);
  for (let i = 0; i < 4096; i++) gate.noteValidated(`10.1.${i >> 8}.${i & 255}`, 0);
  verdicts(gate, '10.9.9.9', 100, 0); // spends the unvalidated budget
  t.same(verdicts(gate, '10.0.0.1', 1, 0), { retry: 1 }, 'the first host was forgotten');
  t.same(verdicts(gate, '10.1.15.255', 1, 0), { accept: 1 }, 'the last is known');
});
