// Issue 15 item 6, the rest: a client that follows Retries (its address validated) and abandons
// each handshake after its first flight must not lock fresh clients of other hosts out of a full
// `maxPendingHandshakes`. Fair eviction (src/transport/quic/host-handshakes.ts, gate.ts): the
// sans-IO table against a naive model, the gate in virtual time, then real QUIC over loopback.
import t from 'tap';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { native } from '@matrixai/quic';
import { Identity } from '../src/identity/index.js';
import { QuicTransport, makeQuicConfig } from '../src/transport/index.js';
import type { SocketAddress } from '../src/transport/index.js';
import { InitialGate } from '../src/transport/quic/gate.js';
import type { HandshakeTicket } from '../src/transport/quic/gate.js';
import { HostHandshakes } from '../src/transport/quic/host-handshakes.js';
import { heaviestOther } from '../src/shares.js';

const quiche = native.quiche;
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const clientConfig = makeQuicConfig(await Identity.generate(), { idleTimeoutMs: 30_000, connectionWindow: 1 << 20, streamWindow: 1 << 20, maxStreamsPerConnection: 100, maxDatagramSize: 1350 });

function initialFrom(from: SocketAddress, server: SocketAddress): Buffer {
  const connection = quiche.Connection.connect('pnet', randomBytes(16), from, server, clientConfig);
  const out = Buffer.alloc(1500);
  const sent = connection.send(out);
  if (sent === null) throw new Error('no Initial');
  return out.subarray(0, sent[0]);
}

t.test('host table: the victim is the oldest of a host holding more than the newcomer would (a naive model agrees)', async (t) => {
  const table = new HostHandshakes<number>();
  const model = new Map<string, number[]>();
  let seed = 7;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  let next = 0;
  for (let step = 0; step < 20_000; step++) {
    const host = `h${random(6)}`;
    const items = model.get(host) ?? [];
    if (random(3) > 0 || items.length === 0) {
      table.add(host, next);
      model.set(host, [...items, next++]);
    } else {
      const item = items[random(items.length)]!;
      table.delete(host, item);
      const left = items.filter((i) => i !== item);
      if (left.length > 0) model.set(host, left);
      else model.delete(host);
    }
    const newcomer = `h${random(7)}`;
    const heaviest = heaviestOther(model, newcomer, (group) => group.length);
    const own = model.get(newcomer)?.length ?? 0;
    const victim = table.victimFor(newcomer);
    if (heaviest === undefined || heaviest.weight <= own + 1) {
      if (victim !== undefined) t.fail(`step ${step}: no victim expected, got ${victim}`);
      continue;
    }
    // Any host holding the most will do; its oldest.
    const holder = [...model].find(([, group]) => group.includes(victim!));
    if (holder === undefined || holder[1].length !== heaviest.weight || holder[1][0] !== victim) t.fail(`step ${step}: victim ${victim} is not a heaviest host's oldest`);
    if (table.count(newcomer) !== own) t.fail(`step ${step}: count`);
  }
  t.equal(table.hosts, model.size, 'as many hosts as the model');
});

t.test('gate at a full table (virtual time): a newcomer evicts the heaviest host’s oldest, refused where its host holds the most; counted', async (t) => {
  const gate = new InitialGate({ retry: 'never', maxConnections: 10_000, maxPendingHandshakes: 16, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  const server = { host: '127.0.0.1', port: 9 };
  const check = (host: string, now: number): string => gate.check(initialFrom({ host, port: 1000 }, server), host, 1000, now, { closing: false, connections: 0, pendingHandshakes: gate.admission.inProgress }).action;
  const start = (host: string, now: number): { ticket: HandshakeTicket; evicted: HandshakeTicket | undefined } => {
    const evicted = gate.makeRoom(host, now);
    return { ticket: gate.handshakeStarted(host, true, now), evicted };
  };
  const attack: HandshakeTicket[] = [];
  for (let i = 0; i < 16; i++) {
    t.equal(check('127.0.0.2', i), 'accept');
    const { ticket, evicted } = start('127.0.0.2', i);
    t.equal(evicted, undefined, 'room left: nothing evicted');
    attack.push(ticket);
  }
  const refused = gate.dropped.refused;
  t.equal(check('127.0.0.2', 20), 'drop', "full, and the newcomer's host holds the most: refused");
  t.equal(gate.dropped.refused, refused + 1, 'counted as refused');
  const good: HandshakeTicket[] = [];
  for (let i = 0; i < 16; i++) {
    if (check('127.0.0.1', 30 + i) !== 'accept') break;
    const { ticket, evicted } = start('127.0.0.1', 30 + i);
    t.equal(evicted, attack[i], "the attacker's oldest first");
    good.push(ticket);
  }
  t.equal(good.length, 8, 'the good host takes slots until it holds as many as the attacker');
  t.equal(gate.handshakesEvicted, 8, 'each eviction counted');
  t.equal(gate.admission.inProgress, 16, 'never over the table');
  gate.handshakeEnded(attack[0]!, false, 50);
  t.equal(gate.admission.inProgress, 16, "the evicted connection's own end later is a no-op");
  t.equal(check('127.0.0.3', 60), 'accept', 'a third host takes a slot too');
  t.ok(start('127.0.0.3', 60).evicted, 'from one of the two holding 8');
  gate.handshakeEnded(good[0]!, true, 70);
  t.equal(check('127.0.0.2', 71), 'accept', 'a slot free: anyone');
  t.equal(start('127.0.0.2', 71).evicted, undefined);
});

t.test("retry 'auto' at a full table: a tokenless Initial gets a Retry (it was refused before)", async (t) => {
  const gate = new InitialGate({ retry: 'auto', maxConnections: 10_000, maxPendingHandshakes: 16, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  for (let i = 0; i < 16; i++) gate.handshakeStarted('127.0.0.2', true, i);
  const initial = initialFrom({ host: '127.0.0.1', port: 1000 }, { host: '127.0.0.1', port: 9 });
  t.equal(gate.check(initial, '127.0.0.1', 1000, 20, { closing: false, connections: 16, pendingHandshakes: 16 }).action, 'retry');
});

/**
 * The attacker: quiche client connections on a raw socket of its own loopback address; each
 * sends its Initial, answers the Retry with the token (its address validated), then goes silent.
 * Bounded: at most `count`, `perTick` every `tickMs`, until `stop`.
 */
async function retryFollowingFlood(socket: dgram.Socket, from: SocketAddress, server: SocketAddress, count: number, perTick: number, tickMs: number, stop: () => boolean): Promise<{ sent: number; followed: number }> {
  const waiting = new Map<string, native.Connection>();
  const out = Buffer.alloc(1500);
  const result = { sent: 0, followed: 0 };
  socket.on('message', (message) => {
    let header: native.Header;
    try {
      header = quiche.Header.fromSlice(message, 16);
    } catch {
      return;
    }
    if (header.ty !== quiche.Type.Retry) return;
    const key = Buffer.from(header.dcid).toString('hex');
    const connection = waiting.get(key);
    if (connection === undefined) return;
    waiting.delete(key);
    connection.recv(message, { from: server, to: from });
    for (let sent = connection.send(out); sent !== null; sent = connection.send(out)) socket.send(Buffer.from(out.subarray(0, sent[0])), server.port, server.host);
    result.followed++;
  });
  while (result.sent < count && !stop()) {
    for (let i = 0; i < perTick && result.sent < count; i++, result.sent++) {
      const scid = randomBytes(16);
      const connection = quiche.Connection.connect('pnet', scid, from, server, clientConfig);
      waiting.set(scid.toString('hex'), connection);
      const sent = connection.send(out);
      if (sent !== null) socket.send(Buffer.from(out.subarray(0, sent[0])), server.port, server.host);
    }
    await delay(tickMs);
  }
  return result;
}

t.test('a Retry-following flood of abandoned handshakes from one host fills the table; a good client of another host still connects, every try', async (t) => {
  const max = 24;
  const server = await QuicTransport.listen({ identity: await Identity.generate(), udp: 'node', host: '127.0.0.1', maxPendingHandshakes: max });
  server.on('connection', (connection) => connection.on('stream', (stream) => stream.pipe(stream)));
  t.teardown(() => server.close({ timeoutMs: 200 }));
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.2', resolve));
  t.teardown(() => socket.close());
  let done = false;
  let peak = 0;
  // The table fills in the first ticks; then 10/s keeps it full (each handshake lingers 7.5 s).
  const flood = retryFollowingFlood(socket, { host: '127.0.0.2', port: socket.address().port }, server.address, 400, 2, 100, () => done);
  const watch = setInterval(() => (peak = Math.max(peak, server.stats().pendingHandshakes)), 5);
  t.teardown(() => clearInterval(watch));
  for (let i = 0; i < 100 && server.stats().pendingHandshakes < max; i++) await delay(50);
  t.equal(server.stats().pendingHandshakes, max, 'the flood filled the table');
  const good = await QuicTransport.listen({ identity: await Identity.generate(), udp: 'node', host: '127.0.0.1', sessionResumption: false });
  t.teardown(() => good.close({ timeoutMs: 200 }));
  const tries = 5;
  const results: string[] = [];
  for (let i = 0; i < tries; i++) {
    const started = performance.now();
    try {
      const connection = await good.dial(server.address, { timeoutMs: 2000 });
      results.push(`ok ${Math.round(performance.now() - started)} ms`);
      await connection.close({ timeoutMs: 200 });
    } catch (error) {
      results.push(`failed (${(error as { code?: string }).code})`);
    }
    await delay(200);
  }
  done = true;
  const { sent, followed } = await flood;
  const stats = server.stats();
  const drops = stats.droppedDatagrams;
  t.comment(`tries: ${results.join(', ')}; flood ${sent} sent, ${followed} Retries followed; server ${JSON.stringify({ peak, pending: stats.pendingHandshakes, evicted: stats.handshakesEvicted, retried: drops.retried, refused: drops.refused, hostHandshakeShare: stats.hostHandshakeShare })}`);
  t.equal(results.filter((r) => r.startsWith('ok')).length, tries, `the good client connected every try (${results.join(', ')})`);
  t.ok(followed >= max, 'the flood followed Retries: its handshakes were validated');
  t.ok(stats.handshakesEvicted >= tries, "each good handshake took a flood handshake's slot, counted");
  t.ok(peak <= max, `never over maxPendingHandshakes (peak ${peak})`);
  t.ok(drops.refused > 0, "the flood's own newcomers at the full table were refused");
});
