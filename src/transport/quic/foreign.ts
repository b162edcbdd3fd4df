import { randomBytes } from 'node:crypto';
import * as native from '@matrixai/quic/native/index.js';
import { PnetError } from '../../errors.js';
import { numberOption } from '../../options.js';
import type { NodeId } from '../../identity/index.js';
import { resolveLimits } from '../limits.js';
import type { TransportLimits, TransportOptions } from '../limits.js';
import { closeConnections, startKeepAliveSweep } from '../shared.js';
import { QuicConnection } from './connection.js';
import type { DatagramPath, QuicEndpoint } from './connection.js';
import { QuicMachine, READ_POOL_SIZE } from './machine.js';
import type { ReadPool } from './machine.js';
import { Scheduler } from './scheduler.js';
import { makeQuicConfig } from './config.js';
import { MALLOC_TRIM_PERIOD_MS, mallocTrimmer } from './malloc-trim.js';

const quiche = native.quiche;
/** pnet's connection ids: 16 bytes, fixed for a connection's life (a relayed path demultiplexes by them). */
export const FOREIGN_CID_LENGTH = 16;

export interface ForeignQuicOptions extends TransportOptions {
  /** Largest QUIC packet the foreign path carries (relay v2: the inner size, 1244 by default). */
  maxDatagramSize: number;
  /** As the UDP transport's option: malloc_trim at most once per this many ms after a close (0: never). */
  mallocTrimPeriodMs?: number;
}

/**
 * QUIC connections over paths the caller owns (relay v2's RelayPath): same certificates, mutual
 * TLS pinned to node ids, ALPN pnet/1 and driver as the UDP transport, the production config
 * with the path's datagram size. The caller demultiplexes incoming packets and calls
 * `connection.receive`; this endpoint only makes, keeps alive and closes the connections.
 */
export class ForeignQuic implements QuicEndpoint {
  readonly localNodeId: NodeId;
  readonly scheduler = new Scheduler();
  readonly limits: TransportLimits;
  private readonly config: native.Config;
  private readonly readPool: ReadPool = { buffer: Buffer.allocUnsafe(READ_POOL_SIZE), offset: 0 };
  private readonly connections = new Set<QuicConnection>();
  private closingSendsCutCount = 0;
  private readonly keepAliveTimer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;
  private readonly mallocTrimPeriodMs: number;

  constructor(options: ForeignQuicOptions) {
    this.localNodeId = options.identity.nodeId;
    this.limits = resolveLimits(options);
    const maxDatagramSize = numberOption('foreign QUIC option', 'maxDatagramSize', options.maxDatagramSize, 1200, { min: 1200, max: 16383, integer: true });
    this.config = makeQuicConfig(options.identity, { ...this.limits, maxDatagramSize });
    this.mallocTrimPeriodMs = numberOption('foreign QUIC option', 'mallocTrimPeriodMs', options.mallocTrimPeriodMs, MALLOC_TRIM_PERIOD_MS, { min: 0 });
    if (this.mallocTrimPeriodMs > 0) mallocTrimmer.pinMmapThreshold();
    this.keepAliveTimer = startKeepAliveSweep(this.limits.keepAliveIntervalMs, this.sweep);
    this.keepAliveTimer.unref();
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Relayed connections whose close was cut at CLOSING_PACKETS (machine.ts). */
  get closingSendsCut(): number {
    return this.closingSendsCutCount;
  }

  /** A fresh connection id (the path must know it before the connection sends). */
  newConnectionId(): Buffer {
    return randomBytes(FOREIGN_CID_LENGTH);
  }

  /** Starts a client connection on `path` with source id `scid`, pinned to `expectedNodeId`; await its `ready`. */
  connect(path: DatagramPath, scid: Buffer, expectedNodeId: NodeId, handshakeTimeoutMs = this.limits.handshakeTimeoutMs): QuicConnection {
    this.assertOpen();
    const handshake = quiche.Connection.connect('pnet', scid, path.localAddress, path.remoteAddress, this.config);
    const connection = this.open(handshake, 'outbound', path, handshakeTimeoutMs, expectedNodeId);
    connection.drive();
    return connection;
  }

  /** Accepts a client's Initial arriving on `path` as a server connection with source id `scid`. */
  accept(path: DatagramPath, scid: Buffer, initial: Buffer): QuicConnection {
    this.assertOpen();
    const handshake = quiche.Connection.accept(scid, null, path.localAddress, path.remoteAddress, this.config);
    const connection = this.open(handshake, 'inbound', path, this.limits.handshakeTimeoutMs);
    connection.receive(initial);
    return connection;
  }

  private open(handshake: native.Connection, direction: 'inbound' | 'outbound', path: DatagramPath, handshakeTimeoutMs: number, expectedNodeId?: NodeId): QuicConnection {
    const machine = new QuicMachine(handshake, {
      direction,
      local: path.localAddress,
      remote: path.remoteAddress,
      handshakeTimeoutMs,
      readPool: this.readPool,
      now: performance.now(),
      ...(expectedNodeId === undefined ? {} : { expectedNodeId }),
    });
    const connection = new QuicConnection({ machine, path, endpoint: this, streamOpenTimeoutMs: this.limits.streamOpenTimeoutMs });
    this.connections.add(connection);
    return connection;
  }

  private assertOpen(): void {
    if (this.closing) throw new PnetError('ERR_TRANSPORT_CLOSED', 'relayed connections are closed');
  }

  /** No session resumption on foreign paths: their stand-in addresses say nothing about the far node. */
  saveSession(): void {}

  forget(connection: QuicConnection): void {
    if (!this.connections.delete(connection)) return;
    if (connection.machine.closingSendsCut) this.closingSendsCutCount++;
    mallocTrimmer.connectionClosed(this.mallocTrimPeriodMs);
  }

  private readonly sweep = (now: number): void => {
    const quietSince = now - this.limits.keepAliveIntervalMs;
    for (const connection of this.connections) {
      if (connection.lastActivity < quietSince) connection.keepAlive();
    }
  };

  /** Closes every connection (gracefully, bounded by timeoutMs). */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= (async () => {
      await closeConnections(this.connections, options.timeoutMs ?? 2000);
      clearInterval(this.keepAliveTimer);
      for (const connection of [...this.connections]) connection.dispose();
    })();
    return this.closing;
  }
}
