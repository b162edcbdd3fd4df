// Giving glibc malloc's free pages back to the kernel after connections close (issue 15).
import { loadNativeAddon } from '../../native-addons.js';

/**
 * A churned connection frees its quiche and TLS state, but glibc keeps the freed pages in its
 * arenas (one per thread that allocated, each trimmed only at its top): under churn RSS grows with
 * memory no one uses. `malloc_trim(0)` releases the free pages of every arena.
 */
export interface MallocTrimStats {
  /** Trims run by this process (one process-wide trimmer, whichever transports asked). */
  trims: number;
  /** Their total and longest run time on the event loop, ms. */
  totalMs: number;
  maxMs: number;
  /** RSS given back, summed over trims (RSS before minus after, bytes). */
  releasedBytes: number;
  /** glibc's mmap threshold pinned at MMAP_THRESHOLD_BYTES (see pinMmapThreshold). */
  mmapThresholdPinned: boolean;
}

/** Default period: at most one trim per 10 s per process, and only after a connection closed. */
export const MALLOC_TRIM_PERIOD_MS = 10_000;
/** A trim costs at most 1% of the loop: the next waits at least COST_FACTOR times the last one's duration. */
const COST_FACTOR = 100;

/** Chunks this big or bigger are mmapped and given back to the kernel when freed (glibc's default start). */
export const MMAP_THRESHOLD_BYTES = 128 * 1024;

/** The decision, sans-IO: when the next trim may run, given the last one's time and cost. */
export function nextTrimAt(lastAt: number, lastCostMs: number, periodMs: number): number {
  return lastAt + Math.max(periodMs, COST_FACTOR * lastCostMs);
}

interface MallocAddon {
  mallocTrim(): boolean;
  mallocPinMmapThreshold?: ((bytes: number) => boolean) | null;
}

let addon: MallocAddon | null | undefined;

/** The UDP addon's mallocTrim, or null (not glibc, no addon, or a build older than the export). */
function mallocAddon(): MallocAddon | null {
  if (addon !== undefined) return addon;
  try {
    const loaded = loadNativeAddon('pnet_udp') as Partial<MallocAddon>;
    addon = typeof loaded.mallocTrim === 'function' ? (loaded as MallocAddon) : null;
  } catch {
    addon = null;
  }
  return addon;
}

/** The process's trimmer: connections' closes arm one unref'd timer at the next allowed time. */
class MallocTrimmer {
  private readonly counts: MallocTrimStats = { trims: 0, totalMs: 0, maxMs: 0, releasedBytes: 0, mmapThresholdPinned: false };
  private pinTried = false;
  private lastAt = -Infinity;
  private lastCostMs = 0;
  private timer: NodeJS.Timeout | undefined;

  /**
   * Once per process, when a QUIC endpoint starts (unless trims are off or the user tuned malloc):
   * glibc raises its mmap threshold to the size of each mmapped chunk freed, so after a node closes
   * (its socket's 1 MiB receive slab) chunks of that size come from the heap, where they outlive the
   * trims among small live chunks: under churn the soak's malloc in use rose as its mmapped fell.
   * Pinning the threshold keeps big chunks mmapped, given back whole when freed.
   */
  pinMmapThreshold(): void {
    if (this.pinTried) return;
    this.pinTried = true;
    if (process.env.MALLOC_MMAP_THRESHOLD_ !== undefined || process.env.GLIBC_TUNABLES?.includes('mmap_threshold')) return;
    const pin = mallocAddon()?.mallocPinMmapThreshold;
    if (typeof pin === 'function') this.counts.mmapThresholdPinned = pin(MMAP_THRESHOLD_BYTES);
  }

  /** A connection closed: trim once the period since the last trim has passed. */
  connectionClosed(periodMs: number): void {
    if (periodMs <= 0 || this.timer !== undefined || mallocAddon() === null) return;
    const delay = Math.max(0, nextTrimAt(this.lastAt, this.lastCostMs, periodMs) - performance.now());
    // Unref'd and never cleared: it fires once, so Node drops its timer list (src/timers.ts).
    this.timer = setTimeout(this.trim, delay).unref();
  }

  /** Runs one trim now and counts it; false where there is nothing to call. */
  readonly trim = (): boolean => {
    this.timer = undefined;
    const native = mallocAddon();
    if (native === null) return false;
    const before = process.memoryUsage.rss();
    const start = performance.now();
    native.mallocTrim();
    const end = performance.now();
    const cost = end - start;
    this.lastAt = end;
    this.lastCostMs = cost;
    this.counts.trims++;
    this.counts.totalMs += cost;
    this.counts.maxMs = Math.max(this.counts.maxMs, cost);
    this.counts.releasedBytes += Math.max(0, before - process.memoryUsage.rss());
    return true;
  };

  stats(): MallocTrimStats {
    return { ...this.counts, totalMs: Math.round(this.counts.totalMs * 10) / 10, maxMs: Math.round(this.counts.maxMs * 10) / 10 };
  }
}

/** One per process: malloc's arenas are the process's, however many nodes it runs. */
export const mallocTrimmer = new MallocTrimmer();
