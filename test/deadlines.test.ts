// Issue 15 item 9: request() and openStream() deadlines cover the whole call from its first step
// (a dial to a silent address, the wait for stream credit, a relay tunnel whose far end never
// speaks TLS, the negotiation), always with ERR_REQUEST_TIMEOUT. Before, request()'s timeoutMs
// started once openStream resolved and the tunnel client had no deadline at all.
import t from 'tap';
import type { Test } from 'tap';
import dgram from 'node:dgram';
import { Duplex } from 'node:stream';
import { createNode, Identity, PnetError } from '../src/index.js';
import type { PnetNode, NodeOptions } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import type { ChannelRegistry } from '../src/channel/index.js';
import { tunnelClient } from '../src/relay/tunnel.js';
import { until } from './fixtures/node-channels.js';

/** A deadline far below every transport timeout (5 s handshakes, 10 s credit waits and negotiations). */
const DEADLINE_MS = 400;
/** Generous for a loaded machine, still far below the 5-10 s the old code took (or forever). */
const LATE_MS = 4_000;

async function node(t: Test, options: NodeOptions = {}): Promise<PnetNode> {
  const n = await createNode({ listen: '127.0.0.1:0', h2: false, ...options });
  t.teardown(() => n.close({ timeoutMs: 200 }));
  return n;
}

/** How a call ended: its error code (or 'ok'/'hung') and how long it took. */
async function outcome(call: () => Promise<unknown>): Promise<{ code: string; ms: number }> {
  const started = performance.now();
  let hang: NodeJS.Timeout | undefined;
  const hung = new Promise<string>((resolve) => (hang = setTimeout(() => resolve('hung'), 3 * LATE_MS)));
  const code = await Promise.race([
    call().then(
      () => 'ok',
      (error: { code?: string }) => error.code ?? String(error),
    ),
    hung,
  ]);
  clearTimeout(hang);
  return { code, ms: performance.now() - started };
}

t.test('the wait for stream credit counts: a peer with no stream credit left', async (t) => {
  // No routing streams (hold-down far away), so the one stream credit is ours to take.
  const options: NodeOptions = { quic: { maxStreamsPerConnection: 1 }, routing: { neighbourHoldDownMs: 600_000 } };
  const a = await node(t, options);
  const b = await node(t, options);
  b.handle('hold', () => undefined);
  b.handleRequest('svc', () => 'pong');
  await a.dial(b.address);
  const held = await a.openStream(b.id, 'hold');
  for (const call of ['request', 'openStream'] as const) {
    const result = await outcome(() =>
      call === 'request' ? a.request(b.id, 'svc', 'ping', { timeoutMs: DEADLINE_MS }) : a.openStream(b.id, 'svc', { timeoutMs: DEADLINE_MS }),
    );
    t.equal(result.code, 'ERR_REQUEST_TIMEOUT', `${call}: the deadline's code`);
    t.ok(result.ms >= DEADLINE_MS - 20 && result.ms < LATE_MS, `${call}: ended at its deadline (${result.ms.toFixed(0)} ms)`);
  }
  held.destroy();
});

t.test('a dial counts: the only known address of the target never answers', async (t) => {
  const silent = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
  t.teardown(() => silent.close());
  const a = await node(t);
  const ghost = (await Identity.generate()).nodeId;
  nodeServices(a).peers.rememberAddress(ghost, { host: '127.0.0.1', port: silent.address().port });
  const request = await outcome(() => a.request(ghost, 'svc', 'ping', { timeoutMs: DEADLINE_MS }));
  t.equal(request.code, 'ERR_REQUEST_TIMEOUT', 'request: the deadline, not the dial, speaks');
  t.ok(request.ms < LATE_MS, `request: ${request.ms.toFixed(0)} ms (a dial alone waits 5 s)`);
  const open = await outcome(() => a.openStream(ghost, 'svc', { timeoutMs: DEADLINE_MS }));
  t.equal(open.code, 'ERR_REQUEST_TIMEOUT', 'openStream too');
  t.ok(open.ms < LATE_MS, `openStream: ${open.ms.toFixed(0)} ms`);
});

t.test('a relay tunnel counts: the destination accepts the relayed stream and never speaks TLS', async (t) => {
  const options: NodeOptions = { relay: { datagrams: false } };
  const [a, b, c] = [await node(t, options), await node(t, options), await node(t, options)];
  c.handleRequest('svc', () => 'pong');
  // c takes relayed streams and holds them in silence (a destination that accepts and never speaks TLS).
  const registry = (nodeServices(c).streams as unknown as { registry: ChannelRegistry }).registry;
  registry.unregister('pnet/relay');
  const held: Duplex[] = [];
  registry.register('pnet/relay', (negotiated) => void held.push(negotiated.stream));
  await a.dial(b.address);
  await b.dial(c.address);
  await until(() => a.path(c.id)?.length === 3, 10_000);
  for (const call of ['request', 'openStream'] as const) {
    const result = await outcome(() =>
      call === 'request' ? a.request(c.id, 'svc', 'ping', { timeoutMs: 1_000 }) : a.openStream(c.id, 'svc', { timeoutMs: 1_000 }),
    );
    t.equal(result.code, 'ERR_REQUEST_TIMEOUT', `${call}: the deadline's code (before: hung)`);
    t.ok(result.ms < 1_000 + LATE_MS, `${call}: ${result.ms.toFixed(0)} ms`);
  }
  t.ok(held.length >= 2, 'the relayed streams did reach the silent destination');
  await until(() => held.every((stream) => stream.destroyed), 5_000);
  t.pass('and each was torn down with the call');
});

t.test('tunnelClient: an aborted signal ends the handshake with its reason', async (t) => {
  const silentStream = new Duplex({ read() {}, write: (_chunk, _encoding, callback) => callback() });
  const identity = await Identity.generate();
  const controller = new AbortController();
  const pending = tunnelClient(silentStream, identity, (await Identity.generate()).nodeId, controller.signal);
  const reason = new PnetError('ERR_REQUEST_TIMEOUT', 'deadline');
  setTimeout(() => controller.abort(reason), 50);
  await t.rejects(pending, reason);
  t.ok(silentStream.destroyed, 'the stream under it is destroyed');
});
