import tls from 'node:tls';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { EventEmitter } from 'node:events';
import { PnetError } from '../../errors.js';
import { numberOption } from '../../options.js';
import { verifyPeerCertificate } from '../../identity/index.js';
import type { Identity, NodeId } from '../../identity/index.js';
import type { DialOptions, SocketAddress, Transport, TransportEvents } from '../types.js';
import { resolveLimits } from '../limits.js';
import { SessionStore } from '../sessions.js';
import { checkConnectionLimit, checkDialAddress, closeConnections, startKeepAliveSweep } from '../shared.js';
import type { TransportLimits, TransportOptions } from '../limits.js';
import { secureContextFor } from '../tls-context.js';
import type { HandshakeAdmission } from '../admission.js';
import { H2Connection } from './connection.js';
import type { H2ConnectionHost, H2ConnectionSettings } from './connection.js';

/** TLS ALPN of the HTTP/2 transport: plain `h2` (pnet's own paths tell pnet peers apart). */
export const H2_ALPN = 'h2';

export interface H2TransportOptions extends TransportOptions {
  /** Requests a dialer keeps parked at the dialed side, so that side opens streams without a round trip (default 4). */
  reversePool?: number;
  /** Largest HTTP/2 DATA frame this side accepts (SETTINGS_MAX_FRAME_SIZE; default 64 KiB). */
  maxFrameSize?: number;
  /**
   * Admission by latency shared with the QUIC endpoint on the same port (listenTransports passes
   * QUIC's): while it holds handshakes back, a new TCP connection is closed before its TLS
   * handshake. Absent: every connection within the limits gets its handshake.
   */
  admission?: HandshakeAdmission;
}

type Resolved = TransportLimits & { reversePool: number; maxFrameSize: number; sessionResumption: boolean };

function resolveOptions(options: H2TransportOptions): Resolved {
  const limits = resolveLimits(options);
  const ranged = (name: string, value: number, min: number, max: number): number => numberOption('HTTP/2 option', name, value, value, { min, max, integer: true });
  return {
    ...limits,
    // 2 × limit + 1 must fit HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS (the dialed side's bound).
    maxStreamsPerConnection: ranged('maxStreamsPerConnection', limits.maxStreamsPerConnection, 1, 2 ** 30 - 1),
    streamWindow: ranged('streamWindow', limits.streamWindow, 1, 2 ** 31 - 1),
    connectionWindow: ranged('connectionWindow', limits.connectionWindow, 65_535, 2 ** 31 - 1),
    reversePool: numberOption('HTTP/2 option', 'reversePool', options.reversePool, 4, { min: 0, max: 1000, integer: true }),
    maxFrameSize: numberOption('HTTP/2 option', 'maxFrameSize', options.maxFrameSize, 64 * 1024, { min: 16_384, max: 2 ** 24 - 1, integer: true }),
    sessionResumption: options.sessionResumption ?? true,
  };
}

/**
 * pnet's HTTP/2 transport, the fallback where UDP is blocked: one TLS 1.3 listener (ALPN h2,
 * mutual certificates checked with verifyPeerCertificate), one HTTP/2 session per connection
 * (Node's nghttp2 does the multiplexing and flow control), one HTTP/2 stream per pnet stream.
 */
export class H2Transport extends EventEmitter<TransportEvents> implements Transport, H2ConnectionHost {
  readonly kind = 'h2' as const;
  readonly localNodeId: NodeId;
  readonly localAddress: SocketAddress;
  readonly options: Resolved;
  /** Inbound TLS connections dropped: failed handshakes, garbage, bad certificates, wrong ALPN, over limits. */
  rejectedConnections = 0;
  /** Inbound TCP connections closed before TLS while the shared admission held handshakes back. */
  admissionLimited = 0;

  private readonly identity: Identity;
  private readonly server: tls.Server;
  private readonly settings: H2ConnectionSettings;
  private readonly connections = new Set<H2Connection>();
  /** TLS sessions the servers we dialed sent, for the next dial to the same address. */
  readonly sessions: SessionStore;
  /** Every TCP socket this transport owns (handshaking, established or ending), to destroy on close. */
  private readonly sockets = new Set<Socket>();
  /** When each inbound TCP connection arrived, by remote address (seeds its RTT), and its admission handle. */
  private readonly accepted = new Map<string, { at: number; admitted: number | undefined }>();
  private readonly admission: HandshakeAdmission | undefined;
  private readonly sweepTimer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;

  private constructor(identity: Identity, server: tls.Server, options: Resolved, admission: HandshakeAdmission | undefined) {
    super();
    this.identity = identity;
    this.localNodeId = identity.nodeId;
    this.server = server;
    this.options = options;
    this.sessions = new SessionStore(options.sessionResumption);
    this.admission = admission;
    this.settings = {
      maxStreamsPerConnection: options.maxStreamsPerConnection,
      streamOpenTimeoutMs: options.streamOpenTimeoutMs,
      reversePool: options.reversePool,
      idleTimeoutMs: options.idleTimeoutMs,
      keepAliveIntervalMs: options.keepAliveIntervalMs,
      streamWindow: options.streamWindow,
      connectionWindow: options.connectionWindow,
      maxFrameSize: options.maxFrameSize,
    };
    const bound = server.address();
    if (bound === null || typeof bound === 'string') throw new PnetError('ERR_BAD_ADDRESS', 'TLS server has no TCP address');
    this.localAddress = { host: bound.address, port: bound.port };
    server.prependListener('connection', this.onTcpConnection);
    server.on('secureConnection', this.onSecureConnection);
    server.on('tlsClientError', (_error, socket) => {
      // Garbage, plain HTTP, a TLS version or ALPN we refuse, a handshake timeout: drop the socket.
      this.rejectedConnections++;
      socket.destroy();
    });
    server.on('error', (error) => {
      if (this.listenerCount('error') > 0) this.emit('error', error);
    });
    this.sweepTimer = startKeepAliveSweep(options.keepAliveIntervalMs, this.sweep);
  }

  /** Binds the TCP port and starts serving. */
  static async listen(options: H2TransportOptions): Promise<H2Transport> {
    const resolved = resolveOptions(options);
    const host = options.host ?? '127.0.0.1';
    if (isIP(host) === 0) throw new PnetError('ERR_BAD_ADDRESS', `listen host must be an IP address, got ${JSON.stringify(host)}`);
    const server = tls.createServer({
      key: options.identity.keyPem,
      cert: options.identity.certPem,
      ALPNProtocols: [H2_ALPN],
      minVersion: 'TLSv1.3',
      // Ask every peer for its certificate, but let the handshake finish: pnet checks it itself.
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: resolved.handshakeTimeoutMs,
      noDelay: true,
    });
    // Established connections are bounded in secureConnection; this bounds the handshakes on top.
    server.maxConnections = resolved.maxConnections + resolved.maxPendingHandshakes;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: options.port ?? 0, host, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((error: NodeJS.ErrnoException) => {
      server.close();
      throw new PnetError('ERR_BAD_ADDRESS', `cannot listen on TCP ${host}:${options.port ?? 0}: ${error.message}`, { cause: error });
    });
    return new H2Transport(options.identity, server, resolved, options.admission);
  }

  get address(): SocketAddress {
    return this.localAddress;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  get handshakeTimeoutMs(): number {
    return this.options.handshakeTimeoutMs;
  }

  private own(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  // ---- inbound ----------------------------------------------------------

  private readonly onTcpConnection = (socket: Socket): void => {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const now = performance.now();
    // The node is behind on handshakes (QUIC's measure): a TLS handshake now would add to it.
    if (this.admission !== undefined && !this.admission.admits(now)) {
      this.admissionLimited++;
      socket.destroy();
      return;
    }
    this.own(socket);
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    this.accepted.set(key, { at: now, admitted: this.admission?.start(now) });
    socket.once('close', () => this.handshakeEnded(key, false));
  };

  /** The TLS handshake of an inbound connection ended (a repeated end is a no-op); its arrival time. */
  private handshakeEnded(key: string, ok: boolean): number | undefined {
    const accepted = this.accepted.get(key);
    if (accepted === undefined) return undefined;
    this.accepted.delete(key);
    if (accepted.admitted !== undefined) this.admission!.end(accepted.admitted, ok, performance.now());
    return accepted.at;
  }

  private readonly onSecureConnection = (socket: tls.TLSSocket): void => {
    const acceptedAt = this.handshakeEnded(`${socket.remoteAddress}:${socket.remotePort}`, true);
    socket.on('error', noop); // the HTTP/2 session reports what matters
    if (this.closing || this.connections.size >= this.options.maxConnections || socket.alpnProtocol !== H2_ALPN) {
      this.rejectedConnections++;
      socket.destroy();
      return;
    }
    let remote: NodeId;
    try {
      remote = verifyPeerCertificate([socket.getPeerCertificate().raw]);
    } catch {
      this.rejectedConnections++;
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const connection = new H2Connection(this, this.settings, {
      socket,
      direction: 'inbound',
      remoteNodeId: remote,
      handshakeTimeoutMs: this.options.handshakeTimeoutMs,
      handshakeRttMs: acceptedAt === undefined ? 0 : performance.now() - acceptedAt,
    });
    this.connections.add(connection);
  };

  established(connection: H2Connection): void {
    this.emit('connection', connection);
  }

  forget(connection: H2Connection): void {
    this.connections.delete(connection);
  }

  // ---- outbound ---------------------------------------------------------

  async dial(address: SocketAddress, options: DialOptions = {}): Promise<H2Connection> {
    if (this.closing) throw new PnetError('ERR_TRANSPORT_CLOSED', 'transport is closed');
    checkDialAddress(address);
    checkConnectionLimit(this.connections.size, this.options.maxConnections);
    const timeoutMs = options.timeoutMs ?? this.options.handshakeTimeoutMs;
    const signal = options.signal;
    if (signal?.aborted) throw new PnetError('ERR_CONNECTION_CLOSED', 'dial abandoned');
    const started = performance.now();
    const target = `${address.host}:${address.port}`;
    const session = this.sessions.get(address, options.expectedNodeId);
    const socket = tls.connect({
      ...(session === undefined ? {} : { session: Buffer.from(session.session) }),
      host: address.host,
      port: address.port,
      secureContext: secureContextFor(this.identity), // key, certificate, TLS 1.3 only
      ALPNProtocols: [H2_ALPN],
      rejectUnauthorized: false, // pnet checks the certificate itself, below
    });
    socket.setNoDelay(true);
    this.own(socket);
    const handshakeRttMs = await tlsHandshake(socket, { target, timeoutMs, started, ...(signal === undefined ? {} : { signal }) });
    socket.on('error', noop); // the HTTP/2 session reports what matters
    let remote: NodeId;
    try {
      if (socket.alpnProtocol !== H2_ALPN) throw new PnetError('ERR_HANDSHAKE', `${target} did not agree to ALPN ${H2_ALPN}`);
      // A resumed client gets no certificate from OpenSSL: the session stands for the one verified
      // when it was made (only that server can complete a handshake with it).
      remote = socket.isSessionReused() && session !== undefined ? session.nodeId : verifyPeerCertificate([socket.getPeerCertificate().raw]);
    } catch (error) {
      socket.destroy();
      throw error;
    }
    const expected = options.expectedNodeId;
    if (expected !== undefined && remote !== expected) {
      socket.destroy();
      throw new PnetError('ERR_PEER_ID_MISMATCH', `expected node ${expected} at ${target}, but ${remote} answered`);
    }
    if (this.closing) {
      socket.destroy();
      throw new PnetError('ERR_TRANSPORT_CLOSED', 'transport is closed');
    }
    // TLS 1.3 tickets come after the handshake; the newest one is kept.
    if (this.sessions.active) socket.on('session', (ticket: Buffer) => this.sessions.save(address, remote, ticket));
    const connection = new H2Connection(this, this.settings, {
      socket,
      direction: 'outbound',
      remoteNodeId: remote,
      handshakeTimeoutMs: Math.max(1, timeoutMs - (performance.now() - started)),
      handshakeRttMs,
    });
    this.connections.add(connection);
    const abandon = (): void => void connection.close({ graceful: false, reason: 'dial abandoned' });
    if (signal?.aborted) abandon();
    else signal?.addEventListener('abort', abandon, { once: true });
    try {
      await connection.ready;
    } finally {
      signal?.removeEventListener('abort', abandon);
    }
    return connection;
  }

  // ---- liveness and close -----------------------------------------------

  private readonly sweep = (now: number): void => {
    for (const connection of this.connections) connection.keepAlive(now);
  };

  /** Closes every connection (gracefully, bounded by timeoutMs), then the listener. */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      const timeoutMs = options.timeoutMs ?? 2000;
      this.sessions.close();
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      await closeConnections(this.connections, timeoutMs);
      clearInterval(this.sweepTimer);
      // Every peer has our GOAWAY; sockets still ending need not outlive the transport.
      for (const socket of [...this.sockets]) socket.destroy();
      await stopped;
    })();
    return this.closing;
  }
}

/**
 * Waits for a dialed TLS 1.3 handshake: its round-trip time (from the TCP connect), or a PnetError
 * (timeout, failure, abandoned). Removes only its own listeners when settled: the socket's others
 * (Node's TLS cleanup, the transport's bookkeeping, a user's) stay.
 */
function tlsHandshake(socket: tls.TLSSocket, how: { target: string; timeoutMs: number; started: number; signal?: AbortSignal }): Promise<number> {
  const { target, timeoutMs, started, signal } = how;
  return new Promise<number>((resolve, reject) => {
    let connectedAt = started;
    const connected = (): void => void (connectedAt = performance.now());
    const failed = (error: Error): void => fail(new PnetError('ERR_HANDSHAKE', `HTTP/2 dial to ${target} failed: ${error.message}`, { cause: error }));
    const closed = (): void => fail(new PnetError('ERR_HANDSHAKE', `HTTP/2 dial to ${target}: connection closed during the TLS handshake`));
    const abandon = (): void => fail(new PnetError('ERR_CONNECTION_CLOSED', 'dial abandoned'));
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abandon);
      socket.off('connect', connected);
      socket.off('error', failed);
      socket.off('close', closed);
      socket.off('secureConnect', secured);
    };
    const fail = (error: PnetError): void => {
      done();
      socket.on('error', noop); // a late error of the destroyed socket must not go unhandled
      socket.destroy();
      reject(error);
    };
    const secured = (): void => {
      done();
      resolve(performance.now() - connectedAt);
    };
    const timer = setTimeout(() => fail(new PnetError('ERR_CONNECT_TIMEOUT', `HTTP/2 dial to ${target} did not complete within ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', connected);
    socket.on('error', failed);
    socket.once('close', closed);
    signal?.addEventListener('abort', abandon, { once: true });
    socket.once('secureConnect', secured);
  });
}

function noop(): void {}
