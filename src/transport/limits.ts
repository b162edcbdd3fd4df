import { numberOption } from '../options.js';
import type { Identity } from '../identity/index.js';

/** Options every transport takes, with the same meaning and defaults. */
export interface TransportOptions {
  identity: Identity;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: any free port). */
  port?: number;
  /** A silent peer is dropped after this long (default 5000 ms). */
  idleTimeoutMs?: number;
  /** A keep-alive goes out after this much quiet (default idleTimeoutMs / 3). */
  keepAliveIntervalMs?: number;
  /** Dial deadline for the handshake (default 5000 ms); also bounds inbound handshakes. */
  handshakeTimeoutMs?: number;
  /** Concurrent bidirectional streams a peer may open on one connection (default 1000). */
  maxStreamsPerConnection?: number;
  /** How long openStream waits for the peer's stream limit to free up (default 10000 ms). */
  streamOpenTimeoutMs?: number;
  /** Initial per-stream flow-control window in bytes (default 1 MiB). */
  streamWindow?: number;
  /** Initial connection flow-control window in bytes (default 16 MiB). */
  connectionWindow?: number;
  /** Most connections kept, both directions (default 10000). */
  maxConnections?: number;
  /** Most inbound handshakes in progress at once (default 1000). */
  maxPendingHandshakes?: number;
  /**
   * Resume the TLS session of the last connection to an address when dialing it again (default
   * true): no certificate signatures in the handshake, the peer still checked (docs/TRANSPORT.md).
   */
  sessionResumption?: boolean;
}

export type TransportLimits = Required<Omit<TransportOptions, 'identity' | 'host' | 'port' | 'sessionResumption'>>;

/** Fills in the defaults and rejects values that are not positive and finite (ERR_BAD_OPTION). */
export function resolveLimits(options: TransportOptions): TransportLimits {
  const positive = (name: keyof TransportLimits, fallback: number): number =>
    numberOption('transport option', name, options[name], fallback, { min: 0, above: true });
  const idleTimeoutMs = positive('idleTimeoutMs', 5000);
  return {
    idleTimeoutMs,
    keepAliveIntervalMs: positive('keepAliveIntervalMs', Math.max(100, Math.floor(idleTimeoutMs / 3))),
    handshakeTimeoutMs: positive('handshakeTimeoutMs', 5000),
    maxStreamsPerConnection: positive('maxStreamsPerConnection', 1000),
    streamOpenTimeoutMs: positive('streamOpenTimeoutMs', 10_000),
    streamWindow: positive('streamWindow', 1024 * 1024),
    connectionWindow: positive('connectionWindow', 16 * 1024 * 1024),
    maxConnections: positive('maxConnections', 10_000),
    maxPendingHandshakes: positive('maxPendingHandshakes', 1000),
  };
}
