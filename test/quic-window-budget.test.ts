// The node's budget for flow-control windows (docs/LIMITS.md, "flow-control windows"): quiche fixes
// a connection's windows when it is made, so the QUIC endpoint keeps a full and a lean
// configuration and gives each new connection the full one only while the sum of their ceilings
// fits in `windowBudget`. Sans-IO accounting first, then real transports on 127.0.0.1.
import t from 'tap';
import { Identity } from '../src/identity/index.js';
import { QuicTransport } from '../src/transport/index.js';
import type { QuicConnection } from '../src/transport/index.js';
import { WindowBudget, leanWindows, windowCeiling, MIN_LEAN_WINDOW } from '../src/transport/quic/config.js';

const MiB = 1024 * 1024;
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test('full windows while they fit, lean ones past the budget, given back on close', async (t) => {
  const budget = new WindowBudget(100, 40, 10);
  const a = budget.grant();
  const b = budget.grant();
  const c = budget.grant();
  t.same([a.lean, b.lean, c.lean], [false, false, true], 'the third would pass 100: lean');
  t.same(budget.stats(), { budget: 100, granted: 90, full: 2, lean: 1, leanGrants: 1 });
  budget.release(a);
  t.equal(budget.grant().lean, false, 'a full one gone: the next is full again');
  budget.release(c);
  t.same(budget.stats(), { budget: 100, granted: 80, full: 2, lean: 0, leanGrants: 1 }, 'lean grants stay counted');
});

t.test('the lean windows share the budget among the connections a node may hold', async (t) => {
  t.same(leanWindows(1024 * MiB, 10_000, 16 * MiB), { connectionWindow: 107_374, streamWindow: 53_687 }, 'defaults: ~105 KiB a connection');
  t.same(leanWindows(MiB, 10_000, 16 * MiB), { connectionWindow: MIN_LEAN_WINDOW, streamWindow: MIN_LEAN_WINDOW / 2 }, 'never below 64 KiB');
  t.same(leanWindows(1024 * 1024 * MiB, 10, 16 * MiB), { connectionWindow: 16 * MiB, streamWindow: 8 * MiB }, 'never above the full initial window');
  const full = { idleTimeoutMs: 5000, connectionWindow: 16 * MiB, streamWindow: MiB, maxStreamsPerConnection: 1000, maxDatagramSize: 1350 };
  t.equal(windowCeiling(full), 24 * MiB, 'a full connection may auto-tune to 24 MiB (1.5 × a 16 MiB stream window too)');
  t.equal(windowCeiling({ ...full, connectionWindow: 512 * 1024, streamWindow: 256 * 1024, autotune: false }), 512 * 1024, 'a lean one stays at its window');
});

t.test('an endpoint grants lean windows past its budget, counts them, and frees the budget with the connection', async (t) => {
  // 50 MiB: two full connections (24 MiB each); past them lean windows of 50 MiB / 100 = 512 KiB.
  const server = await QuicTransport.listen({ identity: await Identity.generate(), host: '127.0.0.1', port: 0, windowBudget: 50 * MiB, maxConnections: 100 });
  t.teardown(() => server.close({ timeoutMs: 0 }));
  const clients = await Promise.all([0, 1, 2, 3].map(async () => QuicTransport.listen({ identity: await Identity.generate(), host: '127.0.0.1', port: 0 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close({ timeoutMs: 0 }))));
  const connections: QuicConnection[] = [];
  for (const client of clients) connections.push(await client.dial(server.address, { expectedNodeId: server.localNodeId }));

  // What each client was told by the server's transport parameters.
  const advertised = connections.map((c) => c.machine.quiche.stats());
  t.same(
    advertised.map((s) => s.peerInitialMaxData),
    [16 * MiB, 16 * MiB, 512 * 1024, 512 * 1024],
    'the first two got the full 16 MiB connection window, the next two 512 KiB',
  );
  t.same(
    advertised.map((s) => s.peerInitialMaxStreamDataBidiRemote),
    [MiB, MiB, 256 * 1024, 256 * 1024],
    'and stream windows of 1 MiB / 256 KiB',
  );
  t.same(server.stats().windows, { budget: 50 * MiB, granted: 48 * MiB + MiB, full: 2, lean: 2, leanGrants: 2 }, 'counted in the endpoint stats');

  // A full connection closes: once the server has forgotten it, the next connection is full again.
  await connections[0]!.close({ graceful: false });
  for (let i = 0; i < 200 && server.stats().windows.full > 1; i++) await delay(25);
  t.equal(server.stats().windows.full, 1, "the closed connection's windows went back to the budget");
  const fifth = await QuicTransport.listen({ identity: await Identity.generate(), host: '127.0.0.1', port: 0 });
  t.teardown(() => fifth.close({ timeoutMs: 0 }));
  const again = await fifth.dial(server.address, { expectedNodeId: server.localNodeId });
  t.equal(again.machine.quiche.stats().peerInitialMaxData, 16 * MiB, 'a new connection gets the full window');
  t.equal(server.stats().windows.leanGrants, 2, 'no new lean grant');
});

t.test('a node counts its lean grants in stats().limits', async (t) => {
  const { createNode } = await import('../src/index.js');
  const tight = await createNode({ listen: '127.0.0.1:0', h2: false, quic: { windowBudget: 0 } });
  const other = await createNode({ listen: '127.0.0.1:0', h2: false });
  t.teardown(async () => {
    await other.close({ timeoutMs: 0 });
    await tight.close({ timeoutMs: 0 });
  });
  await other.dial(tight.address);
  for (let i = 0; i < 200 && tight.stats().limits.quicWindowBudget < 1; i++) await delay(10);
  t.ok(tight.stats().limits.quicWindowBudget >= 1, 'the inbound connection got the lean windows, counted');
  t.equal(other.stats().limits.quicWindowBudget, 0, 'the other node has room: full windows');
});
