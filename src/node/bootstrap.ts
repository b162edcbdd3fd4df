/**
 * Keeps a node's bootstrap peers connected: createNode's own dials, then a redial whenever a
 * bootstrap peer is down, on a jittered backoff so that thousands of leaves whose hub restarted
 * do not all come back in the same second. No IO of its own: dials, timers and the clock are
 * given (the node passes its own and Node's; tests pass virtual ones).
 */
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { numberOption, sectionOption } from '../options.js';
import type { Timers } from '../timers.js';
import type { BootstrapEvent, BootstrapRedialOptions, BootstrapResult, BootstrapStats } from './types.js';

/** The checked redial options. */
export interface RedialSchedule {
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  readonly spreadMs: number;
}

export const DEFAULT_REDIAL: RedialSchedule = { minDelayMs: 1000, maxDelayMs: 10_000, spreadMs: 5_000 };

/** `bootstrapRedial` checked (ERR_BAD_OPTION); undefined: redials are off. */
export function redialSchedule(option: boolean | BootstrapRedialOptions | undefined): RedialSchedule | undefined {
  const section = sectionOption<BootstrapRedialOptions>('bootstrapRedial', option);
  if (section === undefined) return undefined;
  const where = 'bootstrapRedial option';
  const minDelayMs = numberOption(where, 'minDelayMs', section.minDelayMs, DEFAULT_REDIAL.minDelayMs, { min: 0, above: true, max: 2 ** 31 - 1 });
  const maxDelayMs = numberOption(where, 'maxDelayMs', section.maxDelayMs, Math.max(minDelayMs, DEFAULT_REDIAL.maxDelayMs), { min: minDelayMs, max: 2 ** 31 - 1 });
  const spreadMs = numberOption(where, 'spreadMs', section.spreadMs, DEFAULT_REDIAL.spreadMs, { min: 0, max: 2 ** 31 - 1 });
  return { minDelayMs, maxDelayMs, spreadMs };
}

/**
 * The wait before the next dial. `failures` 0 (the peer just dropped): anywhere in the spread
 * window, so the leaves of a hub that vanished at one instant do not redial at one instant.
 * After `failures` failed dials: min × 2^(failures−1), capped at max, then a random point of its
 * upper half ("equal jitter": never less than half, so the cap also bounds the redial rate).
 */
export function redialDelay(schedule: RedialSchedule, failures: number, random: () => number = Math.random): number {
  if (failures <= 0) return Math.round(schedule.spreadMs * random());
  const base = Math.min(schedule.maxDelayMs, schedule.minDelayMs * 2 ** Math.min(failures - 1, 30));
  return Math.round(base * (0.5 + 0.5 * random()));
}

/** What the keeper needs from its node and its clock (its timers: setTimer, clearTimer). */
export interface KeeperIo extends Timers {
  dial(address: string): Promise<NodeId>;
  /** The node holds a kept connection to this peer now. */
  connected(nodeId: NodeId): boolean;
  /** Told every redial's outcome. */
  event(event: BootstrapEvent): void;
  random?: () => number;
}

interface Entry {
  readonly address: string;
  id: NodeId | undefined;
  timer: unknown;
  failures: number;
  /** Dials of this address so far (createNode's first included): the `attempt` of events. */
  attempts: number;
  dialing: boolean;
}

/** Redials every bootstrap address whose peer is down until the node closes. */
export class BootstrapKeeper {
  private readonly entries: Entry[];
  private stopped = false;
  readonly stats: BootstrapStats = { addresses: 0, redials: 0, redialFailures: 0, reconnected: 0 };

  constructor(
    private readonly schedule: RedialSchedule,
    private readonly io: KeeperIo,
    results: readonly BootstrapResult[],
  ) {
    // createNode's own dials were attempt 1: a failed one is redialed on the backoff, a reached one when it drops.
    this.entries = results.map((result) => ({ address: result.address, id: result.ok ? result.nodeId : undefined, timer: undefined, failures: result.ok ? 0 : 1, attempts: 1, dialing: false }));
    this.stats.addresses = this.entries.length;
    const initial: BootstrapEvent[] = results.map((result, i) => {
      // Reached, but gone again before the keeper existed (no peer:down reaches us for it).
      if (result.ok && !io.connected(result.nodeId)) this.wait(this.entries[i]!, this.delay(0));
      if (result.ok) return { ...result, attempt: 1 };
      const retryMs = this.delay(1);
      this.wait(this.entries[i]!, retryMs);
      return { ...result, attempt: 1, retryMs };
    });
    // Reported after createNode resolved, so a listener attached right after it sees them.
    if (initial.length > 0) io.setTimer(() => initial.forEach((event) => !this.stopped && io.event(event)), 0);
  }

  /** A peer went down: a bootstrap peer is redialed at a random point of the spread window. */
  peerDown(nodeId: NodeId): void {
    if (this.stopped) return;
    for (const entry of this.entries) {
      if (entry.id !== nodeId || entry.dialing || entry.timer !== undefined) continue;
      entry.failures = 0;
      this.wait(entry, this.delay(0));
    }
  }

  close(): void {
    this.stopped = true;
    for (const entry of this.entries) if (entry.timer !== undefined) this.io.clearTimer(entry.timer);
  }

  private delay(failures: number): number {
    return redialDelay(this.schedule, failures, this.io.random);
  }

  private wait(entry: Entry, ms: number): void {
    entry.timer = this.io.setTimer(() => {
      entry.timer = undefined;
      void this.attempt(entry);
    }, ms);
  }

  private async attempt(entry: Entry): Promise<void> {
    if (this.stopped || (entry.id !== undefined && this.io.connected(entry.id))) return;
    entry.dialing = true;
    entry.attempts++;
    this.stats.redials++;
    let id: NodeId;
    try {
      id = await this.io.dial(entry.address);
    } catch (cause) {
      if (this.stopped) return;
      entry.dialing = false;
      entry.failures++;
      this.stats.redialFailures++;
      const retryMs = this.delay(entry.failures);
      this.wait(entry, retryMs);
      const error = cause instanceof PnetError ? cause : new PnetError('UNREACHABLE', String(cause), { cause });
      this.io.event({ address: entry.address, attempt: entry.attempts, ok: false, error, retryMs });
      return;
    }
    entry.dialing = false;
    entry.id = id;
    entry.failures = 0;
    this.stats.reconnected++;
    this.io.event({ address: entry.address, attempt: entry.attempts, ok: true, nodeId: id });
    // The connection may have dropped between the handshake and now: its peer:down found us dialing.
    if (!this.stopped && !this.io.connected(id) && entry.timer === undefined) this.wait(entry, this.delay(0));
  }
}
