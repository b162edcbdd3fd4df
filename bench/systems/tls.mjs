// Baseline: Node's TLS 1.3 over TCP (figures 1, 2, 5) and HTTP/2 over the
// same TLS (figures 3 and 4, which need streams). Mutual authentication with
// the same Ed25519 certificates pnet uses; each side checks the peer's
// self-signed certificate, and the client pins the server's key.
import tls from 'node:tls';
import http2 from 'node:http2';
import { once } from 'node:events';
import { ByteCounter, KiB, MiB, now, payload, spkiOfPem, verifySelfSigned, writeBulk, measureFigure } from '../lib/common.mjs';

const noop = () => {};

const TLS13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' };
const HTTP2_STREAM_WINDOW = 1 * MiB; // pnet's default stream window
const HTTP2_CONNECTION_WINDOW = 16 * MiB; // pnet's default connection window
const HTTP2_SETTINGS = { initialWindowSize: HTTP2_STREAM_WINDOW, maxConcurrentStreams: 1000 };
const usesHttp2 = (figure) => figure === 'stream-per-request' || figure === 'parallel';

function checkPeer(socket, expectedSpki) {
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.raw) throw new Error('peer sent no certificate');
  const spki = verifySelfSigned(cert.raw);
  if (expectedSpki && !spki.equals(expectedSpki)) throw new Error('peer certificate is not the pinned key');
}

export async function server({ figure, params, identity }) {
  const options = { key: identity.keyPem, cert: identity.certPem, requestCert: true, rejectUnauthorized: false, ...TLS13 };
  let srv;
  if (usesHttp2(figure)) {
    srv = http2.createSecureServer({ ...options, settings: HTTP2_SETTINGS });
    srv.on('secureConnection', (socket) => {
      try {
        checkPeer(socket);
      } catch {
        socket.destroy();
      }
    });
    srv.on('session', (session) => {
      session.setLocalWindowSize(HTTP2_CONNECTION_WINDOW);
      session.on('error', () => {});
    });
    srv.on('stream', (stream) => {
      stream.on('error', () => {});
      stream.respond({ ':status': 200 });
      stream.pipe(stream);
    });
  } else {
    srv = tls.createServer(options, (socket) => {
      socket.on('error', () => {});
      try {
        checkPeer(socket);
      } catch {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      if (figure === 'throughput') {
        let got = 0;
        socket.on('data', (chunk) => {
          got += chunk.length;
          if (got === params.bytes) socket.end('k');
        });
      } else {
        socket.pipe(socket);
      }
    });
  }
  let open = 0; // figure 6 checks that every connection got here
  srv.on('secureConnection', (socket) => {
    open++;
    socket.once('close', () => open--);
  });
  srv.listen({ port: 0, host: '127.0.0.1', backlog: 2048 });
  await once(srv, 'listening');
  return {
    address: `127.0.0.1:${srv.address().port}`,
    close: () => new Promise((resolve) => srv.close(() => resolve())),
    connections: () => open,
  };
}

// One SecureContext per process, as an application reusing its key would do
// (tls.connect with key/cert options would parse the PEMs on every call).
let clientContext;
/** With `resume` (figure 5's resumed row): the newest TLS session from the server, offered on the next connect. */
let savedSession;

function connectTls(port, identity, expectedSpki, resume = false) {
  clientContext ??= tls.createSecureContext({ key: identity.keyPem, cert: identity.certPem, ...TLS13 });
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      secureContext: clientContext,
      rejectUnauthorized: false,
      ...(resume && savedSession ? { session: savedSession } : {}),
    });
    if (resume) socket.on('session', (session) => (savedSession = session));
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      try {
        // A resumed client gets no certificate from OpenSSL: the session stands for the one checked when it was made.
        if (!socket.isSessionReused()) checkPeer(socket, expectedSpki);
      } catch (error) {
        socket.destroy();
        reject(error);
        return;
      }
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

function connectHttp2(port, identity, expectedSpki) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, {
      key: identity.keyPem,
      cert: identity.certPem,
      rejectUnauthorized: false,
      settings: HTTP2_SETTINGS,
      ...TLS13,
    });
    session.once('error', reject);
    session.once('connect', () => {
      session.off('error', reject);
      try {
        checkPeer(session.socket, expectedSpki);
      } catch (error) {
        session.destroy();
        reject(error);
        return;
      }
      session.setLocalWindowSize(HTTP2_CONNECTION_WINDOW);
      session.on('error', () => {});
      resolve(session);
    });
  });
}

/** One HTTP/2 request: POST `body`, read the echoed response to its end. */
async function http2Echo(session, body) {
  const req = session.request({ ':method': 'POST', ':path': '/echo' });
  const counter = new ByteCounter(req);
  req.end(body);
  const got = await counter.end();
  if (got !== body.length) throw new Error(`echo returned ${got} of ${body.length} bytes`);
}

export async function client({ figure, params, identity, address, peerCertPem }) {
  const port = Number(address.split(':').pop());
  const expectedSpki = spkiOfPem(peerCertPem);
  let socket;
  let session;
  let counter;
  const idle = []; // figure 6
  const body = payload(params.size ?? KiB);

  async function echoOnce() {
    socket.write(body);
    await counter.wait(body.length);
  }

  async function connectEchoClose(phase = noop) {
    const s = await connectTls(port, identity, expectedSpki, params.resume);
    phase();
    const c = new ByteCounter(s);
    s.write(body);
    await c.wait(body.length);
    phase();
    s.end();
    if (!s.closed) await once(s, 'close');
  }

  return {
    async setup() {
      if (usesHttp2(figure)) {
        session = await connectHttp2(port, identity, expectedSpki);
        const warm = figure === 'parallel' ? 10 : params.warmup;
        for (let i = 0; i < warm; i++) await http2Echo(session, body);
      } else if (figure === 'memory') {
        // the connections are made in run()
      } else if (figure !== 'connect') {
        socket = await connectTls(port, identity, expectedSpki);
        counter = new ByteCounter(socket);
        if (figure === 'echo') {
          const keep = new ByteCounter(socket, { keep: true });
          await echoOnce();
          if (!keep.bytes().subarray(0, body.length).equals(body)) throw new Error('echo corrupted');
          for (let i = 1; i < params.warmup; i++) await echoOnce();
          socket.removeAllListeners('data');
          counter = new ByteCounter(socket);
        }
      } else {
        for (let i = 0; i < params.warmup; i++) await connectEchoClose();
      }
    },

    async run() {
      const bulk = (chunk) => writeBulk(socket, chunk, params.bytes);
      const measured = await measureFigure(figure, params, { bulk, counter, echoOnce, request: () => http2Echo(session, body), connectEchoClose });
      if (measured) return measured;
      switch (figure) {
        case 'memory': {
          // 20 handshakes at a time; the sockets stay open (idle) until exit
          const t0 = now();
          for (let i = 0; i < params.conns; i += 20) {
            const batch = await Promise.all(Array.from({ length: Math.min(20, params.conns - i) }, () => connectTls(port, identity, expectedSpki)));
            for (const s of batch) s.on('error', noop);
            idle.push(...batch);
          }
          return { connectS: (now() - t0) / 1000 };
        }
        default:
          throw new Error(`unknown figure ${figure}`);
      }
    },

    async close() {
      for (const s of idle) s.destroy();
      if (socket) {
        socket.end();
        socket.destroy();
      }
      if (session) session.close();
    },
  };
}
