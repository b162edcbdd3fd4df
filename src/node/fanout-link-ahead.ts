/**
 * Fan-out links opened ahead (docs/FANOUT.md, "Links opened ahead"): a router opens its link
 * stream to each routing neighbour when the neighbour first becomes a next hop, a few per tick,
 * so the first fan-out after a join finds its links open instead of opening 2,000 streams at
 * once. The links are the sender's usual ones (fanout-link.ts); this only decides when to open.
 */
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { numberOption } from '../options.js';
import { unrefTimers, type Timers } from '../timers.js';
import type { NodeRole, RouteChange } from '../routing/index.js';
import type { LegLinks, LinkRetired, LinkWatcher } from './fanout-link.js';

/** Which nodes open links ahead: routers only (the default), every node, or none. */
export type LinksAheadMode = 'routers' | 'always' | 'never';
const MODES: readonly LinksAheadMode[] = ['routers', 'always', 'never'];

/** Default pace: 2,000 neighbours' links in 20 s, ~5-10 % of a core spread over a join. */
export const LINKS_AHEAD_PER_SECOND = 100;
const TICK_MS = 100;
/** A link opened ahead that broke unused waits this long before the next one, doubled per break up to MAX_RETRY_MS. */
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 5 * 60_000;
/** A neighbour that REJECTed a link or answered without links is not asked ahead again for this long. */
const REFUSED_MS = 10 * 60_000;

/** A hop's wait before its next link ahead: after a break (retried), or a refusal (not queued meanwhile). */
interface Wait {
  until: number;
  retryMs: number;
  refused: boolean;
}
/** Waits kept before the expired ones are swept (a hub with churn meets many hops). */
const MAX_WAITS = 10_000;

export interface LinksAheadHost {
  /** This node's routing role now (an 'auto' node may become a router). */
  role(): NodeRole;
  /** `hop` is a routing neighbour, connected now. */
  isNeighbour(hop: NodeId): boolean;
}

/** The clock and timer the scheduler runs on: the node's (below), or a test's virtual one. */
export interface LinksAheadClock extends Timers {
  now(): number;
}

const nodeClock: LinksAheadClock = { ...unrefTimers, now: () => performance.now() };

export interface LinksAheadOptions {
  linksAhead?: LinksAheadMode;
  linksAheadPerSecond?: number;
}

/** Validates the options (ERR_BAD_OPTION). */
export function linksAheadSettings(options: LinksAheadOptions = {}): { mode: LinksAheadMode; perSecond: number } {
  const mode = options.linksAhead ?? 'routers';
  if (!MODES.includes(mode)) throw new PnetError('ERR_BAD_OPTION', `fan-out option linksAhead must be one of ${MODES.join(', ')}, got ${String(mode)}`);
  const perSecond = numberOption('fan-out option', 'linksAheadPerSecond', options.linksAheadPerSecond, LINKS_AHEAD_PER_SECOND, { min: 1, integer: true });
  return { mode, perSecond };
}

/** Opens links ahead to the next hops the routes name, at a bounded pace; reopens them after a break. */
export class LinksAhead implements LinkWatcher {
  /** Hops waiting for their link, in the order they appeared (a Set keeps it and drops repeats). */
  private readonly queue = new Set<NodeId>();
  /** Per hop: not before this time (the clock's), and the next retry delay. */
  private readonly waits = new Map<NodeId, Wait>();
  private timer: unknown;
  private closed = false;
  private readonly perTick: number;
  /**
   * Links opened ahead and not yet ACCEPTed, at most one second of the pace: busy peers (or a busy
   * node) slow it instead of piling up OPENs. 32 held a 2,000-leaf join on loopback, whose leaf
   * processes ACCEPTed ~1 s late, to ~32 links a second.
   */
  private readonly maxOpening: number;
  private readonly mode: LinksAheadMode;

  constructor(
    private readonly links: LegLinks,
    private readonly host: LinksAheadHost,
    options: LinksAheadOptions = {},
    private readonly clock: LinksAheadClock = nodeClock,
  ) {
    const settings = linksAheadSettings(options);
    this.mode = settings.mode;
    this.perTick = Math.max(1, Math.round((settings.perSecond * TICK_MS) / 1000));
    this.maxOpening = settings.perSecond;
    if (this.mode !== 'never') links.watcher = this;
  }

  /**
   * The router's route changes: every next hop named is a neighbour a leg may go to. Queued even
   * while this node is not a router (an 'auto' node's first neighbours come before its role
   * changes); the queue holds each next hop once and is drained once it is one.
   */
  routesChanged(changes: readonly RouteChange[]): void {
    if (this.closed) return;
    for (const change of changes) {
      const hop = change.nextHop;
      if (hop !== undefined && !this.links.has(hop) && !this.refused(hop)) this.queue.add(hop);
    }
    this.schedule();
  }

  keepIdle(hop: NodeId): boolean {
    return this.active() && this.host.isNeighbour(hop);
  }

  retired(hop: NodeId, why: LinkRetired, unused: boolean): void {
    if (this.closed || why === 'idle') return;
    const now = this.clock.now();
    if (this.waits.size >= MAX_WAITS) for (const [id, wait] of this.waits) if (wait.until <= now) this.waits.delete(id);
    if (why === 'rejected' || why === 'v1') {
      this.waits.set(hop, { until: now + REFUSED_MS, retryMs: FIRST_RETRY_MS, refused: true });
      return;
    }
    // Broken: reopened while it is a neighbour, after a delay that doubles while links ahead keep breaking unused.
    const wait = this.waits.get(hop);
    const retryMs = unused ? Math.min(MAX_RETRY_MS, (wait?.retryMs ?? FIRST_RETRY_MS / 2) * 2) : FIRST_RETRY_MS;
    this.waits.set(hop, { until: now + retryMs, retryMs, refused: false });
    this.queue.add(hop);
    this.schedule();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.queue.clear();
    this.waits.clear();
  }

  /** Hops waiting for a link ahead (for tests and stats). */
  get waiting(): number {
    return this.queue.size;
  }

  private refused(hop: NodeId): boolean {
    const wait = this.waits.get(hop);
    return wait !== undefined && wait.refused && wait.until > this.clock.now();
  }

  private active(): boolean {
    return this.mode === 'always' || (this.mode === 'routers' && this.host.role() === 'router');
  }

  private schedule(): void {
    if (this.timer !== undefined || this.queue.size === 0 || this.closed || !this.active()) return;
    this.timer = this.clock.setTimer(() => this.tick(), TICK_MS);
  }

  /** Opens up to perTick links, keeping at most maxOpening unanswered; hops still waiting out a delay stay queued. */
  private tick(): void {
    this.timer = undefined;
    if (this.closed || !this.active()) return;
    const now = this.clock.now();
    let budget = Math.min(this.perTick, this.maxOpening - this.links.aheadOpening);
    let delayed = 0;
    for (const hop of this.queue) {
      if (budget <= 0) break;
      const wait = this.waits.get(hop);
      if (wait !== undefined && wait.until > now) {
        if (wait.refused) {
          this.queue.delete(hop);
          continue;
        }
        // Only a few delayed hops are stepped over per tick: the queue is not scanned whole every 100 ms.
        if (++delayed > 64) break;
        continue;
      }
      this.queue.delete(hop);
      if (!this.host.isNeighbour(hop)) continue; // gone: its return is a route change again
      if (this.links.openAhead(hop)) budget--;
    }
    this.schedule();
  }
}
