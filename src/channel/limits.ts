/**
 * The channel layer's resource scope for pending negotiations (docs/LIMITS.md), in the manner of
 * libp2p's resource manager: a whole-node cap as the outer bound; inside it, any peer may use free
 * slots (a burst of streams from one good peer is normal), and once the node is full a newcomer
 * evicts the oldest negotiation of the peer holding the most (fair eviction: one waiting for its
 * OPEN bytes first, else one waiting in an async authorise hook); the hooks a peer has in flight
 * (the application's resources) are held to a per-peer share. So no peer, nor a few keys acting
 * together, can lock the others out. Sans-IO: no streams, no timers; the acceptor's glue calls it
 * and gives each admitted negotiation a way to be evicted.
 */
import type { NodeId } from '../identity/index.js';

/** What ended a negotiation, one counter each (the `NegotiationStats` keys below). */
export type NegotiationOutcome =
  | 'accepted'
  | 'rejectedPeerLimit'
  | 'rejectedNodeLimit'
  | 'evicted'
  | 'headerTimeouts'
  | 'openTimeouts'
  | 'badFrames'
  | 'versionRejects'
  | 'unknownChannel'
  | 'unauthorised'
  | 'authoriseTimeouts'
  | 'streamFailures';

/** Counters since the registry was made, plus the two gauges (`pending`, `pendingPeers`). */
export interface NegotiationStats extends Record<NegotiationOutcome, number> {
  /** Negotiations in progress now (reading OPEN or waiting for authorise). */
  readonly pending: number;
  /** Distinct peers with a negotiation in progress now. */
  readonly pendingPeers: number;
  /** Highest `pending` seen. */
  readonly peakPending: number;
  /** Negotiations admitted into the scope. */
  readonly admitted: number;
}

/** The caps one admission is checked against (acceptChannel's options, checked). */
export interface NegotiationCaps {
  /** Whole-node cap (the outer bound). */
  readonly maxPending: number;
  /** One peer's share of negotiations waiting in async authorise hooks, at most `maxPending`. */
  readonly maxPendingPerPeer: number;
}

/** One admitted negotiation. `evict` is called (once) when the scope takes its slot for another peer. */
export interface NegotiationTicket {
  readonly peer: NodeId;
  /** Waiting for its OPEN bytes or for an async authorise hook: may be evicted (not while deciding). */
  evictable: boolean;
  /** In the channel's async authorise hook: counts against the peer's share. */
  authorising: boolean;
  released: boolean;
  evict: () => void;
}

interface PeerScope {
  /** Admission order, so eviction takes the peer's oldest. */
  readonly tickets: Set<NegotiationTicket>;
  /** Of those, how many are in an authorise hook. */
  authorising: number;
}

/** Every negotiation outcome NegotiationStats counts, in a stable order (metrics label values). */
export const NEGOTIATION_OUTCOMES: readonly NegotiationOutcome[] = Object.freeze([
  'accepted',
  'rejectedPeerLimit',
  'rejectedNodeLimit',
  'evicted',
  'headerTimeouts',
  'openTimeouts',
  'badFrames',
  'versionRejects',
  'unknownChannel',
  'unauthorised',
  'authoriseTimeouts',
  'streamFailures',
]);

/**
 * Pending negotiations of one registry, by peer. `admit` says yes (a ticket) or no (the node cap);
 * at the node cap it first evicts the oldest evictable negotiation of the peer holding the most,
 * when that peer holds more than the newcomer would (so holdings converge to equal shares).
 * `authorise` moves a ticket into its hook, within the peer's share.
 */
export class NegotiationScope {
  private readonly peers = new Map<NodeId, PeerScope>();
  private readonly counts: Record<NegotiationOutcome, number>;
  private total = 0;
  private peak = 0;
  private admittedCount = 0;

  constructor() {
    const counts = {} as Record<NegotiationOutcome, number>;
    for (const k of NEGOTIATION_OUTCOMES) counts[k] = 0;
    this.counts = counts;
  }

  get pending(): number {
    return this.total;
  }

  /** Negotiations `peer` has in progress. */
  pendingOf(peer: NodeId): number {
    return this.peers.get(peer)?.tickets.size ?? 0;
  }

  /** A ticket, or 'node' when the node is full and nobody holds more than `peer` would (counted). */
  admit(peer: NodeId, caps: Pick<NegotiationCaps, 'maxPending'>, evict: () => void): NegotiationTicket | 'node' {
    const own = this.pendingOf(peer);
    if (this.total >= caps.maxPending && !this.evictFor(own)) {
      this.counts.rejectedNodeLimit++;
      return 'node';
    }
    let scope = this.peers.get(peer);
    if (scope === undefined) this.peers.set(peer, (scope = { tickets: new Set(), authorising: 0 }));
    const ticket: NegotiationTicket = { peer, evictable: true, authorising: false, released: false, evict };
    scope.tickets.add(ticket);
    this.total++;
    this.admittedCount++;
    if (this.total > this.peak) this.peak = this.total;
    return ticket;
  }

  /**
   * The channel's authorise hook returned a promise: true if the peer is within its share of hooks
   * in flight, false if not (the caller refuses it and counts `rejectedPeerLimit`).
   */
  authorise(ticket: NegotiationTicket, caps: NegotiationCaps): boolean {
    const scope = this.peers.get(ticket.peer);
    if (scope === undefined || ticket.released) return false;
    if (scope.authorising >= Math.min(caps.maxPendingPerPeer, caps.maxPending)) return false;
    scope.authorising++;
    ticket.authorising = true;
    return true;
  }

  /** Negotiations `peer` has in authorise hooks. */
  authorisingOf(peer: NodeId): number {
    return this.peers.get(peer)?.authorising ?? 0;
  }

  /** Gives the slot back (idempotent: an evicted ticket was released already). */
  release(ticket: NegotiationTicket): void {
    if (ticket.released) return;
    ticket.released = true;
    const scope = this.peers.get(ticket.peer);
    if (scope === undefined || !scope.tickets.delete(ticket)) return;
    if (ticket.authorising) scope.authorising--;
    this.total--;
    if (scope.tickets.size === 0) this.peers.delete(ticket.peer);
  }

  /** Counts how a negotiation ended. */
  count(outcome: NegotiationOutcome): void {
    this.counts[outcome]++;
  }

  stats(): NegotiationStats {
    return { ...this.counts, pending: this.total, pendingPeers: this.peers.size, peakPending: this.peak, admitted: this.admittedCount };
  }

  /** Frees one slot for a peer holding `own`: true if a heavier peer's negotiation was evicted. */
  private evictFor(own: number): boolean {
    let heaviest: PeerScope | undefined;
    let victim: NegotiationTicket | undefined;
    for (const scope of this.peers.values()) {
      // strictly more than the newcomer will hold after admission, else eviction just moves the problem
      if (scope.tickets.size <= own + 1 || (heaviest !== undefined && scope.tickets.size <= heaviest.tickets.size)) continue;
      const oldest = firstEvictable(scope);
      if (oldest === undefined) continue;
      heaviest = scope;
      victim = oldest;
    }
    if (victim === undefined) return false;
    this.release(victim);
    victim.evict(); // the acceptor answers OVERLOADED and counts it as 'evicted'
    return true;
  }
}

/** The peer's oldest negotiation still waiting for OPEN bytes, else its oldest in a hook. */
function firstEvictable(scope: PeerScope): NegotiationTicket | undefined {
  let inHook: NegotiationTicket | undefined;
  for (const ticket of scope.tickets) {
    if (!ticket.evictable) continue;
    if (!ticket.authorising) return ticket;
    inHook ??= ticket;
  }
  return inHook;
}
