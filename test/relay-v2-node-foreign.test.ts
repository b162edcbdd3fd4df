import t from 'tap';
import { Identity } from '../src/identity/index.js';
import { ForeignQuic } from '../src/transport/index.js';
import type { DatagramPath, QuicConnection, QuicMachine, SocketAddress } from '../src/transport/index.js';
import { mallocTrimmer } from '../src/transport/quic/malloc-trim.js';
import { loadNativeAddon } from '../src/native-addons.js';

const glibcTrim = (() => {
  try {
    return typeof (loadNativeAddon('pnet_udp') as { mallocTrim?: unknown }).mallocTrim === 'function';
  } catch {
    return false;
  }
})();

// Two QUIC connections over an in-memory DatagramPath (what relay v2's RelayPath is to them):
// the production config, mutual TLS pinned to node ids, streams both ways.

class MemoryPath implements DatagramPath {
  far: MemoryPath | undefined;
  connection: QuicConnection | undefined;
  onFirst: ((packet: Buffer) => void) | undefined;
  sent = 0;
  largest = 0;
  released = false;
  constructor(
    readonly localAddress: SocketAddress,
    readonly remoteAddress: SocketAddress,
  ) {}

  transmit(machine: QuicMachine): void {
    const buffer = Buffer.alloc(1500);
    for (let length = machine.pollTransmit(buffer); length !== null; length = machine.pollTransmit(buffer)) {
      const packet = Buffer.from(buffer.subarray(0, length));
      this.sent++;
      this.largest = Math.max(this.largest, length);
      setImmediate(() => this.far!.deliver(packet));
    }
  }

  deliver(packet: Buffer): void {
    if (this.connection !== undefined) this.connection.receive(packet);
    else this.onFirst?.(packet);
  }

  release(): void {
    this.released = true;
  }
}

t.test('a client and a server connection over an in-memory path', async (t) => {
  const [alice, bob] = await Promise.all([Identity.generate(), Identity.generate()]);
  const a = new ForeignQuic({ identity: alice, maxDatagramSize: 1244 });
  const b = new ForeignQuic({ identity: bob, maxDatagramSize: 1244 });
  t.teardown(() => Promise.all([a.close({ timeoutMs: 100 }), b.close({ timeoutMs: 100 })]));
  const aAddress = { host: '100::1', port: 1 };
  const bAddress = { host: '100::2', port: 2 };
  const aPath = new MemoryPath(aAddress, bAddress);
  const bPath = new MemoryPath(bAddress, aAddress);
  aPath.far = bPath;
  bPath.far = aPath;
  let server: QuicConnection | undefined;
  bPath.onFirst = (packet) => {
    server = b.accept(bPath, b.newConnectionId(), packet);
    bPath.connection = server;
  };
  const client = a.connect(aPath, a.newConnectionId(), bob.nodeId);
  aPath.connection = client;
  await client.ready;
  t.equal(client.remoteNodeId, bob.nodeId, 'the client is pinned to the server');
  t.equal(client.transport, 'quic');
  const accepted = new Promise<Buffer>((resolve) => {
    server!.on('stream', (stream) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        stream.end(Buffer.from('pong'));
        resolve(Buffer.concat(chunks));
      });
    });
  });
  await server!.ready;
  t.equal(server!.remoteNodeId, alice.nodeId, 'the server saw the client certificate');
  const stream = await client.openStream();
  const payload = Buffer.alloc(200_000, 7);
  const reply: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => reply.push(chunk));
  const ended = new Promise((resolve) => stream.on('end', resolve));
  stream.end(payload);
  t.ok((await accepted).equals(payload), 'the bytes crossed');
  await ended;
  t.equal(Buffer.concat(reply).toString(), 'pong');
  t.ok(aPath.largest <= 1244 && bPath.largest <= 1244, `no packet over the inner size (${aPath.largest}, ${bPath.largest})`);
  const trims = mallocTrimmer.stats().trims;
  await client.close({ timeoutMs: 500 });
  t.ok(client.closed);
  if (glibcTrim) {
    // A relayed connection's close returns malloc's free pages like a UDP one's (first trim of the process: no wait).
    for (let i = 0; i < 40 && mallocTrimmer.stats().trims === trims; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    t.equal(mallocTrimmer.stats().trims, trims + 1, 'the close trimmed malloc once');
  }
});

t.test('a wrong far node fails the handshake with ERR_PEER_ID_MISMATCH', async (t) => {
  const [alice, bob, carol] = await Promise.all([Identity.generate(), Identity.generate(), Identity.generate()]);
  const a = new ForeignQuic({ identity: alice, maxDatagramSize: 1244, handshakeTimeoutMs: 2000 });
  const b = new ForeignQuic({ identity: bob, maxDatagramSize: 1244 });
  t.teardown(() => Promise.all([a.close({ timeoutMs: 100 }), b.close({ timeoutMs: 100 })]));
  const aPath = new MemoryPath({ host: '100::1', port: 1 }, { host: '100::2', port: 2 });
  const bPath = new MemoryPath({ host: '100::2', port: 2 }, { host: '100::1', port: 1 });
  aPath.far = bPath;
  bPath.far = aPath;
  bPath.onFirst = (packet) => {
    bPath.connection = b.accept(bPath, b.newConnectionId(), packet);
  };
  const client = a.connect(aPath, a.newConnectionId(), carol.nodeId);
  aPath.connection = client;
  await t.rejects(client.ready, { code: 'ERR_PEER_ID_MISMATCH' });
});
