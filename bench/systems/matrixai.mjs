// Baseline: @matrixai/quic's high-level classes (QUICServer, QUICClient,
// QUICConnection, QUICStream), configured like pnet: Ed25519 certificates,
// mutual TLS (verifyPeer on both sides with a verifyCallback that checks the
// peer's self-signed certificate; the client pins the server key), 1350-byte
// datagrams, 1 MiB stream / 16 MiB connection windows, 5 s idle timeout.
import { createHmac, randomFillSync, timingSafeEqual, randomBytes } from 'node:crypto';
import { QUICClient, QUICServer, events, native } from '@matrixai/quic';
import Logger, { LogLevel } from '@matrixai/logger';
import { KiB, MiB, payload, spkiOfPem, verifySelfSigned, measureFigure } from '../lib/common.mjs';

const noop = () => {};

const BAD_CERTIFICATE = native.CryptoError?.BadCertificate ?? 298;
const logger = new Logger('bench', LogLevel.ERROR);

function config(params, identity, expectedSpki) {
  return {
    key: identity.keyPem,
    cert: identity.certPem,
    verifyPeer: true,
    verifyCallback: async (certs) => {
      try {
        if (!certs?.length) return BAD_CERTIFICATE;
        const spki = verifySelfSigned(Buffer.from(certs[0]));
        if (expectedSpki && !spki.equals(expectedSpki)) return BAD_CERTIFICATE;
        return undefined;
      } catch {
        return BAD_CERTIFICATE;
      }
    },
    applicationProtos: ['pnet-bench'],
    grease: false,
    maxIdleTimeout: 5000,
    maxSendUdpPayloadSize: params.datagram ?? 1350,
    initialMaxData: 16 * MiB,
    initialMaxStreamDataBidiLocal: 1 * MiB,
    initialMaxStreamDataBidiRemote: 1 * MiB,
    initialMaxStreamsBidi: 1000,
    readableChunkSize: 64 * KiB,
  };
}

const hmacOps = {
  async sign(key, data) {
    const mac = createHmac('sha256', Buffer.from(key)).update(Buffer.from(data)).digest();
    return mac.buffer.slice(mac.byteOffset, mac.byteOffset + mac.byteLength);
  },
  async verify(key, data, sig) {
    const mac = createHmac('sha256', Buffer.from(key)).update(Buffer.from(data)).digest();
    const given = Buffer.from(sig);
    return given.length === mac.length && timingSafeEqual(given, mac);
  },
};

const clientOps = {
  async randomBytes(data) {
    randomFillSync(new Uint8Array(data));
  },
};

/** Reads a QUICStream's readable side, counting bytes. */
class WebCounter {
  constructor(readable) {
    this.reader = readable.getReader();
    this.got = 0;
    this.want = 0;
  }

  async wait(n) {
    this.want += n;
    while (this.got < this.want) {
      const { value, done } = await this.reader.read();
      if (done) throw new Error(`stream ended after ${this.got} of ${this.want} bytes`);
      this.got += value.byteLength;
    }
  }

  async end() {
    for (;;) {
      const { value, done } = await this.reader.read();
      if (done) return this.got;
      this.got += value.byteLength;
    }
  }
}

async function serveStream(stream, figure, params) {
  if (figure === 'throughput') {
    const counter = new WebCounter(stream.readable);
    await counter.wait(params.bytes);
    const writer = stream.writable.getWriter();
    await writer.write(Buffer.from('k'));
    await writer.close();
    await counter.end();
    return;
  }
  await stream.readable.pipeTo(stream.writable);
}

export async function server({ figure, params, identity }) {
  const srv = new QUICServer({
    crypto: { key: randomBytes(32).buffer, ops: hmacOps },
    config: config(params, identity),
    logger,
  });
  srv.addEventListener(events.EventQUICServerConnection.name, (evt) => {
    const connection = evt.detail;
    connection.addEventListener(events.EventQUICConnectionStream.name, (e) => {
      serveStream(e.detail, figure, params).catch(() => {});
    });
    connection.addEventListener(events.EventQUICConnectionError.name, () => {});
  });
  srv.addEventListener(events.EventQUICServerError.name, () => {});
  await srv.start({ host: '127.0.0.1', port: 0 });
  return {
    address: `127.0.0.1:${srv.port}`,
    close: () => srv.stop({ force: true }),
  };
}

async function connect(port, params, identity, expectedSpki) {
  const client = await QUICClient.createQUICClient({
    host: '127.0.0.1',
    port,
    localHost: '127.0.0.1',
    crypto: { ops: clientOps },
    config: config(params, identity, expectedSpki),
    logger,
  });
  client.addEventListener(events.EventQUICClientError.name, () => {});
  return client;
}

/** One request on a new stream: write `body`, close the writable side, read the echo to its end. */
async function streamEcho(connection, body) {
  const stream = connection.newStream();
  const counter = new WebCounter(stream.readable);
  const writer = stream.writable.getWriter();
  await writer.write(body);
  await writer.close();
  const got = await counter.end();
  if (got !== body.length) throw new Error(`echo returned ${got} of ${body.length} bytes`);
}

export async function client({ figure, params, identity, address, peerCertPem }) {
  const port = Number(address.split(':').pop());
  const expectedSpki = spkiOfPem(peerCertPem);
  const body = payload(params.size ?? KiB);
  let quic;
  let stream;
  let writer;
  let counter;

  async function connectEchoClose(phase = noop) {
    const c = await connect(port, params, identity, expectedSpki);
    phase();
    await streamEcho(c.connection, body);
    phase();
    await c.destroy();
  }

  async function echoOnce() {
    await writer.write(body);
    await counter.wait(body.length);
  }

  return {
    async setup() {
      if (figure === 'connect') {
        for (let i = 0; i < params.warmup; i++) await connectEchoClose();
        return;
      }
      quic = await connect(port, params, identity, expectedSpki);
      if (figure === 'throughput' || figure === 'echo') {
        stream = quic.connection.newStream();
        writer = stream.writable.getWriter();
        counter = new WebCounter(stream.readable);
        if (figure === 'echo') for (let i = 0; i < params.warmup; i++) await echoOnce();
      } else {
        const warm = figure === 'parallel' ? 5 : params.warmup;
        for (let i = 0; i < warm; i++) await streamEcho(quic.connection, body);
      }
    },

    async run() {
      const bulk = async (chunk) => {
        for (let sent = 0; sent < params.bytes; ) {
          const n = Math.min(chunk.length, params.bytes - sent);
          await writer.write(n === chunk.length ? chunk : chunk.subarray(0, n));
          sent += n;
        }
        await writer.close();
      };
      const measured = await measureFigure(figure, params, { bulk, counter, echoOnce, request: () => streamEcho(quic.connection, body), connectEchoClose });
      if (measured) return measured;
      switch (figure) {
        default:
          throw new Error(`unknown figure ${figure}`);
      }
    },

    async close() {
      await quic?.destroy({ force: true });
    },
  };
}
