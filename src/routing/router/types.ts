/**
 * The router's public types: options, hints, actions, and what its queries return
 * (docs/ROUTING.md). Re-exported by router.ts and the door.
 */
import type { NodeId } from '../../identity/index.js';
import type { DropReason, VerifyFn } from './codec.js';
import type { Link, PathComputerFactory } from './path-computer.js';
import type { RecordCache } from './record-cache.js';

/** What the router needs of an identity (Identity satisfies it). */
export interface RecordSigner {
  readonly nodeId: NodeId;
  /** Ed25519 signature (64 bytes) over data. */
  sign(data: Uint8Array): Uint8Array;
}

/** 'router': holds the routers' map and floods; 'leaf': default route through its router neighbours, no flood. */
export type NodeRole = 'router' | 'leaf';

/** The role option: a fixed role, or 'auto' (a leaf until neighbours show it carries transit; docs/ROUTING.md). */
export type RoleOption = NodeRole | 'auto';

/** What the glue may know of a neighbour when it comes up. */
export interface NeighbourHint {
  /** The neighbour's role, if the glue learnt it (e.g. in its hello); otherwise learnt from its records. */
  readonly role?: NodeRole;
  /** The neighbour opened the connection to us (it chose us as an attachment): an 'auto' node becomes a router. */
  readonly inbound?: boolean;
}

/** How link costs follow RTT. cost = clamp(base + round(srttMs / unitMs), 1, MAX_COST). */
export interface CostOptions {
  /** RTT per cost unit, ms (default 1). */
  unitMs?: number;
  /** Cost added per link, so that hop count breaks near-ties (default 1). */
  base?: number;
  /** EWMA weight of a new RTT sample (default 1/8, as TCP's SRTT). */
  smoothing?: number;
  /**
   * The announced cost c stands for the band c ± max(hysteresisMin, hysteresisRatio * c): it moves
   * only when the smoothed cost and every sample have stayed outside that band (same side) for
   * holdMs, and then to the smoothed cost. Defaults 2, 0.5 and 30 s (a busy event loop's RTT
   * stalls do not re-flood; a lasting change moves the cost within 30 s).
   */
  hysteresisMin?: number;
  hysteresisRatio?: number;
  holdMs?: number;
  /** RTT assumed for a neighbour until its first sample (default 100 ms). */
  defaultRttMs?: number;
}

export interface RouterOptions {
  signer: RecordSigner;
  /** 'router' (default), 'leaf' or 'auto' (decided from the neighbours, with hysteresis); see docs/ROUTING.md. */
  role?: RoleOption;
  /**
   * An 'auto' router whose neighbours no longer need it (no inbound neighbour, at most one router
   * neighbour) becomes a leaf once that has held this long (default 5 min); the hold doubles with
   * each such change, up to 8 times. Becoming a router is immediate.
   */
  autoDemoteMs?: number;
  /** Lifetime written into our records (default 1 h: liveness comes from neighbours withdrawing links, not expiry). */
  recordLifetimeMs?: number;
  /** Our records are re-published this often (default 30 min, at most half the lifetime, minus up to refreshJitter of it). Must be < recordLifetimeMs. */
  refreshIntervalMs?: number;
  /** Fraction of refreshIntervalMs taken off at random, so nodes do not refresh in step (default 0.1). */
  refreshJitter?: number;
  /** A change of our links is published this long after it (coalesces bursts; default 50 ms). */
  publishDelayMs?: number;
  /**
   * Origination rate limit per fragment (OSPF MinLSInterval, with IS-IS-style backoff): after a
   * publication the next change waits publishBackoffMs (default 1 s), doubling with each
   * publication up to this interval (default 5 s): under sustained churn a fragment is published
   * at most once per minPublishIntervalMs. A fragment stable for that long reacts within
   * publishDelayMs again. Refresh and sequence recovery are not held.
   */
  minPublishIntervalMs?: number;
  /** First hold of the backoff above (default 1 s, never more than minPublishIntervalMs). */
  publishBackoffMs?: number;
  /**
   * A new version of a record (origin, fragment) accepted less than this long after the previous
   * one waits until the interval is over; the newest waiting version is then taken (OSPF
   * MinLSArrival; default 1 s).
   */
  minArrivalIntervalMs?: number;
  /**
   * A refreshed record (same links as the version held, which is at least a minute old) is
   * flooded after a random delay up to this long (default 2 s); a copy that arrives meanwhile
   * from a neighbour spares that neighbour ours. Changes are never delayed. 0 floods refreshes at once.
   */
  refreshFloodDelayMs?: number;
  /**
   * Flood pacing: records are sent at once unless a batch left less than this
   * long ago; then they wait and leave together, one message per neighbour
   * (default 10 ms; 0 sends every event's records at once).
   */
  floodPacingMs?: number;
  /** Shortest paths are recomputed this long after the first change (default 10 ms)... */
  spfDelayMs?: number;
  /** ...and at most once per this interval (default 100 ms). 0 and 0 recompute inside the event. */
  spfMinIntervalMs?: number;
  /** Most links in one received record (fragment) (default and cap 1024). */
  maxLinks?: number;
  /** Links per fragment of our own record (default 64, at most maxLinks): one change re-floods one fragment. */
  fragmentLinks?: number;
  /** Most fragments accepted per origin (default 1024). */
  maxFragments?: number;
  /** Largest message sent or accepted (default 64 KiB; at least one largest record). */
  maxMessageBytes?: number;
  /**
   * Most origins kept in the map, ours included (default 100,000). At the cap (or at maxTableBytes),
   * the neighbour that brought the most origins' bytes gives back its oldest to one that brought
   * less; a record charged to the neighbour that brought the most is dropped (tableFull).
   */
  maxRecords?: number;
  /** Bytes of received records kept in the map, all origins together (default 64 MiB); as maxRecords. */
  maxTableBytes?: number;
  /** Bytes of one origin's fragments together (default 4 MiB: ~100,000 stub links); a fragment past it is dropped (originFull). */
  maxOriginBytes?: number;
  /** Received records are kept at most this long, whatever they claim (default 1 h). */
  maxRecordLifetimeMs?: number;
  /** First sequence number we use (default 1). Restarts recover anyway, see docs. */
  initialSequence?: bigint;
  cost?: CostOptions;
  /** Signature check (default identity's verifySignature). */
  verify?: VerifyFn;
  /** Shared verified-record cache (simulations). */
  recordCache?: RecordCache;
  /** Random source in [0, 1) for jitter (default Math.random). */
  random?: () => number;
  /** Shortest-path implementation (default the routing table: native addon, or its TypeScript twin). Routers only. */
  pathComputer?: PathComputerFactory;
}

export interface RouteChange {
  readonly dest: NodeId;
  /** undefined: no longer reachable. */
  readonly nextHop: NodeId | undefined;
  /** undefined: was not reachable. */
  readonly previousNextHop: NodeId | undefined;
  readonly cost?: number;
  readonly hops?: number;
}

export type RouterAction =
  | { readonly type: 'send'; readonly to: NodeId; readonly bytes: Uint8Array }
  | { readonly type: 'routes-changed'; readonly changed: readonly RouteChange[] };

export interface NeighbourInfo {
  readonly nodeId: NodeId;
  /** Cost we announce for the link. */
  readonly cost: number;
  /** Smoothed RTT, ms; undefined before the first sample. */
  readonly srttMs: number | undefined;
  /** Its role, once known (a hint at neighbourUp, or its own records). */
  readonly role?: NodeRole;
}

/** An origin's record: its fragments taken together. */
export interface RecordInfo {
  readonly origin: NodeId;
  /** Highest sequence number of its fragments. */
  readonly seq: bigint;
  readonly lifetimeMs: number;
  /** The links of all its fragments. */
  readonly links: readonly Link[];
  /** Local time (ms, same clock as the events) at which its first fragment is dropped unless refreshed. */
  readonly expiresAt: number;
  /** Fragment 0's bytes (or the lowest fragment held). */
  readonly bytes: Uint8Array;
  readonly fragments: number;
  readonly leaf: boolean;
}

export interface RouterStats {
  messagesReceived: number;
  recordsReceived: number;
  /** New record versions stored (and flooded). */
  recordsAccepted: number;
  /** Copies of a version already held (normal flooding redundancy). */
  duplicates: number;
  messagesSent: number;
  recordsSent: number;
  /** Our own records (fragments) signed. */
  published: number;
  /** Times an 'auto' node changed role (leaf to router or back). */
  roleChanges: number;
  /** Publications that waited for minPublishIntervalMs (origination rate limit). */
  publishRateLimited: number;
  /** Record versions that arrived within minArrivalIntervalMs of the previous one and waited (acceptance rate limit). */
  arrivalRateLimited: number;
  /** Of those, versions replaced by a newer one while waiting (never verified nor flooded). */
  arrivalSuperseded: number;
  /** Records a leaf was sent and did not keep (a leaf holds no map), or leaf records from a non-neighbour. */
  ignored: number;
  /** Times we met our own record with a higher (or conflicting) sequence number and jumped above it. */
  sequenceRecovered: number;
  /** Records removed because they were not refreshed in time. */
  expiredRecords: number;
  spfRuns: number;
  /** Records dropped because their origin's fragments would pass maxOriginBytes. */
  originFull: number;
  /** Origins removed from a full map for records a lighter neighbour brought (the heaviest neighbour's oldest). */
  evicted: number;
  /** Records (or whole messages, for message-level faults) dropped, by reason. */
  dropped: Record<DropReason, number>;
}
