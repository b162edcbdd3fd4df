/**
 * The process's spawn queue: at most `maxRunning` commands of ops/exec run at once in this
 * process, whatever number of nodes it serves, the rest wait in order (at most `maxQueued`).
 * The forks themselves happen in the process's spawn helper (spawn-helper.ts), off this event
 * loop; the queue bounds the commands alive at once (500 nodes of one process asked at once).
 * Counted; a full queue is an OVERLOADED refusal.
 */
import { availableParallelism } from 'node:os';
import { PnetError } from '../index.js';

/**
 * Commands running at once per process by default: 8 (a node's own maxConcurrentExec default, so a
 * daemon's long commands do not wait behind each other) or the cores if more; the forks are the
 * spawn helper's, so this costs the event loop nothing. For many short ones it matters little
 * (2,000 leaves spawning `true`, 4 processes: 19.1 s at 2, 17.3 s at 8, separate runs).
 * PNET_EXEC_MAX_RUNNING sets it (1-1024).
 */
export const DEFAULT_MAX_RUNNING = runningFrom(process.env['PNET_EXEC_MAX_RUNNING']) ?? Math.max(8, availableParallelism());

function runningFrom(value: string | undefined): number | undefined {
  const n = Number(value);
  return value !== undefined && /^\d+$/.test(value) && n >= 1 && n <= 1024 ? n : undefined;
}
/** Commands waiting per process by default (each holds its request until it starts). */
export const DEFAULT_MAX_QUEUED = 4096;

export interface SpawnQueueStats {
  /** Commands running now. */
  running: number;
  /** Commands waiting for a turn now. */
  queued: number;
  /** Commands started since the process began. */
  started: number;
  /** Commands that had to wait for a turn. */
  waited: number;
  /** Commands refused because the queue was full (OVERLOADED). */
  refusedQueueFull: number;
  /** The longest queue seen. */
  peakQueued: number;
}

interface Waiter {
  readonly start: () => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
}

export class SpawnQueue {
  private readonly waiting: Waiter[] = [];
  private head = 0;
  private running = 0;
  private readonly counts = { started: 0, waited: 0, refusedQueueFull: 0, peakQueued: 0 };

  constructor(
    private maxRunning = DEFAULT_MAX_RUNNING,
    private maxQueued = DEFAULT_MAX_QUEUED,
  ) {}

  /** Changes the limits (the daemon's config; tests). */
  configure(limits: { maxRunning?: number; maxQueued?: number }): void {
    this.maxRunning = limits.maxRunning ?? this.maxRunning;
    this.maxQueued = limits.maxQueued ?? this.maxQueued;
    this.pump();
  }

  get queued(): number {
    return this.waiting.length - this.head;
  }

  stats(): SpawnQueueStats {
    return { running: this.running, queued: this.queued, ...this.counts };
  }

  /**
   * Runs `task` when a turn is free (at once when one is). Throws OVERLOADED when the queue is
   * full; rejects with ERR_NODE_CLOSED when `signal` aborts before the turn came.
   */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw closed();
    if (this.running >= this.maxRunning || this.queued > 0) await this.wait(signal);
    else this.running++;
    this.counts.started++;
    try {
      return await task();
    } finally {
      this.running--;
      this.pump();
    }
  }

  private wait(signal: AbortSignal | undefined): Promise<void> {
    if (this.queued >= this.maxQueued) {
      this.counts.refusedQueueFull++;
      throw new PnetError('OVERLOADED', `exec queue full: ${this.running} commands running and ${this.queued} waiting in this process (at most ${this.maxQueued})`);
    }
    this.counts.waited++;
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        start: resolve,
        signal,
        onAbort: () => {
          const at = this.waiting.indexOf(waiter, this.head);
          if (at >= 0) this.waiting.splice(at, 1);
          reject(closed());
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiting.push(waiter);
      this.counts.peakQueued = Math.max(this.counts.peakQueued, this.queued);
    });
  }

  /** Hands free turns to the waiters, started after the IO already waiting (keep-alives get turns between spawns). */
  private pump(): void {
    while (this.running < this.maxRunning && this.queued > 0) {
      const waiter = this.waiting[this.head++]!;
      this.running++;
      // Its turn is taken: an abort from now on stops the command itself (runCommand watches the signal).
      waiter.signal?.removeEventListener('abort', waiter.onAbort);
      setImmediate(waiter.start);
    }
    // Compact the array now and then instead of shift()ing every waiter out.
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
  }
}

function closed(): PnetError {
  return new PnetError('ERR_NODE_CLOSED', 'exec cancelled before it started: the ops service is closing');
}

/** The one queue of this process: every node's ops/exec shares it. */
export const spawnQueue = new SpawnQueue();
