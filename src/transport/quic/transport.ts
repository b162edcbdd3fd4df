import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as native from '@matrixai/quic/native/index.js';
import { PnetError } from '../../errors.js';
import type { Identity, NodeId } from '../../identity/index.js';
import type { DialOptions, SocketAddress, Transport, TransportEvents } from '../types.js';
import type { HandshakeAdmission } from '../admission.js';
import { SessionStore } from '../sessions.js';
import { checkConnectionLimit, checkDialAddress, closeConnections, startKeepAliveSweep } from '../shared.js';
import { QuicConnection } from './connection.js';
import type { QuicEndpoint } from './connection.js';
import { QuicMachine, READ_POOL_SIZE } from './machine.js';
import type { ReadPool } from './machine.js';
import { Scheduler } from './scheduler.js';
import { leanWindows, makeQuicConfig, WindowBudget, windowCeiling } from './config.js';
import type { WindowGrant } from './config.js';
import { InitialGate } from './gate.js';
import type { HandshakeTicket, QuicDropStats } from './gate.js';
import { chooseUdp, openDatagramSocket } from './udp.js';
import type { DatagramHandler, DatagramSocket, UdpImplementation } from './udp.js';
import { SendSlab } from './send-slab.js';
import { UdpPath } from './udp-path.js';
import { resolveOptions } from './transport-options.js';
import { mallocTrimmer } from './malloc-trim.js';
import type { QuicTransportOptions, QuicTransportStats, ResolvedQuicOptions } from './transport-options.js';

export { ALPN } from './config.js';
export type { QuicDropStats, RetryMode } from './gate.js';
export type { QuicTransportOptions, QuicTransportStats } from './transport-options.js';

const quiche = native.quiche;
/** Length of the connection ids pnet issues; short-header packets carry exactly this many. */
const CID_LEN = 16;

/**
 * An inbound handshake waits this many times the client's timeout: a client that completed within
 * its own has sent its Finished, maybe still queued here behind a storm (a hub restart's leaves
 * saw such fresh connections closed by the hub's timeout and redialed them).
 */
const INBOUND_HANDSHAKE_GRACE = 1.5;

/**
 * pnet's QUIC transport: one UDP socket shared by the dialing and listening roles,
 * demultiplexed by connection id, each connection a QuicMachine driven by a QuicConnection.
 * Received datagrams are fed as they come; connections are driven once per batch (a
 * setImmediate), see Scheduler.
 */
export class QuicTransport extends EventEmitter<TransportEvents> implements Transport, QuicEndpoint {
  readonly kind = 'quic' as const;
  readonly localNodeId: NodeId;
  readonly localAddress: SocketAddress;
  readonly options: ResolvedQuicOptions;
  readonly scheduler = new Scheduler();
  /** TLS sessions saved by outbound connections, for the next dial to the same address. */
  readonly sessions: SessionStore;

  private readonly socket: DatagramSocket;
  private readonly config: native.Config;
  /** The same with small windows and no auto-tuning, for connections past the window budget. */
  private readonly leanConfig: native.Config;
  private readonly windows: WindowBudget;
  private readonly byCid = new Map<string, UdpPath>();
  private readonly connections = new Set<QuicConnection>();
  private readonly gate: InitialGate;
  private readonly dropped: QuicDropStats;
  /** Inbound handshakes in progress, by their gate ticket: the one a newcomer evicts is closed. */
  private readonly handshakes = new Map<HandshakeTicket, QuicConnection>();
  private abandonedStreamCloses = 0;
  private closingSendsCut = 0;
  private readonly readPool: ReadPool = { buffer: Buffer.allocUnsafe(READ_POOL_SIZE), offset: 0 };
  private readonly sendSlab: SendSlab;
  private readonly keepAliveTimer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;
  private cidPool = Buffer.alloc(0);
  private cidOffset = 0;
  /**
   * Takes datagrams that are not QUIC (the fixed bit 0x40 clear, which QUIC v1 never sends without
   * grease_quic_bit, RFC 9287): relay v2's link packets (docs/RELAY.md). Unset: dropped as bad headers.
   */
  onForeignDatagram: DatagramHandler | undefined;

  private constructor(identity: Identity, socket: DatagramSocket, options: ResolvedQuicOptions) {
    super();
    this.localNodeId = identity.nodeId;
    this.socket = socket;
    this.options = options;
    this.sessions = new SessionStore(options.sessionResumption);
    this.config = makeQuicConfig(identity, options);
    const lean = { ...options, ...leanWindows(options.windowBudget, options.maxConnections, options.connectionWindow), autotune: false };
    this.leanConfig = makeQuicConfig(identity, lean);
    this.windows = new WindowBudget(options.windowBudget, windowCeiling(options), windowCeiling(lean));
    this.localAddress = socket.address;
    this.sendSlab = new SendSlab(socket, options.maxDatagramSize);
    this.gate = new InitialGate({ retry: options.retry, maxConnections: options.maxConnections, maxPendingHandshakes: options.maxPendingHandshakes, cidLength: CID_LEN, handshakeTimeoutMs: options.handshakeTimeoutMs }, performance.now());
    this.dropped = this.gate.dropped;
    this.keepAliveTimer = startKeepAliveSweep(options.keepAliveIntervalMs, this.sweep);
  }

  /** Binds the UDP socket and starts serving. */
  static async listen(options: QuicTransportOptions): Promise<QuicTransport> {
    const resolved = resolveOptions(options);
    if (resolved.mallocTrimPeriodMs > 0) mallocTrimmer.pinMmapThreshold();
    let transport: QuicTransport | undefined;
    const socket = await openDatagramSocket(chooseUdp(options.udp), {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 0,
      bufferSize: resolved.socketBufferSize,
      onDatagram: (datagram, host, port) => transport?.onDatagram(datagram, host, port),
      // Send errors (e.g. ICMP unreachable reported late) must not crash the node.
      onError: (error) => {
        if (transport !== undefined && transport.listenerCount('error') > 0) transport.emit('error', error);
      },
    });
    transport = new QuicTransport(options.identity, socket, resolved);
    return transport;
  }

  get address(): SocketAddress {
    return this.localAddress;
  }

  /** Admission by latency of this endpoint's inbound handshakes (listenTransports shares it with HTTP/2). */
  get admission(): HandshakeAdmission {
    return this.gate.admission;
  }

  /** Which UDP socket this transport uses. */
  get udp(): UdpImplementation {
    return this.socket.implementation;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  get handshakeTimeoutMs(): number {
    return this.options.handshakeTimeoutMs;
  }

  /** Datagrams dropped so far (all reasons). */
  get droppedDatagrams(): number {
    let total = 0;
    for (const count of Object.values(this.dropped)) total += count;
    return total;
  }

  stats(): QuicTransportStats {
    return {
      connections: this.connections.size,
      pendingHandshakes: this.gate.pendingHandshakes,
      droppedDatagrams: { ...this.dropped },
      amplificationLimited: this.sendSlab.withheld,
      windows: this.windows.stats(),
      abandonedStreamCloses: this.abandonedStreamCloses,
      closingSendsCut: this.closingSendsCut,
      hostsDistrusted: this.gate.hostsDistrusted,
      hostHandshakeShare: this.gate.hostShareRetried,
      handshakesEvicted: this.gate.handshakesEvicted,
      mallocTrim: mallocTrimmer.stats(),
    };
  }

  async dial(address: SocketAddress, options: DialOptions = {}): Promise<QuicConnection> {
    if (this.closing) throw new PnetError('ERR_TRANSPORT_CLOSED', 'transport is closed');
    checkDialAddress(address, this.localAddress);
    checkConnectionLimit(this.connections.size, this.options.maxConnections);
    const scid = this.newConnectionId();
    const remote = { host: address.host, port: address.port };
    const windows = this.windows.grant();
    const handshake = quiche.Connection.connect('pnet', scid, this.localAddress, remote, this.configFor(windows));
    const session = this.sessions.get(remote, options.expectedNodeId);
    if (session !== undefined) {
      try {
        handshake.setSession(session.session);
      } catch {
        // not a session quiche can use: a full handshake instead
      }
    }
    const connection = this.open(handshake, 'outbound', remote, true, options.timeoutMs ?? this.options.handshakeTimeoutMs, windows, options.expectedNodeId);
    this.map(connection.path as UdpPath, scid.toString('latin1'));
    const signal = options.signal;
    const abandon = (): void => void connection.close({ graceful: false, reason: 'dial abandoned' });
    if (signal?.aborted) abandon();
    else signal?.addEventListener('abort', abandon, { once: true });
    connection.drive();
    try {
      await connection.ready;
    } finally {
      signal?.removeEventListener('abort', abandon);
    }
    return connection;
  }

  private open(
    handshake: native.Connection,
    direction: 'inbound' | 'outbound',
    remote: SocketAddress,
    validated: boolean,
    handshakeTimeoutMs: number,
    windows: WindowGrant,
    expectedNodeId?: NodeId,
  ): QuicConnection {
    const path = new UdpPath(this, this.localAddress, remote, validated);
    path.windows = windows;
    const machine = new QuicMachine(handshake, {
      direction,
      local: this.localAddress,
      remote,
      handshakeTimeoutMs,
      silenceTimeoutMs: this.options.idleTimeoutMs,
      readPool: this.readPool,
      now: performance.now(),
      ...(expectedNodeId === undefined ? {} : { expectedNodeId }),
    });
    const connection = new QuicConnection({ machine, path, endpoint: this, streamOpenTimeoutMs: this.options.streamOpenTimeoutMs });
    path.connection = connection;
    this.connections.add(connection);
    return connection;
  }

  /** A random connection id, cut from a pooled batch of random bytes (one CSPRNG call per 256). */
  private newConnectionId(): Buffer {
    if (this.cidOffset + CID_LEN > this.cidPool.length) {
      this.cidPool = randomBytes(CID_LEN * 256);
      this.cidOffset = 0;
    }
    const id = this.cidPool.subarray(this.cidOffset, this.cidOffset + CID_LEN);
    this.cidOffset += CID_LEN;
    return id;
  }

  private map(path: UdpPath, key: string): void {
    path.keys.push(key);
    this.byCid.set(key, path);
  }

  /** A path's connection is gone: forget its ids. */
  unmap(path: UdpPath): void {
    for (const key of path.keys) {
      if (this.byCid.get(key) === path) this.byCid.delete(key);
    }
  }

  private onDatagram(datagram: Buffer, host: string, port: number): void {
    const length = datagram.length;
    if ((datagram[0]! & 0x40) === 0 && length > 0) {
      if (this.onForeignDatagram !== undefined) this.onForeignDatagram(datagram, host, port);
      else this.dropped.badHeader++;
      return;
    }
    if (length < 1 + CID_LEN) {
      this.dropped.tooShort++;
      return;
    }
    let key: string;
    const long = (datagram[0]! & 0x80) !== 0;
    if (!long) {
      key = datagram.toString('latin1', 1, 1 + CID_LEN);
    } else {
      const dcidLength = datagram[5]!;
      if (dcidLength > quiche.MAX_CONN_ID_LEN || 6 + dcidLength > length) {
        this.dropped.badHeader++;
        return;
      }
      key = datagram.toString('latin1', 6, 6 + dcidLength);
    }
    const path = this.byCid.get(key);
    if (path === undefined) {
      if (long) this.acceptInitial(datagram, host, port, key);
      else this.dropped.unknownConnection++;
      return;
    }
    if (port !== path.remoteAddress.port || host !== path.remoteAddress.host) {
      // Migration is disabled: a datagram for this id from elsewhere is spoofed or stale.
      this.dropped.wrongSource++;
      return;
    }
    if (!path.validated) path.received += length;
    path.connection!.receive(datagram, performance.now());
  }

  /** A long-header datagram for no known connection: the gate decides (gate.ts), this does the IO. */
  private acceptInitial(datagram: Buffer, host: string, port: number, key: string): void {
    const now = performance.now();
    const verdict = this.gate.check(datagram, host, port, now, { closing: this.closing !== undefined, connections: this.connections.size, pendingHandshakes: this.gate.pendingHandshakes });
    switch (verdict.action) {
      case 'negotiate': {
        const { scid, dcid } = verdict.header;
        this.sendSlab.sendStateless((out) => quiche.negotiateVersion(scid, dcid, out), host, port);
        return;
      }
      case 'retry': {
        const { scid, dcid, version } = verdict.header;
        const retryScid = this.newConnectionId();
        const token = this.gate.retryToken(verdict.header, retryScid, host, port, now);
        this.sendSlab.sendStateless((out) => quiche.retry(scid, dcid, retryScid, token, version, out), host, port);
        return;
      }
      case 'accept':
        this.startHandshake(datagram, { host, port }, key, verdict.header, verdict.odcid);
    }
  }

  /**
   * quiche's server connection for a checked Initial. The Initial goes to quiche before any pnet
   * state: one it cannot decrypt leaves nothing behind. With a Retry token (`odcid`), the id the
   * client uses now is the one our Retry gave it, and the address is validated.
   */
  private startHandshake(datagram: Buffer, remote: SocketAddress, key: string, header: native.Header, odcid: Buffer | null): void {
    const scid = odcid === null ? this.newConnectionId() : Buffer.from(header.dcid);
    const windows = this.windows.grant();
    const handshake = quiche.Connection.accept(scid, odcid, this.localAddress, remote, this.configFor(windows));
    const length = datagram.length;
    try {
      handshake.recv(datagram, { from: remote, to: this.localAddress });
    } catch {
      this.windows.release(windows);
      // An Initial with a Retry token proved its address: only tokenless ones cost a host its budget.
      if (odcid === null) this.gate.noteUndecryptable(remote.host, performance.now());
      else this.dropped.undecryptable++;
      return;
    }
    const connection = this.open(handshake, 'inbound', remote, odcid !== null, INBOUND_HANDSHAKE_GRACE * this.options.handshakeTimeoutMs, windows);
    const path = connection.path as UdpPath;
    path.received = length;
    // The client keeps using its random initial id until it hears ours: map both.
    this.map(path, key);
    if (odcid === null) this.map(path, scid.toString('latin1'));
    // In progress until it completes or fails: the gate's admission learns how long that takes here, and its host's share (gate.ts).
    const now = performance.now();
    const evicted = this.gate.makeRoom(remote.host, now);
    const victim = evicted === undefined ? undefined : this.handshakes.get(evicted);
    // One that completed in this same batch of datagrams (its ready not yet handled) is kept: its slot is free anyway.
    if (victim !== undefined && !victim.machine.established) void victim.close({ graceful: false, reason: 'handshake evicted: too many in progress from its host' });
    const ticket = this.gate.handshakeStarted(remote.host, odcid !== null, now);
    this.handshakes.set(ticket, connection);
    connection.ready.then(
      () => {
        this.handshakes.delete(ticket);
        this.gate.handshakeEnded(ticket, true, performance.now());
        this.emit('connection', connection);
      },
      () => {
        this.handshakes.delete(ticket);
        this.gate.handshakeEnded(ticket, false, performance.now());
      },
    );
    this.scheduler.schedule(connection);
  }

  /** Drains a machine's datagrams to `remote` (at most `budget` bytes; send-slab.ts). Returns the bytes sent. */
  sendRuns(machine: QuicMachine, remote: SocketAddress, budget = Infinity): number {
    return this.sendSlab.sendRuns(machine, remote, budget);
  }

  /**
   * Sends `prefix` + `payload` as one UDP datagram to host:port, outside QUIC (relay v2's link
   * packets), gathered with this tick's others to the same peer (send-slab.ts).
   */
  sendRelayed(prefix: Uint8Array, payload: Uint8Array, host: string, port: number): void {
    this.sendSlab.sendRelayed(prefix, payload, host, port);
  }

  saveSession(connection: QuicConnection): void {
    if (!this.sessions.active) return;
    const session = connection.machine.quiche.session();
    if (session !== null) this.sessions.save(connection.remoteAddress, connection.remoteNodeId, session);
  }

  /** The quiche configuration of a connection given `windows`: full or lean flow-control windows. */
  private configFor(windows: WindowGrant): native.Config {
    return windows.lean ? this.leanConfig : this.config;
  }

  forget(connection: QuicConnection): void {
    if (!this.connections.delete(connection)) return;
    if (connection.machine.abandonedClose) this.abandonedStreamCloses++;
    if (connection.machine.closingSendsCut) this.closingSendsCut++;
    const path = connection.path as UdpPath;
    if (path.windows !== undefined) this.windows.release(path.windows);
    path.windows = undefined;
    mallocTrimmer.connectionClosed(this.options.mallocTrimPeriodMs);
  }

  private readonly sweep = (now: number): void => {
    const quietSince = now - this.options.keepAliveIntervalMs;
    for (const connection of this.connections) {
      if (connection.lastActivity < quietSince) connection.keepAlive();
    }
  };

  /** Closes every connection (gracefully, bounded by timeoutMs) and the socket. */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      this.sessions.close();
      await closeConnections(this.connections, options.timeoutMs ?? 2000);
      clearInterval(this.keepAliveTimer);
      // Every peer has our CONNECTION_CLOSE; quiche's draining periods need not outlive the socket.
      for (const connection of [...this.connections]) connection.dispose();
      await this.socket.close();
    })();
    return this.closing;
  }
}
