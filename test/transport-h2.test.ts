// What only the HTTP/2 transport has: TCP/TLS-level refusals, the pnet control exchange, the parked-request pool.
import t from 'tap';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { Identity } from '../src/identity/index.js';
import type { PnetError } from '../src/errors.js';
import { H2Transport, HandshakeAdmission } from '../src/transport/index.js';
import type { Connection, H2TransportOptions, Stream } from '../src/transport/index.js';
import { childEnv } from './fixtures/child-env.js';

const alice = await Identity.generate();
const bob = await Identity.generate();

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function collect(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Resolves on 'close' (events.once would reject on an 'error' first). */
function closed(emitter: { once(event: 'close', listener: () => void): unknown }): Promise<void> {
  return new Promise((resolve) => emitter.once('close', () => resolve()));
}

async function listen(t: { teardown: (fn: () => unknown) => void }, identity: Identity, options: Omit<H2TransportOptions, 'identity'> = {}): Promise<H2Transport> {
  const transport = await H2Transport.listen({ identity, ...options });
  t.teardown(() => transport.close({ timeoutMs: 200 }));
  return transport;
}

t.test('a TLS client without a certificate, or without ALPN h2, never becomes a connection', async (t) => {
  const b = await listen(t, bob);
  let connections = 0;
  b.on('connection', () => connections++);
  for (const options of [{ ALPNProtocols: ['h2'] }, { ALPNProtocols: ['http/1.1'], key: alice.keyPem, cert: alice.certPem }]) {
    const socket = tls.connect({ host: '127.0.0.1', port: b.address.port, rejectUnauthorized: false, ...options });
    socket.on('error', () => undefined);
    socket.resume();
    await closed(socket);
  }
  await delay(20);
  t.equal(connections, 0);
  t.equal(b.rejectedConnections, 2);
});

t.test('an HTTP/2 client that does not speak pnet gets no connection and is dropped after the handshake deadline', async (t) => {
  const b = await listen(t, bob, { handshakeTimeoutMs: 300 });
  let connections = 0;
  b.on('connection', () => connections++);
  const session = http2.connect(`https://127.0.0.1:${b.address.port}`, { key: alice.keyPem, cert: alice.certPem, rejectUnauthorized: false });
  session.on('error', () => undefined);
  const request = session.request({ ':path': '/' });
  request.on('error', () => undefined);
  request.resume();
  await closed(request);
  t.not(request.rstCode, 0, 'the request is refused');
  await closed(session);
  t.equal(connections, 0);
});

t.test('dialing an HTTP/2 server that is not a pnet node fails with ERR_HANDSHAKE', async (t) => {
  const server = http2.createSecureServer({ key: bob.keyPem, cert: bob.certPem, requestCert: true, rejectUnauthorized: false });
  server.on('stream', (stream) => stream.respond({ ':status': 404 }, { endStream: true }));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const a = await listen(t, alice);
  await t.rejects(a.dial({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }), { code: 'ERR_HANDSHAKE', message: /not a pnet/ });
});

t.test('a refused TCP connection fails at once with ERR_HANDSHAKE (no waiting for a deadline)', async (t) => {
  const a = await listen(t, alice);
  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const started = performance.now();
  await t.rejects(a.dial({ host: '127.0.0.1', port }, { timeoutMs: 5000 }), { code: 'ERR_HANDSHAKE', message: /ECONNREFUSED/ });
  t.ok(performance.now() - started < 500);
});

t.test('the dialed side opens streams with no parked pool at all (every stream asked for on the control stream)', async (t) => {
  const a = await listen(t, alice, { reversePool: 0 });
  const b = await listen(t, bob);
  const inbound = once(b, 'connection') as Promise<[Connection]>;
  const ab = await a.dial(b.address);
  const [ba] = await inbound;
  ab.on('stream', (stream) => stream.pipe(stream));
  const replies = await Promise.all(
    Array.from({ length: 50 }, async (_, i) => {
      const stream = await ba.openStream();
      const reply = collect(stream);
      stream.end(`n${i}`);
      return (await reply).toString();
    }),
  );
  t.same(replies, Array.from({ length: 50 }, (_, i) => `n${i}`));
});

t.test('reset codes: 0 and the largest codes survive the trip', async (t) => {
  const a = await listen(t, alice);
  const b = await listen(t, bob);
  const inbound = once(b, 'connection') as Promise<[Connection]>;
  const ab = await a.dial(b.address);
  const [ba] = await inbound;
  const accepted: Stream[] = [];
  ba.on('stream', (stream) => accepted.push(stream));
  for (const [code, shown] of [
    [0, 0],
    [0xffff_feff, 0xffff_feff],
    [2 ** 40, 0xffff_feff],
  ] as const) {
    const stream = await ab.openStream();
    stream.write('x');
    while (accepted.length === 0) await delay(5);
    const peer = accepted.shift()!;
    const failed = new Promise<PnetError>((resolve) => peer.once('error', (error) => resolve(error as PnetError)));
    stream.reset(code);
    const error = await failed;
    t.equal(error.code, 'ERR_STREAM_RESET');
    t.match(error.message, new RegExp(`code ${shown}$`));
  }
});

t.test('a killed peer process is noticed at once over TCP: ERR_CONNECTION_CLOSED', async (t) => {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const program = `
    const { H2Transport } = await import(process.env.TRANSPORT_MODULE);
    const { Identity } = await import(process.env.IDENTITY_MODULE);
    const transport = await H2Transport.listen({ identity: await Identity.generate() });
    transport.on('connection', (c) => c.on('stream', (s) => { s.on('error', () => {}); s.pipe(s); }));
    process.stdout.write(JSON.stringify({ port: transport.address.port }) + '\\n');
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program], {
    env: childEnv({
      TRANSPORT_MODULE: fileURLToPath(new URL('../src/transport/index.ts', import.meta.url)),
      IDENTITY_MODULE: fileURLToPath(new URL('../src/identity/index.ts', import.meta.url)),
    }),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const { port } = JSON.parse(line.toString()) as { port: number };
  const a = await listen(t, alice);
  const connection = await a.dial({ host: '127.0.0.1', port });
  const stream = await connection.openStream();
  stream.write('hello');
  await once(stream, 'data');
  const failed = new Promise<PnetError>((resolve) => stream.once('error', (error) => resolve(error as PnetError)));
  const closed = once(connection, 'close') as Promise<[PnetError | undefined]>;
  const started = performance.now();
  child.kill('SIGKILL');
  const error = await failed;
  t.equal(error.code, 'ERR_CONNECTION_CLOSED');
  const [reason] = await closed;
  t.equal(reason?.code, 'ERR_CONNECTION_CLOSED', 'the connection reports the loss');
  t.ok(performance.now() - started < 1000, 'noticed without waiting for the idle timeout');
});

t.test('QUIC and HTTP/2 listen on the same port number, and each is dialed there', async (t) => {
  const { QuicTransport, listenTransports } = await import('../src/transport/index.js');
  // Port 0: QUIC's socket picks the number; when the TCP port of that number is taken (another
  // process on a busy machine), both are bound again on a new one (bounded).
  const both = await listenTransports({ identity: bob, listen: { host: '127.0.0.1', port: 0 }, quic: {}, h2: {} });
  const quic = both.quic!;
  const h2 = both.h2!;
  t.teardown(() => Promise.all([quic.close(), h2.close({ timeoutMs: 200 })]).then(() => undefined));
  t.equal(h2.address.port, quic.address.port);
  const quicClient = await QuicTransport.listen({ identity: alice });
  t.teardown(() => quicClient.close());
  const h2Client = await listen(t, alice);
  const overQuic = await quicClient.dial(quic.address, { expectedNodeId: bob.nodeId });
  const overH2 = await h2Client.dial(h2.address, { expectedNodeId: bob.nodeId });
  t.equal(overQuic.transport, 'quic');
  t.equal(overH2.transport, 'h2');
  t.equal(overH2.remoteAddress.port, overQuic.remoteAddress.port);
  // A taken TCP port is an ERR_BAD_ADDRESS, as a taken UDP port is for QUIC.
  await t.rejects(H2Transport.listen({ identity: bob, port: h2.address.port }), { code: 'ERR_BAD_ADDRESS' });
});

t.test('maxConnections refuses connections beyond the limit', async (t) => {
  const b = await listen(t, bob, { maxConnections: 1 });
  const a = await listen(t, alice);
  await a.dial(b.address);
  await t.rejects(a.dial(b.address, { timeoutMs: 2000 }), { code: 'ERR_HANDSHAKE' });
  t.equal(b.connectionCount, 1);
});

t.test('listenTransports: a taken TCP port fails a fixed number and leaves nothing bound', async (t) => {
  const { listenTransports, QuicTransport } = await import('../src/transport/index.js');
  // A number whose UDP port is free and whose TCP port is taken.
  const probe = await QuicTransport.listen({ identity: bob });
  const port = probe.address.port;
  await probe.close();
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  // Asked for that exact number, the TCP port is taken: ERR_BAD_ADDRESS, nothing left bound.
  await t.rejects(listenTransports({ identity: bob, listen: { host: '127.0.0.1', port }, quic: {}, h2: {} }), { code: 'ERR_BAD_ADDRESS' });
  const again = await QuicTransport.listen({ identity: bob, port });
  t.equal(again.address.port, port, 'the UDP port was released after the failed attempt');
  await again.close();
  // With port 0 the number is QUIC's pick, retried on a new one when its TCP port is taken.
  const both = await listenTransports({ identity: bob, listen: { host: '127.0.0.1', port: 0 }, quic: {}, h2: {}, attempts: 3 });
  t.equal(both.quic!.address.port, both.h2!.address.port);
  await Promise.all([both.quic!.close(), both.h2!.close()]);
});

t.test('dials share one TLS context per identity (building one parses the PEM key and certificate, ~1.3 ms)', async (t) => {
  const b = await listen(t, bob);
  const a = await listen(t, alice, { sessionResumption: false });
  const real = tls.createSecureContext;
  let built = 0;
  tls.createSecureContext = (options) => {
    built++;
    return real(options);
  };
  t.teardown(() => {
    tls.createSecureContext = real;
  });
  for (let i = 0; i < 5; i++) {
    const connection = await a.dial(b.address, { expectedNodeId: bob.nodeId });
    t.equal(connection.remoteNodeId, bob.nodeId);
    await connection.close({ graceful: false });
  }
  t.ok(built <= 1, `TLS contexts built for 5 dials: ${built} (one each before)`);
});

t.test('a shared admission that holds handshakes back closes new TCP connections before TLS, and counts them', async (t) => {
  const admission = new HandshakeAdmission(5000, performance.now());
  const b = await listen(t, bob, { admission });
  const a = await listen(t, alice);
  // Behind: one handshake took 4 s (slow), and 128 are in progress (the floor of what may wait).
  const now = performance.now();
  admission.end(admission.start(now - 4000), true, now);
  const waiting = Array.from({ length: 128 }, () => admission.start(now));
  await t.rejects(a.dial(b.address, { timeoutMs: 2000 }), { code: 'ERR_HANDSHAKE' });
  t.equal(b.admissionLimited, 1, 'counted');
  t.equal(b.rejectedConnections, 0, 'once: not also as a failed TLS handshake');
  t.equal(b.connectionCount, 0);
  t.equal(admission.inProgress, 128, 'the refused connection never counted as in progress');
  for (const id of waiting) admission.end(id, true, performance.now());
  const connection = await a.dial(b.address, { expectedNodeId: bob.nodeId });
  t.equal(connection.remoteNodeId, bob.nodeId, 'admitted again once fewer wait');
  t.equal(admission.inProgress, 0, 'its handshake ended in the admission');
  t.equal(b.admissionLimited, 1);
});
