import { PnetError } from '../errors.js';
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
  const idleTimeoutMs = options.idleTimeoutMs ?? 5000;
  const limits: TransportLimits = {
    idleTimeoutMs,
    keepAliveIntervalMs: options.keepAliveIntervalMs ?? Math.max(100, Math.floor(idleTimeoutMs / 3)),
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? 5000,
    maxStreamsPerConnection: options.maxStreamsPerConnection ?? 1000,
    streamOpenTimeoutMs: options.streamOpenTimeoutMs ?? 10_000,
    streamWindow: options.streamWindow ?? 1024 * 1024,
    connectionWindow: options.connectionWindow ?? 16 * 1024 * 1024,
    maxConnections: options.maxConnections ?? 10_000,
    maxPendingHandshakes: options.maxPendingHandshakes ?? 1000,
  };
  for (const [key, value] of Object.entries(limits)) {
    if (!(value > 0) || !Number.isFinite(value)) throw new PnetError('ERR_BAD_OPTION', `${key} must be a positive number, got ${value}`);
  }
  return limits;
}
