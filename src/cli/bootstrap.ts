/**
 * The daemon's bootstrap peers kept connected: each is dialed at start, redialed with a short
 * jittered backoff while it is down, and redialed at once when its connection drops, so a
 * returning host is back within about two seconds of being reachable.
 */
import { PnetError } from '../index.js';
import type { NodeId } from '../index.js';

/** First redial after a failure; doubles per failure up to RETRY_MAX_MS. */
export const RETRY_MIN_MS = 250;
/** The longest wait between redials: a dead dial fails in ~0.5 s (refused), so a host is back within ~2 s. */
export const RETRY_MAX_MS = 1500;
/** While connected, how often to check that the bootstrap peer still is (its peer:down also wakes us). */
const CHECK_MS = 5000;

/** The wait before redial number `failures` (1: the first failure): doubling, capped, ±20% jitter so daemons do not redial in step. */
export function redialDelay(failures: number, random: () => number = Math.random): number {
  const base = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export interface BootstrapLog {
  connected(address: string, nodeId: NodeId, attempt: number): void;
  failed(address: string, attempt: number, error: unknown, retryMs: number): void;
}

interface Entry {
  id: NodeId | undefined;
  timer: NodeJS.Timeout | undefined;
  failures: number;
  dialing: boolean;
}

/** Keeps the configured bootstrap peers connected. */
export class Bootstrapper {
  private readonly state = new Map<string, Entry>();
  private stopped = false;

  constructor(
    addresses: readonly string[],
    private readonly log: BootstrapLog,
    private readonly dial: (address: string) => Promise<NodeId>,
    private readonly isConnected: (nodeId: NodeId) => boolean,
  ) {
    for (const address of addresses) this.state.set(address, { id: undefined, timer: undefined, failures: 0, dialing: false });
  }

  start(): void {
    for (const address of this.state.keys()) void this.attempt(address);
  }

  /** A peer went down: if it is a bootstrap peer, redial it now rather than at the next check. */
  peerDown(nodeId: NodeId): void {
    for (const [address, entry] of this.state) {
      if (entry.id !== nodeId || entry.dialing || this.stopped) continue;
      clearTimeout(entry.timer);
      entry.timer = setTimeout(() => void this.attempt(address), redialDelay(1));
      entry.timer.unref();
    }
  }

  private async attempt(address: string): Promise<void> {
    const entry = this.state.get(address)!;
    entry.timer = undefined;
    if (this.stopped) return;
    let wait = CHECK_MS;
    if (entry.id === undefined || !this.isConnected(entry.id)) {
      entry.dialing = true;
      try {
        entry.id = await this.dial(address);
        this.log.connected(address, entry.id, entry.failures + 1);
        entry.failures = 0;
      } catch (error) {
        if (this.stopped) return;
        entry.failures++;
        wait = redialDelay(entry.failures);
        this.log.failed(address, entry.failures, error, wait);
      } finally {
        entry.dialing = false;
      }
    }
    if (this.stopped) return;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => void this.attempt(address), wait);
    entry.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    for (const entry of this.state.values()) clearTimeout(entry.timer);
  }
}

/** The code of a dial error, for the log. */
export function errorCode(error: unknown): string | undefined {
  return error instanceof PnetError ? error.code : undefined;
}
