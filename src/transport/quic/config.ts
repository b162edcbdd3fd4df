import * as native from '@matrixai/quic/native/index.js';
import type { Identity } from '../../identity/index.js';
import type { TransportLimits } from '../limits.js';

const quiche = native.quiche;

/** TLS ALPN of pnet over QUIC. */
export const ALPN = 'pnet/1';
/** QUIC DATAGRAM frames (RFC 9221) quiche queues each way before it drops the newest. */
export const DATAGRAM_QUEUE_LENGTH = 1024;

/** What the quiche configuration is made from: the transport's resolved limits and datagram size. */
export type QuicConfigOptions = Pick<TransportLimits, 'idleTimeoutMs' | 'connectionWindow' | 'streamWindow' | 'maxStreamsPerConnection'> & {
  maxDatagramSize: number;
  /** Whether quiche may auto-tune the windows up to its maximums (24 MiB, 16 MiB a stream; default true). */
  autotune?: boolean;
};

/**
 * The production quiche configuration, for both roles (the QuicPair test harness builds its
 * machines with it too). Mutual TLS with Ed25519 certificates that pnet checks itself, pinned to
 * node ids; bidirectional streams only; migration off; DATAGRAM frames on.
 */
export function makeQuicConfig(identity: Identity, options: QuicConfigOptions): native.Config {
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
  const most = maxWindows(options);
  config.setMaxStreamWindow(most.stream);
  config.setMaxConnectionWindow(most.connection);
  config.setDisableActiveMigration(true);
  config.enableDgram(true, DATAGRAM_QUEUE_LENGTH, DATAGRAM_QUEUE_LENGTH);
  config.enablePacing(false);
  config.grease(false);
  return config;
}

/**
 * The most a connection made with these options can make this end buffer unread: its connection
 * window as auto-tuned at most. quiche raises the connection window to 1.5× a stream's window
 * whenever it widens that one (ensure_window_lower_bound), past its own maximum if need be.
 */
export function windowCeiling(options: QuicConfigOptions): number {
  const most = maxWindows(options);
  return Math.max(most.connection, Math.ceil(most.stream * 1.5));
}

/** How far quiche may auto-tune the windows: its own maximums, or the initial windows without auto-tuning. */
function maxWindows(options: QuicConfigOptions): { connection: number; stream: number } {
  if (options.autotune === false) return { connection: options.connectionWindow, stream: options.streamWindow };
  return { connection: Math.max(options.connectionWindow, quiche.MAX_CONNECTION_WINDOW), stream: Math.max(options.streamWindow, quiche.MAX_STREAM_WINDOW) };
}

/** The smallest window a lean connection gets (a few packets in flight, any path). */
export const MIN_LEAN_WINDOW = 64 * 1024;

/** Which configuration a connection was made with, and the bytes of the budget it holds. */
export interface WindowGrant {
  readonly lean: boolean;
  readonly bytes: number;
}

export interface WindowBudgetStats {
  /** The node's budget for the windows of full connections (bytes). */
  budget: number;
  /** Bytes granted to the connections open now (full and lean). */
  granted: number;
  /** Connections open now with the full, auto-tuned windows / with the lean ones. */
  full: number;
  lean: number;
  /** Connections made lean because the full windows would have passed the budget (monotonic). */
  leanGrants: number;
}

/**
 * The system scope of the flow-control windows (sans-IO): quiche fixes a connection's windows when
 * it is made, from one configuration per endpoint, so the endpoint keeps two (full: auto-tuned to
 * 24 MiB; lean: `leanBytes` and no auto-tuning) and asks this budget which one each new
 * connection gets. Full ones while their ceilings fit in the budget, lean ones past it (counted),
 * so the whole node's windows stay under budget + maxConnections × leanBytes.
 */
export class WindowBudget {
  private granted = 0;
  private fullOpen = 0;
  private leanOpen = 0;
  private leanGrants = 0;

  constructor(
    readonly budget: number,
    readonly fullBytes: number,
    readonly leanBytes: number,
  ) {}

  /** The windows for a new connection: full while they fit in the budget, else lean. */
  grant(): WindowGrant {
    if (this.granted + this.fullBytes <= this.budget) {
      this.granted += this.fullBytes;
      this.fullOpen++;
      return { lean: false, bytes: this.fullBytes };
    }
    this.granted += this.leanBytes;
    this.leanOpen++;
    this.leanGrants++;
    return { lean: true, bytes: this.leanBytes };
  }

  /** The connection of `grant` is gone (exactly once per grant). */
  release(grant: WindowGrant): void {
    this.granted -= grant.bytes;
    if (grant.lean) this.leanOpen--;
    else this.fullOpen--;
  }

  stats(): WindowBudgetStats {
    return { budget: this.budget, granted: this.granted, full: this.fullOpen, lean: this.leanOpen, leanGrants: this.leanGrants };
  }
}

/**
 * The lean windows for a node whose full ones passed `budget`: the budget shared by every
 * connection the node may hold, never below MIN_LEAN_WINDOW nor above the full initial window.
 * The stream window is half of it, so quiche's 1.5× rule keeps the connection window in place.
 */
export function leanWindows(budget: number, maxConnections: number, connectionWindow: number): { connectionWindow: number; streamWindow: number } {
  const share = Math.floor(budget / Math.max(1, maxConnections));
  const connection = Math.min(connectionWindow, Math.max(MIN_LEAN_WINDOW, share));
  return { connectionWindow: connection, streamWindow: Math.floor(connection / 2) };
}
