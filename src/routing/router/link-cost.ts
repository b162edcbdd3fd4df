/**
 * Link costs from RTT samples: an EWMA of the samples, and the hysteresis that keeps a busy
 * event loop's RTT stalls from re-flooding the map (docs/ROUTING.md, Link costs).
 */
import { MAX_COST } from './codec.js';
import type { RouterSettings } from './settings.js';

type CostSettings = Pick<RouterSettings, 'costBase' | 'costUnit' | 'smoothing' | 'hystMin' | 'hystRatio' | 'holdMs'>;

/** What a neighbour's cost needs to remember. */
export interface CostState {
  srtt: number | undefined;
  /** The cost we announce. */
  cost: number;
  /** Since when the smoothed cost has been outside the announced cost's band (hysteresis hold). */
  outsideSince: number | undefined;
}

/** cost = clamp(base + round(srtt / unit), 1, MAX_COST). */
export function costFromRtt(cfg: CostSettings, srttMs: number): number {
  const c = cfg.costBase + Math.round(srttMs / cfg.costUnit);
  return Math.min(MAX_COST, Math.max(1, c));
}

/** Feeds one RTT sample taken at `now`; true when the announced cost moved. Nonsense values are ignored. */
export function sampleCost(cfg: CostSettings, n: CostState, rttMs: number, now: number): boolean {
  if (typeof rttMs !== 'number' || !Number.isFinite(rttMs) || rttMs < 0) return false;
  const first = n.srtt === undefined;
  n.srtt = first ? rttMs : n.srtt! + cfg.smoothing * (rttMs - n.srtt!);
  if (!first) {
    // Hysteresis on the unrounded cost: the announced cost moves only when the smoothed RTT
    // has left its band and stayed out for holdMs, never on rounding flips or a short spike.
    const band = Math.max(cfg.hystMin, cfg.hystRatio * n.cost);
    const exact = cfg.costBase + n.srtt / cfg.costUnit - n.cost;
    const raw = cfg.costBase + rttMs / cfg.costUnit - n.cost;
    // Outside only while the smoothed cost AND the sample are beyond the band on the same
    // side: the sample back inside (a stall is over) restarts the hold.
    if (Math.abs(exact) < band || Math.abs(raw) < band || exact > 0 !== raw > 0) {
      n.outsideSince = undefined;
      return false;
    }
    n.outsideSince ??= now;
    if (now - n.outsideSince < cfg.holdMs) return false;
  }
  n.outsideSince = undefined;
  const cost = costFromRtt(cfg, n.srtt);
  if (cost === n.cost) return false;
  n.cost = cost;
  return true;
}
