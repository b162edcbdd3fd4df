import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { native } from '@matrixai/quic';
import { PnetError } from '../../errors.js';
import { numberOption } from '../../options.js';
import type { Identity, NodeId } from '../../identity/index.js';
import type { DialOptions, SocketAddress, Transport, TransportEvents } from '../types.js';
import { resolveLimits } from '../limits.js';
import type { TransportLimits, TransportOptions } from '../limits.js';
import { SessionStore } from '../sessions.js';
import { checkConnectionLimit, checkDialAddress, closeConnections, startKeepAliveSweep } from '../shared.js';
import { QuicConnection } from './connection.js';
import type { DatagramPath, QuicEndpoint } from './connection.js';
import { QuicMachine, READ_POOL_SIZE } from './machine.js';
import type { ReadPool } from './machine.js';
import { Scheduler } from './scheduler.js';
import { makeQuicConfig } from './config.js';
import { chooseUdp, openDatagramSocket } from './udp.js';
import type { DatagramSocket, UdpImplementation } from './udp.js';

export { ALPN } from './config.js';

const quiche = native.quiche;
/** Length of the connection ids pnet issues; short-header packets carry exactly this many. */
const CID_LEN = 16;
const SLAB_SIZE = 1024 * 1024;
/** A run goes to the socket once it holds this many bytes, so the first packets leave while quiche packs the rest. */
const RUN_BYTES = 60 * 1024;

export interface QuicTransportOptions extends TransportOptions {
  /** Largest UDP payload sent (default 1350, safe off loopback; up to 16383 on loopback). */
  maxDatagramSize?: number;
  /** UDP socket buffer sizes (default 4 MiB; the kernel may cap them). */
  socketBufferSize?: number;
  /**
   * The UDP socket: 'native' (pnet's addon, Linux: batched sends and receives), 'node' (node:dgram),
   * or 'auto' (the default: $PNET_UDP when set, else native where the addon loads).
   */
  udp?: UdpImplementation | 'auto';
}

/** Datagrams the endpoint dropped, by reason. */
export interface QuicDropStats {
  /** Shorter than a short header with pnet's connection id. */
  tooShort: number;
  /** A long header whose connection id length does not fit, or quiche could not parse it. */
  badHeader: number;
  /** For no connection here, and not an Initial that could start one. */
  unknownConnection: number;
  /** For a known connection id, from another address (migration is off). */
  wrongSource: number;
  /** An Initial turned away: closing, too short, over the connection or handshake limits. */
  refused: number;
  /** Answered with a version negotiation packet. */
  versionNegotiation: number;
}

export interface QuicTransportStats {
  connections: number;
  droppedDatagrams: QuicDropStats;
}

type Resolved = TransportLimits & { maxDatagramSize: number; socketBufferSize: number; sessionResumption: boolean };

function resolveOptions(options: QuicTransportOptions): Resolved {
  return {
    ...resolveLimits(options),
    maxDatagramSize: numberOption('QUIC option', 'maxDatagramSize', options.maxDatagramSize, 1350, { min: 1200, max: 16383, integer: true }),
    socketBufferSize: numberOption('QUIC option', 'socketBufferSize', options.socketBufferSize, 4 * 1024 * 1024, { min: 0, above: true, integer: true }),
    sessionResumption: options.sessionResumption ?? true,
  };
}

/** One connection's path over the endpoint's UDP socket: its peer address and the connection ids mapped to it. */
class UdpPath implements DatagramPath {
  readonly keys: string[] = [];
  connection: QuicConnection | undefined;
  constructor(
    private readonly endpoint: QuicTransport,
    readonly localAddress: SocketAddress,
    readonly remoteAddress: SocketAddress,
  ) {}

  transmit(machine: QuicMachine): void {
    this.endpoint.sendRuns(machine, this.remoteAddress);
  }

  release(): void {
    this.endpoint.unmap(this);
  }
}

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
  readonly options: Resolved;
  readonly scheduler = new Scheduler();
  /** TLS sessions saved by outbound connections, for the next dial to the same address. */
  readonly sessions: SessionStore;

  private readonly socket: DatagramSocket;
  private readonly config: native.Config;
  private readonly byCid = new Map<string, UdpPath>();
  private readonly connections = new Set<QuicConnection>();
  private readonly dropped: QuicDropStats = { tooShort: 0, badHeader: 0, unknownConnection: 0, wrongSource: 0, refused: 0, versionNegotiation: 0 };
  private pendingInbound = 0;
  private readonly readPool: ReadPool = { buffer: Buffer.allocUnsafe(READ_POOL_SIZE), offset: 0 };
  private slab = Buffer.allocUnsafe(SLAB_SIZE);
  private slabOffset = 0;
  private readonly keepAliveTimer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;
  private cidPool = Buffer.alloc(0);
  private cidOffset = 0;

  private constructor(identity: Identity, socket: DatagramSocket, options: Resolved) {
    super();
    this.localNodeId = identity.nodeId;
    this.socket = socket;
    this.options = options;
    this.sessions = new SessionStore(options.sessionResumption);
    this.config = makeQuicConfig(identity, options);
    this.localAddress = socket.address;
    this.keepAliveTimer = startKeepAliveSweep(options.keepAliveIntervalMs, this.sweep);
  }

  /** Binds the UDP socket and starts serving. */
  static async listen(options: QuicTransportOptions): Promise<QuicTransport> {
    const resolved = resolveOptions(options);
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
    return { connections: this.connections.size, droppedDatagrams: { ...this.dropped } };
  }

  async dial(address: SocketAddress, options: DialOptions = {}): Promise<QuicConnection> {
    if (this.closing) throw new PnetError('ERR_TRANSPORT_CLOSED', 'transport is closed');
    checkDialAddress(address, this.localAddress);
    checkConnectionLimit(this.connections.size, this.options.maxConnections);
    const scid = this.newConnectionId();
    const remote = { host: address.host, port: address.port };
    const handshake = quiche.Connection.connect('pnet', scid, this.localAddress, remote, this.config);
    const session = this.sessions.get(remote, options.expectedNodeId);
    if (session !== undefined) {
      try {
        handshake.setSession(session.session);
      } catch {
        // not a session quiche can use: a full handshake instead
      }
    }
    const connection = this.open(handshake, 'outbound', remote, options.timeoutMs ?? this.options.handshakeTimeoutMs, options.expectedNodeId);
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

  private open(handshake: native.Connection, direction: 'inbound' | 'outbound', remote: SocketAddress, handshakeTimeoutMs: number, expectedNodeId?: NodeId): QuicConnection {
    const path = new UdpPath(this, this.localAddress, remote);
    const machine = new QuicMachine(handshake, {
      direction,
      local: this.localAddress,
      remote,
      handshakeTimeoutMs,
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
    let connection: QuicConnection | undefined;
    if (path === undefined) {
      connection = long ? this.acceptInitial(datagram, host, port, key) : undefined;
      if (connection === undefined) {
        if (!long) this.dropped.unknownConnection++;
        return;
      }
    } else if (port !== path.remoteAddress.port || host !== path.remoteAddress.host) {
      // Migration is disabled: a datagram for this id from elsewhere is spoofed or stale.
      this.dropped.wrongSource++;
      return;
    } else {
      connection = path.connection!;
    }
    connection.receive(datagram, performance.now());
  }

  /** A long-header datagram for no known connection: an Initial that may start one (else counted as dropped). */
  private acceptInitial(datagram: Buffer, host: string, port: number, key: string): QuicConnection | undefined {
    if (this.closing || datagram.length < quiche.MIN_CLIENT_INITIAL_LEN) {
      this.dropped.refused++;
      return undefined;
    }
    let header: native.Header;
    try {
      header = quiche.Header.fromSlice(datagram, CID_LEN);
    } catch {
      this.dropped.badHeader++;
      return undefined;
    }
    const remote = { host, port };
    if (!quiche.versionIsSupported(header.version)) {
      const out = Buffer.allocUnsafe(1350);
      const written = quiche.negotiateVersion(header.scid, header.dcid, out);
      this.socket.send(out, 0, written, written, port, host);
      this.dropped.versionNegotiation++;
      return undefined;
    }
    if (header.ty !== quiche.Type.Initial) {
      this.dropped.unknownConnection++;
      return undefined;
    }
    if (this.connections.size >= this.options.maxConnections || this.pendingInbound >= this.options.maxPendingHandshakes) {
      this.dropped.refused++;
      return undefined;
    }
    const scid = this.newConnectionId();
    const connection = this.open(quiche.Connection.accept(scid, null, this.localAddress, remote, this.config), 'inbound', remote, this.options.handshakeTimeoutMs);
    // The client keeps using its random initial id until it hears ours: map both.
    const path = connection.path as UdpPath;
    this.map(path, key);
    this.map(path, scid.toString('latin1'));
    this.pendingInbound++;
    connection.ready.then(
      () => {
        this.pendingInbound--;
        this.emit('connection', connection);
      },
      () => {
        this.pendingInbound--;
      },
    );
    return connection;
  }

  /**
   * Drains a machine's datagrams into the slab and hands the socket each run of equal-sized
   * packets (the last one may be shorter) in one call: the native socket sends a run as one GSO
   * super-datagram.
   */
  sendRuns(machine: QuicMachine, remote: SocketAddress): void {
    const { port, host } = remote;
    const max = this.options.maxDatagramSize;
    const socket = this.socket;
    let runStart = this.slabOffset;
    let runSize = 0;
    for (;;) {
      if (SLAB_SIZE - this.slabOffset < max || this.slabOffset - runStart >= RUN_BYTES) {
        if (this.slabOffset > runStart) socket.send(this.slab, runStart, this.slabOffset - runStart, runSize, port, host);
        if (SLAB_SIZE - this.slabOffset < max) {
          // The 'node' socket may still hold views of the old slab (kernel queue full): never reuse it.
          this.slab = Buffer.allocUnsafe(SLAB_SIZE);
          this.slabOffset = 0;
        }
        runStart = this.slabOffset;
      }
      const offset = this.slabOffset;
      const length = machine.pollTransmit(this.slab.subarray(offset, offset + max));
      if (length === null) break;
      if (offset === runStart) {
        runSize = length;
      } else if (length > runSize) {
        // Larger than the run's packets: the run ends before it.
        socket.send(this.slab, runStart, offset - runStart, runSize, port, host);
        runStart = offset;
        runSize = length;
      }
      this.slabOffset = offset + length;
      if (length < runSize) {
        // A shorter packet ends the run.
        socket.send(this.slab, runStart, this.slabOffset - runStart, runSize, port, host);
        runStart = this.slabOffset;
      }
    }
    if (this.slabOffset > runStart) socket.send(this.slab, runStart, this.slabOffset - runStart, runSize, port, host);
  }

  saveSession(connection: QuicConnection): void {
    if (!this.sessions.active) return;
    const session = connection.machine.quiche.session();
    if (session !== null) this.sessions.save(connection.remoteAddress, connection.remoteNodeId, session);
  }

  forget(connection: QuicConnection): void {
    this.connections.delete(connection);
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
