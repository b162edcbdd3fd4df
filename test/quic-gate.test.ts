// The endpoint's Initial gate (src/transport/quic/gate.ts), sans-IO: real quiche Initials, a fed clock.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { native } from '@matrixai/quic';
import { Identity } from '../src/identity/index.js';
import { makeQuicConfig } from '../src/transport/index.js';
import { InitialGate, initialToken } from '../src/transport/quic/gate.js';
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { findNativeAddon } from '../src/native-addons.js';

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

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const found = findNativeAddon('pnet_udp');
const mallocInfo = (found === undefined ? undefined : (createRequire(import.meta.url)(found.path) as { mallocInfo?: () => { uordblks: number } }).mallocInfo);

/** glibc's bytes in use once collected native objects' finalizers (run from immediates) have run. */
async function settledInUse(): Promise<number> {
  for (let round = 0; round < 2; round++) {
    gc();
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return mallocInfo!().uordblks;
}

/** Verdicts for `count` Initials from `host` at time `now`, by action. */
function verdicts(gate: InitialGate, host: string, count: number, now: number, started?: number[]): Record<string, number> {
  const datagram = initialFrom(host);
  const seen: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const { action } = gate.check(datagram, host, 5000 + i, now, load);
    // The transport starts each accepted handshake (admission counts it in progress).
    if (action === 'accept' && started !== undefined) started.push(gate.admission.start(now));
    seen[action] = (seen[action] ?? 0) + 1;
  }
  return seen;
}

t.test("retry 'auto': past 100 unvalidated handshakes a second, Retry; a host that completed a handshake lately is not retried", async (t) => {
  const gate = new InitialGate({ retry: 'auto', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  t.same(verdicts(gate, '127.0.0.2', 150, 0), { accept: 100, retry: 50 }, 'a new host: the unvalidated budget, then Retry');
  gate.noteValidated('127.0.0.3', 0);
  t.same(verdicts(gate, '127.0.0.3', 150, 0), { accept: 150 }, 'a validated host: no Retry round trip');
  t.same(verdicts(gate, '127.0.0.3', 150, 11 * 60_000), { accept: 100, retry: 50 }, 'after 10 minutes it shares the unvalidated budget again');
  t.same(verdicts(gate, '127.0.0.3', 1, 11 * 60_000 + 100), { accept: 1 }, 'its budget refills at 100/s');
  gate.noteValidated('127.0.0.4', 0);
  const busy = { ...load, pendingHandshakes: 500 };
  t.equal(gate.check(initialFrom('127.0.0.4'), '127.0.0.4', 5000, 1, busy).action, 'retry', 'past half the pending handshakes, even a validated host is retried');
});

t.test('a validated host whose Initials do not decrypt loses its own budget: past 16 (and 1/s), it shares the unvalidated one for a minute', async (t) => {
  const gate = new InitialGate({ retry: 'auto', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  gate.noteValidated('127.0.0.3', 0);
  gate.noteValidated('127.0.0.4', 0);
  for (let i = 0; i < 16; i++) gate.noteUndecryptable('127.0.0.3', 0);
  t.equal(gate.hostsDistrusted, 0, 'within its burst');
  t.same(verdicts(gate, '127.0.0.3', 150, 0), { accept: 150 }, 'still its own budget');
  t.equal(gate.hostsDistrusted, 0);
  gate.noteUndecryptable('127.0.0.3', 1000);
  t.equal(gate.hostsDistrusted, 0, 'a second later, one more token');
  gate.noteUndecryptable('127.0.0.3', 1000);
  t.equal(gate.hostsDistrusted, 1, 'past it: distrusted, counted');
  t.equal(gate.dropped.undecryptable, 18, 'each counted');
  t.same(verdicts(gate, '127.0.0.3', 150, 1000), { accept: 100, retry: 50 }, "now it shares the unvalidated budget (then Retry), as a stranger's flood does");
  t.same(verdicts(gate, '127.0.0.4', 150, 1000), { accept: 150 }, 'another validated host keeps its budget');
  gate.noteValidated('127.0.0.3', 1000);
  t.same(verdicts(gate, '127.0.0.3', 1, 1000), { retry: 1 }, 'a handshake it completes meanwhile does not bring the budget back');
  gate.noteValidated('127.0.0.3', 62_000);
  t.same(verdicts(gate, '127.0.0.3', 150, 62_000), { accept: 150 }, 'after a minute, a completed handshake does');
  gate.noteUndecryptable('127.0.0.9', 62_000);
  t.equal(gate.hostsDistrusted, 1, "a stranger's undecryptable Initial only counts");
});

t.test('the validated-host memory is bounded (oldest forgotten)', async (t) => {
  const gate = new InitialGate({ retry: 'auto', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  gate.noteValidated('10.0.0.1', 0);
  for (let i = 0; i < 4096; i++) gate.noteValidated(`10.1.${i >> 8}.${i & 255}`, 0);
  verdicts(gate, '10.9.9.9', 100, 0); // spends the unvalidated budget
  t.same(verdicts(gate, '10.0.0.1', 1, 0), { retry: 1 }, 'the first host was forgotten');
  t.same(verdicts(gate, '10.1.15.255', 1, 0), { accept: 1 }, 'the last is known');
});

t.test('admission by latency: off while handshakes are quick; once one was slow, only what completes in half the timeout starts (at least 128)', async (t) => {
  const gate = new InitialGate({ retry: 'never', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  const admission = gate.admission;
  // A join burst: 300 handshakes at once, each done in 1 s: never held back.
  const burst: number[] = [];
  t.same(verdicts(gate, '127.0.0.2', 300, 0, burst), { accept: 300 }, 'a burst with nothing completed yet is admitted');
  for (const id of burst) admission.end(id, true, 1000);
  // Abandoned handshakes (never completed) do not switch it on, however old.
  const abandoned: number[] = [];
  t.same(verdicts(gate, '127.0.0.2', 200, 1000, abandoned), { accept: 200 }, 'quick handshakes: no limit');
  t.same(verdicts(gate, '127.0.0.2', 10, 6000), { accept: 10 }, '200 in progress for 5 s, none completed: no limit');
  for (const id of abandoned) admission.end(id, false, 7500);

  // Behind: 240 in progress since 2 s ago; 40 of them complete now (20/s over the 2 s window, each over 0.3 of 5 s).
  const now = 10_000;
  const slow: number[] = [];
  verdicts(gate, '127.0.0.2', 240, now - 2000, slow);
  for (const id of slow.slice(0, 40)) admission.end(id, true, now);
  t.equal(admission.inProgress, 200, '200 in progress');
  const limited = gate.dropped.admissionLimited;
  t.same(verdicts(gate, '127.0.0.2', 10, now), { drop: 10 }, 'behind: 200 in progress is more than max(128, 20/s x 2.5 s): dropped');
  t.equal(gate.dropped.admissionLimited - limited, 10, 'each one counted in stats');
  for (const id of slow.slice(40, 200)) admission.end(id, false, now + 100); // they time out or their clients give up
  t.equal(admission.inProgress, 40, '40 left');
  const more: number[] = [];
  t.same(verdicts(gate, '127.0.0.2', 100, now + 100, more), { accept: 88, drop: 12 }, 'room up to 128 in progress');
  t.same(verdicts(gate, '127.0.0.2', 1, now + 2000), { drop: 1 }, 'the hold outlives 2 s while one in progress is older than 1.5 s (a stall completes nothing)');
  for (const id of [...slow.slice(200), ...more]) admission.end(id, false, now + 2100);
  t.same(verdicts(gate, '127.0.0.2', 129, now + 2100), { accept: 129 }, 'none left in progress: the hold ends');
  t.end();
});

t.test('admission: the rate cannot pull the limit below 128 in progress', async (t) => {
  const gate = new InitialGate({ retry: 'never', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  const first = gate.admission.start(0);
  gate.admission.end(first, true, 4000);
  const stuck: number[] = [];
  t.same(verdicts(gate, '127.0.0.2', 130, 4000, stuck), { accept: 128, drop: 2 }, 'one completion in 2 s (0.5/s): still 128 in progress');
  t.same(verdicts(gate, '127.0.0.2', 3, 4100), { drop: 3 }, 'then none until one ends');
  gate.admission.end(stuck[0]!, false, 4200);
  t.same(verdicts(gate, '127.0.0.2', 3, 4200, []), { accept: 1, drop: 2 }, 'one ended, one starts');
  t.end();
});

t.test('admission: a handshake older than the dial timeout (its client gave up) holds no slot', async (t) => {
  const gate = new InitialGate({ retry: 'never', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  const first = gate.admission.start(0);
  gate.admission.end(first, true, 2000); // slow: behind from 2 s
  const early: number[] = [];
  t.same(verdicts(gate, '127.0.0.2', 130, 2000, early), { accept: 128, drop: 2 }, '128 in progress');
  t.same(verdicts(gate, '127.0.0.2', 1, 3900), { drop: 1 }, 'still behind (in progress for 1.9 s)');
  const late = gate.admission.start(5000);
  gate.admission.end(late, true, 7000); // slow again: behind until 9 s
  t.same(verdicts(gate, '127.0.0.2', 10, 7100, []), { accept: 10 }, 'behind, but past 5 s the first 128 clients have given up: they hold no slot');
  t.equal(gate.admission.inProgress, 138, 'though they are still in progress (the inbound 1.5x wait)');
  t.end();
});

/** A long-header Initial with `token`, 8-byte ids, padded to 1,200 bytes (the payload is noise). */
function initialWithToken(token: Buffer): Buffer {
  const length = token.length < 64 ? Buffer.from([token.length]) : Buffer.from([0x40 | (token.length >> 8), token.length & 0xff]);
  const head = Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1, 8]), randomBytes(8), Buffer.from([8]), randomBytes(8), length, token]);
  const rest = 1200 - head.length - 2;
  return Buffer.concat([head, Buffer.from([0x40 | (rest >> 8), rest & 0xff]), randomBytes(rest)]);
}

t.test("initialToken reads the token as quiche's header parser does, and refuses lengths past the datagram", async (t) => {
  for (const size of [0, 5, 63, 64, 300]) {
    const datagram = initialWithToken(randomBytes(size));
    const expected = quiche.Header.fromSlice(datagram, 16).token ?? Buffer.alloc(0);
    t.same(Buffer.from(initialToken(datagram)!), Buffer.from(expected), `a ${size}-byte token`);
  }
  const client = initialFrom('127.0.0.2');
  t.equal(initialToken(client)?.length, 0, "quiche's own client Initial: no token");
  const long = initialWithToken(randomBytes(300));
  t.equal(initialToken(long.subarray(0, 30)), undefined, 'a token running past the datagram');
  t.equal(initialToken(long.subarray(0, 24)), undefined, 'a length field cut short');
  t.equal(initialToken(Buffer.from([0xc3, 0, 0, 0, 1, 40, 1, 2])), undefined, 'a destination id past the datagram');
});

t.test('60,000 tokenless Initials through the gate leave native memory where it was', { skip: mallocInfo === undefined ? 'no mallocinfo (not glibc or no UDP addon)' : false }, async (t) => {
  // Reading quiche's Header.token of a tokenless Initial leaked ~225 bytes (13 MiB here) before the gate parsed the token itself.
  const gate = new InitialGate({ retry: 'always', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  const flood = Array.from({ length: 64 }, () => initialWithToken(Buffer.alloc(0)));
  const run = (count: number): void => {
    for (let i = 0; i < count; i++) gate.check(flood[i % flood.length]!, '127.0.0.2', 5000, i, load);
  };
  run(60_000); // the parser's and the allocator's first use: a one-time step of up to ~1 MiB
  const before = await settledInUse();
  run(60_000);
  const grown = (await settledInUse()) - before;
  t.ok(grown < 2 * 1024 * 1024, `malloc in use grew ${(grown / 1024).toFixed(0)} KiB over 60,000 Initials`);
});
