/**
 * Outbound dials: QUIC first with HTTP/2 as the fallback (docs/TRANSPORT.md), addresses
 * remembered as HTTP/2-only, dial counters, one dial per address at a time. Sees only the
 * Transport interface.
 */
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { formatAddress } from '../transport/index.js';
import type { Connection, DialOptions, SocketAddress, Transport, TransportKind } from '../transport/index.js';
import type { DialStats } from './types.js';

/** Peer addresses remembered as HTTP/2-only, at most (evictions counted). */
const MAX_REMEMBERED = 10_000;
/** A link that fell back to HTTP/2 tries QUIC again after this, doubling per failure up to UPGRADE_MAX_MS. */
export const UPGRADE_FIRST_MS = 2000;
const UPGRADE_MAX_MS = 60_000;
/**
 * After HTTP/2's TCP connect is refused, how long QUIC may still answer: 200 ms, or twice the
 * refusal's round trip if longer, and never before 500 ms from the dial's start (a live QUIC-only
 * peer answers within a round trip or two).
 */
export const REFUSED_GRACE_MS = 200;
const REFUSED_MIN_DIAL_MS = 500;
/**
 * An address reached over QUIC within transportMemoryMs answers UDP: there HTTP/2 joins a dial
 * only after this share of the dial's budget (a slow handshake means a busy peer, and a second
 * one over TCP adds to its load: a restarted hub's leaves started 1,872 of them in one run).
 */
export const QUIC_KNOWN_FALLBACK_SHARE = 0.5;
/** Dial failures that another transport cannot fix: the peer is not who we want. */
const FINAL_DIAL_ERRORS = new Set(['ERR_PEER_ID_MISMATCH', 'ERR_PEER_CERTIFICATE', 'ERR_TRANSPORT_CLOSED']);

export interface DialRequest {
  readonly expectedNodeId?: NodeId;
  /** Bounds the whole dial (default: the largest handshake timeout of the transports). */
  readonly timeoutMs?: number;
}

export interface DialerSettings {
  /** HTTP/2 joins the race when no QUIC handshake completed within this. */
  readonly fallbackDelayMs: number;
  /** How long an address reached over HTTP/2 is dialed over HTTP/2 straight away (0: never). */
  readonly transportMemoryMs: number;
}

export class Dialer {
  /** Peer addresses ("host:port") last reached over HTTP/2 after QUIC failed, and until when to dial them over HTTP/2 straight away. */
  readonly h2Addresses = new Map<string, number>();
  /** Peer addresses last reached over QUIC, and until when HTTP/2 waits longer before joining their dials. */
  readonly quicAddresses = new Map<string, number>();
  /** Dials to such an address where QUIC was not done within fallbackDelayMs and HTTP/2 waited longer (not in NodeStats). */
  quicKnownWaits = 0;
  private readonly counts: DialStats = { quic: 0, h2: 0, fallbacks: 0, remembered: 0, refused: 0, quicRetries: 0, quicRecovered: 0, rememberedEvicted: 0 };
  private readonly pending = new Map<string, Promise<Connection>>();
  private readonly quic: Transport | undefined;
  private readonly h2: Transport | undefined;
  /** Background QUIC tries for links on HTTP/2, by the HTTP/2 connection. */
  private readonly upgrades = new Map<Connection, NodeJS.Timeout>();
  private closed = false;

  constructor(
    transports: readonly Transport[],
    private readonly settings: DialerSettings,
    /** Takes each dialed connection, once, whoever waits for it. */
    private readonly connected: (connection: Connection, target: SocketAddress) => void,
  ) {
    this.quic = transports.find((transport) => transport.kind === 'quic');
    this.h2 = transports.find((transport) => transport.kind === 'h2');
  }

  get stats(): Readonly<DialStats> {
    return { ...this.counts };
  }

  /** A connection to `target`, handed to `connected` first; concurrent dials of one address share one attempt. */
  dial(target: SocketAddress, options: DialRequest = {}): Promise<Connection> {
    const key = formatAddress(target);
    let pending = this.pending.get(key);
    if (pending === undefined) {
      pending = this.connect(target, key, options)
        .then((connection) => {
          this.connected(connection, target);
          if (connection.transport === 'quic') {
            this.h2Addresses.delete(key);
            this.remember(this.quicAddresses, key);
          } else {
            this.quicAddresses.delete(key);
            this.scheduleUpgrade(connection, target, UPGRADE_FIRST_MS);
          }
          return connection;
        })
        .finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    return pending;
  }

  /** Straight over HTTP/2 when remembered, else QUIC first with HTTP/2 as the fallback. */
  private async connect(target: SocketAddress, key: string, options: DialRequest): Promise<Connection> {
    const { quic, h2 } = this;
    const budget = options.timeoutMs ?? Math.max(quic?.handshakeTimeoutMs ?? 0, h2?.handshakeTimeoutMs ?? 0);
    const deadline = performance.now() + budget;
    if (quic === undefined || h2 === undefined) return this.attempt((quic ?? h2)!, target, options, deadline);
    const until = this.h2Addresses.get(key);
    if (until !== undefined && until <= performance.now()) this.h2Addresses.delete(key);
    if (until === undefined || until <= performance.now()) return this.race(quic, h2, target, key, options, deadline);
    this.counts.remembered++;
    try {
      return await this.attempt(h2, target, options, deadline);
    } catch (error) {
      // The peer may have changed (UDP opened, HTTP/2 turned off): forget, and race while time is left.
      this.h2Addresses.delete(key);
      if (isFinalDialError(error) || performance.now() >= deadline) throw error;
      return this.race(quic, h2, target, key, options, deadline);
    }
  }

  /** One handshake on one transport, bounded by the dial's deadline and the transport's own handshake timeout. */
  private attempt(transport: Transport, target: SocketAddress, options: DialRequest, deadline: number, signal?: AbortSignal): Promise<Connection> {
    this.counts[transport.kind]++;
    // Whole milliseconds: the transports put the figure in their messages.
    const left = Math.max(1, Math.round(deadline - performance.now()));
    const dialOptions: DialOptions = {
      timeoutMs: options.timeoutMs === undefined ? Math.min(left, transport.handshakeTimeoutMs) : left,
      ...(options.expectedNodeId === undefined ? {} : { expectedNodeId: options.expectedNodeId }),
      ...(signal === undefined ? {} : { signal }),
    };
    return transport.dial(target, dialOptions);
  }

  /**
   * QUIC first; HTTP/2 starts after `fallbackDelayMs`, or at once when QUIC fails early. The
   * first handshake to complete wins and the other is abandoned (or closed, if it completed
   * too). A final error (wrong or bad peer certificate) ends the race; any other failure of
   * one transport waits for the other.
   */
  private race(quic: Transport, h2: Transport, target: SocketAddress, key: string, options: DialRequest, deadline: number): Promise<Connection> {
    return new Promise<Connection>((resolve, reject) => {
      const aborts = { quic: new AbortController(), h2: new AbortController() };
      const errors: { quic?: unknown; h2?: unknown } = {};
      let settled = false;
      let h2Started = false;
      let graceTimer: NodeJS.Timeout | undefined;
      const dialStartedAt = performance.now();
      let h2StartedAt = dialStartedAt;
      const settle = (): void => {
        settled = true;
        clearTimeout(timer);
        clearTimeout(graceTimer);
      };
      const won = (connection: Connection): void => {
        if (settled) {
          void connection.close({ graceful: false, reason: 'lost the dial race' });
          return;
        }
        settle();
        aborts[connection.transport === 'quic' ? 'h2' : 'quic'].abort();
        if (connection.transport === 'h2') {
          this.counts.fallbacks++;
          this.rememberH2(key);
        }
        resolve(connection);
      };
      const failed = (kind: TransportKind, error: unknown): void => {
        if (settled) return;
        errors[kind] = error;
        if (isFinalDialError(error)) {
          settle();
          aborts.quic.abort();
          aborts.h2.abort();
          reject(error);
        } else if (!h2Started) {
          startH2();
        } else if (errors.quic !== undefined && errors.h2 !== undefined) {
          settle();
          reject(bothFailed(errors.quic, errors.h2));
        } else if (kind === 'h2' && isRefused(error) && graceTimer === undefined) {
          // The TCP port refused: nobody listens there. QUIC gets a round trip's grace, not its whole timeout.
          const now = performance.now();
          const graceMs = Math.max(REFUSED_GRACE_MS, 2 * (now - h2StartedAt), dialStartedAt + REFUSED_MIN_DIAL_MS - now);
          graceTimer = setTimeout(() => {
            if (settled) return;
            settle();
            aborts.quic.abort();
            this.counts.refused++;
            reject(refused(target, error, performance.now() - dialStartedAt));
          }, graceMs);
        }
      };
      const startH2 = (): void => {
        clearTimeout(timer);
        if (h2Started || settled) return;
        h2Started = true;
        h2StartedAt = performance.now();
        this.attempt(h2, target, options, deadline, aborts.h2.signal).then(won, (error: unknown) => failed('h2', error));
      };
      // When the delay ends, QUIC datagrams that came within it are read first (a poll phase and a
      // batch later): a busy event loop runs late timers before reading the socket, and would
      // start HTTP/2 beside a QUIC handshake whose answer is already waiting.
      const known = this.quicKnown(key);
      const delayMs = known ? Math.max(this.settings.fallbackDelayMs, (deadline - dialStartedAt) * QUIC_KNOWN_FALLBACK_SHARE) : this.settings.fallbackDelayMs;
      const start = (): void => {
        if (known && !h2Started && !settled && delayMs > this.settings.fallbackDelayMs) this.quicKnownWaits++;
        startH2();
      };
      const timer = setTimeout(() => setImmediate(() => setImmediate(start)), delayMs);
      this.attempt(quic, target, options, deadline, aborts.quic.signal).then(won, (error: unknown) => failed('quic', error));
    });
  }

  private rememberH2(key: string): void {
    this.quicAddresses.delete(key);
    this.remember(this.h2Addresses, key);
  }

  private remember(memory: Map<string, number>, key: string): void {
    if (this.settings.transportMemoryMs <= 0) return;
    memory.delete(key);
    memory.set(key, performance.now() + this.settings.transportMemoryMs);
    // Oldest first (insertion order): drop the oldest beyond the bound.
    for (const oldest of memory.keys()) {
      if (memory.size <= MAX_REMEMBERED) break;
      memory.delete(oldest);
      this.counts.rememberedEvicted++;
    }
  }

  /** Whether `key` was reached over QUIC within transportMemoryMs (an older memory is dropped). */
  private quicKnown(key: string): boolean {
    const until = this.quicAddresses.get(key);
    if (until === undefined) return false;
    if (until > performance.now()) return true;
    this.quicAddresses.delete(key);
    return false;
  }

  /**
   * A link dialed over HTTP/2 (a fallback, or a remembered address) tries QUIC again in the
   * background while it lives; a QUIC connection that completes is handed over like any dial,
   * and the peer table keeps it over the HTTP/2 one (which drains), and the address is forgotten
   * as HTTP/2-only.
   */
  private scheduleUpgrade(connection: Connection, target: SocketAddress, delayMs: number): void {
    const quic = this.quic;
    if (quic === undefined || this.closed || connection.closing || this.upgrades.has(connection)) return;
    const timer = setTimeout(() => {
      this.upgrades.delete(connection);
      if (this.closed || connection.closing) return;
      this.counts.quicRetries++;
      const deadline = performance.now() + quic.handshakeTimeoutMs;
      this.attempt(quic, target, { expectedNodeId: connection.remoteNodeId }, deadline).then(
        (upgraded) => {
          this.counts.quicRecovered++;
          this.h2Addresses.delete(formatAddress(target));
          this.remember(this.quicAddresses, formatAddress(target));
          this.connected(upgraded, target);
        },
        () => this.scheduleUpgrade(connection, target, Math.min(UPGRADE_MAX_MS, delayMs * 2)),
      );
    }, delayMs);
    timer.unref();
    this.upgrades.set(connection, timer);
    if (delayMs !== UPGRADE_FIRST_MS) return;
    connection.once('close', () => {
      clearTimeout(this.upgrades.get(connection));
      this.upgrades.delete(connection);
    });
  }

  /** Stops the background QUIC tries (the node is closing). */
  close(): void {
    this.closed = true;
    for (const timer of this.upgrades.values()) clearTimeout(timer);
    this.upgrades.clear();
  }
}

/** HTTP/2's dial failed because its TCP connect was refused (the cause the h2 transport keeps). */
function isRefused(error: unknown): boolean {
  const cause = error instanceof Error ? (error.cause as NodeJS.ErrnoException | undefined) : undefined;
  return cause?.code === 'ECONNREFUSED';
}

function refused(target: SocketAddress, h2Error: unknown, ms: number): PnetError {
  return new PnetError('ERR_CONNECTION_REFUSED', `${formatAddress(target)} refused the connection (TCP refused, no QUIC answer in ${Math.round(ms)} ms)`, { cause: h2Error });
}

function isFinalDialError(error: unknown): boolean {
  return error instanceof PnetError && FINAL_DIAL_ERRORS.has(error.code);
}

/** Neither transport connected: QUIC's error (its code), with what HTTP/2 said. */
function bothFailed(quicError: unknown, h2Error: unknown): Error {
  const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error));
  const code = quicError instanceof PnetError ? quicError.code : h2Error instanceof PnetError ? h2Error.code : 'ERR_HANDSHAKE';
  return new PnetError(code, `${describe(quicError)}; over HTTP/2: ${describe(h2Error)}`, { cause: quicError });
}
