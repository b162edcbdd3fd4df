// pnet, measured through its public API as a user would call it: the built
// package (dist/), createNode / handle / handleRequest / dial / openStream /
// request / disconnect, with channel negotiation on every stream.
//
// The module is parametrised by transport: `pnetSystem('quic')` is the 'pnet'
// system (exported below: nodes with QUIC only, `h2: false`), and
// `pnetSystem('h2')` the 'pnet-h2' system (bench/systems/pnet-h2.mjs: nodes
// with HTTP/2 over TLS only, `quic: false`). A default node listens on both
// and dials QUIC first; turning the other transport off keeps each row on
// its own transport (a slow QUIC handshake under load would otherwise race
// HTTP/2 and be remembered).
//
// Cells with params.api === 'transport' drive the transport directly (the
// Transport / Connection / Stream interface, no node, no channel
// negotiation): figure 3's raw rows show what negotiation costs, and figure
// 6's dialers are transports.
import { createNode, Identity, QuicTransport, H2Transport } from '../../dist/index.js';
import { ByteCounter, KiB, MiB, now, payload, timeSequential, writeBulk, measureFigure, median } from '../lib/common.mjs';
import { createHash, randomBytes } from 'node:crypto';
import { nodeServices } from '../../dist/node/node.js';
import { encodeData } from '../../dist/relay/v2/index.js';
import { keyBytesOf } from '../../dist/routing/index.js';

const noop = () => {};

const HOST = '127.0.0.1';

/** `params.udp` ('node' in the node:dgram rows): the UDP socket; otherwise the default (native here). */
function quicOptions(params) {
  return { maxDatagramSize: params.datagram ?? 1350, ...(params.udp ? { udp: params.udp } : {}), ...resumption(params) };
}

/** `params.resume === false` (figure 5's full-handshake rows): no TLS session resumption. */
function resumption(params) {
  return params.resume === false ? { sessionResumption: false } : {};
}

/** The transports, by kind: how to listen with the bench's options, and a node's options for that transport only. */
const TRANSPORTS = {
  quic: {
    listen: (identity, params, extra = {}) => QuicTransport.listen({ identity, host: HOST, port: 0, ...quicOptions(params), ...extra }),
    node: (params, extra = {}) => ({ quic: { ...quicOptions(params), ...extra }, h2: false }),
  },
  h2: {
    listen: (identity, params, extra = {}) => H2Transport.listen({ identity, host: HOST, port: 0, ...resumption(params), ...extra }),
    node: (params, extra = {}) => ({ quic: false, h2: { ...resumption(params), ...extra } }),
  },
};

/** The bench system of one transport kind: its server and client (figure 7's nodes: relayBenchNode below). */
export function pnetSystem(kind) {
  if (!TRANSPORTS[kind]) throw new Error(`unknown transport ${kind}`);
  return {
    server: (message) => (message.params.api === 'transport' ? transportServer(kind, message) : nodeServer(kind, message)),
    client: (message) => (message.params.api === 'transport' ? transportClient(kind, message) : nodeClient(kind, message)),
  };
}

function portOf(address) {
  return Number(address.split(':').pop());
}

async function nodeServer(kind, { params, identity: pem }) {
  const identity = await Identity.fromPrivateKeyPem(pem.keyPem);
  const node = await createNode({ identity, listen: `${HOST}:0`, ...TRANSPORTS[kind].node(params) });
  node.on('error', () => {});
  node.handle('echo', (stream) => {
    stream.on('error', () => {});
    stream.pipe(stream);
  });
  node.handleRequest('echo-req', (request) => request);
  node.handle('sink', (stream) => {
    let got = 0;
    stream.on('error', () => {});
    stream.on('data', (chunk) => {
      got += chunk.length;
      if (got === params.bytes) stream.end('k');
    });
  });
  return {
    address: node.address,
    nodeId: node.id,
    close: () => node.close({ timeoutMs: 500 }),
    diag: () => ({ peers: peersOf(node)?.length }),
    connections: () => node.peers().length,
  };
}

/** Polls until `condition()` holds; throws after `ms`. */
async function until(condition, ms, what) {
  const t0 = now();
  while (!condition()) {
    if (now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Opens a stream (negotiated or raw), sends `body`, half-closes and reads the echo to its end. */
async function streamEcho(open, body, progress) {
  const stream = await open();
  const counter = new ByteCounter(stream);
  progress?.active.add(counter);
  stream.end(body);
  const got = await counter.end();
  progress?.active.delete(counter);
  if (progress) progress.done++;
  if (got !== body.length) throw new Error(`echo returned ${got} of ${body.length} bytes`);
}

function peersOf(node) {
  return node?.peers().map((p) => ({ streams: p.streams, rttMs: p.rttMs, direction: p.direction }));
}

async function nodeClient(kind, { figure, params, identity: pem, address, serverNodeId }) {
  const identity = await Identity.fromPrivateKeyPem(pem.keyPem);
  const body = payload(params.size ?? KiB);
  let node;
  let remoteId;
  let stream;
  let counter;
  let op; // one stream-per-request operation
  const progress = { done: 0, active: new Set() };
  const dialers = []; // figure 6

  async function connectEchoClose(phase = noop) {
    const id = await node.dial(address, { expectedNodeId: serverNodeId });
    phase();
    const reply = await node.request(id, 'echo-req', body);
    if (reply.length !== body.length) throw new Error('bad echo');
    phase();
    await node.disconnect(id);
  }

  async function echoOnce() {
    stream.write(body);
    await counter.wait(body.length);
  }

  return {
    async setup() {
      if (figure === 'memory') return; // the dialers are made in run()
      node = await createNode({ identity, listen: `${HOST}:0`, ...TRANSPORTS[kind].node(params) });
      node.on('error', () => {});
      if (figure === 'connect') {
        for (let i = 0; i < params.warmup; i++) await connectEchoClose();
        return;
      }
      remoteId = await node.dial(address, { expectedNodeId: serverNodeId });
      switch (figure) {
        case 'throughput':
          stream = await node.openStream(remoteId, 'sink');
          counter = new ByteCounter(stream);
          break;
        case 'echo': {
          stream = await node.openStream(remoteId, 'echo');
          const check = new ByteCounter(stream, { keep: true });
          counter = new ByteCounter(stream);
          await echoOnce();
          if (!check.bytes().equals(body)) throw new Error('echo corrupted');
          stream.removeAllListeners('data');
          counter = new ByteCounter(stream);
          for (let i = 1; i < params.warmup; i++) await echoOnce();
          break;
        }
        case 'stream-per-request':
          op =
            params.api === 'request'
              ? async () => {
                  const reply = await node.request(remoteId, 'echo-req', body);
                  if (reply.length !== body.length) throw new Error('bad echo');
                }
              : () => streamEcho(() => node.openStream(remoteId, 'echo'), body);
          for (let i = 0; i < params.warmup; i++) await op();
          break;
        case 'parallel':
          op = () => streamEcho(() => node.openStream(remoteId, 'echo'), body, progress);
          await Promise.all(Array.from({ length: 10 }, op));
          break;
        default:
          throw new Error(`unknown figure ${figure}`);
      }
    },

    async run() {
      const measured = await measureFigure(figure, params, { bulk: (chunk) => writeBulk(stream, chunk, params.bytes), counter, echoOnce, request: () => op(), connectEchoClose });
      if (measured) return measured;
      switch (figure) {
        case 'memory': {
          // dialer nodes in this process, 20 handshakes at a time; they stay connected until exit
          const t0 = now();
          for (let i = 0; i < params.conns; i += 20) {
            await Promise.all(
              Array.from({ length: Math.min(20, params.conns - i) }, async () => {
                if (params.dialers === 'transport') {
                  dialers.push(await memoryDialer(kind, params, address, serverNodeId));
                  return;
                }
                const dialer = await createNode({ listen: `${HOST}:0`, ...TRANSPORTS[kind].node({}, kind === 'quic' ? { socketBufferSize: 256 * KiB } : {}) });
                dialer.on('error', () => {});
                dialers.push(dialer);
                await dialer.dial(address, { expectedNodeId: serverNodeId });
              }),
            );
          }
          return { connectS: (now() - t0) / 1000 };
        }
        default:
          throw new Error(`unknown figure ${figure}`);
      }
    },

    diag() {
      return {
        peers: peersOf(node),
        opsDone: progress.done,
        active: [...progress.active].map((c) => ({ got: c.got, ended: c.ended, error: c.error ? String(c.error) : undefined })),
        stream: counter ? { got: counter.got, want: counter.want, ended: counter.ended } : undefined,
      };
    },

    async close() {
      stream?.destroy();
      await Promise.all([node?.close({ timeoutMs: 500 }), ...dialers.map((d) => d.close({ timeoutMs: 200 }))]);
    },
  };
}

// ---- Transport-level cells (params.api === 'transport'): a Transport on
// each side, no node and no channel negotiation; figure 1 streams into a
// sink that answers one byte, the other figures echo. Any figure but 7 can
// run this way; the cells use it for figure 3's raw rows.

/** One dialer of figure 6: its own transport and identity, one connection to the server. */
async function memoryDialer(kind, params, address, serverNodeId) {
  const extra = kind === 'quic' ? { socketBufferSize: 256 * KiB } : {};
  const t = await TRANSPORTS[kind].listen(await Identity.generate(), params, extra);
  t.on('error', noop);
  await t.dial({ host: HOST, port: portOf(address) }, { expectedNodeId: serverNodeId });
  return t;
}

async function transportServer(kind, { figure, params, identity: pem }) {
  const identity = await Identity.fromPrivateKeyPem(pem.keyPem);
  const transport = await TRANSPORTS[kind].listen(identity, params);
  let open = 0; // figure 6 checks that every connection got here
  transport.on('connection', (connection) => {
    open++;
    connection.once('close', () => open--);
    connection.on('stream', (stream) => {
      stream.on('error', noop);
      if (figure !== 'throughput') {
        stream.pipe(stream);
        return;
      }
      let got = 0;
      stream.on('data', (chunk) => {
        got += chunk.length;
        if (got === params.bytes) stream.end('k');
      });
    });
  });
  transport.on('error', noop);
  return {
    address: `${HOST}:${transport.address.port}`,
    nodeId: identity.nodeId,
    close: () => transport.close({ timeoutMs: 500 }),
    connections: () => open,
    diag: () => ({ connections: open }),
  };
}

async function transportClient(kind, { figure, params, identity: pem, address, serverNodeId }) {
  const identity = await Identity.fromPrivateKeyPem(pem.keyPem);
  const body = payload(params.size ?? KiB);
  const target = { host: HOST, port: portOf(address) };
  let transport;
  let connection;
  let stream;
  let counter;
  let op;
  const progress = { done: 0, active: new Set() };
  const dialers = []; // figure 6
  const echo = (p) => streamEcho(() => connection.openStream(), body, p);

  async function echoOnce() {
    stream.write(body);
    await counter.wait(body.length);
  }

  async function connectEchoClose(phase = noop) {
    const c = await transport.dial(target, { expectedNodeId: serverNodeId });
    phase();
    await streamEcho(() => c.openStream(), body);
    phase();
    await c.close();
  }

  return {
    async setup() {
      if (figure === 'memory') return; // the dialers are made in run()
      transport = await TRANSPORTS[kind].listen(identity, params);
      transport.on('error', noop);
      if (figure === 'connect') {
        for (let i = 0; i < params.warmup; i++) await connectEchoClose();
        return;
      }
      connection = await transport.dial(target, { expectedNodeId: serverNodeId });
      switch (figure) {
        case 'throughput':
          stream = await connection.openStream();
          counter = new ByteCounter(stream);
          break;
        case 'echo': {
          stream = await connection.openStream();
          const check = new ByteCounter(stream, { keep: true });
          counter = new ByteCounter(stream);
          await echoOnce();
          if (!check.bytes().equals(body)) throw new Error('echo corrupted');
          stream.removeAllListeners('data');
          counter = new ByteCounter(stream);
          for (let i = 1; i < params.warmup; i++) await echoOnce();
          break;
        }
        case 'stream-per-request':
          op = () => echo();
          for (let i = 0; i < params.warmup; i++) await op();
          break;
        case 'parallel':
          op = () => echo(progress);
          await Promise.all(Array.from({ length: 10 }, op));
          break;
        default:
          throw new Error(`unknown figure ${figure}`);
      }
    },

    async run() {
      const measured = await measureFigure(figure, params, { bulk: (chunk) => writeBulk(stream, chunk, params.bytes), counter, echoOnce, request: () => op(), connectEchoClose });
      if (measured) return measured;
      switch (figure) {
        case 'memory': {
          // 20 handshakes at a time; the dialers stay connected until exit
          const t0 = now();
          for (let i = 0; i < params.conns; i += 20) {
            const batch = await Promise.all(Array.from({ length: Math.min(20, params.conns - i) }, () => memoryDialer(kind, params, address, serverNodeId)));
            dialers.push(...batch);
          }
          return { connectS: (now() - t0) / 1000 };
        }
        default:
          throw new Error(`unknown figure ${figure}`);
      }
    },

    diag() {
      return {
        connection: connection ? { closed: connection.closed, streams: connection.streamCount } : undefined,
        opsDone: progress.done,
        active: [...progress.active].map((c) => ({ got: c.got, ended: c.ended, error: c.error ? String(c.error) : undefined })),
        stream: counter ? { got: counter.got, want: counter.want, ended: counter.ended } : undefined,
      };
    },

    async close() {
      stream?.destroy();
      await Promise.all([transport?.close({ timeoutMs: 500 }), ...dialers.map((d) => d.close({ timeoutMs: 200 }))]);
    },
  };
}

const quic = pnetSystem('quic');
/** The 'pnet' system: QUIC (node API rows, and transport rows with params.api = 'transport'). */
export const server = quic.server;
export const client = quic.client;

// ---- Figure 7 with every node in its own process (bench/quic.mjs runRelayFigure): one pnet
// node per worker, driven by {type:'call', method, args}; the orchestrator links them into a
// line (then a ring) and asks each for its part (requests, stream setups, bulk, CPU, heap).

/** Wall clock shared by the processes of one machine (ms since the epoch, sub-ms). */
const wallMs = () => performance.timeOrigin + performance.now();

/** Bytes of a progress tick: the 'digest' sink writes one '.' per PROGRESS_BYTES received. */
const PROGRESS_BYTES = 256 * KiB;

/** A payload whose bytes depend on their offset (a misplaced chunk changes the digest). */
function patterned(size) {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i + 4 <= size; i += 4) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
  return buf;
}

/**
 * One node of figure 7's line/ring. Link costs count hops only (an RTT unit of 1,000 s), so a
 * loaded machine's RTT noise cannot move the ring's path before the relay on it is killed.
 */
export async function relayBenchNode({ params }) {
  const node = await createNode({ listen: `${HOST}:0`, ...TRANSPORTS.quic.node(params), routing: { rttSampleMs: 200, cost: { unitMs: 1_000_000 } } });
  node.on('error', noop);
  node.handleRequest('echo-req', (request) => request);
  node.handle('echo', (stream) => {
    stream.on('error', noop);
    stream.pipe(stream);
  });
  node.handle('sink', (stream) => {
    let got = 0;
    stream.on('error', noop);
    stream.on('data', (chunk) => (got += chunk.length));
    stream.on('end', () => stream.end(String(got)));
  });
  // the ring transfer: a '.' per PROGRESS_BYTES received, then "bytes:sha256" at the end
  node.handle('digest', (stream) => {
    const hash = createHash('sha256');
    let got = 0;
    stream.on('error', noop);
    stream.on('data', (chunk) => {
      const before = Math.floor(got / PROGRESS_BYTES);
      got += chunk.length;
      hash.update(chunk);
      const ticks = Math.floor(got / PROGRESS_BYTES) - before;
      if (ticks > 0) stream.write('.'.repeat(ticks));
    });
    stream.on('end', () => stream.end(`${got}:${hash.digest('hex')}`));
  });
  let cpuMark = process.cpuUsage();
  let heapMark;
  let transfer;
  const body = payload(params.size ?? KiB);
  const methods = {
    info: () => ({ address: node.address, nodeId: node.id }),
    dial: async (address, nodeId) => (await node.dial(address, { expectedNodeId: nodeId }), true),
    /** Waits until the route to `target` has `length` nodes (both ends included). */
    waitPath: async (target, length, ms = 30_000) => (await until(() => node.path(target)?.length === length, ms, `route of ${length} nodes`), node.path(target)),
    path: (target) => node.path(target) ?? null,
    cpuMark: () => void (cpuMark = process.cpuUsage()),
    cpuRead: () => {
      const u = process.cpuUsage(cpuMark);
      return (u.user + u.system) / 1e6;
    },
    /** Sequential request() of params.size bytes: rate and p50. */
    requests: async (target, count, warmup) => {
      const op = async () => {
        const reply = await node.request(target, 'echo-req', body);
        if (reply.length !== body.length) throw new Error('bad echo');
      };
      for (let i = 0; i < warmup; i++) await op();
      const r = await timeSequential(count, op);
      return { rate: r.rate, p50us: r.p50us };
    },
    /** openStream + one echo + end, `count` times: the first one's setup, and the median of the later ones. */
    setups: async (target, count) => {
      const times = [];
      for (let i = 0; i < count; i++) {
        const t0 = now();
        const stream = await node.openStream(target, 'echo');
        times.push(now() - t0);
        const counter = new ByteCounter(stream);
        stream.end(body);
        await counter.end();
      }
      return { firstMs: times[0], laterMs: median(times.slice(1)), transports: node.peers().filter((p) => p.nodeId === target).map((p) => p.transport) };
    },
    /** `bytes` on one 'sink' stream (a new one), until the far end's count: MiB/s. */
    bulk: async (target, bytes) => {
      const stream = await node.openStream(target, 'sink');
      const counter = new ByteCounter(stream, { keep: true });
      const t0 = now();
      await writeBulk(stream, payload(64 * KiB), bytes);
      await counter.end();
      const s = (now() - t0) / 1000;
      if (Buffer.concat(counter.chunks).toString() !== String(bytes)) throw new Error('sink count differs');
      return { mibps: bytes / MiB / s, seconds: s };
    },
    /** Heap and RSS after a GC (the worker runs with --expose-gc). */
    heapMark: async () => (heapMark = await settled()),
    heapRead: async () => {
      const after = await settled();
      return { heapDelta: after.heap - heapMark.heap, rssDelta: after.rss - heapMark.rss, before: heapMark, after };
    },
    relayStats: () => nodeServices(node).datagrams?.stats() ?? null,
    /**
     * Synthetic relayed flows: `flows` distinct (random) source keys, `perFlow` DATA datagrams
     * each, to `dest` through the neighbour `via`: what a hop holds per flow.
     */
    flows: async (via, dest, flows, perFlow) => {
      const link = nodeServices(node).peers.live(via);
      if (!link?.sendDatagram) throw new Error('no QUIC link to the hop');
      const destKey = keyBytesOf(dest);
      // a short-header-looking inner packet (1 + 16-byte connection id + 100 bytes): the far end drops it as an unknown flow
      const inner = Buffer.concat([Buffer.from([0x40]), randomBytes(16), payload(100)]);
      let sent = 0;
      let refused = 0;
      for (let round = 0; round < perFlow; round++) {
        for (let f = 0; f < flows; f++) {
          const source = Buffer.alloc(32);
          source.writeUInt32BE(f + 1, 0);
          source.writeUInt32BE(0xfeedbeef, 28);
          if (link.sendDatagram(encodeData(16, destKey, source, inner))) sent++;
          else refused++;
          // let the QUIC connection drain its datagram queue now and then
          if ((sent + refused) % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
      return { sent, refused };
    },
    /** Starts `bytes` on one 'digest' stream; progress ticks are timed here (transferResult). */
    startTransfer: async (target, bytes) => {
      const data = patterned(bytes);
      const expected = `${bytes}:${createHash('sha256').update(data).digest('hex')}`;
      const stream = await node.openStream(target, 'digest');
      const connection = nodeServices(node).datagrams?.live(target);
      transfer = { sentAcked: 0, ticks: [], text: '', ended: false, error: undefined, t0: wallMs() };
      const state = transfer;
      stream.on('data', (chunk) => {
        const text = chunk.toString();
        const dots = text.replace(/[^.]/g, '').length;
        for (let i = 0; i < dots; i++) state.ticks.push(wallMs());
        state.text += text.replace(/\./g, '');
      });
      state.done = new Promise((resolve) => {
        stream.on('end', () => resolve((state.ended = true)));
        stream.on('error', (error) => resolve((state.error = String(error?.code ?? error))));
      });
      state.expected = expected;
      state.sameConnection = () => nodeServices(node).datagrams?.live(target) === connection;
      void writeSlices(stream, data, 64 * KiB).catch((error) => (state.error = String(error?.code ?? error)));
      return true;
    },
    transferProgress: () => (transfer ? transfer.ticks.length * PROGRESS_BYTES : 0),
    transferResult: async (ms) => {
      const state = transfer;
      await Promise.race([state.done, new Promise((resolve) => setTimeout(resolve, ms))]);
      return { ended: state.ended, error: state.error, exact: state.text === state.expected, text: state.text.slice(0, 80), ticks: state.ticks, t0: state.t0, t1: wallMs(), sameConnection: state.sameConnection() };
    },
  };
  return {
    address: node.address,
    nodeId: node.id,
    call: (method, args) => {
      if (!methods[method]) throw new Error(`unknown method ${method}`);
      return methods[method](...args);
    },
    close: () => node.close({ timeoutMs: 500 }),
    diag: () => ({ peers: peersOf(node), path: transfer ? transfer.ticks.length : undefined }),
  };
}

/** Writes `data` in `slice`-byte pieces, honouring backpressure, then ends the stream. */
async function writeSlices(stream, data, slice) {
  for (let offset = 0; offset < data.length; offset += slice) {
    if (!stream.write(data.subarray(offset, offset + slice))) {
      await new Promise((resolve, reject) => {
        const onDrain = () => (stream.off('error', onError), resolve());
        const onError = (error) => (stream.off('drain', onDrain), reject(error));
        stream.once('drain', onDrain);
        stream.once('error', onError);
      });
    }
  }
  stream.end();
}

async function settled() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss, external: m.external + m.arrayBuffers };
}
