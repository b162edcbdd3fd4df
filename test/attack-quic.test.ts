// Issue 15 items 4–7: the QUIC endpoint under attack from a raw node:dgram socket on 127.0.0.1
// (bounded floods), real transports on the other end.
import t from 'tap';
import type { Test } from 'tap';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '@matrixai/quic';
import { Identity } from '../src/identity/index.js';
import { QuicTransport, makeQuicConfig } from '../src/transport/index.js';
import type { Connection, QuicTransportOptions, SocketAddress, Stream } from '../src/transport/index.js';
import { RetryTokens, TokenBucket, RETRY_TOKEN_LIFETIME_MS } from '../src/transport/quic/retry.js';
import { InitialGate } from '../src/transport/quic/gate.js';
import type { HandshakeTicket } from '../src/transport/quic/gate.js';

const quiche = native.quiche;
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const clientIdentity = await Identity.generate();
const clientConfig = makeQuicConfig(clientIdentity, { idleTimeoutMs: 30_000, connectionWindow: 1 << 20, streamWindow: 1 << 20, maxStreamsPerConnection: 100, maxDatagramSize: 1350 });

/** The attacker: a raw UDP socket on 127.0.0.1 that counts what comes back. */
interface Attacker {
  socket: dgram.Socket;
  address: SocketAddress;
  repliesReceived: number;
  bytesReceived: number;
  replies: Buffer[];
}

async function attacker(t: Test): Promise<Attacker> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const self: Attacker = { socket, address: { host: '127.0.0.1', port: socket.address().port }, repliesReceived: 0, bytesReceived: 0, replies: [] };
  socket.on('message', (message) => {
    self.repliesReceived++;
    self.bytesReceived += message.length;
    if (self.replies.length < 16) self.replies.push(message);
  });
  t.teardown(() => socket.close());
  return self;
}

/** A real client Initial (quiche's connect), for `server`, from `from`. */
function clientInitial(from: SocketAddress, server: SocketAddress): Buffer {
  const connection = quiche.Connection.connect('pnet', randomBytes(16), from, server, clientConfig);
  const out = Buffer.alloc(1500);
  const sent = connection.send(out);
  if (sent === null) throw new Error('no Initial');
  return out.subarray(0, sent[0]);
}

/** An Initial-shaped datagram of random bytes: version 1, 16-byte ids, no token; quiche cannot decrypt it. */
function garbageInitial(): Buffer {
  const packet = randomBytes(1200);
  packet[0] = 0xc0;
  packet.writeUInt32BE(1, 1);
  packet[5] = 16; // dcid length
  packet[22] = 16; // scid length
  packet[39] = 0; // token length
  packet.writeUInt16BE(0x4000 | (1200 - 42), 40); // Length
  return packet;
}

/** Sends `count` datagrams made by `make`, `perTick` every `tickMs` (bounded in count and time). */
async function flood(socket: dgram.Socket, to: SocketAddress, count: number, perTick: number, tickMs: number, make: (i: number) => Buffer): Promise<number> {
  let sent = 0;
  while (sent < count) {
    for (let i = 0; i < perTick && sent < count; i++, sent++) socket.send(make(sent), to.port, to.host);
    await delay(tickMs);
  }
  return sent;
}

async function listen(t: Test, options: Partial<QuicTransportOptions> = {}): Promise<QuicTransport> {
  const transport = await QuicTransport.listen({ identity: await Identity.generate(), udp: 'node', ...options });
  transport.on('connection', (connection) => {
    connection.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.pipe(stream);
    });
  });
  t.teardown(() => transport.close({ timeoutMs: 200 }));
  return transport;
}

async function client(t: Test): Promise<QuicTransport> {
  const transport = await QuicTransport.listen({ identity: clientIdentity, udp: 'node', sessionResumption: false });
  t.teardown(() => transport.close({ timeoutMs: 200 }));
  return transport;
}

function echoRoundTrip(stream: Stream, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
    stream.end(payload);
  });
}

/** Sequential echo requests on `connection` while `during` runs: completed requests per second. */
async function requestRate(connection: Connection, during: Promise<unknown>): Promise<number> {
  const started = performance.now();
  let done = false;
  void during.finally(() => {
    done = true;
  });
  let count = 0;
  const payload = Buffer.alloc(256, 7);
  while (!done) {
    const reply = await echoRoundTrip(await connection.openStream({ timeoutMs: 10_000 }), payload);
    if (reply.length === payload.length) count++;
  }
  return (count * 1000) / (performance.now() - started);
}

t.test('retry tokens: bound to address, port, Retry id and time; forged ones fail', async (t) => {
  const tokens = new RetryTokens();
  const odcid = randomBytes(16);
  const scid = randomBytes(16);
  const token = tokens.mint(odcid, scid, '127.0.0.1', 4000, 1000);
  t.same(tokens.verify(token, scid, '127.0.0.1', 4000, 1500), odcid, 'valid: the original id back');
  t.equal(tokens.verify(token, scid, '127.0.0.2', 4000, 1500), undefined, 'another address');
  t.equal(tokens.verify(token, scid, '127.0.0.1', 4001, 1500), undefined, 'another port');
  t.equal(tokens.verify(token, randomBytes(16), '127.0.0.1', 4000, 1500), undefined, 'another Retry id');
  t.equal(tokens.verify(token, scid, '127.0.0.1', 4000, 1000 + RETRY_TOKEN_LIFETIME_MS + 1), undefined, 'expired');
  t.equal(new RetryTokens().verify(token, scid, '127.0.0.1', 4000, 1500), undefined, 'another process key');
  const tampered = Buffer.from(token);
  tampered[9] = tampered[9]! ^ 1;
  t.equal(tokens.verify(tampered, scid, '127.0.0.1', 4000, 1500), undefined, 'tampered');
  t.equal(tokens.verify(randomBytes(40), scid, '127.0.0.1', 4000, 1500), undefined, 'random bytes');
  t.equal(tokens.verify(Buffer.alloc(0), scid, '127.0.0.1', 4000, 1500), undefined, 'empty');
});

t.test('token bucket: burst, then the rate', async (t) => {
  const bucket = new TokenBucket(10, 5, 0);
  let taken = 0;
  for (let i = 0; i < 20; i++) if (bucket.take(0)) taken++;
  t.equal(taken, 5, 'the burst');
  t.notOk(bucket.take(50), 'half a token after 50 ms');
  t.ok(bucket.take(100), 'one after 100 ms');
  t.notOk(bucket.take(100));
});

t.test("gate: a host's share of handshakes in progress that skipped Retry; past it a Retry, counted; token handshakes not charged", async (t) => {
  const gate = new InitialGate({ retry: 'auto', maxConnections: 10_000, maxPendingHandshakes: 1000, cidLength: 16, handshakeTimeoutMs: 5000 }, 0);
  t.equal(gate.hostShare, 62, '1/16 of maxPendingHandshakes');
  const server = { host: '127.0.0.1', port: 9 };
  const from = { host: '127.0.0.5', port: 1000 };
  const initial = clientInitial(from, server);
  const check = (host: string, now: number): string => gate.check(initial, host, 1000, now, { closing: false, connections: 0, pendingHandshakes: gate.admission.inProgress }).action;
  const tickets: HandshakeTicket[] = [];
  for (let i = 0; i < 62; i++) {
    t.equal(check(from.host, i), 'accept');
    tickets.push(gate.handshakeStarted(from.host, false, i));
  }
  t.equal(check(from.host, 70), 'retry', 'past its share: a Retry');
  t.equal(gate.hostShareRetried, 1, 'counted');
  t.equal(check('127.0.0.6', 71), 'accept', "another host's share is its own");
  gate.handshakeStarted(from.host, true, 72);
  gate.handshakeEnded(tickets.pop()!, false, 73);
  t.equal(check(from.host, 74), 'accept', 'one ended (a token handshake is not charged): room for one more');
  tickets.push(gate.handshakeStarted(from.host, false, 74));
  t.equal(check(from.host, 75), 'retry');
  for (const ticket of tickets) gate.handshakeEnded(ticket, true, 80);
  t.equal(check(from.host, 81), 'accept', 'all ended: the host has its share again');
});

t.test('the retry option is checked', async (t) => {
  const identity = await Identity.generate();
  await t.rejects(QuicTransport.listen({ identity, retry: 'sometimes' as 'auto' }), { code: 'ERR_BAD_OPTION' });
});

t.test('amplification: a silent address gets at most 3x the bytes it sent (RFC 9000 §8.1)', async (t) => {
  const server = await listen(t, { retry: 'never', udp: 'auto', handshakeTimeoutMs: 6000, idleTimeoutMs: 30_000 });
  // Several silent addresses, each counted on its own.
  const attackers = await Promise.all(Array.from({ length: 6 }, () => attacker(t)));
  let sent = 0;
  for (const attack of attackers) {
    const initial = clientInitial(attack.address, server.address);
    sent = initial.length;
    attack.socket.send(initial, server.address.port, server.address.host);
  }
  // Past quiche's third probe time (~5 s: two padded Initials, which went over 3x) and the handshake deadline (6 s): the PTO retransmits of the server's flight and its CONNECTION_CLOSE.
  await delay(6500);
  const factors = attackers.map((attack) => attack.bytesReceived / sent);
  t.comment(`each sent ${sent} B and got ${attackers.map((a) => a.bytesReceived).join(', ')} B: ${factors.map((f) => f.toFixed(2)).join(', ')}x; packets withheld ${server.stats().amplificationLimited}`);
  t.ok(attackers.every((attack) => attack.bytesReceived > 0), 'the server answered each');
  t.ok(Math.max(...factors) <= 3, `at most 3x (${Math.max(...factors).toFixed(2)}x)`);
});

/**
 * A flood from its own process (so its sending costs are not the server's): `count` undecryptable
 * Initials (or the length-prefixed packets of the file in argv[4]) to `port`, 20 every 10 ms, from
 * a node:dgram socket on `from`; exits when done or after 20 s.
 * Port 0: the same flood to a sink socket of its own (the control: the flood's cost to the machine, none to the server).
 */
const FLOOD_PROGRAM = `
const dgram = require('node:dgram');
const { randomBytes } = require('node:crypto');
const [port, count] = process.argv.slice(1, 3).map(Number);
const from = process.argv[3];
function readPackets(file) {
  const bytes = require('node:fs').readFileSync(file);
  const out = [];
  for (let at = 0; at < bytes.length; at += 2 + bytes.readUInt16BE(at)) out.push(bytes.subarray(at + 2, at + 2 + bytes.readUInt16BE(at)));
  return out;
}
setTimeout(() => process.exit(2), 20000).unref();
const socket = dgram.createSocket('udp4');
const sink = dgram.createSocket('udp4');
sink.on('message', () => {});
sink.bind(0, '127.0.0.1', () => socket.bind(0, from, () => {
  const target = port || sink.address().port;
  const file = process.argv[4];
  const packets = file ? readPackets(file) : Array.from({ length: count }, () => {
    const packet = randomBytes(1200);
    packet[0] = 0xc0; packet.writeUInt32BE(1, 1); packet[5] = 16; packet[22] = 16; packet[39] = 0;
    packet.writeUInt16BE(0x4000 | (1200 - 42), 40);
    return packet;
  });
  process.stdout.write('ready\\n');
  process.stdin.once('data', async () => {
    for (let sent = 0; sent < count; ) {
      for (let i = 0; i < 20 && sent < count; i++, sent++) socket.send(packets[sent], target, '127.0.0.1');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    setTimeout(() => process.exit(0), 100);
  });
}));
`;

/**
 * A good client's request rate while floods of undecryptable Initials from `from` come, in up to 3
 * (control, flood) pairs; asserts it keeps >= 50% in one and that the flood left no state.
 */
async function undecryptableFlood(t: Test, from: string): Promise<void> {
  const server = await listen(t, { udp: 'auto' });
  const good = await client(t);
  const connection = await good.dial(server.address);
  const count = 2000; // ~2,000/s for ~1 s, longer on a loaded machine
  /** The good client's request rate while a flood process sends `count` Initials to `port` (0: to its own sink). */
  const rateDuring = async (port: number): Promise<number> => {
    const flood = spawn(process.execPath, ['-e', FLOOD_PROGRAM, String(port), String(count), from], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.teardown(() => void flood.kill());
    await once(flood.stdout, 'data');
    flood.stdin.write('go\n');
    return requestRate(connection, once(flood, 'exit'));
  };
  // The control floods the flooder's own sink: the same process competes for the shared cores, so
  // the comparison holds on a loaded machine; only the server's handling of the flood differs.
  // Noise on a loaded machine (tap runs files side by side) moves one 1-s rate by 3x (623/s then
  // 1,801/s for the same control in one CI run), so a pair (control, flood) is measured up to 3
  // times and one pair within 50% passes; the attack it guards against (full state per Initial)
  // cut the good client to 0-2% in every pair.
  let peak = 0;
  const watch = setInterval(() => {
    peak = Math.max(peak, server.stats().connections, server.stats().pendingHandshakes);
  }, 20);
  const pairs: Array<{ control: number; underFlood: number }> = [];
  while (pairs.length < 3) {
    const control = await rateDuring(0);
    const underFlood = await rateDuring(server.address.port);
    pairs.push({ control, underFlood });
    if (underFlood >= 0.5 * control) break;
  }
  clearInterval(watch);
  const last = pairs.at(-1)!;
  const stats = server.stats();
  const drops = stats.droppedDatagrams;
  const rates = pairs.map((p) => `${p.underFlood.toFixed(0)}/s of ${p.control.toFixed(0)}/s`).join(', ');
  t.comment(`from ${from}: good client under the flood (of the control flood before it): ${rates}; server ${JSON.stringify({ connections: stats.connections, pending: stats.pendingHandshakes, peak, undecryptable: drops.undecryptable, retried: drops.retried, retryLimited: drops.retryLimited, hostsDistrusted: stats.hostsDistrusted })}`);
  t.ok(last.underFlood >= 0.5 * last.control, `good client keeps >= 50% in one of ${pairs.length} pairs (${rates})`);
  t.equal(stats.connections, 1, 'only the good connection');
  t.equal(peak, 1, 'no state for the flood at any time');
  t.equal(stats.pendingHandshakes, 0);
  t.ok(drops.undecryptable + drops.retried + drops.retryLimited >= count * pairs.length * 0.9, 'every flood datagram counted (undecryptable, a Retry, or over the Retry rate)');
  t.ok(drops.undecryptable > 0, 'some reached quiche and failed there');
  if (from === '127.0.0.1') {
    t.equal(stats.hostsDistrusted, 1, 'the good host lost its budget, once (counted)');
    // Its old budget took the whole flood into quiche (4,000 undecryptable of 2 pairs' 4,000 at load 5).
    t.ok(drops.retried + drops.retryLimited > drops.undecryptable, `most of the flood answered statelessly, as a stranger's (${drops.undecryptable} reached quiche)`);
  }
}

// The flood comes from 127.0.0.2, an address that never completed a handshake (the attack of issue 15).
t.test('undecryptable Initials: no connection state, and a good client keeps its request rate', async (t) => {
  await undecryptableFlood(t, '127.0.0.2');
});

// From the good client's own host, which completed a handshake: that host's budget of 1,000
// Initials a second without Retry was 1,000 quiche accept()s a second, and at load ~6 cut the
// good client to 5/s of 330/s. Now a validated host loses its budget past 16 undecryptable
// Initials (gate.ts), and the rest of its flood costs what a stranger's does.
t.test('undecryptable Initials from a host that completed a handshake: it loses its budget, the good client keeps its rate', async (t) => {
  await undecryptableFlood(t, '127.0.0.1');
});

/** `count` real client Initials for `server` (valid, each a new handshake), length-prefixed in one file for a flood process. */
function initialsFile(dir: string, name: string, count: number, server: SocketAddress): string {
  const parts: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const initial = clientInitial({ host: '127.0.0.1', port: 1 }, server);
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16BE(initial.length);
    parts.push(prefix, initial);
  }
  const file = join(dir, name);
  writeFileSync(file, Buffer.concat(parts));
  return file;
}

// A host that completed a handshake skips Retry within 1,000 new handshakes a second. Its valid
// Initials decrypt, so losing the budget on undecryptable ones does not touch a flood of handshakes
// it starts and abandons: those took half of maxPendingHandshakes (500 quiche handshakes, each
// with its crypto and probe-timeout resends for 7.5 s) before Retry. Now a host has a share of the
// handshakes in progress that skipped Retry (gate.ts, HOST_PENDING_SHARE): past it, a Retry.
t.test('abandoned valid handshakes from a host that completed one: a bounded share, a fresh client connects, the good client keeps its rate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pnet-abandon-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const count = 1000; // ~1,000/s for ~1 s, longer on a loaded machine
  const good = await client(t);
  const fresh = await client(t);
  const pairs: Array<{ control: number; underFlood: number; peak: number; dialMs: number }> = [];
  let stats: ReturnType<QuicTransport['stats']> | undefined;
  // Each pair on a new server, so the flood's handshakes of one pair do not weigh on the next
  // control; the good client's connection makes 127.0.0.1 a host that completed a handshake.
  while (pairs.length < 3) {
    const server = await listen(t, { udp: 'auto' });
    const connection = await good.dial(server.address);
    const file = initialsFile(dir, `initials-${pairs.length}`, count, server.address);
    const rateDuring = async (port: number, during?: () => Promise<unknown>): Promise<number> => {
      const flood = spawn(process.execPath, ['-e', FLOOD_PROGRAM, String(port), String(count), '127.0.0.1', file], { stdio: ['pipe', 'pipe', 'inherit'] });
      t.teardown(() => void flood.kill());
      await once(flood.stdout, 'data');
      flood.stdin.write('go\n');
      const [rate] = await Promise.all([requestRate(connection, once(flood, 'exit')), during?.()]);
      return rate;
    };
    let peak = 0;
    const watch = setInterval(() => {
      peak = Math.max(peak, server.stats().pendingHandshakes);
    }, 20);
    const control = await rateDuring(0);
    let dialMs = -1;
    // A fresh client on the same host dials while the flood runs (after it had time to fill its share).
    const dialFresh = async (): Promise<void> => {
      await delay(300);
      const started = performance.now();
      const fresh1 = await fresh.dial(server.address, { timeoutMs: 5000 });
      dialMs = performance.now() - started;
      t.equal(await echoRoundTrip(await fresh1.openStream(), Buffer.from('hi')).then(String), 'hi', 'the fresh client connected and its connection works');
      await fresh1.close();
    };
    const underFlood = await rateDuring(server.address.port, dialFresh);
    clearInterval(watch);
    stats = server.stats();
    pairs.push({ control, underFlood, peak, dialMs });
    await server.close({ timeoutMs: 200 });
    if (underFlood >= 0.5 * control) break;
  }
  const last = pairs.at(-1)!;
  const rates = pairs.map((p) => `${p.underFlood.toFixed(0)}/s of ${p.control.toFixed(0)}/s (peak pending ${p.peak}, fresh dial ${p.dialMs.toFixed(0)} ms)`).join(', ');
  const drops = stats!.droppedDatagrams;
  t.comment(`good client under the flood of abandoned handshakes (of the control before it): ${rates}; last server ${JSON.stringify({ retried: drops.retried, retryLimited: drops.retryLimited, refused: drops.refused, hostHandshakeShare: stats!.hostHandshakeShare })}`);
  t.ok(last.underFlood >= 0.5 * last.control, `good client keeps >= 50% in one of ${pairs.length} pairs (${rates})`);
  // The flood's share (62 of 1,000) plus the good and fresh clients; the code before held 500.
  t.ok(last.peak <= 64 + 2, `the flood held at most its host's share of handshakes (peak ${last.peak})`);
  t.ok(stats!.hostHandshakeShare >= count / 2, 'the rest of the flood was answered with a Retry, counted');
});

t.test('handshake flood: with Retry a fresh client still connects; without it is refused', async (t) => {
  for (const retry of ['auto', 'never'] as const) {
    await t.test(`retry: ${retry}`, async (t) => {
      const server = await listen(t, { maxPendingHandshakes: 20, retry });
      const attack = await attacker(t);
      const initials = Array.from({ length: 60 }, () => clientInitial(attack.address, server.address));
      await flood(attack.socket, server.address, initials.length, 20, 10, (i) => initials[i]!);
      await delay(100);
      const good = await client(t);
      const stats = server.stats();
      if (retry === 'auto') {
        const connection = await good.dial(server.address, { timeoutMs: 4000 });
        t.ok(connection.remoteNodeId, 'the good client connected');
        t.comment(`pending ${stats.pendingHandshakes}, retried ${stats.droppedDatagrams.retried}, refused ${stats.droppedDatagrams.refused}`);
        t.ok(stats.droppedDatagrams.retried >= 40, 'the flood past half the slots got Retries');
        t.ok(stats.pendingHandshakes <= 10, 'at most half the slots held by the flood');
        t.ok(server.stats().droppedDatagrams.retried > stats.droppedDatagrams.retried, 'the good client was retried too, and followed');
        await connection.close();
      } else {
        t.equal(stats.pendingHandshakes, 20, 'the flood holds every slot');
        await t.rejects(good.dial(server.address, { timeoutMs: 1500 }), 'the good client is refused');
      }
    });
  }
});

t.test("retry 'always': every client is retried and connects; forged tokens are dropped", async (t) => {
  const server = await listen(t, { retry: 'always' });
  const good = await client(t);
  const connection = await good.dial(server.address, { timeoutMs: 4000 });
  t.equal(server.stats().droppedDatagrams.retried, 1, 'one Retry');
  t.equal(await echoRoundTrip(await connection.openStream(), Buffer.from('hi')).then(String), 'hi', 'the connection works');
  const attack = await attacker(t);
  const initial = clientInitial(attack.address, server.address);
  attack.socket.send(initial, server.address.port, server.address.host);
  await delay(200);
  t.equal(attack.repliesReceived, 1, 'a Retry back');
  const retryPacket = attack.replies[0]!;
  t.equal((retryPacket[0]! >> 4) & 3, 3, 'of type Retry');
  const before = server.stats().droppedDatagrams.invalidToken;
  const withToken = initialWithToken(randomBytes(40));
  attack.socket.send(withToken, server.address.port, server.address.host);
  await delay(200);
  t.equal(server.stats().droppedDatagrams.invalidToken, before + 1, 'forged token counted');
  t.equal(server.stats().connections, 1, 'and no state');
  await connection.close();
});

/** An Initial-shaped datagram carrying `token` (random payload; the token check comes before decryption). */
function initialWithToken(token: Buffer): Buffer {
  const packet = randomBytes(1200);
  packet[0] = 0xc0;
  packet.writeUInt32BE(1, 1);
  packet[5] = 16;
  packet[22] = 16;
  packet[39] = token.length; // a one-byte varint (< 64)
  token.copy(packet, 40);
  const after = 40 + token.length;
  packet.writeUInt16BE(0x4000 | (1200 - after - 2), after);
  return packet;
}

t.test('version negotiation is rate-limited', async (t) => {
  const server = await listen(t);
  const attack = await attacker(t);
  const count = 1000;
  const started = performance.now();
  await flood(attack.socket, server.address, count, 100, 10, () => {
    const packet = garbageInitial();
    packet.writeUInt32BE(0x0a1a2a3a, 1); // a version nobody speaks
    return packet;
  });
  const elapsed = (performance.now() - started) / 1000;
  await delay(300);
  const drops = server.stats().droppedDatagrams;
  t.comment(`${count} unknown-version datagrams in ${elapsed.toFixed(2)} s: ${attack.repliesReceived} replies, ${drops.versionNegotiationLimited} limited`);
  t.equal(drops.versionNegotiation, attack.repliesReceived, 'each reply counted');
  t.ok(attack.repliesReceived <= 100 + 100 * (elapsed + 0.3) + 1, 'at most the burst and the rate');
  t.ok(attack.repliesReceived < count / 2, 'most not answered');
  t.ok(drops.versionNegotiationLimited > 0, 'the rest counted');
  t.ok(drops.versionNegotiation + drops.versionNegotiationLimited >= count * 0.9, 'every datagram counted');
  const reply = attack.replies[0]!;
  t.equal(reply.readUInt32BE(1), 0, 'a Version Negotiation packet');
});
