// Cancelling an unref'd timer so Node lets go of its timer list; the node's timers for sans-IO parts.

/**
 * Cancels a timer made with `.unref()`. Node keeps one timer list per distinct duration and drops
 * a list emptied by `clearTimeout` only if the cleared timer was ref'd (lib/internal/timers.js,
 * `unenroll`); an unref'd timer's emptied list stays, in a map and a priority queue, until its
 * duration has passed. A timer re-armed again and again at ever-new long durations (the router's
 * 30-minute deadline, re-armed at every routing message) piled up ~80 empty lists a second per
 * 25 nodes, each kept for up to 30 minutes: the soak's heap growth (issue 15). Ref'd just before
 * the clear, in the same turn, the timer never holds the process open and its list goes with it.
 */
export function clearUnrefTimer(timer: NodeJS.Timeout | undefined): void {
  if (timer === undefined) return;
  timer.ref();
  clearTimeout(timer);
}

/** Timers a sans-IO part is given: the node's (below), or a test's virtual ones. */
export interface Timers {
  /** Runs `fn` after `ms`; the handle cancels it. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

/** Node's timers, unref'd (they never hold the process open) and cleared with clearUnrefTimer. */
export const unrefTimers: Timers = {
  setTimer: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimer: (handle) => clearUnrefTimer(handle as NodeJS.Timeout | undefined),
};
