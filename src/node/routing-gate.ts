/**
 * The routing channel's per-peer share (docs/LIMITS.md): each routing stream carries one message
 * of up to 64 KiB, read whole. A peer may have a few read at a time (a routing neighbour more
 * than a peer that is not one yet); its further streams wait unread, their bytes held back by the
 * peer's own flow control, up to a queue bound; past it they are refused OVERLOADED. Streams of
 * peers that are not routing neighbours also share one whole-node bound. Sans-IO apart from
 * holding the streams' start callbacks.
 */
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';

export interface RoutingGateLimits {
  /** Messages read at once from one routing neighbour (default 4). */
  readonly readingPerNeighbour: number;
  /** Messages read at once from a peer that is not a routing neighbour (default 1: its hello, then its first map message). */
  readonly readingPerOther: number;
  /** Streams of one peer admitted (read or waiting) at once: a neighbour's (default 1,024, above the transports' 1,000 streams per connection). */
  readonly admittedPerNeighbour: number;
  /** The same for a peer that is not a routing neighbour (default 64). */
  readonly admittedPerOther: number;
  /** Streams of all peers that are not routing neighbours, admitted at once (default 1,024). */
  readonly admittedOthers: number;
}

export const DEFAULT_ROUTING_GATE_LIMITS: RoutingGateLimits = {
  readingPerNeighbour: 4,
  readingPerOther: 1,
  admittedPerNeighbour: 1024,
  admittedPerOther: 64,
  admittedOthers: 1024,
};

/** What the routing gate refused or held (monotonic counters, and two gauges). */
export interface RoutingGateStats {
  /** Streams refused over the peer's admitted share. */
  refusedPeerLimit: number;
  /** Streams of non-neighbours refused over the whole-node bound. */
  refusedNodeLimit: number;
  /** Streams that waited unread for one of their peer's reading slots. */
  waited: number;
  /** Streams admitted now (reading or waiting). */
  admitted: number;
  /** Of those, streams of peers that are not routing neighbours. */
  admittedOthers: number;
}

interface PeerShare {
  reading: number;
  admitted: number;
  /** Admitted while the peer was not a routing neighbour (counted in the node bound until they finish). */
  others: number;
  readonly waiting: Array<() => void>;
}

/** One admitted stream: `finish` exactly once when it is over (read, refused later, or closed). */
export interface RoutingTicket {
  finish(): void;
}

export class RoutingGate {
  readonly stats: RoutingGateStats = { refusedPeerLimit: 0, refusedNodeLimit: 0, waited: 0, admitted: 0, admittedOthers: 0 };
  private readonly peers = new Map<NodeId, PeerShare>();
  private readonly limits: RoutingGateLimits;

  constructor(
    private readonly isNeighbour: (peer: NodeId) => boolean,
    limits: Partial<RoutingGateLimits> = {},
  ) {
    this.limits = { ...DEFAULT_ROUTING_GATE_LIMITS, ...limits };
  }

  /** The authorise hook's check (no slot taken): OVERLOADED when the peer's share, or the non-neighbours' bound, is used up. */
  check(peer: NodeId): void {
    const refusal = this.refusal(peer);
    if (refusal !== undefined) throw refusal;
  }

  /**
   * Admits a negotiated stream: `start` runs now if the peer has a reading slot free, else when one
   * frees. Undefined when refused (counted): the caller drops the stream.
   */
  admit(peer: NodeId, start: () => void): RoutingTicket | undefined {
    if (this.refusal(peer) !== undefined) return undefined;
    const neighbour = this.isNeighbour(peer);
    let share = this.peers.get(peer);
    if (share === undefined) this.peers.set(peer, (share = { reading: 0, admitted: 0, others: 0, waiting: [] }));
    share.admitted++;
    this.stats.admitted++;
    if (!neighbour) {
      share.others++;
      this.stats.admittedOthers++;
    }
    let state: 'waiting' | 'reading' | 'done' = 'waiting';
    const run = (): void => {
      if (state !== 'waiting') return;
      state = 'reading';
      share.reading++;
      start();
    };
    const readingCap = neighbour ? this.limits.readingPerNeighbour : this.limits.readingPerOther;
    if (share.reading < readingCap) run();
    else {
      this.stats.waited++;
      share.waiting.push(run);
    }
    return {
      finish: () => {
        if (state === 'done') return;
        const wasReading = state === 'reading';
        if (!wasReading) share.waiting.splice(share.waiting.indexOf(run), 1);
        state = 'done';
        this.release(peer, share, wasReading, !neighbour);
      },
    };
  }

  private refusal(peer: NodeId): PnetError | undefined {
    const share = this.peers.get(peer);
    if (this.isNeighbour(peer)) {
      if ((share?.admitted ?? 0) < this.limits.admittedPerNeighbour) return undefined;
      this.stats.refusedPeerLimit++;
      return new PnetError('OVERLOADED', `too many routing streams from ${peer}`);
    }
    if ((share?.admitted ?? 0) >= this.limits.admittedPerOther) {
      this.stats.refusedPeerLimit++;
      return new PnetError('OVERLOADED', `too many routing streams from ${peer}, not a routing neighbour`);
    }
    if (this.stats.admittedOthers >= this.limits.admittedOthers) {
      this.stats.refusedNodeLimit++;
      return new PnetError('OVERLOADED', 'too many routing streams from peers that are not routing neighbours');
    }
    return undefined;
  }

  private release(peer: NodeId, share: PeerShare, wasReading: boolean, other: boolean): void {
    share.admitted--;
    this.stats.admitted--;
    if (other) {
      share.others--;
      this.stats.admittedOthers--;
    }
    if (wasReading) {
      share.reading--;
      // The peer's next waiting streams, in arrival order.
      const cap = this.isNeighbour(peer) ? this.limits.readingPerNeighbour : this.limits.readingPerOther;
      while (share.waiting.length > 0 && share.reading < cap) share.waiting.shift()!();
    }
    if (share.admitted === 0) this.peers.delete(peer);
  }
}

/** Serves one negotiated routing stream through the gate: `receive` reads it once admitted; a refused one is destroyed. */
export function serveGated(gate: RoutingGate, stream: Duplex, peer: NodeId, receive: (stream: Duplex, peer: NodeId) => void): void {
  const ticket = gate.admit(peer, () => receive(stream, peer));
  if (ticket === undefined) {
    stream.destroy();
    return;
  }
  // Read to its end frees the slot at once (its close may wait for our FIN to be acknowledged); a stream that dies frees it too.
  if (stream.destroyed || stream.readableEnded) ticket.finish();
  else {
    stream.once('end', () => ticket.finish());
    stream.once('close', () => ticket.finish());
  }
}
