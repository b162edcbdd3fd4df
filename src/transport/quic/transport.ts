import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { EventEmitter } from 'node:events';
import { native } from '@matrixai/quic';
import { PnetError } from '../../errors.js';
import type { Identity, NodeId } from '../../identity/index.js';
import type { DialOptions, SocketAddress, Transport, TransportEvents } from '../types.js';
import { resolveLimits } from '../limits.js';
import type { TransportLimits, TransportOptions } from '../limits.js';
import { SessionStore } from '../sessions.js';
import { QuicConnection, READ_POOL_SIZE } from './connection.js';
import type { ConnectionHost } from './connection.js';
import { chooseUdp, openDatagramSocket } from './udp.js';
import type { DatagramSocket, UdpImplementation } from './udp.js';

const quiche = native.quiche;
/** Length of the connection ids pnet issues; short-header packets carry exactly this many. */
const CID_LEN = 16;
const SLAB_SIZE = 1024 * 1024;
/** A run goes to the socket once it holds this many bytes, so the first packets leave while quiche packs the rest. */
const RUN_BYTES = 60 * 1024;
export const ALPN = 'pnet/1';

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

type Resolved = TransportLimits & { maxDatagramSize: number; socketBufferSize: number; sessionResumption: boolean };

function resolveOptions(options: QuicTransportOptions): Resolved {
  const resolved: Resolved = {
    ...resolveLimits(options),
    maxDatagramSize: options.maxDatagramSize ?? 1350,
    socketBufferSize: options.socketBufferSize ?? 4 * 1024 * 1024,
    sessionResumption: options.sessionResumption ?? true,
  };
  if (!Number.isInteger(resolved.maxDatagramSize) || resolved.maxDatagramSize < 1200 || resolved.maxDatagramSize > 16383) {
    throw new PnetError('ERR_BAD_OPTION', `maxDatagramSize must be an integer in 1200..16383, got ${resolved.maxDatagramSize}`);
  }
  return resolved;
}

function makeConfig(identity: Identity, options: Resolved): native.Config {
  const config = quiche.Config.withBoringSslCtx(
    true, // ask every peer for its certificate (mutual TLS) ...
    true, // ... but let the handshake finish: pnet verifies the certificate itself, pinned to node ids
    null,
    [Buffer.from(identity.keyPem)],
    [Buffer.from(identity.certPem)],
    'ed25519',
  );
  config.setApplicationProtos([ALPN]);
  config.setMaxIdleTimeout(options.idleTimeoutMs);
  config.setMaxRecvUdpPayloadSize(65527);
  config.setMaxSendUdpPayloadSize(options.maxDatagramSize);
  config.setInitialMaxData(options.connectionWindow);
  config.setInitialMaxStreamDataBidiLocal(options.streamWindow);
  config.setInitialMaxStreamDataBidiRemote(options.streamWindow);
  config.setInitialMaxStreamDataUni(0);
  config.setInitialMaxStreamsBidi(options.maxStreamsPerConnection);
  config.setInitialMaxStreamsUni(0);
  config.setMaxStreamWindow(Math.max(options.streamWindow, quiche.MAX_STREAM_WINDOW));
  config.setMaxConnectionWindow(Math.max(options.connectionWindow, quiche.MAX_CONNECTION_WINDOW));
  config.setDisableActiveMigration(true);
  config.enablePacing(false);
  config.grease(false);
  return config;
}

/**
 * pnet's QUIC transport: one UDP socket shared by the dialing and listening
 * roles, demultiplexed by connection id, driving quiche directly. Received
 * datagrams are fed to quiche as they come; streams are read and sends drained
 * once per batch (a setImmediate), or after application writes (a microtask).
 */
export class QuicTransport extends EventEmitter<TransportEvents> implements Transport, ConnectionHost {
  readonly kind = 'quic' as const;
  readonly localNodeId: NodeId;
  readonly localAddress: SocketAddress;
  readonly options: Resolved;
  /** Datagrams dropped because no connection wanted them or they were malformed. */
  droppedDatagrams = 0;

  private readonly socket: DatagramSocket;
  private readonly config: native.Config;
  /** TLS sessions saved by outbound connections, for the next dial to the same address. */
  readonly sessions: SessionStore;
  private readonly byCid = new Map<string, QuicConnection>();
  private readonly connections = new Set<QuicConnection>();
  private readonly dirty = new Set<QuicConnection>();
  /** Connections with only ACKs to send, drained next loop turn (or before their next datagram). */
  private readonly unflushed = new Set<QuicConnection>();
  private flushScheduled = false;
  private readonly afterTicks = new Set<QuicConnection>();
  private pendingInbound = 0;
  private batchScheduled = false;
  private processing: QuicConnection | undefined;
  readonly readPool = { buffer: Buffer.allocUnsafe(READ_POOL_SIZE), offset: 0 };
  private slab = Buffer.allocUnsafe(SLAB_SIZE);
  private slabOffset = 0;
  private readonly keepAliveTimer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;

  private constructor(identity: Identity, socket: DatagramSocket, options: Resolved) {
    super();
    this.localNodeId = identity.nodeId;
    this.socket = socket;
    this.options = options;
    this.sessions = new SessionStore(options.sessionResumption);
    this.config = makeConfig(identity, options);
    this.localAddress = socket.address;
    this.keepAliveTimer = setInterval(this.sweep, Math.max(50, Math.floor(options.keepAliveIntervalMs / 2)));
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

  async dial(address: SocketAddress, options: DialOptions = {}): Promise<QuicConnection> {
    if (this.closing) throw new PnetError('ERR_TRANSPORT_CLOSED', 'transport is closed');
    const family = isIP(address.host);
    if (family === 0 || !Number.isInteger(address.port) || address.port <= 0 || address.port > 65535) {
      throw new PnetError('ERR_BAD_ADDRESS', `cannot dial ${address.host}:${address.port}: need an IP address and a port`);
    }
    if (family !== isIP(this.localAddress.host)) {
      throw new PnetError('ERR_BAD_ADDRESS', `cannot dial IPv${family} ${address.host} from a socket bound to ${this.localAddress.host}`);
    }
    if (this.connections.size >= this.options.maxConnections) {
      throw new PnetError('ERR_BAD_OPTION', `connection limit (${this.options.maxConnections}) reached`);
    }
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
    const connection = new QuicConnection(
      this,
      handshake,
      'outbound',
      remote,
      {
        handshakeTimeoutMs: options.timeoutMs ?? this.options.handshakeTimeoutMs,
        streamOpenTimeoutMs: this.options.streamOpenTimeoutMs,
        ...(options.expectedNodeId === undefined ? {} : { expectedNodeId: options.expectedNodeId }),
      },
    );
    this.register(connection, scid.toString('latin1'));
    const signal = options.signal;
    const abandon = (): void => void connection.close({ graceful: false, reason: 'dial abandoned' });
    if (signal?.aborted) abandon();
    else signal?.addEventListener('abort', abandon, { once: true });
    connection.process();
    try {
      await connection.ready;
    } finally {
      signal?.removeEventListener('abort', abandon);
    }
    return connection;
  }

  private cidPool = Buffer.alloc(0);
  private cidOffset = 0;

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

  private register(connection: QuicConnection, key: string): void {
    connection.keys.push(key);
    this.byCid.set(key, connection);
    this.connections.add(connection);
  }

  private onDatagram(datagram: Buffer, host: string, port: number): void {
    const length = datagram.length;
    if (length < 1 + CID_LEN) {
      this.droppedDatagrams++;
      return;
    }
    let key: string;
    const long = (datagram[0]! & 0x80) !== 0;
    if (!long) {
      key = datagram.toString('latin1', 1, 1 + CID_LEN);
    } else {
      const dcidLength = datagram[5]!;
      if (dcidLength > quiche.MAX_CONN_ID_LEN || 6 + dcidLength > length) {
        this.droppedDatagrams++;
        return;
      }
      key = datagram.toString('latin1', 6, 6 + dcidLength);
    }
    let connection = this.byCid.get(key);
    if (connection === undefined) {
      connection = long ? this.acceptInitial(datagram, host, port, key) : undefined;
      if (connection === undefined) {
        this.droppedDatagrams++;
        return;
      }
    } else if (port !== connection.remoteAddress.port || host !== connection.remoteAddress.host) {
      // Migration is disabled: a datagram for this id from elsewhere is spoofed or stale.
      this.droppedDatagrams++;
      return;
    }
    // Whatever the application wrote goes out before quiche reads on: quiche 0.18 collects a stream
    // whose data is all acknowledged as soon as it has a fin offset, so an ACK read before a pending
    // FIN was sent would make it drop that FIN.
    if (connection.wrote || this.unflushed.has(connection)) this.flush(connection);
    connection.receive(datagram, performance.now());
    this.dirty.add(connection);
    if (!this.batchScheduled) {
      this.batchScheduled = true;
      setImmediate(this.runBatch);
    }
  }

  private acceptInitial(datagram: Buffer, host: string, port: number, key: string): QuicConnection | undefined {
    if (this.closing || datagram.length < quiche.MIN_CLIENT_INITIAL_LEN) return undefined;
    let header: native.Header;
    try {
      header = quiche.Header.fromSlice(datagram, CID_LEN);
    } catch {
      return undefined;
    }
    const remote = { host, port };
    if (!quiche.versionIsSupported(header.version)) {
      const out = Buffer.allocUnsafe(1350);
      const written = quiche.negotiateVersion(header.scid, header.dcid, out);
      this.socket.send(out, 0, written, written, port, host);
      return undefined;
    }
    if (header.ty !== quiche.Type.Initial) return undefined;
    if (this.connections.size >= this.options.maxConnections || this.pendingInbound >= this.options.maxPendingHandshakes) return undefined;
    const scid = this.newConnectionId();
    const connection = new QuicConnection(this, quiche.Connection.accept(scid, null, this.localAddress, remote, this.config), 'inbound', remote, {
      handshakeTimeoutMs: this.options.handshakeTimeoutMs,
      streamOpenTimeoutMs: this.options.streamOpenTimeoutMs,
    });
    // The client keeps using its random initial id until it hears ours: map both.
    this.register(connection, key);
    this.register(connection, scid.toString('latin1'));
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

  private readonly runBatch = (): void => {
    this.batchScheduled = false;
    const dirty = this.dirty;
    while (dirty.size > 0) {
      for (const connection of dirty) {
        dirty.delete(connection);
        this.processing = connection;
        connection.process();
      }
    }
    this.processing = undefined;
  };

  schedule(connection: QuicConnection): void {
    // Writes made while this connection is being processed go out in its own flush.
    if (connection === this.processing) return;
    this.dirty.add(connection);
    if (!this.batchScheduled) {
      this.batchScheduled = true;
      setImmediate(this.runBatch);
    }
  }

  flushSoon(connection: QuicConnection): void {
    if (connection !== this.processing) this.flush(connection);
  }

  flushLater(connection: QuicConnection): void {
    this.unflushed.add(connection);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  }

  flushAfterTicks(connection: QuicConnection): void {
    if (this.afterTicks.size === 0) queueMicrotask(this.flushAfterTicksNow);
    this.afterTicks.add(connection);
  }

  private readonly flushAfterTicksNow = (): void => {
    for (const connection of this.afterTicks) {
      if (connection.closed) continue;
      this.flush(connection);
      connection.armTimer(); // sending sets quiche's loss-detection deadline
    }
    this.afterTicks.clear();
  };

  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    for (const connection of this.unflushed) this.flush(connection);
  };

  /**
   * Drains quiche's packets for this connection into the slab and hands the socket each run of
   * equal-sized packets (the last one may be shorter) in one call: the native socket sends a run
   * as one GSO super-datagram.
   */
  flush(connection: QuicConnection): void {
    this.unflushed.delete(connection);
    connection.flushing();
    const q = connection.quiche;
    const { port, host } = connection.remoteAddress;
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
      let sent: [number, native.SendInfo] | null;
      try {
        sent = q.send(this.slab.subarray(offset, offset + max));
      } catch {
        break;
      }
      if (sent === null) break;
      const length = sent[0];
      connection.sentSinceRecv += length;
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
    const session = connection.quiche.session();
    if (session !== null) this.sessions.save(connection.remoteAddress, connection.remoteNodeId, session);
  }

  forget(connection: QuicConnection): void {
    for (const key of connection.keys) {
      if (this.byCid.get(key) === connection) this.byCid.delete(key);
    }
    this.connections.delete(connection);
    this.dirty.delete(connection);
    this.unflushed.delete(connection);
  }

  private readonly sweep = (): void => {
    const quietSince = performance.now() - this.options.keepAliveIntervalMs;
    for (const connection of this.connections) {
      if (connection.lastActivity < quietSince) connection.keepAlive();
    }
  };

  /** Closes every connection (gracefully, bounded by timeoutMs) and the socket. */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      const timeoutMs = options.timeoutMs ?? 2000;
      this.sessions.close();
      await Promise.all([...this.connections].map((c) => c.close({ timeoutMs, reason: 'node closing' })));
      clearInterval(this.keepAliveTimer);
      // Every peer has our CONNECTION_CLOSE; quiche's draining periods need not outlive the socket.
      for (const connection of [...this.connections]) connection.dispose();
      await this.socket.close();
    })();
    return this.closing;
  }
}
