/** What `pnet exec` reports per target and in sum: pure functions over fan-out results. */
import { PnetError } from '../index.js';
import type { FanoutResult, NodeId } from '../index.js';
import { decodeReply } from './client.js';
import type { ExecResult } from './exec.js';
import { formatNumber, percentile } from './output.js';
import type { ExecStatus } from './output.js';

/** One target's exec outcome as the CLI reports it. */
export interface ExecOutcome {
  readonly nodeId: NodeId;
  readonly status: ExecStatus;
  /** One line: "exit 0", "exit 2", "timed out after 1000 ms (killed)", "UNAUTHORIZED: ...". */
  readonly reason: string;
  readonly ms: number;
  readonly hops: number;
  readonly result?: ExecResult;
  readonly error?: { readonly code: string; readonly message: string };
}

export function classify(result: FanoutResult): ExecOutcome {
  const base = { nodeId: result.nodeId, ms: Math.round(result.ms * 10) / 10, hops: result.hops };
  if (!result.ok) {
    const error = { code: result.error.code, message: result.error.message };
    const status: ExecStatus = result.error.code === 'ERR_REQUEST_TIMEOUT' ? 'timeout' : 'failed';
    return { ...base, status, reason: `${error.code}: ${error.message}`, error };
  }
  let reply: ExecResult;
  try {
    reply = decodeReply<ExecResult>(result.data);
  } catch (error) {
    const failure = error instanceof PnetError ? error : new PnetError('BAD_FRAME', String(error));
    return { ...base, status: 'failed', reason: `${failure.code}: ${failure.message}`, error: { code: failure.code, message: failure.message } };
  }
  if (reply.timedOut) return { ...base, status: 'timeout', reason: `timed out after ${formatNumber(reply.ms)} ms (process group killed)`, result: reply };
  if (reply.spawnError !== undefined) return { ...base, status: 'failed', reason: `could not start: ${reply.spawnError}`, result: reply };
  if (reply.exitCode === 0) return { ...base, status: 'ok', reason: `exit 0 in ${formatNumber(reply.ms)} ms`, result: reply };
  return { ...base, status: 'failed', reason: reply.exitCode !== null ? `exit ${reply.exitCode}` : `killed by ${reply.signal ?? 'a signal'}`, result: reply };
}

export interface ExecSummary {
  readonly targets: number;
  readonly ok: number;
  readonly failed: number;
  readonly timedOut: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
}

export function summarise(outcomes: readonly ExecOutcome[]): ExecSummary {
  const times = outcomes.map((o) => o.ms);
  const p50 = percentile(times, 50);
  const p99 = percentile(times, 99);
  return {
    targets: outcomes.length,
    ok: outcomes.filter((o) => o.status === 'ok').length,
    failed: outcomes.filter((o) => o.status === 'failed').length,
    timedOut: outcomes.filter((o) => o.status === 'timeout').length,
    ...(p50 !== undefined ? { p50Ms: p50 } : {}),
    ...(p99 !== undefined ? { p99Ms: p99 } : {}),
  };
}

/** One host's stdout and stderr (or its error) under a header line. */
export function hostOutput(o: ExecOutcome): string {
  const lines = [`== ${o.nodeId} (${o.reason}${o.result?.truncated ? ', output truncated' : ''})`];
  if (o.result) {
    if (o.result.stdout !== '') lines.push(o.result.stdout.replace(/\n$/, ''));
    if (o.result.stderr !== '') lines.push('-- stderr', o.result.stderr.replace(/\n$/, ''));
  } else if (o.error) {
    lines.push(`${o.error.code}: ${o.error.message}`);
  }
  return lines.join('\n') + '\n';
}
