import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as native from '@matrixai/quic/native/index.js';
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
import { leanWindows, makeQuicConfig, WindowBudget, windowCeiling } from './config.js';
import type { WindowBudgetStats, WindowGrant } from './config.js';
import { InitialGate, retryOption } from './gate.js';
import type { QuicDropStats, RetryMode } from './gate.js';
import { chooseUdp, openDatagramSocket } from './udp.js';
import type { DatagramHandler, DatagramSocket, UdpImplementation } from './udp.js';

export { ALPN } from './config.js';
export type { QuicDropStats, RetryMode } from './gate.js';

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
  /**
   * Stateless Retry (address validation, RFC 9000 §8.1.2) for Initials without a token: 'auto'
   * (the default) once inbound handshakes in progress reach half of `maxPendingHandshakes` or
   * new handshakes for unvalidated addresses come faster than 100/s (gate.ts; a host that completed
   * a handshake in the last 10 minutes has its own budget of 1,000/s); 'always'; or 'never'.
   */
  retry?: RetryMode;
  /**
   * The node's budget for flow-control windows (default 1 GiB): connections get the full,
   * auto-tuned windows (up to 24 MiB each) while their sum fits, lean ones past it (config.ts,
   * WindowBudget; docs/LIMITS.md).
   */
  windowBudget?: number;
}

/**
 * An inbound handshake waits this many times the client's timeout: a client that completed within
 * its own has sent its Finished, maybe still queued here behind a storm (a hub restart's leaves
 * saw such fresh connections closed by the hub's timeout and redialed them).
 */
const INBOUND_HANDSHAKE_GRACE = 1.5;

/** RFC 9000 §8.1: a server sends at most 3× the bytes it received from an address it has not validated. */
const AMPLIFICATION_FACTOR = 3;

export interface QuicTransportStats {
  connections: number;
  /** Inbound handshakes in progress. */
  pendingHandshakes: number;
  droppedDatagrams: QuicDropStats;
  /** Datagrams not sent to an address not yet validated: over 3× the bytes received from it (RFC 9000 §8.1). */
  amplificationLimited: number;
  /** The flow-control window budget: full and lean connections, lean grants (a limit trip each). */
  windows: WindowBudgetStats;
  /** Connections closed for holding ABANDONED_STREAM_LIMIT streams quiche never collects (machine.ts). */
  abandonedStreamCloses: number;
  /** Validated hosts that lost their own Initial budget: undecryptable Initials past theirs (gate.ts). */
  hostsDistrusted: number;
  /** Tokenless Initials sent to Retry because their host held its share (1/16 of `maxPendingHandshakes`) of handshakes in progress that skipped Retry (gate.ts). */
  hostHandshakeShare: number;
}

type Resolved = TransportLimits & { maxDatagramSize: number; socketBufferSize: number; sessionResumption: boolean; retry: RetryMode; windowBudget: number };

function resolveOptions(options: QuicTransportOptions): Resolved {
  return {
    ...resolveLimits(options),
    maxDatagramSize: numberOption('QUIC option', 'maxDatagramSize', options.maxDatagramSize, 1350, { min: 1200, max: 16383, integer: true }),
    socketBufferSize: numberOption('QUIC option', 'socketBufferSize', options.socketBufferSize, 4 * 1024 * 1024, { min: 0, above: true, integer: true }),
    sessionResumption: options.sessionResumption ?? true,
    retry: retryOption(options.retry),
    windowBudget: numberOption('QUIC option', 'windowBudget', options.windowBudget, 1024 * 1024 * 1024, { min: 0, integer: true }),
  };
}

/** One connection's path over the endpoint's UDP socket: its peer address and the connection ids mapped to it. */
class UdpPath implements DatagramPath {
  readonly keys: string[] = [];
  connection: QuicConnection | undefined;
  /** The windows this connection was made with, given back to the budget when it is gone. */
  windows: WindowGrant | undefined;
  /** Bytes received from the peer's address while it is not validated (the anti-amplification budget is 3× this). */
  received = 0;
  private sent = 0;
  constructor(
    private readonly endpoint: QuicTransport,
    readonly localAddress: SocketAddress,
    readonly remoteAddress: SocketAddress,
    /** We dialed it, a Retry token proved it, or the handshake completed. */
    public validated: boolean,
  ) {}

  transmit(machine: QuicMachine): void {
    // A completed handshake proves the client got our packets at that address (RFC 9000 §8.1).
    if (!this.validated && machine.established) this.validated = true;
    if (this.validated) {
      this.endpoint.sendRuns(machine, this.remoteAddress);
      return;
    }
    this.sent += this.endpoint.sendRuns(machine, this.remoteAddress, AMPLIFICATION_FACTOR * this.received - this.sent);
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
  /** The same with small windows and no auto-tuning, for connections past the window budget. */
  private readonly leanConfig: native.Config;
  private readonly windows: WindowBudget;
  private readonly byCid = new Map<string, UdpPath>();
  private readonly connections = new Set<QuicConnection>();
  private readonly gate: InitialGate;
  private readonly dropped: QuicDropStats;
  private amplificationLimited = 0;
  private abandonedStreamCloses = 0;
  private readonly readPool: ReadPool = { buffer: Buffer.allocUnsafe(READ_POOL_SIZE), offset: 0 };
  private slab = Buffer.allocUnsafe(SLAB_SIZE);
  private slabOffset = 0;
  private readonly keepAliveTimer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;
  private cidPool = Buffer.alloc(0);
  private cidOffset = 0;
  /** Relay v2's datagrams sent straight on the socket (`sendRelayed`): the run being gathered. */
  private relayRun: { slab: Buffer; start: number; end: number; size: number; host: string; port: number } | undefined;
  /**
   * Takes datagrams that are not QUIC (the fixed bit 0x40 clear, which QUIC v1 never sends without
   * grease_quic_bit, RFC 9287): relay v2's link packets (docs/RELAY.md). Unset: dropped as bad headers.
   */
  onForeignDatagram: DatagramHandler | undefined;

  private constructor(identity: Identity, socket: DatagramSocket, options: Resolved) {
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
    this.gate = new InitialGate({ retry: options.retry, maxConnections: options.maxConnections, maxPendingHandshakes: options.maxPendingHandshakes, cidLength: CID_LEN, handshakeTimeoutMs: options.handshakeTimeoutMs }, performance.now());
    this.dropped = this.gate.dropped;
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
    return {
      connections: this.connections.size,
      pendingHandshakes: this.gate.admission.inProgress,
      droppedDatagrams: { ...this.dropped },
      amplificationLimited: this.amplificationLimited,
      windows: this.windows.stats(),
      abandonedStreamCloses: this.abandonedStreamCloses,
      hostsDistrusted: this.gate.hostsDistrusted,
      hostHandshakeShare: this.gate.hostShareRetried,
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
    const verdict = this.gate.check(datagram, host, port, now, { closing: this.closing !== undefined, connections: this.connections.size, pendingHandshakes: this.gate.admission.inProgress });
    switch (verdict.action) {
      case 'negotiate': {
        const { scid, dcid } = verdict.header;
        this.sendStateless((out) => quiche.negotiateVersion(scid, dcid, out), host, port);
        return;
      }
      case 'retry': {
        const { scid, dcid, version } = verdict.header;
        const retryScid = this.newConnectionId();
        const token = this.gate.retryToken(verdict.header, retryScid, host, port, now);
        this.sendStateless((out) => quiche.retry(scid, dcid, retryScid, token, version, out), host, port);
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
    const ticket = this.gate.handshakeStarted(remote.host, odcid !== null, performance.now());
    connection.ready.then(
      () => {
        this.gate.handshakeEnded(ticket, true, performance.now());
        this.emit('connection', connection);
      },
      () => {
        this.gate.handshakeEnded(ticket, false, performance.now());
      },
    );
    this.scheduler.schedule(connection);
  }

  /** Writes one stateless packet into the send slab (no buffer per reply) and sends it. */
  private sendStateless(write: (out: Buffer) => number, host: string, port: number): void {
    const max = this.options.maxDatagramSize;
    if (SLAB_SIZE - this.slabOffset < max) this.wrapSlab();
    const offset = this.slabOffset;
    const written = write(this.slab.subarray(offset, offset + max));
    this.slabOffset = offset + written;
    this.socket.send(this.slab, offset, written, written, port, host);
  }

  /**
   * Drains a machine's datagrams into the slab and hands the socket each run of equal-sized
   * packets (the last one may be shorter) in one call: the native socket sends a run as one GSO
   * super-datagram. Packets past `budget` bytes (an unvalidated address's 3×) are not sent; quiche
   * counts them lost. Returns the bytes sent.
   */
  sendRuns(machine: QuicMachine, remote: SocketAddress, budget = Infinity): number {
    const { port, host } = remote;
    let sent = 0;
    const max = this.options.maxDatagramSize;
    const socket = this.socket;
    let runStart = this.slabOffset;
    let runSize = 0;
    for (;;) {
      if (SLAB_SIZE - this.slabOffset < max || this.slabOffset - runStart >= RUN_BYTES) {
        if (this.slabOffset > runStart) socket.send(this.slab, runStart, this.slabOffset - runStart, runSize, port, host);
        if (SLAB_SIZE - this.slabOffset < max) this.wrapSlab();
        runStart = this.slabOffset;
      }
      const offset = this.slabOffset;
      const length = machine.pollTransmit(this.slab.subarray(offset, offset + max));
      if (length === null) break;
      if (sent + length > budget) {
        this.amplificationLimited++;
        continue;
      }
      sent += length;
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
    return sent;
  }

  /**
   * Sends `prefix` + `payload` as one UDP datagram to host:port, outside QUIC (relay v2's link
   * packets). Consecutive ones to the same peer gather into one run, sent as one GSO send once
   * this tick's work is done (a microtask), so a hop forwarding a received batch makes one call.
   */
  sendRelayed(prefix: Uint8Array, payload: Uint8Array, host: string, port: number): void {
    const length = prefix.length + payload.length;
    if (SLAB_SIZE - this.slabOffset < length) this.wrapSlab();
    let run = this.relayRun;
    const joins = run !== undefined && run.slab === this.slab && run.end === this.slabOffset && run.host === host && run.port === port && length <= run.size && run.end - run.start + length <= RUN_BYTES;
    if (run !== undefined && !joins) {
      this.flushRelayed();
      run = undefined;
    }
    const slab = this.slab;
    const offset = this.slabOffset;
    slab.set(prefix, offset);
    slab.set(payload, offset + prefix.length);
    this.slabOffset = offset + length;
    if (run === undefined) {
      this.relayRun = { slab, start: offset, end: offset + length, size: length, host, port };
      queueMicrotask(this.flushRelayed);
    } else {
      run.end += length;
      // A shorter datagram ends the run (GSO: only the last one may be shorter).
      if (length < run.size) this.flushRelayed();
    }
  }

  /**
   * The send slab is full: start again at its beginning when the socket copied everything it was
   * given (native), else take a fresh one (the 'node' socket may still hold views of the old one
   * while the kernel queue is full). Reuse spares a page fault per 4 KiB sent.
   */
  private wrapSlab(): void {
    this.flushRelayed();
    if (!this.socket.copiesOnSend) this.slab = Buffer.allocUnsafe(SLAB_SIZE);
    this.slabOffset = 0;
  }

  private readonly flushRelayed = (): void => {
    const run = this.relayRun;
    if (run === undefined) return;
    this.relayRun = undefined;
    this.socket.send(run.slab, run.start, run.end - run.start, run.size, run.port, run.host);
  };

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
    const path = connection.path as UdpPath;
    if (path.windows !== undefined) this.windows.release(path.windows);
    path.windows = undefined;
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
