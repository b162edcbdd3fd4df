import * as native from '@matrixai/quic/native/index.js';
import { PnetError } from '../../errors.js';
import { RetryTokens, TokenBucket } from './retry.js';
import { HostHandshakes } from './host-handshakes.js';
import { HandshakeAdmission } from '../admission.js';

const quiche = native.quiche;

export type RetryMode = 'auto' | 'always' | 'never';
const RETRY_MODES: readonly RetryMode[] = ['auto', 'always', 'never'];
/** In 'auto', handshakes started per second for addresses not validated by a Retry before Retry takes over (each costs quiche's full state). */
const UNVALIDATED_ACCEPTS_PER_SECOND = 100;
/** In 'auto', handshakes per second (whole endpoint) from hosts that completed a handshake here lately: no Retry for them. */
const KNOWN_HOST_ACCEPTS_PER_SECOND = 1000;
/** How long a host that completed a handshake counts as validated (RFC 9000 §8.1.3 lets a server remember it). */
const KNOWN_HOST_MS = 10 * 60_000;
/** Hosts remembered as validated (the oldest is forgotten first); as many remembered as distrusted. */
const KNOWN_HOSTS_MAX = 4096;
/**
 * Initials without a token a validated host may send that quiche cannot decrypt (a burst, and a
 * rate per second) before it loses its budget: an honest client's Initial decrypts, and each that
 * does not cost a quiche accept() (a flood from a trusted host cut a good client to 5/s of 330/s).
 */
const KNOWN_HOST_UNDECRYPTABLE_BURST = 16;
const KNOWN_HOST_UNDECRYPTABLE_PER_SECOND = 1;
/**
 * In 'auto', one host's share of the handshakes in progress that skipped Retry: this fraction of
 * `maxPendingHandshakes` (at least HOST_PENDING_MIN); past it the host's tokenless Initials get a
 * Retry. Valid Initials a host starts and abandons decrypt, so they never cost it its budget: they
 * took half of the slots (500 handshakes, each quiche's crypto and resends for 7.5 s) before.
 */
const HOST_PENDING_SHARE = 1 / 16;
const HOST_PENDING_MIN = 8;
/** A host that lost its budget shares the unvalidated one this long, even if it completes handshakes meanwhile. */
const DISTRUST_MS = 60_000;
/** Retries per second (whole endpoint): past it a flood of Initials costs a header parse each, and honest clients resend theirs (PTO). */
const RETRIES_PER_SECOND = 1000;
/** Version Negotiation replies per second (whole endpoint; each costs ~4× a dropped datagram). */
const VERSION_NEGOTIATIONS_PER_SECOND = 100;
/** RFC 9000 §7.2: a client's first destination connection id is at least 8 bytes. */
const MIN_INITIAL_DCID_LEN = 8;
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
  /** An unknown version not answered: over the Version Negotiation rate limit. */
  versionNegotiationLimited: number;
  /** An Initial quiche could not decrypt: turned away before any pnet connection state. */
  undecryptable: number;
  /** An Initial answered with a stateless Retry (no state kept). */
  retried: number;
  /** An Initial that wanted a Retry, over the Retry rate limit: dropped. */
  retryLimited: number;
  /** An Initial whose token is not a valid Retry token for its address (forged, expired, replayed elsewhere). */
  invalidToken: number;
  /** An Initial dropped while the endpoint is behind: more handshakes in progress than it completes in half the handshake timeout. */
  admissionLimited: number;
}

/** The `retry` option, checked. */
export function retryOption(value: unknown): RetryMode {
  if (value === undefined) return 'auto';
  if (!RETRY_MODES.includes(value as RetryMode)) {
    throw new PnetError('ERR_BAD_OPTION', `QUIC option retry must be one of ${RETRY_MODES.join(', ')}, got ${String(value)}`);
  }
  return value as RetryMode;
}

/** What the endpoint does with an Initial for no known connection. */
export type InitialVerdict =
  | { readonly action: 'drop' }
  | { readonly action: 'negotiate'; readonly header: native.Header }
  | { readonly action: 'retry'; readonly header: native.Header }
  | { readonly action: 'accept'; readonly header: native.Header; readonly odcid: Buffer | null };

/** The endpoint's load when an Initial comes. */
export interface GateLoad {
  closing: boolean;
  connections: number;
  pendingHandshakes: number;
}

const DROP: InitialVerdict = { action: 'drop' };

/**
 * The token of a long-header Initial (RFC 9000 §17.2.2), a view into `datagram`; undefined when
 * the lengths run past it. Read here, not from quiche's Header: in @matrixai/quic 2.0.9 its
 * `token` getter leaks ~225 bytes of native memory per read of a tokenless Initial's header.
 */
export function initialToken(datagram: Uint8Array): Uint8Array | undefined {
  let offset = 6 + (datagram[5] ?? 0);
  if (offset >= datagram.length) return undefined;
  offset += 1 + datagram[offset]!;
  if (offset >= datagram.length) return undefined;
  const size = 1 << (datagram[offset]! >> 6);
  if (offset + size > datagram.length) return undefined;
  let length = datagram[offset]! & 0x3f;
  for (let i = 1; i < size; i++) length = length * 256 + datagram[offset + i]!;
  offset += size;
  return offset + length > datagram.length ? undefined : datagram.subarray(offset, offset + length);
}

/** An inbound handshake in progress: its admission handle, its host, and whether it skipped Retry (charged to the host's share). */
export interface HandshakeTicket {
  readonly admitted: number;
  readonly host: string;
  readonly charged: boolean;
  /** Ended (completed, failed or evicted): a later end is a no-op. */
  ended: boolean;
}

/** A host that completed a handshake: when, and its budget of undecryptable Initials (made at its first). */
interface KnownHost {
  at: number;
  undecryptable: TokenBucket | undefined;
}

/**
 * The endpoint's gate for Initials (sans-IO, fed the clock): the checks in order of cost, each
 * refusal counted, the Retry decision and tokens, the rate limits. docs/TRANSPORT.md, "The
 * endpoint under attack".
 */
export class InitialGate {
  readonly dropped: QuicDropStats = {
    tooShort: 0,
    badHeader: 0,
    unknownConnection: 0,
    wrongSource: 0,
    refused: 0,
    versionNegotiation: 0,
    versionNegotiationLimited: 0,
    undecryptable: 0,
    retried: 0,
    retryLimited: 0,
    invalidToken: 0,
    admissionLimited: 0,
  };
  readonly admission: HandshakeAdmission;
  private readonly tokens = new RetryTokens();
  private readonly unvalidatedAccepts: TokenBucket;
  private readonly knownHostAccepts: TokenBucket;
  /** Host (no port: clients take a new port per connection) → when it last completed a handshake (and its undecryptable budget, once it sent one), oldest first. */
  private readonly knownHosts = new Map<string, KnownHost>();
  /** Host → until when it gets no budget of its own (it sent undecryptable Initials past its budget), oldest first. */
  private readonly distrusted = new Map<string, number>();
  /** Validated hosts that lost their budget (undecryptable Initials past theirs). */
  hostsDistrusted = 0;
  /** Host → its handshakes in progress that skipped Retry (entries only while some are: at most maxPendingHandshakes). */
  private readonly pendingByHost = new Map<string, number>();
  /** One host's share of those (HOST_PENDING_SHARE). */
  readonly hostShare: number;
  /** Tokenless Initials sent to Retry because their host held its share of handshakes in progress. */
  hostShareRetried = 0;
  /** Every inbound handshake in progress by host: at a full table a newcomer evicts the heaviest host's oldest. */
  private readonly byHost = new HostHandshakes<HandshakeTicket>();
  /** QUIC handshakes in progress (the admission's count includes HTTP/2's when listenTransports shares it). */
  pendingHandshakes = 0;
  /** Handshakes in progress ended to give their slot to a newcomer from a host holding fewer (fair eviction). */
  handshakesEvicted = 0;
  private readonly retries: TokenBucket;
  private readonly versionNegotiations: TokenBucket;

  constructor(
    private readonly options: { retry: RetryMode; maxConnections: number; maxPendingHandshakes: number; cidLength: number; handshakeTimeoutMs: number },
    now: number,
  ) {
    this.admission = new HandshakeAdmission(options.handshakeTimeoutMs, now);
    this.hostShare = Math.max(HOST_PENDING_MIN, Math.floor(options.maxPendingHandshakes * HOST_PENDING_SHARE));
    this.unvalidatedAccepts = new TokenBucket(UNVALIDATED_ACCEPTS_PER_SECOND, UNVALIDATED_ACCEPTS_PER_SECOND, now);
    this.knownHostAccepts = new TokenBucket(KNOWN_HOST_ACCEPTS_PER_SECOND, KNOWN_HOST_ACCEPTS_PER_SECOND, now);
    this.retries = new TokenBucket(RETRIES_PER_SECOND, RETRIES_PER_SECOND, now);
    this.versionNegotiations = new TokenBucket(VERSION_NEGOTIATIONS_PER_SECOND, VERSION_NEGOTIATIONS_PER_SECOND, now);
  }

  /** Checks a long-header datagram for no known connection (the cheap checks first). */
  check(datagram: Buffer, host: string, port: number, now: number, load: GateLoad): InitialVerdict {
    const dropped = this.dropped;
    if (load.closing || datagram.length < quiche.MIN_CLIENT_INITIAL_LEN) {
      dropped.refused++;
      return DROP;
    }
    let header: native.Header;
    try {
      header = quiche.Header.fromSlice(datagram, this.options.cidLength);
    } catch {
      dropped.badHeader++;
      return DROP;
    }
    if (!quiche.versionIsSupported(header.version)) return this.negotiate(header, now);
    if (header.ty !== quiche.Type.Initial) {
      dropped.unknownConnection++;
      return DROP;
    }
    if (header.dcid.length < MIN_INITIAL_DCID_LEN) {
      dropped.badHeader++;
      return DROP;
    }
    if (load.connections >= this.options.maxConnections) {
      dropped.refused++;
      return DROP;
    }
    if (!this.admission.admits(now)) {
      // Behind: a handshake started now would wait past the timeout; the client's resent Initial may find room.
      dropped.admissionLimited++;
      return DROP;
    }
    const token = initialToken(datagram);
    if (token === undefined) {
      dropped.badHeader++;
      return DROP;
    }
    if (token.length > 0) {
      // Only our Retry tokens are valid (no NEW_TOKEN): anything else is dropped, without state.
      const odcid = this.tokens.verify(token, header.dcid, host, port, now);
      if (odcid !== undefined) return this.accept(header, odcid, host, load);
      dropped.invalidToken++;
      return DROP;
    }
    if (!this.wantsRetry(host, now, load)) return this.accept(header, null, host, load);
    if (!this.retries.take(now)) {
      dropped.retryLimited++;
      return DROP;
    }
    dropped.retried++;
    return { action: 'retry', header };
  }

  /**
   * An Initial that may start a handshake: at a full table only if a host holding more than its
   * own would gives up a slot (makeRoom evicts it, once quiche has decrypted the Initial).
   */
  private accept(header: native.Header, odcid: Buffer | null, host: string, load: GateLoad): InitialVerdict {
    if (load.pendingHandshakes >= this.options.maxPendingHandshakes && this.byHost.victimFor(host) === undefined) {
      this.dropped.refused++;
      return DROP;
    }
    return { action: 'accept', header, odcid };
  }

  /** The token of a Retry from `retryScid` to host:port. */
  retryToken(header: native.Header, retryScid: Uint8Array, host: string, port: number, now: number): Buffer {
    return this.tokens.mint(header.dcid, retryScid, host, port, now);
  }

  /**
   * Before a handshake from `host` starts (its Initial decrypted): at a full table, the handshake
   * whose slot it takes (the heaviest host's oldest, ended here and counted) for the caller to close.
   */
  makeRoom(host: string, now: number): HandshakeTicket | undefined {
    if (this.pendingHandshakes < this.options.maxPendingHandshakes) return undefined;
    const evicted = this.byHost.victimFor(host);
    if (evicted === undefined) return undefined;
    this.handshakeEnded(evicted, false, now);
    this.handshakesEvicted++;
    return evicted;
  }

  /** An inbound handshake started; `validated` (a Retry token) is not charged to its host's share. */
  handshakeStarted(host: string, validated: boolean, now: number): HandshakeTicket {
    if (!validated) this.pendingByHost.set(host, (this.pendingByHost.get(host) ?? 0) + 1);
    const ticket: HandshakeTicket = { admitted: this.admission.start(now), host, charged: !validated, ended: false };
    this.pendingHandshakes++;
    this.byHost.add(host, ticket);
    return ticket;
  }

  /** An inbound handshake completed (`ok`: its host counts as validated) or failed. */
  handshakeEnded(ticket: HandshakeTicket, ok: boolean, now: number): void {
    if (ticket.ended) return;
    ticket.ended = true;
    this.pendingHandshakes--;
    this.admission.end(ticket.admitted, ok, now);
    const host = ticket.host;
    this.byHost.delete(host, ticket);
    if (ticket.charged) {
      const left = (this.pendingByHost.get(host) ?? 1) - 1;
      if (left > 0) this.pendingByHost.set(host, left);
      else this.pendingByHost.delete(host);
    }
    if (ok) this.noteValidated(host, now);
  }

  /** A handshake from `host` completed: its next connections skip the unvalidated budget for a while (not while it is distrusted). */
  noteValidated(host: string, now: number): void {
    const until = this.distrusted.get(host);
    if (until !== undefined) {
      if (now < until) return;
      this.distrusted.delete(host);
    }
    const known = this.knownHosts;
    const entry = known.get(host);
    known.delete(host);
    known.set(host, { at: now, undecryptable: entry?.undecryptable });
    if (known.size > KNOWN_HOSTS_MAX) known.delete(known.keys().next().value!);
  }

  /**
   * An Initial without a token from `host` that quiche could not decrypt (counted here). A
   * validated host spends its undecryptable budget; past it, the host shares the unvalidated
   * budget for DISTRUST_MS: its flood costs what a stranger's does.
   */
  noteUndecryptable(host: string, now: number): void {
    this.dropped.undecryptable++;
    const entry = this.knownHosts.get(host);
    if (entry === undefined) return;
    entry.undecryptable ??= new TokenBucket(KNOWN_HOST_UNDECRYPTABLE_PER_SECOND, KNOWN_HOST_UNDECRYPTABLE_BURST, now);
    if (entry.undecryptable.take(now)) return;
    this.knownHosts.delete(host);
    this.hostsDistrusted++;
    this.distrusted.set(host, now + DISTRUST_MS);
    if (this.distrusted.size > KNOWN_HOSTS_MAX) this.distrusted.delete(this.distrusted.keys().next().value!);
  }

  /** Whether an Initial without a token gets a Retry now (the `retry` option). */
  private wantsRetry(host: string, now: number, load: GateLoad): boolean {
    const mode = this.options.retry;
    if (mode === 'never') return false;
    if (mode === 'always') return true;
    if (load.pendingHandshakes * 2 >= this.options.maxPendingHandshakes) return true;
    if ((this.pendingByHost.get(host) ?? 0) >= this.hostShare) {
      this.hostShareRetried++;
      return true;
    }
    const known = this.knownHosts.get(host);
    // A host that proved its address lately reconnects without a Retry round trip, within its own budget.
    if (known !== undefined && now - known.at < KNOWN_HOST_MS && this.knownHostAccepts.take(now)) return false;
    return !this.unvalidatedAccepts.take(now);
  }

  private negotiate(header: native.Header, now: number): InitialVerdict {
    if (!this.versionNegotiations.take(now)) {
      this.dropped.versionNegotiationLimited++;
      return DROP;
    }
    this.dropped.versionNegotiation++;
    return { action: 'negotiate', header };
  }
}
