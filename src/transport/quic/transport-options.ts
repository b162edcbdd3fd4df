/** The QUIC transport's options (checked and resolved) and its stats. */
import { numberOption } from '../../options.js';
import { resolveLimits } from '../limits.js';
import type { TransportLimits, TransportOptions } from '../limits.js';
import type { WindowBudgetStats } from './config.js';
import { retryOption } from './gate.js';
import { MALLOC_TRIM_PERIOD_MS } from './malloc-trim.js';
import type { MallocTrimStats } from './malloc-trim.js';
import type { QuicDropStats, RetryMode } from './gate.js';
import type { UdpImplementation } from './udp.js';

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
  /**
   * After a connection closes, give glibc malloc's free pages back to the kernel (`malloc_trim`),
   * at most once per this many ms per process (default 10,000; 0: never). Churn otherwise leaves
   * freed connection state held in malloc's arenas, and RSS climbs (malloc-trim.ts).
   */
  mallocTrimPeriodMs?: number;
}

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
  /** Closing connections that wrote CLOSING_PACKETS and were stopped there (quiche 0.18's endless close after a Handshake PTO, machine.ts). */
  closingSendsCut: number;
  /** Validated hosts that lost their own Initial budget: undecryptable Initials past theirs (gate.ts). */
  hostsDistrusted: number;
  /** Tokenless Initials sent to Retry because their host held its share (1/16 of `maxPendingHandshakes`) of handshakes in progress that skipped Retry (gate.ts). */
  hostHandshakeShare: number;
  /** Inbound handshakes closed at a full `maxPendingHandshakes` for a newcomer from a host holding fewer: the heaviest host's oldest (gate.ts). */
  handshakesEvicted: number;
  /** The process's malloc trims (process-wide: every transport of the process reports the same). */
  mallocTrim: MallocTrimStats;
}

export type ResolvedQuicOptions = TransportLimits & { maxDatagramSize: number; socketBufferSize: number; sessionResumption: boolean; retry: RetryMode; windowBudget: number; mallocTrimPeriodMs: number };

export function resolveOptions(options: QuicTransportOptions): ResolvedQuicOptions {
  return {
    ...resolveLimits(options),
    maxDatagramSize: numberOption('QUIC option', 'maxDatagramSize', options.maxDatagramSize, 1350, { min: 1200, max: 16383, integer: true }),
    socketBufferSize: numberOption('QUIC option', 'socketBufferSize', options.socketBufferSize, 4 * 1024 * 1024, { min: 0, above: true, integer: true }),
    sessionResumption: options.sessionResumption ?? true,
    retry: retryOption(options.retry),
    windowBudget: numberOption('QUIC option', 'windowBudget', options.windowBudget, 1024 * 1024 * 1024, { min: 0, integer: true }),
    mallocTrimPeriodMs: numberOption('QUIC option', 'mallocTrimPeriodMs', options.mallocTrimPeriodMs, MALLOC_TRIM_PERIOD_MS, { min: 0 }),
  };
}
