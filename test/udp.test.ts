// The QUIC transport's UDP sockets: both implementations behind one interface, on 127.0.0.1 and ::1;
// the native one's batching (GSO out, GRO in), argument checks, and its send queue when the socket
// buffer is full (in two network namespaces joined by a rate-limited veth link, root only).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { chooseUdp, nativeUdpError, openDatagramSocket } from '../src/transport/quic/udp.js';
import type { DatagramSocket, UdpImplementation } from '../src/transport/quic/udp.js';

const ADDON = fileURLToPath(new URL('../build/Release/udp/pnet_udp.node', import.meta.url));

interface Received {
  bytes: Buffer;
  host: string;
  port: number;
}

async function open(udp: UdpImplementation, host = '127.0.0.1', port = 0): Promise<{ socket: DatagramSocket; received: Received[]; errors: Error[] }> {
  const received: Received[] = [];
  const errors: Error[] = [];
  const socket = await openDatagramSocket(udp, {
    host,
    port,
    bufferSize: 1 << 20,
    onDatagram: (datagram, from, fromPort) => received.push({ bytes: Buffer.from(datagram), host: from, port: fromPort }),
    onError: (error) => errors.push(error),
  });
  return { socket, received, errors };
}

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

t.test('the native socket is built and chosen here', async (t) => {
  t.equal(nativeUdpError(), undefined, 'the addon loads');
  const saved = process.env['PNET_UDP'];
  delete process.env['PNET_UDP'];
  t.teardown(() => {
    if (saved !== undefined) process.env['PNET_UDP'] = saved;
  });
  t.equal(chooseUdp(), 'native');
  t.equal(chooseUdp('node'), 'node');
  process.env['PNET_UDP'] = 'node';
  t.equal(chooseUdp(), 'node', '$PNET_UDP decides for auto');
  process.env['PNET_UDP'] = 'fast';
  t.throws(() => chooseUdp(), { code: 'ERR_BAD_OPTION' });
});

for (const udp of ['native', 'node'] as const) {
  t.test(`${udp}: a run of datagrams arrives as separate datagrams, in order, byte-exact`, async (t) => {
    for (const host of ['127.0.0.1', '::1']) {
      const a = await open(udp, host);
      const b = await open(udp, host);
      t.teardown(() => Promise.all([a.socket.close(), b.socket.close()]));
      const run = randomBytes(10 * 1350 + 100);
      a.socket.send(run, 0, run.length, 1350, b.socket.address.port, host);
      const single = randomBytes(40);
      a.socket.send(single, 0, 40, 1350, b.socket.address.port, host);
      await until(() => b.received.length === 12, '12 datagrams');
      t.same(
        b.received.map((r) => r.bytes.length),
        [...Array<number>(10).fill(1350), 100, 40],
        `${host}: sizes`,
      );
      t.ok(Buffer.concat(b.received.slice(0, 11).map((r) => r.bytes)).equals(run), `${host}: the run's bytes`);
      t.ok(b.received[11]!.bytes.equals(single), `${host}: the single datagram`);
      t.ok(b.received.every((r) => r.host === host && r.port === a.socket.address.port), `${host}: the sender's address`);
      t.same(a.errors, []);
    }
  });

  t.test(`${udp}: binding a port in use fails with ERR_BAD_ADDRESS`, async (t) => {
    const a = await open(udp);
    t.teardown(() => a.socket.close());
    await t.rejects(open(udp, '127.0.0.1', a.socket.address.port), { code: 'ERR_BAD_ADDRESS', message: /cannot bind UDP/ });
    await t.rejects(open(udp, 'localhost'), { code: 'ERR_BAD_ADDRESS', message: /must be an IP address/ });
  });

  t.test(`${udp}: sending to a port nobody listens on neither throws nor breaks the socket`, async (t) => {
    const a = await open(udp);
    const b = await open(udp);
    const silent = await open(udp);
    const silentPort = silent.socket.address.port;
    await silent.socket.close();
    t.teardown(() => Promise.all([a.socket.close(), b.socket.close()]));
    const bytes = Buffer.alloc(3000, 7);
    for (let i = 0; i < 5; i++) a.socket.send(bytes, 0, bytes.length, 1350, silentPort, '127.0.0.1');
    a.socket.send(bytes, 0, 10, 1350, b.socket.address.port, '127.0.0.1');
    await until(() => b.received.length === 1, 'the datagram to the live port');
    t.equal(b.received[0]!.bytes.length, 10);
  });
}

interface RawSocket {
  readonly buffer: Buffer;
  readonly meta: Int32Array;
  readonly hosts: string[];
  bind(host: string, port: number, bufferSize: number): number;
  send(bytes: Uint8Array, offset: number, length: number, segmentSize: number, port: number, host: unknown): number;
  close(): void;
  info(): { gso: boolean; gro: boolean; queuedBytes: number; droppedSends: number };
}
type RawAddon = { UdpSocket: new (onBatch: (count: number) => void) => RawSocket };

t.test('native: a run leaves as one GSO send and arrives as one GRO batch', async (t) => {
  const addon = createRequire(import.meta.url)(ADDON) as RawAddon;
  const batches: Array<{ length: number; segment: number }> = [];
  const receiver: RawSocket = new addon.UdpSocket((count) => {
    for (let i = 0; i < count; i++) batches.push({ length: receiver.meta[i * 4 + 1]!, segment: receiver.meta[i * 4 + 2]! });
  });
  const port = receiver.bind('127.0.0.1', 0, 1 << 20);
  const sender = new addon.UdpSocket(() => undefined);
  sender.bind('127.0.0.1', 0, 1 << 20);
  t.teardown(() => {
    receiver.close();
    sender.close();
  });
  t.match(sender.info(), { gso: true, gro: true }, 'this kernel offers GSO and GRO');
  const run = Buffer.alloc(40 * 1350 + 10, 1);
  t.equal(sender.send(run, 0, run.length, 1350, port, '127.0.0.1'), 0);
  await until(() => batches.reduce((sum, b) => sum + b.length, 0) === run.length, 'the run');
  t.same(batches, [{ length: run.length, segment: 1350 }], 'one receive for 41 datagrams');
});

t.test('native: bad arguments throw, a closed socket reports EBADF, close inside the callback is safe', async (t) => {
  const addon = createRequire(import.meta.url)(ADDON) as RawAddon;
  t.throws(() => new (addon.UdpSocket as unknown as new (x: unknown) => RawSocket)(42), TypeError);
  let calls = 0;
  const receiver: RawSocket = new addon.UdpSocket(() => {
    calls++;
    receiver.close();
    receiver.close();
  });
  const port = receiver.bind('127.0.0.1', 0, 1 << 20);
  t.throws(() => receiver.bind('127.0.0.1', 0, 1 << 20), /already bound/);
  const sender = new addon.UdpSocket(() => undefined);
  sender.bind('127.0.0.1', 0, 1 << 20);
  const bytes = Buffer.alloc(100);
  t.throws(() => sender.send(bytes, 0, 100, 1350, port, 'localhost'), TypeError);
  t.throws(() => sender.send(bytes, 0, 100, 1350, port, 7), TypeError);
  t.throws(() => sender.send(bytes, 50, 100, 1350, port, '127.0.0.1'), RangeError);
  t.throws(() => sender.send(bytes, 0, 100, 0, port, '127.0.0.1'), RangeError);
  t.throws(() => sender.send('bytes' as unknown as Uint8Array, 0, 100, 1350, port, '127.0.0.1'), TypeError);
  t.throws(() => new addon.UdpSocket(() => undefined).bind(42 as unknown as string, 0, 1 << 20), TypeError);
  // Many receives queued: the callback closes the socket at the first and is never called again.
  for (let i = 0; i < 50; i++) t.equal(sender.send(bytes, 0, 100, 1350, port, '127.0.0.1'), 0);
  await until(() => calls > 0, 'the first batch');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(calls, 1);
  sender.close();
  t.ok(sender.send(bytes, 0, 100, 1350, port, '127.0.0.1') < 0, 'a closed socket returns a negative errno');
});

// --- The send queue: only a link slower than the sender fills a UDP socket's buffer. ----------------

const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0 && spawnSync('tc', ['-V']).status === 0;

function sh(...args: string[]): void {
  const result = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${args.join(' ')}: ${result.stderr}`);
}

const RECEIVER = `
const { UdpSocket } = require(process.env.ADDON);
let bytes = 0;
const s = new UdpSocket((n) => { for (let i = 0; i < n; i++) bytes += s.meta[i * 4 + 1]; if (bytes >= +process.env.EXPECT) { console.log(JSON.stringify({ bytes })); process.exit(0); } });
s.bind(process.env.HOST, 9000, 4 << 20);
console.log('ready');
setTimeout(() => { console.log(JSON.stringify({ bytes })); process.exit(1); }, 15000);
`;

const SENDER = `
const { UdpSocket } = require(process.env.ADDON);
const s = new UdpSocket(() => {});
s.bind(process.env.HOST, 0, 4096);
const run = Buffer.alloc(40 * 1350, 3);
let peak = 0, failures = 0;
for (let i = 0; i < 16; i++) {
  if (s.send(run, 0, run.length, 1350, 9000, process.env.PEER) !== 0) failures++;
  peak = Math.max(peak, s.info().queuedBytes);
}
const started = Date.now();
const poll = setInterval(() => {
  const info = s.info();
  if (info.queuedBytes === 0 || Date.now() - started > 10000) {
    clearInterval(poll);
    console.log(JSON.stringify({ peak, failures, ...info }));
    s.close();
  }
}, 5);
`;

t.test('native: when the socket buffer is full, sends wait in order and all leave', { skip: canNetns ? false : 'needs root, ip and tc' }, async (t) => {
  const tag = `pnu${process.pid}`;
  const [nsA, nsB] = [`${tag}a`, `${tag}b`];
  t.teardown(() => {
    spawnSync('ip', ['netns', 'del', nsA]);
    spawnSync('ip', ['netns', 'del', nsB]);
  });
  sh('ip', 'netns', 'add', nsA);
  sh('ip', 'netns', 'add', nsB);
  sh('ip', 'link', 'add', `${tag}x`, 'netns', nsA, 'type', 'veth', 'peer', 'name', `${tag}y`, 'netns', nsB);
  sh('ip', '-n', nsA, 'addr', 'add', '10.77.0.1/24', 'dev', `${tag}x`);
  sh('ip', '-n', nsB, 'addr', 'add', '10.77.0.2/24', 'dev', `${tag}y`);
  sh('ip', '-n', nsA, 'link', 'set', `${tag}x`, 'up');
  sh('ip', '-n', nsB, 'link', 'set', `${tag}y`, 'up');
  // 40 Mbit/s with room for everything in the qdisc: the sender's 4 KiB buffer fills, nothing drops.
  sh('ip', 'netns', 'exec', nsA, 'tc', 'qdisc', 'add', 'dev', `${tag}x`, 'root', 'tbf', 'rate', '40mbit', 'burst', '16kb', 'limit', '4mb');
  const expect = 16 * 40 * 1350;
  const env = { ...process.env, ADDON, EXPECT: String(expect), _TAPJS_PROCESSINFO_COV_EXCLUDE_: '/./' };
  const receiver = spawn('ip', ['netns', 'exec', nsB, process.execPath, '-e', RECEIVER], { env: { ...env, HOST: '10.77.0.2' } });
  t.teardown(() => receiver.kill());
  let receiverOut = '';
  receiver.stdout.on('data', (chunk: Buffer) => (receiverOut += chunk.toString()));
  await until(() => receiverOut.includes('ready'), 'the receiver', 10000);
  const sender = spawnSync('ip', ['netns', 'exec', nsA, process.execPath, '-e', SENDER], {
    env: { ...env, HOST: '10.77.0.1', PEER: '10.77.0.2' },
    encoding: 'utf8',
    timeout: 20000,
  });
  t.equal(sender.status, 0, sender.stderr);
  const sent = JSON.parse(sender.stdout.trim()) as { peak: number; failures: number; queuedBytes: number; droppedSends: number };
  t.ok(sent.peak > 0, `sends were queued (peak ${sent.peak} bytes)`);
  t.equal(sent.failures, 0, 'no send reported failure');
  t.equal(sent.queuedBytes, 0, 'the queue drained');
  t.equal(sent.droppedSends, 0);
  await until(() => receiverOut.includes('bytes'), 'the receiver to finish', 15000);
  const got = JSON.parse(receiverOut.split('\n').find((line) => line.startsWith('{'))!) as { bytes: number };
  t.equal(got.bytes, expect, 'every queued byte arrived');
});
