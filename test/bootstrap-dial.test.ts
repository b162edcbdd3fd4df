// A redial to an address last reached over QUIC (a hub that restarted, say): HTTP/2 joins only
// after half the dial's budget instead of fallbackDelayMs, so a slow QUIC handshake at a busy
// peer does not add a TLS handshake over TCP (a 2,000-leaf restart started 1,872 of them). Fake
// transports, no network.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { Dialer } from '../src/node/dialer.js';
import type { Transport } from '../src/transport/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A transport whose dials `answer` decides: `after` ms then the connection, or never (until aborted). */
function fake(kind: 'quic' | 'h2', dials: string[], answer: () => number | undefined) {
  const connection = Object.assign(new EventEmitter(), { transport: kind, remoteNodeId: 'peer', closing: false, close: async () => undefined });
  return Object.assign(new EventEmitter(), {
    kind,
    handshakeTimeoutMs: 4000,
    dial: (_address: unknown, options: { signal?: AbortSignal } = {}) => {
      dials.push(kind);
      const after = answer();
      return new Promise((resolve, reject) => {
        options.signal?.addEventListener('abort', () => reject(new Error('aborted')));
        if (after !== undefined) setTimeout(() => resolve(connection), after);
      });
    },
  });
}

t.test('HTTP/2 waits longer for an address reached over QUIC before; an unknown address falls back after fallbackDelayMs', async (t) => {
  const dials: string[] = [];
  let quicAfter: number | undefined = 300;
  let h2After: number | undefined;
  const quic = fake('quic', dials, () => quicAfter);
  const h2 = fake('h2', dials, () => h2After);
  const dialer = new Dialer([quic, h2] as unknown as Transport[], { fallbackDelayMs: 20, transportMemoryMs: 60_000 }, () => undefined);
  const target = { host: '127.0.0.1', port: 9 };
  const first = await dialer.dial(target);
  t.equal((first as unknown as { transport: string }).transport, 'quic');
  t.same(dials, ['quic', 'h2'], 'unknown address: HTTP/2 joined after fallbackDelayMs (20 ms), QUIC won at 300 ms');
  t.ok(dialer.quicAddresses.has('127.0.0.1:9'), 'remembered as reached over QUIC');
  dials.length = 0;
  await dialer.dial(target);
  t.same(dials, ['quic'], 'known over QUIC: the 300 ms handshake finished before HTTP/2 would join (2 s: half the 4 s budget)');
  t.equal(dialer.quicKnownWaits, 0);
  // QUIC silent now (UDP blocked since): HTTP/2 still joins, at half the budget.
  dials.length = 0;
  quicAfter = undefined;
  h2After = 0;
  const started = performance.now();
  const third = await dialer.dial(target);
  const ms = performance.now() - started;
  t.equal((third as unknown as { transport: string }).transport, 'h2', 'HTTP/2 won');
  t.ok(ms >= 1900, `HTTP/2 joined after ${Math.round(ms)} ms (half the budget), not 20 ms`);
  t.equal(dialer.quicKnownWaits, 1, 'counted');
  t.notOk(dialer.quicAddresses.has('127.0.0.1:9'), 'no longer known over QUIC');
  t.ok(dialer.h2Addresses.has('127.0.0.1:9'), 'remembered as HTTP/2 instead');
  dialer.close();
  await sleep(0);
});

t.test('transportMemoryMs 0: nothing is remembered, every dial falls back after fallbackDelayMs', async (t) => {
  const dials: string[] = [];
  const quic = fake('quic', dials, () => 300);
  const h2 = fake('h2', dials, () => undefined);
  const dialer = new Dialer([quic, h2] as unknown as Transport[], { fallbackDelayMs: 20, transportMemoryMs: 0 }, () => undefined);
  const target = { host: '127.0.0.1', port: 9 };
  await dialer.dial(target);
  await dialer.dial(target);
  t.same(dials, ['quic', 'h2', 'quic', 'h2']);
  t.equal(dialer.quicAddresses.size, 0);
  dialer.close();
});


