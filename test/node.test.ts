import t from 'tap';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { createNode, Identity, PnetError } from '../src/index.js';
import type { PnetNode, NodeOptions } from '../src/index.js';

async function pair(options: NodeOptions = {}): Promise<[PnetNode, PnetNode]> {
  const a = await createNode(options);
  const b = await createNode(options);
  t.teardown(() => Promise.all([a.close(), b.close()]).then(() => undefined));
  return [a, b];
}

/** Reads to the end without destroying the stream (a for-await loop would, closing our write side too). */
async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(stream, 'end');
  return Buffer.concat(chunks);
}

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

t.test('handshake gives each side the other node id, from its certificate', async (t) => {
  const [a, b] = await pair();
  const id = await a.dial(b.address);
  t.equal(id, b.id);
  await until(() => b.peers().length === 1);
  t.equal(b.peers()[0]!.nodeId, a.id);
  t.equal(a.peers()[0]!.nodeId, b.id);
  t.equal(a.peers()[0]!.transport, 'quic');
  t.equal(a.peers()[0]!.direction, 'outbound');
  t.equal(b.peers()[0]!.direction, 'inbound');
});

t.test('dialing with a pinned id that another key answers is refused', async (t) => {
  const [a, b] = await pair();
  const other = await Identity.generate();
  await t.rejects(a.dial(b.address, { expectedNodeId: other.nodeId }), { code: 'ERR_PEER_ID_MISMATCH' });
  t.equal(a.peers().length, 0);
  // the right pin works
  t.equal(await a.dial(b.address, { expectedNodeId: b.id }), b.id);
});

t.test('dialing nothing fails with a clear error within the deadline', async (t) => {
  const [a] = await pair({ quic: { handshakeTimeoutMs: 300 } });
  const silent = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
  t.teardown(() => silent.close());
  await t.rejects(a.dial(`127.0.0.1:${silent.address().port}`), { code: 'ERR_CONNECT_TIMEOUT' });
  await t.rejects(a.dial('not-an-address'), { code: 'ERR_BAD_ADDRESS' });
});

t.test('channels: unknown, unauthorised, metadata both ways', async (t) => {
  const [a, b] = await pair();
  const seen: Array<{ remote: string; metadata: Record<string, string> }> = [];
  b.handle('echo', (stream) => stream.pipe(stream), {
    metadata: { server: 'b' },
    authorise: (info) => {
      seen.push({ remote: info.remoteNodeId, metadata: { ...info.metadata } });
      return info.metadata['token'] === 'good';
    },
  });
  const id = await a.dial(b.address);
  await t.rejects(a.openStream(id, 'missing'), { code: 'UNKNOWN_CHANNEL' });
  await t.rejects(a.openStream(id, 'echo', { metadata: { token: 'bad' } }), { code: 'UNAUTHORIZED' });
  const stream = await a.openStream(id, 'echo', { metadata: { token: 'good' } });
  t.equal(stream.remoteMetadata['server'], 'b');
  t.same(seen.at(-1), { remote: a.id, metadata: { token: 'good' } });
  t.equal(seen[0]!.remote, a.id, 'authorise sees the verified remote id');
  stream.end('ping');
  t.equal((await collect(stream)).toString(), 'ping');
});

t.test('handler sees the opener metadata; optimistic data after OPEN arrives intact', async (t) => {
  const [a, b] = await pair();
  const got = new Promise<{ metadata: Record<string, string>; data: Buffer; remote: string }>((resolve) => {
    b.handle('collect', async (stream, info) => {
      resolve({ metadata: { ...info.metadata }, data: await collect(stream), remote: stream.remoteNodeId });
      stream.end();
    });
  });
  const id = await a.dial(b.address);
  const stream = await a.openStream(id, 'collect', { optimistic: true, metadata: { job: '42' } });
  stream.write('first ');
  stream.end('second');
  const result = await got;
  t.equal(result.data.toString(), 'first second');
  t.same(result.metadata, { job: '42' });
  t.equal(result.remote, a.id);
  stream.resume();
  await once(stream, 'end');
});

t.test('optimistic open on an unknown channel errors with the reject code', async (t) => {
  const [a, b] = await pair();
  const id = await a.dial(b.address);
  const stream = await a.openStream(id, 'nothing-here', { optimistic: true });
  stream.write('lost');
  const [error] = (await once(stream, 'error')) as [PnetError];
  t.equal(error.code, 'UNKNOWN_CHANNEL');
});

t.test('16 MiB echo is byte-exact', async (t) => {
  const [a, b] = await pair();
  b.handle('echo', (stream) => stream.pipe(stream));
  const id = await a.dial(b.address);
  const data = randomBytes(16 * 1024 * 1024);
  const stream = await a.openStream(id, 'echo');
  const reply = collect(stream);
  stream.end(data);
  const echoed = await reply;
  t.equal(echoed.length, data.length);
  t.equal(createHash('sha256').update(echoed).digest('hex'), createHash('sha256').update(data).digest('hex'));
});

t.test('200 concurrent streams on one connection', async (t) => {
  const [a, b] = await pair();
  b.handleRequest('twice', (request) => Buffer.concat([request, request]));
  const id = await a.dial(b.address);
  const replies = await Promise.all(
    Array.from({ length: 200 }, (_, i) => a.request(id, 'twice', Buffer.from(`req-${i}-`.padEnd(2000, String(i % 10))))),
  );
  replies.forEach((reply, i) => {
    const expected = Buffer.from(`req-${i}-`.padEnd(2000, String(i % 10)));
    if (!reply.equals(Buffer.concat([expected, expected]))) t.fail(`reply ${i} differs`);
  });
  t.equal(replies.length, 200);
  t.equal(a.peers().length, 1, 'still one connection');
});

t.test('a peer stream limit makes openers wait, then fail clearly', async (t) => {
  const [a, b] = await pair({ quic: { maxStreamsPerConnection: 4, streamOpenTimeoutMs: 300 } });
  const held: Array<{ end: () => void }> = [];
  b.handle('hold', (stream) => {
    stream.resume();
    held.push({ end: () => stream.end() });
  });
  const id = await a.dial(b.address);
  const open = await Promise.all(Array.from({ length: 4 }, () => a.openStream(id, 'hold')));
  await t.rejects(a.openStream(id, 'hold'), { code: 'ERR_STREAM_LIMIT' });
  // a waiter is released when a stream finishes
  const waiting = a.openStream(id, 'hold');
  open[0]!.end();
  open[0]!.resume();
  await until(() => held.length === 4);
  held[0]!.end();
  const fifth = await waiting;
  t.equal(fifth.channel, 'hold');
  for (const stream of [...open, fifth]) stream.destroy();
});

t.test('garbage datagrams and malformed frames hurt nobody else', async (t) => {
  const [a, b] = await pair();
  b.handle('echo', (stream) => stream.pipe(stream));
  const id = await a.dial(b.address);
  const stream = await a.openStream(id, 'echo');
  stream.write('before ');
  // garbage UDP at b's socket: short, long-header-looking, random
  const [host, port] = [b.address.split(':')[0]!, Number(b.address.split(':')[1])];
  const junk = dgram.createSocket('udp4');
  t.teardown(() => junk.close());
  for (let i = 0; i < 200; i++) {
    const size = [1, 20, 1200, 1500][i % 4]!;
    const datagram = randomBytes(size);
    if (i % 3 === 0) datagram[0] = 0xc0; // long header bit, so it reaches the Initial path
    junk.send(datagram, port, host);
  }
  // a raw stream whose first bytes are not an OPEN frame
  const connection = (a as unknown as { connections: Map<string, { openStream(): Promise<NodeJS.ReadWriteStream & { destroyed: boolean }> }> }).connections.get(id)!;
  const raw = await connection.openStream();
  raw.on('error', () => undefined);
  const answer = collect(raw);
  raw.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  t.equal((await answer)[0], 0xa3, 'the acceptor answered REJECT and ended the stream');
  stream.end('after');
  t.equal((await collect(stream)).toString(), 'before after');
  t.equal((await a.request(id, 'echo', 'still fine')).toString(), 'still fine');
});

t.test('simultaneous dial leaves one connection that both ends agree on', async (t) => {
  const [a, b] = await pair();
  b.handle('echo', (stream) => stream.pipe(stream));
  a.handle('echo', (stream) => stream.pipe(stream));
  const [ab, ba] = await Promise.all([a.dial(b.address), b.dial(a.address)]);
  t.equal(ab, b.id);
  t.equal(ba, a.id);
  t.equal((await a.request(b.id, 'echo', 'x')).toString(), 'x');
  t.equal((await b.request(a.id, 'echo', 'y')).toString(), 'y');
  // the losing connection drains after a short grace; both sides keep the one dialed by the smaller id
  const transportA = (a as unknown as { transport: { connectionCount: number } }).transport;
  const transportB = (b as unknown as { transport: { connectionCount: number } }).transport;
  await until(() => transportA.connectionCount === 1 && transportB.connectionCount === 1);
  t.pass('one QUIC connection left on each side');
  const expectedDirection = a.id < b.id ? 'outbound' : 'inbound';
  t.equal(a.peers().length, 1);
  t.equal(b.peers().length, 1);
  t.equal(a.peers()[0]!.direction, expectedDirection);
  t.equal(b.peers()[0]!.direction, expectedDirection === 'outbound' ? 'inbound' : 'outbound');
  t.equal((await a.request(b.id, 'echo', 'z')).toString(), 'z', 'the survivor carries streams');
});

t.test('graceful close drains open streams', async (t) => {
  const [a, b] = await pair();
  let finished = false;
  b.handle('slow', (stream) => {
    stream.resume();
    stream.on('end', () => {
      setTimeout(() => {
        finished = true;
        stream.end('done after a while');
      }, 200);
    });
  });
  const id = await a.dial(b.address);
  const stream = await a.openStream(id, 'slow');
  const reply = collect(stream);
  stream.end('work');
  await new Promise((resolve) => setTimeout(resolve, 50));
  await b.close();
  t.ok(finished, 'b waited for the stream to finish before closing');
  t.equal((await reply).toString(), 'done after a while');
});

t.test('a killed peer process: its stream errors within the idle deadline, the node serves others', async (t) => {
  const [a, b] = await pair({ quic: { idleTimeoutMs: 1500 } });
  b.handle('echo', (stream) => stream.pipe(stream));
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/peer.mts', import.meta.url).pathname], {
    env: { ...process.env, IDLE_MS: '1500' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const peer = JSON.parse(line.toString()) as { id: string; address: string };
  const id = await a.dial(peer.address);
  t.equal(id, peer.id);
  const stream = await a.openStream(id, 'sink');
  stream.write(randomBytes(64 * 1024));
  const down = once(a, 'peer:down');
  const started = Date.now();
  child.kill('SIGKILL');
  const [error] = (await once(stream, 'error')) as [PnetError];
  const elapsed = Date.now() - started;
  t.equal(error.code, 'ERR_IDLE_TIMEOUT');
  t.ok(elapsed < 1500 + 1500, `stream failed ${elapsed} ms after the kill`);
  const [event] = (await down) as [{ nodeId: string; error?: PnetError }];
  t.equal(event.nodeId, peer.id);
  const bid = await a.dial(b.address);
  t.equal((await a.request(bid, 'echo', 'alive')).toString(), 'alive');
});

t.test('parallel echoes against a peer process all end (a FIN is never lost to an early ack)', async (t) => {
  const [a] = await pair();
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/peer.mts', import.meta.url).pathname], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const peer = JSON.parse(line.toString()) as { id: string; address: string };
  const id = await a.dial(peer.address);
  const body = randomBytes(64 * 1024);
  let completed = 0;
  for (let round = 0; round < 8; round++) {
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        const stream = await a.openStream(id, 'echo');
        const echoed = collect(stream);
        stream.end(body);
        if ((await echoed).equals(body)) completed++;
      }),
    );
  }
  t.equal(completed, 800, 'every echo came back whole and ended');
});

t.test('dialing a peer whose connection is closing makes a new connection', async (t) => {
  const [a, b] = await pair();
  b.handleRequest('ping', () => 'pong');
  const id = await a.dial(b.address);
  const closing = a.disconnect(id);
  t.equal(await a.dial(b.address, { expectedNodeId: id }), id);
  t.equal((await a.request(id, 'ping', '')).toString(), 'pong');
  await closing;
  t.equal((await a.request(id, 'ping', '')).toString(), 'pong', 'the new connection survives the old one closing');
});

t.test('bad options and closed nodes give clear errors', async (t) => {
  await t.rejects(createNode({ quic: { maxDatagramSize: 100 } }), { code: 'ERR_BAD_OPTION' });
  await t.rejects(createNode({ listen: 'localhost:0' }), { code: 'ERR_BAD_ADDRESS' });
  const node = await createNode();
  const other = await Identity.generate();
  await t.rejects(node.openStream(other.nodeId, 'x'), { code: 'UNREACHABLE' });
  await node.close();
  await t.rejects(node.dial('127.0.0.1:9'), { code: 'ERR_NODE_CLOSED' });
  t.ok(new PnetError('ERR_NODE_CLOSED', 'x') instanceof Error);
});
