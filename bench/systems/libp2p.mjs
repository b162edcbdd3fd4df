// Baselines: js-libp2p (libp2p 3.x) over QUIC (@chainsafe/libp2p-quic) and
// over TCP + noise + yamux, two systems ('libp2p-quic', 'libp2p-tcp') from
// this one module; the worker passes the system name.
//
// As a user would set it up: createLibp2p with one transport (and for TCP
// noise + yamux), listening on 127.0.0.1 only, no extra services; library
// defaults for flow control (libp2p-quic: 10 MB stream / 15 MB connection
// windows; yamux: 256 KiB initial stream window growing to 16 MiB), except
// what the figures need: the connection manager's inbound rate limit and
// pending-connection limit (figure 5 opens connections faster than its
// default 5 per second per host) and connection count (figure 6), and the
// per-protocol stream limits (figure 4 opens 100 streams at once).
//
// Each node has its own Ed25519 libp2p key (libp2p's TLS / noise handshakes
// need a libp2p key; it is made before anything is timed). The client dials
// the server's multiaddr with its /p2p/<peer id>, so libp2p checks the
// server's key, as pnet's expectedNodeId does.
//
// Pitfalls met on Node 20: js-libp2p 3.x wants Node >= 22 and calls
// Promise.withResolvers, polyfilled below before libp2p is loaded (hence the
// dynamic imports); its streams' async iterator can miss the end of a stream
// that finished before iteration began, so every stream gets its 'message'
// and end listeners as soon as it exists and is never iterated.
import { KiB, MiB, now, payload, measureFigure } from '../lib/common.mjs';

if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const noop = () => {};

const ECHO = '/pnet-bench/echo/1.0.0';
const SINK = '/pnet-bench/sink/1.0.0';
/** Per-protocol stream limits per connection (libp2p's defaults are 32 in / 64 out). */
const STREAM_LIMITS = { maxInboundStreams: 1024, maxOutboundStreams: 1024 };

let modules;
async function load() {
  if (!modules) {
    const [{ createLibp2p }, { multiaddr }] = await Promise.all([import('libp2p'), import('@multiformats/multiaddr')]);
    modules = { createLibp2p, multiaddr };
  }
  return modules;
}

/** A libp2p node with one transport, listening on 127.0.0.1 (port 0). */
async function createNode(system, { listen = true, maxConnections = 4096 } = {}) {
  const { createLibp2p } = await load();
  let options;
  if (system === 'libp2p-quic') {
    const { quic } = await import('@chainsafe/libp2p-quic');
    options = { transports: [quic()], addresses: { listen: listen ? ['/ip4/127.0.0.1/udp/0/quic-v1'] : [] } };
  } else if (system === 'libp2p-tcp') {
    const [{ tcp }, { noise }, { yamux }] = await Promise.all([import('@libp2p/tcp'), import('@chainsafe/libp2p-noise'), import('@chainsafe/libp2p-yamux')]);
    options = {
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    };
  } else {
    throw new Error(`unknown libp2p system ${system}`);
  }
  return createLibp2p({
    ...options,
    connectionManager: {
      maxConnections,
      inboundConnectionThreshold: 1_000_000,
      maxIncomingPendingConnections: 1024,
      maxParallelDials: 1024,
    },
  });
}

const byteLength = (data) => data.byteLength;

/**
 * Counts bytes arriving on a libp2p stream ('message' events) and lets a
 * caller wait for a running total or the end of the stream (the remote closed
 * its writing side). Attached as soon as the stream exists.
 */
class StreamCounter {
  constructor(stream) {
    this.got = 0;
    this.want = 0;
    this.ended = false;
    this.error = null;
    this.waiter = null;
    stream.addEventListener('message', (evt) => {
      this.got += byteLength(evt.data);
      if (this.waiter && !this.waiter.end && this.got >= this.want) this.#settle();
    });
    const onEnd = () => {
      if (this.ended) return;
      this.ended = true;
      if (!this.waiter) return;
      if (this.waiter.end || this.got >= this.want) this.#settle();
      else this.#fail(new Error(`stream ended after ${this.got} of ${this.want} bytes`));
    };
    stream.addEventListener('remoteCloseWrite', onEnd);
    stream.addEventListener('end', onEnd);
    stream.addEventListener('close', (evt) => {
      if (evt.error) {
        this.error = evt.error;
        if (this.waiter) this.#fail(evt.error);
      } else {
        onEnd();
      }
    });
    if (stream.readableEnded || stream.readStatus === 'closed') this.ended = true;
  }

  #settle() {
    const w = this.waiter;
    this.waiter = null;
    w.resolve();
  }

  #fail(error) {
    const w = this.waiter;
    this.waiter = null;
    w.reject(error);
  }

  wait(n) {
    this.want += n;
    if (this.error) return Promise.reject(this.error);
    if (this.got >= this.want) return Promise.resolve();
    if (this.ended) return Promise.reject(new Error(`stream ended after ${this.got} of ${this.want} bytes`));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject, end: false };
    });
  }

  async end() {
    if (this.error) throw this.error;
    if (!this.ended) await new Promise((resolve, reject) => (this.waiter = { resolve, reject, end: true }));
    return this.got;
  }
}

/** send() with backpressure: waits for 'drain' when the stream's buffer is full. */
async function send(stream, data) {
  if (!stream.send(data)) await stream.onDrain();
}

/** Echo handler: every message is sent back; the writing side closes after the peer's. */
function serveEcho(stream) {
  let pending = Promise.resolve();
  stream.addEventListener('message', (evt) => {
    if (!stream.send(evt.data)) {
      // stop reading until the echo drains (as a Node pipe would)
      stream.pause();
      pending = stream.onDrain().then(() => stream.resume(), noop);
    }
  });
  stream.addEventListener('remoteCloseWrite', () => {
    pending.then(() => stream.close()).catch((error) => stream.abort(error));
  });
  if (stream.readableEnded) stream.close().catch(noop);
}

/** Sink handler: counts `bytes`, then answers one byte and closes. */
function serveSink(stream, bytes) {
  let got = 0;
  stream.addEventListener('message', (evt) => {
    got += byteLength(evt.data);
    if (got === bytes) {
      stream.send(Uint8Array.of(0x6b));
      stream.close().catch(noop);
    }
  });
}

export async function server({ system, params }) {
  const node = await createNode(system);
  await node.handle(ECHO, (stream) => serveEcho(stream), STREAM_LIMITS);
  await node.handle(SINK, (stream) => serveSink(stream, params.bytes), STREAM_LIMITS);
  const addr = node.getMultiaddrs().find((ma) => ma.toString().startsWith('/ip4/127.0.0.1/'));
  if (!addr) throw new Error(`no 127.0.0.1 listen address: ${node.getMultiaddrs().join(', ')}`);
  return {
    address: addr.toString(),
    nodeId: node.peerId.toString(),
    close: () => node.stop(),
    connections: () => node.getConnections().length,
    diag: () => ({ connections: node.getConnections().map((c) => ({ status: c.status, streams: c.streams.length })) }),
  };
}

/** Opens a stream, sends `body`, closes the writing side and reads the echo to its end. */
async function streamEcho(connection, body, progress) {
  const stream = await connection.newStream(ECHO, STREAM_LIMITS);
  const counter = new StreamCounter(stream);
  progress?.active.add(counter);
  stream.send(body);
  await stream.close();
  const got = await counter.end();
  progress?.active.delete(counter);
  if (progress) progress.done++;
  if (got !== body.length) throw new Error(`echo returned ${got} of ${body.length} bytes`);
}

export async function client({ system, figure, params, address }) {
  const { multiaddr } = await load();
  const target = multiaddr(address);
  const body = payload(params.size ?? KiB);
  let node;
  let connection;
  let stream;
  let counter;
  let op;
  const progress = { done: 0, active: new Set() };
  const dialers = []; // figure 6

  async function echoOnce() {
    stream.send(body);
    await counter.wait(body.length);
  }

  async function connectEchoClose(phase = noop) {
    const c = await node.dial(target);
    phase();
    await streamEcho(c, body);
    phase();
    await c.close();
  }

  return {
    async setup() {
      if (figure === 'memory') return; // the dialers are made in run()
      node = await createNode(system, { listen: false });
      if (figure === 'connect') {
        for (let i = 0; i < params.warmup; i++) await connectEchoClose();
        return;
      }
      connection = await node.dial(target);
      switch (figure) {
        case 'throughput':
          stream = await connection.newStream(SINK, STREAM_LIMITS);
          counter = new StreamCounter(stream);
          break;
        case 'echo': {
          stream = await connection.newStream(ECHO, STREAM_LIMITS);
          const chunks = [];
          const keep = (evt) => chunks.push(evt.data.subarray());
          stream.addEventListener('message', keep);
          counter = new StreamCounter(stream);
          await echoOnce();
          stream.removeEventListener('message', keep);
          if (!Buffer.from(Buffer.concat(chunks)).equals(body)) throw new Error('echo corrupted');
          for (let i = 1; i < params.warmup; i++) await echoOnce();
          break;
        }
        case 'stream-per-request':
          op = () => streamEcho(connection, body);
          for (let i = 0; i < params.warmup; i++) await op();
          break;
        case 'parallel':
          op = () => streamEcho(connection, body, progress);
          await Promise.all(Array.from({ length: 10 }, op));
          break;
        default:
          throw new Error(`unknown figure ${figure}`);
      }
    },

    async run() {
      const bulk = async (chunk) => {
        for (let sent = 0; sent < params.bytes; ) {
          const n = Math.min(chunk.length, params.bytes - sent);
          await send(stream, n === chunk.length ? chunk : chunk.subarray(0, n));
          sent += n;
        }
        await stream.close();
      };
      const measured = await measureFigure(figure, params, { bulk, counter, echoOnce, request: () => op(), connectEchoClose });
      if (measured) return measured;
      switch (figure) {
        case 'memory': {
          // one libp2p node per connection (a node keeps one connection per
          // peer), 20 at a time; they stay connected until exit
          const t0 = now();
          for (let i = 0; i < params.conns; i += 20) {
            await Promise.all(
              Array.from({ length: Math.min(20, params.conns - i) }, async () => {
                const dialer = await createNode(system, { listen: false, maxConnections: 8 });
                dialers.push(dialer);
                await dialer.dial(target);
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
        connections: node?.getConnections().map((c) => ({ status: c.status, streams: c.streams.length })),
        opsDone: progress.done,
        active: [...progress.active].map((c) => ({ got: c.got, ended: c.ended, error: c.error ? String(c.error) : undefined })),
        stream: counter ? { got: counter.got, want: counter.want, ended: counter.ended } : undefined,
      };
    },

    async close() {
      await Promise.all([node?.stop(), ...dialers.map((d) => d.stop())]);
    },
  };
}
