import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, Http2Session, IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { PnetError } from '../../errors.js';
import type { NodeId } from '../../identity/index.js';
import type { CloseOptions, Connection, ConnectionEvents, SocketAddress } from '../types.js';
import { H2Stream } from './stream.js';
import type { H2StreamHost } from './stream.js';
import { StreamInbox } from '../inbox.js';
import { CreditWaiters, untilDeadline } from '../shared.js';
import {
  CONTROL_PATH,
  DEMAND_SIZE,
  MAX_STREAMS_HEADER,
  PARKED_PATH,
  RESPONSE_HEADERS,
  RESPONSE_OPTIONS,
  STREAM_PATH,
  describeWireCode,
  encodeDemand,
  fromWireCode,
  parseLimit,
  toWireCode,
} from './protocol.js';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_NO_ERROR } = http2.constants;
const MiB = 1024 * 1024;
const CONTROL_RESPONSE_OPTIONS = Object.freeze({ endStream: false, sendDate: false });
/** A socket left by a terminated connection is destroyed after this long if the peer never closes it. */
const SOCKET_LINGER_MS = 2000;

/** What a connection needs from its transport. */
export interface H2ConnectionHost {
  readonly localNodeId: NodeId;
  /** The connection is over: forget it. */
  forget(connection: H2Connection): void;
  /** An inbound connection finished its pnet handshake (the control request arrived). */
  established(connection: H2Connection): void;
}

/** Per-connection settings, resolved by the transport. */
export interface H2ConnectionSettings {
  maxStreamsPerConnection: number;
  streamOpenTimeoutMs: number;
  reversePool: number;
  idleTimeoutMs: number;
  keepAliveIntervalMs: number;
  streamWindow: number;
  connectionWindow: number;
  maxFrameSize: number;
}

export interface H2ConnectionInit {
  socket: TLSSocket;
  direction: 'inbound' | 'outbound';
  remoteNodeId: NodeId;
  /** Deadline for the pnet handshake (control request and response), in ms from now. */
  handshakeTimeoutMs: number;
  /** RTT estimate from the TLS handshake, until the first ping answers. */
  handshakeRttMs: number;
}

/** HTTP/2 settings and session limits shared by both roles. */
function sessionOptions(settings: H2ConnectionSettings, inbound: boolean): http2.SessionOptions {
  return {
    settings: {
      enablePush: false,
      initialWindowSize: settings.streamWindow,
      maxFrameSize: settings.maxFrameSize,
      maxHeaderListSize: 4096,
      // The dialed side bounds every dialer-opened stream: the dialer's own (maxStreamsPerConnection),
      // the parked and reverse ones (at most as many again) and the control stream.
      ...(inbound ? { maxConcurrentStreams: 2 * settings.maxStreamsPerConnection + 1 } : { maxConcurrentStreams: 0 }),
    },
    maxHeaderListPairs: 16,
    maxSendHeaderBlockLength: 4096,
    maxSettings: 16,
    // Node refuses new streams once a session holds this much (window data in flight, buffers).
    maxSessionMemory: Math.max(32, 2 * Math.ceil(settings.connectionWindow / MiB) + 16),
    // Before the peer's SETTINGS: the dialer's first flight carries the control request and the parked pool.
    peerMaxConcurrentStreams: settings.reversePool + 1,
  };
}

/**
 * One pnet connection over one HTTP/2 session on a TLS socket whose peer certificate the
 * transport already verified. HTTP/2 only lets the client (the dialer) open streams, so the
 * dialer keeps a few "parked" requests open at the dialed side; the dialed side opens a stream
 * by answering one, and asks for more on the control stream when it runs short (docs/TRANSPORT.md).
 */
export class H2Connection extends EventEmitter<ConnectionEvents> implements Connection, H2StreamHost {
  readonly transport = 'h2' as const;
  readonly direction: 'inbound' | 'outbound';
  readonly remoteNodeId: NodeId;
  readonly localAddress: SocketAddress;
  readonly remoteAddress: SocketAddress;
  readonly connectionKey: string;
  readonly socket: TLSSocket;
  readonly session: Http2Session;
  /** The control exchange completed: the connection carries streams. */
  established = false;
  closed = false;
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (error: PnetError) => void;

  private readonly host: H2ConnectionHost;
  private readonly settings: H2ConnectionSettings;
  private readonly streams = new Set<H2Stream>();
  /** Streams ever tracked (streamsUsed). */
  private tracked = 0;
  private readonly waiters = new CreditWaiters();
  private readonly inbox: StreamInbox<H2Stream>;
  private control: ClientHttp2Stream | ServerHttp2Stream | undefined;
  /** How many streams the peer lets us open (dialer: forward streams; dialed side: parked + reverse). */
  private peerMaxStreams = 0;
  private forwardOpen = 0;
  private reverseOpen = 0;
  // dialer side
  private readonly parkedRequests = new Set<ClientHttp2Stream>();
  private owed = 0;
  private demandBytes = Buffer.alloc(0);
  // dialed side
  private readonly parked: ServerHttp2Stream[] = [];
  private requested = 0;
  private demandScheduled = false;

  private closingPromise: Promise<void> | undefined;
  /** The peer sent GOAWAY: no new streams either way. */
  private remoteClosing = false;
  /** Set when the peer's GOAWAY carried a code: the connection's close error (undefined for code 0). */
  private remoteCloseError: PnetError | undefined;
  private remoteCloseSeen = false;
  private closeError: PnetError | undefined;
  private lastSessionError: Error | undefined;
  private drained: (() => void) | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  // liveness and RTT
  lastActivity = performance.now();
  private lastBytesRead = 0;
  private lastPingAt = 0;
  private pingOutstanding = false;
  private srtt: number;
  private rttSampled = false;

  constructor(host: H2ConnectionHost, settings: H2ConnectionSettings, init: H2ConnectionInit) {
    super();
    this.host = host;
    this.settings = settings;
    this.socket = init.socket;
    this.direction = init.direction;
    this.remoteNodeId = init.remoteNodeId;
    this.srtt = init.handshakeRttMs;
    const socket = init.socket;
    this.localAddress = { host: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    this.remoteAddress = { host: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    // Both ends derive the same bytes from the TLS session (RFC 5705 exporter): no extra round trip.
    this.connectionKey = socket.exportKeyingMaterial(16, 'pnet h2 connection key', Buffer.alloc(0)).toString('hex');
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined);
    this.inbox = new StreamInbox<H2Stream>(this as EventEmitter);
    this.handshakeTimer = setTimeout(() => {
      this.handshakeTimer = undefined;
      if (!this.established) {
        this.abort(
          this.direction === 'outbound'
            ? new PnetError('ERR_CONNECT_TIMEOUT', `HTTP/2 handshake with ${this.peerName()} did not complete within the deadline`)
            : new PnetError('ERR_HANDSHAKE', `${this.peerName()} sent no pnet control request in time`),
          NGHTTP2_CANCEL,
        );
      }
    }, init.handshakeTimeoutMs);

    const options = sessionOptions(settings, this.direction === 'inbound');
    if (this.direction === 'outbound') {
      const clientOptions: http2.ClientSessionOptions = { ...options, maxReservedRemoteStreams: 0, createConnection: () => socket };
      const session = http2.connect('https://pnet', clientOptions);
      this.session = session;
      this.startDialer(session);
    } else {
      const session = http2.performServerHandshake(socket, options);
      this.session = session;
      session.on('stream', this.onServerStream);
    }
    const session = this.session;
    session.on('error', (error) => {
      this.lastSessionError = error;
    });
    session.on('goaway', this.onGoaway);
    session.on('close', this.onSessionClose);
    session.on('frameError', noop);
    if (settings.connectionWindow > 65_535) session.setLocalWindowSize(settings.connectionWindow);
  }

  get localNodeId(): NodeId {
    return this.host.localNodeId;
  }

  /** close() was called, the peer is closing (GOAWAY) or the connection is over: no new streams. */
  get closing(): boolean {
    return this.closed || this.closingPromise !== undefined || this.remoteClosing;
  }

  get resumed(): boolean {
    return this.socket.isSessionReused();
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get streamsUsed(): number {
    return this.tracked;
  }

  /** Smoothed RTT in ms: HTTP/2 PING round trips, seeded by the TLS handshake. */
  rttMs(): number {
    return this.srtt;
  }

  private peerName(): string {
    return `${this.remoteNodeId} at ${this.remoteAddress.host}:${this.remoteAddress.port}`;
  }

  // ---- handshake --------------------------------------------------------

  private startDialer(session: ClientHttp2Session): void {
    const control = session.request(
      { ':method': 'POST', ':path': CONTROL_PATH, [MAX_STREAMS_HEADER]: String(this.settings.maxStreamsPerConnection) },
      { endStream: true },
    );
    this.control = control;
    control.on('error', noop);
    control.on('close', this.onControlClose);
    control.once('response', (headers) => {
      const limit = parseLimit(headers[MAX_STREAMS_HEADER]);
      if (headers[':status'] !== 200 || limit === undefined) {
        this.abort(new PnetError('ERR_HANDSHAKE', `${this.peerName()} is not a pnet HTTP/2 node (control answered ${String(headers[':status'])})`), NGHTTP2_PROTOCOL_ERROR);
        return;
      }
      this.peerMaxStreams = limit;
      control.on('data', this.onDemand);
      this.establish();
      this.topUp();
    });
    // The parked pool leaves with the control request, so the dialed side can open streams at once.
    this.topUp();
  }

  private establish(): void {
    if (this.established || this.closed) return;
    this.established = true;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.lastActivity = performance.now();
    this.lastBytesRead = this.socket.bytesRead;
    this.ping();
    this.resolveReady();
    if (this.direction === 'inbound') this.host.established(this);
  }

  private readonly onServerStream = (inner: ServerHttp2Stream, headers: IncomingHttpHeaders): void => {
    inner.on('error', noop);
    if (this.closing || headers[':method'] !== 'POST') {
      refuse(inner);
      return;
    }
    switch (headers[':path']) {
      case STREAM_PATH: {
        if (!this.established || this.forwardOpen >= this.settings.maxStreamsPerConnection) {
          refuse(inner);
          return;
        }
        this.forwardOpen++;
        // The response HEADERS wait for our first write or end, so they leave in one packet with it.
        this.inbox.deliver(this.track(inner, false));
        return;
      }
      case PARKED_PATH: {
        if (!this.established || this.parked.length + this.reverseOpen >= this.peerMaxStreams) {
          refuse(inner);
          return;
        }
        this.parked.push(inner);
        inner.once('close', () => {
          const index = this.parked.indexOf(inner);
          if (index >= 0) this.parked.splice(index, 1);
        });
        if (this.requested > 0) this.requested--;
        this.wakeOne();
        return;
      }
      case CONTROL_PATH: {
        const limit = parseLimit(headers[MAX_STREAMS_HEADER]);
        if (this.control !== undefined || limit === undefined) {
          refuse(inner);
          return;
        }
        this.control = inner;
        // Our reverse streams are bounded by the dialer's limit and by what we let it park.
        this.peerMaxStreams = Math.min(limit, this.settings.maxStreamsPerConnection);
        inner.on('close', this.onControlClose);
        if (inner.closed || inner.destroyed) return; // reset at once: onControlClose ends the connection
        inner.respond({ ':status': 200, [MAX_STREAMS_HEADER]: String(this.settings.maxStreamsPerConnection) }, CONTROL_RESPONSE_OPTIONS);
        inner.resume();
        this.establish();
        return;
      }
      default:
        refuse(inner);
    }
  };

  private readonly onControlClose = (): void => {
    if (this.closing) return;
    if (this.session.destroyed || this.socket.destroyed) return; // the session's close reports it
    this.abort(new PnetError('ERR_CONNECTION_CLOSED', `${this.peerName()} closed the pnet control stream`), NGHTTP2_PROTOCOL_ERROR);
  };

  // ---- streams ----------------------------------------------------------

  async openStream(options?: { timeoutMs?: number }): Promise<H2Stream> {
    const timeoutMs = options?.timeoutMs ?? this.settings.streamOpenTimeoutMs;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (this.closing) throw this.closedError();
      if (this.direction === 'outbound') {
        if (this.established && this.forwardOpen < this.peerMaxStreams) return this.openForward();
      } else {
        const stream = this.claimParked();
        if (stream) return stream;
      }
      await this.waitForCredit(deadline, timeoutMs);
    }
  }

  /** Node's session takes new streams (it refuses once closing or destroyed, which we may not have seen yet). */
  private get sessionOpen(): boolean {
    return !this.session.closed && !this.session.destroyed;
  }

  private openForward(): H2Stream {
    if (!this.sessionOpen) throw this.closedError();
    const session = this.session as ClientHttp2Session;
    const inner = session.request({ ':method': 'POST', ':path': STREAM_PATH }, { endStream: false, waitForTrailers: true });
    this.forwardOpen++;
    return this.track(inner, false);
  }

  private claimParked(): H2Stream | undefined {
    while (this.parked.length > 0) {
      const inner = this.parked.shift()!;
      if (inner.closed || inner.destroyed) continue;
      inner.respond(RESPONSE_HEADERS, RESPONSE_OPTIONS);
      this.reverseOpen++;
      return this.track(inner, true);
    }
    return undefined;
  }

  private waitForCredit(deadline: number, timeoutMs: number): Promise<void> {
    const waiting = this.waiters.wait(deadline, timeoutMs, this.remoteNodeId);
    if (this.direction === 'inbound') this.scheduleDemand();
    return waiting;
  }

  private wakeOne(): void {
    this.waiters.wake(1);
  }

  /** Wakes every waiter: each re-checks (and fails if the connection is closing). */
  private wakeAll(): void {
    this.waiters.wakeAll();
  }

  /** Dialed side: after this turn, ask the dialer to park as many requests as openers still wait for. */
  private scheduleDemand(): void {
    if (this.demandScheduled) return;
    this.demandScheduled = true;
    setImmediate(() => {
      this.demandScheduled = false;
      const control = this.control as ServerHttp2Stream | undefined;
      if (this.closing || control === undefined || control.destroyed) return;
      const deficit = this.waiters.size - this.parked.length - this.requested;
      if (deficit <= 0) return;
      this.requested += deficit;
      control.write(encodeDemand(deficit));
    });
  }

  /** Dialer: demands from the dialed side, 4 bytes each. */
  private readonly onDemand = (chunk: Buffer): void => {
    let bytes = this.demandBytes.length === 0 ? chunk : Buffer.concat([this.demandBytes, chunk]);
    let offset = 0;
    while (bytes.length - offset >= DEMAND_SIZE) {
      this.owed = Math.min(this.owed + bytes.readUInt32BE(offset), this.settings.maxStreamsPerConnection);
      offset += DEMAND_SIZE;
    }
    bytes = bytes.subarray(offset);
    this.demandBytes = bytes.length === 0 ? Buffer.alloc(0) : Buffer.from(bytes);
    this.topUp();
  };

  /**
   * Dialer: keep `reversePool` requests parked at the dialed side, plus what it asked for,
   * within our own stream limit (parked + reverse streams) and its.
   */
  private topUp(): void {
    if (this.direction !== 'outbound' || this.closing || !this.sessionOpen) return;
    const budget = this.established ? Math.min(this.settings.maxStreamsPerConnection, this.peerMaxStreams) : this.settings.maxStreamsPerConnection;
    const pool = Math.min(this.settings.reversePool, budget);
    const session = this.session as ClientHttp2Session;
    while (this.parkedRequests.size + this.reverseOpen < budget) {
      if (this.owed > 0) this.owed--;
      else if (this.parkedRequests.size >= pool) break;
      const inner = session.request({ ':method': 'POST', ':path': PARKED_PATH }, { endStream: false, waitForTrailers: true });
      this.parkedRequests.add(inner);
      inner.on('error', noop);
      inner.once('close', () => this.parkedRequests.delete(inner));
      inner.once('response', (headers) => {
        if (!this.parkedRequests.delete(inner) || this.closed) return;
        if (headers[':status'] !== 200) {
          inner.close(NGHTTP2_PROTOCOL_ERROR);
          return;
        }
        this.reverseOpen++;
        this.inbox.deliver(this.track(inner, true));
        this.topUp();
      });
    }
  }

  private track(inner: ClientHttp2Stream | ServerHttp2Stream, reverse: boolean): H2Stream {
    const stream = new H2Stream(this, inner, reverse);
    this.streams.add(stream);
    this.tracked++;
    return stream;
  }

  /** A pnet stream's HTTP/2 stream closed: its slot in the peer's limit is free. */
  innerClosed(stream: H2Stream): void {
    if (stream.reverse) {
      this.reverseOpen--;
      this.topUp();
    } else {
      this.forwardOpen--;
      if (this.direction === 'outbound') this.wakeOne();
    }
  }

  /** A pnet stream is over (both directions ended, reset or failed). */
  release(stream: H2Stream): void {
    if (this.streams.delete(stream) && this.streams.size === 0 && this.drained) this.drained();
  }

  /** Why a stream's HTTP/2 stream ended without both sides finishing. */
  streamEndError(rstCode: number | undefined): PnetError {
    if (this.closed) return this.closedError();
    if (this.session.destroyed || this.socket.destroyed) {
      this.terminate(this.endError());
      return this.closedError();
    }
    const code = fromWireCode(rstCode);
    if (code !== undefined) return new PnetError('ERR_STREAM_RESET', `stream reset by peer ${this.remoteNodeId} with code ${code}`, { resetCode: code });
    if (this.closing) return new PnetError('ERR_CONNECTION_CLOSED', `connection to ${this.remoteNodeId} is closing`);
    return new PnetError('ERR_STREAM_RESET', `stream reset with ${describeWireCode(rstCode)}`);
  }

  // ---- liveness ---------------------------------------------------------

  /** Called by the transport's sweep: notice a silent peer, send PINGs (liveness and RTT). */
  keepAlive(now: number): void {
    if (!this.established || this.closed) return;
    const read = this.socket.bytesRead;
    if (read !== this.lastBytesRead) {
      this.lastBytesRead = read;
      this.lastActivity = now;
    }
    if (now - this.lastActivity > this.settings.idleTimeoutMs) {
      this.abort(new PnetError('ERR_IDLE_TIMEOUT', `peer ${this.remoteNodeId} went silent (idle timeout)`), NGHTTP2_CANCEL);
      return;
    }
    if (!this.pingOutstanding && now - this.lastPingAt >= this.settings.keepAliveIntervalMs) this.ping();
  }

  private ping(): void {
    if (this.session.destroyed || this.session.closed) return;
    this.pingOutstanding = true;
    this.lastPingAt = performance.now();
    try {
      this.session.ping((error, duration) => {
        this.pingOutstanding = false;
        if (error || this.closed) return;
        this.lastActivity = performance.now();
        // The first PING replaces the handshake estimate (which includes the TLS crypto); later ones are smoothed.
        this.srtt = this.rttSampled ? this.srtt + (duration - this.srtt) / 8 : duration;
        this.rttSampled = true;
      });
    } catch {
      this.pingOutstanding = false;
    }
  }

  // ---- close ------------------------------------------------------------

  close(options: CloseOptions = {}): Promise<void> {
    this.closingPromise ??= this.runClose(options);
    return this.closingPromise;
  }

  private async runClose(options: CloseOptions): Promise<void> {
    const { code = 0, reason = '', graceful = true, timeoutMs = 5000 } = options;
    const deadline = performance.now() + timeoutMs;
    if (this.closed) return;
    this.wakeAll();
    if (!this.established) {
      this.abort(new PnetError('ERR_CONNECTION_CLOSED', 'connection closed before the handshake completed'), toWireCode(code));
      return;
    }
    if (graceful) {
      // GOAWAY first: a parked request answered meanwhile and now cancelled reads as a close, not a reset.
      try {
        this.session.goaway(NGHTTP2_NO_ERROR, 0, Buffer.from(reason));
      } catch {
        // session already gone
      }
      this.stopInternal();
      // No new streams; Node ends the session (and the socket) once every HTTP/2 stream is done.
      this.session.close();
      await untilDeadline((done) => (this.drained = done), () => this.streams.size === 0, deadline);
      this.drained = undefined;
    }
    if (this.closed) return;
    if (this.streams.size > 0 || code !== 0 || !graceful) {
      // Tell the peer first (its streams then fail as closed, not as reset), then cut.
      try {
        this.session.goaway(toWireCode(code), 0, Buffer.from(reason));
      } catch {
        // session already gone
      }
      this.terminate(undefined);
      return;
    }
    await untilDeadline((done) => this.session.once('close', done), () => this.closed, deadline);
    if (!this.closed) this.terminate(undefined);
  }

  /** Closing: drop the parked requests and the control stream; they are not pnet streams. */
  private stopInternal(): void {
    for (const inner of this.parkedRequests) inner.close(NGHTTP2_CANCEL);
    this.parkedRequests.clear();
    for (const inner of this.parked.splice(0)) inner.close(NGHTTP2_CANCEL);
    const control = this.control;
    if (control && !control.closed && !control.destroyed) control.close(NGHTTP2_CANCEL);
  }

  private readonly onGoaway = (errorCode: number, _lastStreamId: number, opaque?: Buffer): void => {
    this.remoteClosing = true;
    this.wakeAll();
    if (errorCode === NGHTTP2_NO_ERROR) {
      // The peer closes gracefully; Node closes our side too once every stream is done.
      this.stopInternal();
      return;
    }
    if (this.remoteCloseSeen) return;
    this.remoteCloseSeen = true;
    const code = fromWireCode(errorCode);
    const reason = opaque && opaque.length > 0 ? ` (${opaque.toString('utf8')})` : '';
    if (code === 0) return; // closed at once, without an error
    this.remoteCloseError = new PnetError(
      'ERR_CONNECTION_CLOSED',
      code === undefined ? `connection closed by peer with ${describeWireCode(errorCode)}${reason}` : `connection closed by peer with application code ${code}${reason}`,
    );
  };

  private readonly onSessionClose = (): void => {
    this.terminate(this.endError());
  };

  /**
   * Why the session ended: our own error (idle timeout, handshake), the code in the peer's
   * GOAWAY, nothing for a close either side announced without a code, else a lost connection.
   */
  private endError(): PnetError | undefined {
    if (this.closeError || this.remoteCloseError) return this.closeError ?? this.remoteCloseError;
    if (this.closing) return undefined;
    const detail = this.lastSessionError ? `: ${this.lastSessionError.message}` : '';
    return new PnetError('ERR_CONNECTION_CLOSED', `connection to ${this.remoteNodeId} was lost${detail}`);
  }

  /** Fails the connection from our side (handshake failure, idle timeout, protocol error). */
  private abort(error: PnetError, wireCode: number): void {
    if (this.closed) return;
    this.closeError = error;
    try {
      if (!this.session.destroyed) this.session.goaway(wireCode, 0, Buffer.from(error.code));
    } catch {
      // session already gone
    }
    this.terminate(error);
  }

  /** The connection is over for the application: fail streams and waiters, emit close. */
  private terminate(error: PnetError | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = error;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    if (!this.established) {
      const code = error?.code;
      this.rejectReady(
        code === 'ERR_CONNECT_TIMEOUT' || code === 'ERR_HANDSHAKE' || code === 'ERR_PEER_ID_MISMATCH'
          ? error!
          : new PnetError('ERR_HANDSHAKE', `HTTP/2 handshake with ${this.peerName()} failed: ${error?.message ?? 'connection closed'}`),
      );
    }
    const failure = error ?? new PnetError('ERR_CONNECTION_CLOSED', 'connection closed');
    for (const stream of [...this.streams]) stream.fail(failure);
    this.streams.clear();
    this.wakeAll();
    this.parked.length = 0;
    this.parkedRequests.clear();
    if (this.drained) this.drained();
    if (!this.session.destroyed) this.session.destroy();
    if (!this.socket.destroyed) {
      // Node ends the socket once its last writes left; a peer that never answers does not keep it.
      this.lingerTimer = setTimeout(() => this.socket.destroy(), SOCKET_LINGER_MS);
      this.socket.once('close', () => clearTimeout(this.lingerTimer));
    }
    this.host.forget(this);
    this.emit('close', error);
  }

  closedError(): PnetError {
    return this.closeError ?? new PnetError('ERR_CONNECTION_CLOSED', 'connection is closed');
  }
}

function refuse(inner: ServerHttp2Stream): void {
  if (!inner.closed && !inner.destroyed) inner.close(NGHTTP2_REFUSED_STREAM);
}

function noop(): void {}
