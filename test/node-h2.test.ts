import t from 'tap';
import type { Test } from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { createNode, Identity } from '../src/index.js';
import type { NodeOptions, PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { Dialer } from '../src/node/dialer.js';
import { EventEmitter } from 'node:events';
import type { Connection, Transport } from '../src/index.js';
import { channelSuite, collect, connectionCount, until } from './fixtures/node-channels.js';

// Nodes on both transports: QUIC-first dialing with the HTTP/2 fallback, the memory of the
// winner, the duplicate rule across kinds, a network of mixed links; and every channel test of
// test/node.test.ts again over HTTP/2 (the shared suite, with QUIC turned off).

channelSuite('h2');

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

/** UDP sockets that hold the port number of an HTTP/2-only node, dropping whatever arrives. */
const holes = new Map<PnetNode, dgram.Socket>();

/**
 * Nodes with these options, closed when the test ends. An HTTP/2-only node (`quic: false`,
 * unless `unboundUdp`) also gets a UDP socket on its port number that drops everything (a
 * firewall that drops UDP), so that no other process's QUIC node can take that number and
 * answer the QUIC half of a dial meant for it.
 */
async function nodes(t: Test, ...options: Array<NodeOptions & { unboundUdp?: boolean }>): Promise<PnetNode[]> {
  const made: PnetNode[] = [];
  t.teardown(() => Promise.all(made.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  for (const { unboundUdp, ...option } of options) {
    for (;;) {
      const node = await createNode(option);
      made.push(node);
      if (option.quic !== false || unboundUdp) break;
      const hole = dgram.createSocket('udp4');
      const bound = await new Promise<boolean>((resolve) => {
        hole.once('error', () => resolve(false));
        hole.bind(portOf(node.address), '127.0.0.1', () => resolve(true));
      });
      if (bound) {
        holes.set(node, hole);
        t.teardown(() => closeHole(node));
        break;
      }
      await node.close();
      hole.close();
    }
  }
  return made.filter((node) => !node.closed);
}

function closeHole(node: PnetNode): Promise<void> {
  const hole = holes.get(node);
  holes.delete(node);
  return hole ? new Promise((resolve) => hole.close(() => resolve())) : Promise.resolve();
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test('a node listens on QUIC and HTTP/2 on one port number; either can be turned off; options are checked', async (t) => {
  const [both, quicOnly, h2Only] = await nodes(t, {}, { h2: false }, { quic: false });
  t.same(both!.addresses, [
    { transport: 'quic', address: both!.address },
    { transport: 'h2', address: both!.address },
  ]);
  t.same(quicOnly!.addresses, [{ transport: 'quic', address: quicOnly!.address }]);
  t.same(h2Only!.addresses, [{ transport: 'h2', address: h2Only!.address }]);
  await t.rejects(createNode({ quic: false, h2: false }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ h2: 'yes' as unknown as boolean }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ quic: null as unknown as boolean }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ fallbackDelayMs: -1 }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ transportMemoryMs: Number.NaN }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ h2: { maxFrameSize: 1 } }), { code: 'ERR_BAD_OPTION' });
});

t.test('a fixed port whose TCP side is taken fails clearly and releases the UDP side', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as net.AddressInfo).port;
  await t.rejects(createNode({ listen: `127.0.0.1:${port}` }), { code: 'ERR_BAD_ADDRESS' });
  const [quicOnly] = await nodes(t, { listen: `127.0.0.1:${port}`, h2: false });
  t.equal(quicOnly!.address, `127.0.0.1:${port}`, 'the UDP port was free again');
});

t.test('a peer without QUIC is reached over HTTP/2 within the deadline; peers() says h2 on both sides', async (t) => {
  // Nothing at all on b's UDP port number: the QUIC Initials meet an ICMP port unreachable (ignored).
  const [a, b] = await nodes(t, {}, { quic: false, unboundUdp: true });
  b!.handleRequest('twice', (request) => Buffer.concat([request, request]));
  const started = performance.now();
  const id = await a!.dial(b!.address, { timeoutMs: 5000 });
  const elapsed = performance.now() - started;
  t.equal(id, b!.id);
  t.ok(elapsed >= 290, `HTTP/2 started after the 300 ms fallback delay (${elapsed.toFixed(0)} ms)`);
  t.ok(elapsed < 5000, 'and the dial ended well before QUIC would have given up');
  t.comment(`fallback dial took ${elapsed.toFixed(0)} ms`);
  await until(() => b!.peers().length === 1);
  t.equal(a!.peers()[0]!.transport, 'h2');
  t.equal(b!.peers()[0]!.transport, 'h2');
  t.equal(b!.peers()[0]!.nodeId, a!.id);
  t.match(a!.dialStats, { quic: 1, h2: 1, fallbacks: 1, remembered: 0 });
  t.equal((await a!.request(id, 'twice', 'ab')).toString(), 'abab');
  await sleep(50);
  t.equal(connectionCount(a!), 1, 'the abandoned QUIC handshake left nothing behind');
});

t.test('a black-holed UDP port (a socket that drops everything): HTTP/2 after fallbackDelayMs', async (t) => {
  const [a, b] = await nodes(t, { fallbackDelayMs: 100 }, { quic: false });
  let datagrams = 0;
  holes.get(b!)!.on('message', () => datagrams++);
  const started = performance.now();
  await a!.dial(b!.address);
  const elapsed = performance.now() - started;
  t.ok(datagrams > 0, 'QUIC was tried first');
  t.ok(elapsed >= 95 && elapsed < 5000, `HTTP/2 connected ${elapsed.toFixed(0)} ms after the dial began`);
  t.equal(a!.peers()[0]!.transport, 'h2');
});

t.test('a QUIC failure before the delay starts HTTP/2 at once', async (t) => {
  // QUIC's connection limit is full: the QUIC attempt fails at once (not a final error).
  const [a, b, c] = await nodes(t, { quic: { maxConnections: 1 }, fallbackDelayMs: 60_000 }, {}, {});
  await a!.dial(c!.address);
  t.equal(a!.peers()[0]!.transport, 'quic');
  const id = await a!.dial(b!.address, { timeoutMs: 5000 });
  t.equal(id, b!.id, 'connected long before the 60 s fallback delay');
  t.equal(a!.peers().find((peer) => peer.nodeId === b!.id)!.transport, 'h2');
});

/** A UDP relay to 127.0.0.1:`target` that holds every datagram `delayMs` each way (for one client); its port number has nothing on TCP. */
async function slowUdp(t: Test, target: number, delayMs: number): Promise<number> {
  const front = dgram.createSocket('udp4');
  const back = dgram.createSocket('udp4');
  await Promise.all([front, back].map((socket) => new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))));
  let open = true;
  let client: dgram.RemoteInfo | undefined;
  front.on('message', (datagram, from) => {
    client = from;
    setTimeout(() => open && back.send(datagram, target, '127.0.0.1'), delayMs);
  });
  back.on('message', (datagram) => {
    const to = client!;
    setTimeout(() => open && front.send(datagram, to.port, to.address), delayMs);
  });
  t.teardown(() => {
    open = false;
    front.close();
    back.close();
  });
  return front.address().port;
}

t.test('an early HTTP/2 failure does not end the race while QUIC may still connect', async (t) => {
  // QUIC through a relay that adds 100 ms each way (its handshake takes 200 ms and more);
  // fallbackDelayMs 0 starts HTTP/2 at once, and nothing listens on TCP there: refused at once.
  const [a, b] = await nodes(t, { fallbackDelayMs: 0 }, { h2: false });
  const port = await slowUdp(t, portOf(b!.address), 100);
  const id = await a!.dial(`127.0.0.1:${port}`, { expectedNodeId: b!.id });
  t.equal(id, b!.id);
  t.equal(a!.peers()[0]!.transport, 'quic', 'QUIC won after HTTP/2 had failed');
  t.equal(a!.dialStats.h2, 1, 'HTTP/2 was tried');
});

t.test('a wrong peer id over HTTP/2 is final: no waiting for QUIC', async (t) => {
  const [a, b] = await nodes(t, {}, { quic: false });
  const other = await Identity.generate();
  const started = performance.now();
  await t.rejects(a!.dial(b!.address, { expectedNodeId: other.nodeId, timeoutMs: 5000 }), { code: 'ERR_PEER_ID_MISMATCH' });
  t.ok(performance.now() - started < 5000, 'refused before QUIC timed out');
  t.equal(a!.peers().length, 0);
  t.equal(a!.dialStats.fallbacks, 0, 'a failed dial is not remembered');
  t.equal(await a!.dial(b!.address, { expectedNodeId: b!.id }), b!.id);
});

t.test('nothing on either port: the dial fails with QUIC\'s error and what HTTP/2 said', async (t) => {
  const [a] = await nodes(t, { quic: { handshakeTimeoutMs: 300 } });
  const silent = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
  t.teardown(() => silent.close());
  const error = await a!.dial(`127.0.0.1:${silent.address().port}`).catch((e: Error) => e);
  t.match(error, { code: 'ERR_CONNECT_TIMEOUT', message: /over HTTP\/2/ });
});

t.test('normal peers end up on QUIC, on both sides', async (t) => {
  const [a, b] = await nodes(t, {}, {});
  b!.handleRequest('ping', () => 'pong');
  const id = await a!.dial(b!.address);
  await until(() => b!.peers().length === 1);
  t.equal(a!.peers()[0]!.transport, 'quic');
  t.equal(b!.peers()[0]!.transport, 'quic');
  t.equal(a!.dialStats.quic, 1);
  t.equal(a!.dialStats.fallbacks, 0);
  t.equal((await a!.request(id, 'ping', '')).toString(), 'pong');
});

t.test('the winner is remembered: the next dial goes straight to HTTP/2, and QUIC is probed again after the memory ends', async (t) => {
  const [a, forgetful, b] = await nodes(t, {}, { transportMemoryMs: 50 }, { quic: false });
  b!.handleRequest('ping', () => 'pong');
  for (const dialer of [a!, forgetful!]) {
    await dialer.dial(b!.address);
    await dialer.disconnect(b!.id);
    await until(() => dialer.peers().length === 0);
  }
  t.match(a!.dialStats, { quic: 1, h2: 1, fallbacks: 1, remembered: 0 });
  const id = await a!.dial(b!.address);
  t.match(a!.dialStats, { quic: 1, h2: 2, fallbacks: 1, remembered: 1 }, 'no QUIC attempt the second time');
  t.equal(a!.peers()[0]!.transport, 'h2');
  t.equal((await a!.request(id, 'ping', '')).toString(), 'pong');

  await sleep(100); // past the 50 ms memory
  await forgetful!.dial(b!.address);
  t.match(forgetful!.dialStats, { quic: 2, h2: 2, fallbacks: 2, remembered: 0 }, 'QUIC was tried again once the memory ended');
});

t.test('a remembered HTTP/2 address that stopped serving HTTP/2 is raced again', async (t) => {
  const [a, b] = await nodes(t, {}, { quic: false });
  await a!.dial(b!.address);
  const port = portOf(b!.address);
  await b!.close({ timeoutMs: 200 });
  await closeHole(b!);
  await until(() => a!.peers().length === 0);
  // The same port number now serves QUIC only.
  const [c] = await nodes(t, { listen: `127.0.0.1:${port}`, h2: false });
  const id = await a!.dial(`127.0.0.1:${port}`);
  t.equal(id, c!.id);
  t.equal(a!.peers()[0]!.transport, 'quic');
  t.match(a!.dialStats, { quic: 2, fallbacks: 1, remembered: 1 }, 'the remembered dial failed, then QUIC won the race');
});

t.test('connections of both kinds at once: both ends keep the QUIC one', async (t) => {
  const [a, b] = await nodes(t, {}, {});
  a!.handleRequest('ping', () => 'a');
  b!.handleRequest('ping', () => 'b');
  // b believes a is reachable over HTTP/2 only, so b dials HTTP/2 while a dials QUIC.
  nodeServices(b!).dialer.h2Addresses.set(a!.address, Number.POSITIVE_INFINITY);
  await Promise.all([a!.dial(b!.address), b!.dial(a!.address)]);
  t.equal(b!.dialStats.remembered, 1, 'b dialed over HTTP/2');
  await until(() => connectionCount(a!) === 1 && connectionCount(b!) === 1);
  t.equal(a!.peers().length, 1);
  t.equal(b!.peers().length, 1);
  t.equal(a!.peers()[0]!.transport, 'quic');
  t.equal(b!.peers()[0]!.transport, 'quic');
  t.equal((await a!.request(b!.id, 'ping', '')).toString(), 'b');
  t.equal((await b!.request(a!.id, 'ping', '')).toString(), 'a');
});

t.test('a mixed line A–B–C–D (QUIC, then HTTP/2 links) routes and relays end to end', async (t) => {
  const routing = { routing: { rttSampleMs: 200 } };
  // C listens on HTTP/2 only: B–C and C–D are HTTP/2, A–B is QUIC.
  const line = await nodes(t, { ...routing }, { ...routing }, { ...routing, quic: false }, { ...routing });
  const [a, b, c, d] = line as [PnetNode, PnetNode, PnetNode, PnetNode];
  d.handle('digest', async (stream, info) => {
    const data = await collect(stream);
    stream.end(`${info.remoteNodeId}:${createHash('sha256').update(data).digest('hex')}`);
  });
  a.handleRequest('whoami', (request, info) => `${a.id}<-${info.remoteNodeId}:${request.toString()}`);
  await a.dial(b.address);
  await b.dial(c.address);
  await d.dial(c.address);
  const deadline = Date.now() + 10_000;
  while (!line.every((node) => node.routes().length === 3)) {
    if (Date.now() > deadline) throw new Error(`routes did not converge: ${line.map((n) => n.routes().length).join(',')}`);
    await sleep(20);
  }
  const kinds = (node: PnetNode): Record<string, string> => Object.fromEntries(node.peers().map((peer) => [peer.nodeId, peer.transport]));
  t.same(kinds(a), { [b.id]: 'quic' });
  t.same(kinds(b), { [a.id]: 'quic', [c.id]: 'h2' });
  t.same(kinds(c), { [b.id]: 'h2', [d.id]: 'h2' });
  t.same(kinds(d), { [c.id]: 'h2' });
  t.same(a.path(d.id), [a.id, b.id, c.id, d.id], 'the path follows the line');

  const data = randomBytes(1024 * 1024);
  const stream = await a.openStream(d.id, 'digest');
  const reply = collect(stream);
  stream.end(data);
  t.equal((await reply).toString(), `${a.id}:${createHash('sha256').update(data).digest('hex')}`, 'A→D byte-exact, D saw A as the sender');
  t.equal((await d.request(a.id, 'whoami', 'back')).toString(), `${a.id}<-${d.id}:back`, 'D→A too');
});

t.test('dialer on its own (fake transports): QUIC silent, HTTP/2 wins after the delay and is remembered; dials of one address share one attempt', async (t) => {
  const dials: string[] = [];
  const fake = (kind: 'quic' | 'h2', answer: (signal: AbortSignal | undefined) => Promise<unknown>) =>
    Object.assign(new EventEmitter(), {
      kind,
      handshakeTimeoutMs: 5000,
      dial: (_address: unknown, options: { signal?: AbortSignal } = {}) => {
        dials.push(kind);
        return answer(options.signal);
      },
    });
  const connection = Object.assign(new EventEmitter(), { transport: 'h2', remoteNodeId: 'peer', closing: false, close: async () => undefined });
  const quic = fake('quic', (signal) => new Promise((_, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted')))));
  const h2 = fake('h2', async () => connection);
  const taken: unknown[] = [];
  const dialer = new Dialer([quic, h2] as unknown as Transport[], { fallbackDelayMs: 20, transportMemoryMs: 60_000 }, (c) => taken.push(c));
  const target = { host: '127.0.0.1', port: 9 };
  const [first, second] = await Promise.all([dialer.dial(target), dialer.dial(target)]);
  t.equal(first, connection as unknown as Connection);
  t.equal(second, first, 'the second dial shared the first');
  t.same(taken, [connection], 'the connection was handed over once');
  t.same(dials, ['quic', 'h2']);
  t.match(dialer.stats, { quic: 1, h2: 1, fallbacks: 1, remembered: 0 });
  t.ok(dialer.h2Addresses.has('127.0.0.1:9'), 'the address is remembered as HTTP/2');
  await dialer.dial(target);
  t.same(dials, ['quic', 'h2', 'h2'], 'the next dial went straight to HTTP/2');
  t.match(dialer.stats, { remembered: 1 });
});
