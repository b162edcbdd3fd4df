/**
 * `pnet exec`'s work, loaded when the command runs (exec.ts holds its definition): parse the
 * targets, ask the daemon's inventory, fan out, classify and report.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { PnetError, parseNodeId } from '../../index.js';
import type { NodeId } from '../../index.js';
import type { OperatorSession } from '../client.js';
import { expandHome } from '../defaults.js';
import { classify, hostOutput, summarise } from '../exec-outcome.js';
import type { ExecOutcome } from '../exec-outcome.js';
import { ExecProgress, table } from '../output.js';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { ExecRequest, InventoryHost, InventoryReply } from '../ops/wire.js';
import { matches, parseSelector } from '../inventory.js';
import type { Selector } from '../inventory.js';
import { EXIT, UsageError, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

/** Bytes a target may answer an exec with (fan-out's ceiling; hosts cap their output well below). */
const MAX_EXEC_REPLY = 16 * 1024 * 1024;

export type ExecOptions = OperatorCliOptions & {
  targets: string;
  commandTimeout?: number;
  deadline?: number;
  concurrency?: number;
  output?: boolean;
  progress: boolean;
  reachableOnly?: boolean;
};

/** What --targets names: every known host, the hosts whose labels match, or node ids. */
export type TargetSpec = NodeId[] | 'all' | { readonly select: Selector };

/** The hosts chosen from the inventory, and the known ones left out by --reachable-only. */
interface Chosen {
  readonly ids: NodeId[];
  /** Every host: the fan-out goes out as 'all' through the daemon (one signature, not a ticket per target). */
  readonly all: boolean;
  readonly skipped: InventoryHost[];
  readonly known: Map<NodeId, InventoryHost>;
}

/** Runs `pnet exec COMMAND ARGS` with its options. */
export async function runExec(ctx: CommandContext, command: string, args: string[], options: ExecOptions): Promise<void> {
  const targets = await parseTargets(options.targets);
  const request: ExecRequest = { command, ...(args.length > 0 ? { args } : {}), ...(options.commandTimeout !== undefined ? { timeoutMs: options.commandTimeout } : {}) };
  const { outcomes, skipped } = await withSession(ctx, options, async (session) => {
    const choosing = choose(session, targets, options);
    // 'all' leaves at once: the inventory (known hosts outside the map, and since when) is read meanwhile.
    const early = targets === 'all' && !options.reachableOnly;
    if (early) choosing.catch(() => undefined); // awaited after the fan-out
    const chosen = early ? undefined : await choosing;
    const mode = options.json || !options.progress ? 'none' : ctx.io.stderr.isTTY ? 'bar' : 'lines';
    const progress = new ExecProgress(ctx.io.stderr, mode, chosen?.ids.length);
    try {
      const answered = chosen?.ids.length === 0 ? [] : await fanOut(session, chosen, request, options, progress);
      const known = chosen ?? (await choosing.catch((error: Error) => answeredOnly(ctx, error, answered)));
      return { outcomes: complete(session.daemonId, known, answered, progress), skipped: known.skipped };
    } finally {
      progress.stop();
    }
  });
  report(ctx, request, outcomes, skipped, options);
  if (outcomes.length === 0 || summarise(outcomes).ok !== outcomes.length) ctx.setExit(EXIT.failed);
}

/**
 * The inventory could not be read (a refused operator, most often): its error, as when it was
 * read first, unless some host ran the command, whose answers are then reported as they are.
 */
function answeredOnly(ctx: CommandContext, error: Error, answered: readonly ExecOutcome[]): Chosen {
  if (!answered.some((outcome) => outcome.result !== undefined)) throw error;
  ctx.note(`the daemon's inventory could not be read (${(error as { code?: string }).code ?? 'error'}: ${error.message}): hosts outside its map are not listed\n`);
  return { ids: answered.map((outcome) => outcome.nodeId), all: false, skipped: [], known: new Map() };
}

/** Node ids as given, or the daemon's inventory filtered: 'all' is every host it has seen, reachable now or not. */
async function choose(session: OperatorSession, targets: TargetSpec, options: ExecOptions): Promise<Chosen> {
  if (Array.isArray(targets)) return { ids: targets, all: false, skipped: [], known: new Map() };
  // 'all' needs only the ids: the daemon answers from what it knows, reading no facts first; a selector needs the labels.
  const inventory = await session.call<InventoryReply>(OPS_CHANNELS.inventory, targets === 'all' ? { facts: false } : {}, options.timeout);
  const known = new Map(inventory.hosts.map((host) => [host.nodeId, host]));
  let hosts = targets === 'all' ? inventory.hosts : inventory.hosts.filter((host) => matches(host, targets.select));
  const skipped = options.reachableOnly ? hosts.filter((host) => !host.reachable) : [];
  if (options.reachableOnly) hosts = hosts.filter((host) => host.reachable);
  if (hosts.length === 0 && skipped.length === 0) throw new UsageError(`no known host matches --targets ${options.targets} (see pnet hosts)`);
  return { ids: hosts.map((host) => host.nodeId), all: targets === 'all', skipped, known };
}

/** Sends the request through the daemon (to its whole map when `chosen` is not known yet) and classifies each answer as it comes. */
async function fanOut(session: OperatorSession, chosen: Chosen | undefined, request: ExecRequest, options: ExecOptions, progress: ExecProgress): Promise<ExecOutcome[]> {
  const deadlineMs = options.deadline ?? (options.commandTimeout !== undefined ? options.commandTimeout + 5000 : 60_000);
  const results: ExecOutcome[] = [];
  // 'all' is the daemon's map, signed once; a list costs a signed ticket per target (at 2,000, ~0.5 s before the first leg left).
  const stream = session.node.fanout(chosen === undefined || chosen.all ? 'all' : chosen.ids, OPS_CHANNELS.exec, JSON.stringify(request), {
    via: session.daemonId,
    deadlineMs,
    maxReplyBytes: MAX_EXEC_REPLY,
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
  });
  for await (const result of stream) {
    const outcome = withLastSeen(classify(result), chosen?.known.get(result.nodeId));
    results.push(outcome);
    progress.update(outcome.nodeId, outcome.status, outcome.reason);
  }
  return results;
}

/** The answers with since-when for the known hosts that were unreachable, and (for 'all') a line for each known host that got nothing. */
function complete(daemonId: NodeId, chosen: Chosen, answered: ExecOutcome[], progress: ExecProgress): ExecOutcome[] {
  const outcomes = answered.map((outcome) => withLastSeen(outcome, chosen.known.get(outcome.nodeId)));
  if (!chosen.all) return outcomes;
  const why = notReached(daemonId, outcomes);
  for (const nodeId of missing(chosen.ids, outcomes)) {
    const outcome = withLastSeen(classify({ nodeId, ms: 0, hops: 0, ok: false, error: why }), chosen.known.get(nodeId));
    outcomes.push(outcome);
    progress.update(outcome.nodeId, outcome.status, outcome.reason);
  }
  return outcomes;
}

/**
 * Why a known host got nothing from the daemon's 'all': it was not in the daemon's map, or (the
 * daemon itself, always in its own 'all', did not answer either) the fan-out through it was cut.
 */
function notReached(daemonId: NodeId, outcomes: readonly ExecOutcome[]): PnetError {
  if (outcomes.some((outcome) => outcome.nodeId === daemonId)) return new PnetError('UNREACHABLE', `not in the map of ${daemonId}`);
  return new PnetError('UNREACHABLE', `the fan-out through ${daemonId} ended before it answered (connection lost?)`);
}

/** The chosen hosts without an outcome. */
function missing(ids: readonly NodeId[], outcomes: readonly ExecOutcome[]): NodeId[] {
  const answered = new Set(outcomes.map((outcome) => outcome.nodeId));
  return ids.filter((id) => !answered.has(id));
}

/** An unreachable known host says since when. */
function withLastSeen(outcome: ExecOutcome, host: InventoryHost | undefined): ExecOutcome {
  if (host === undefined || host.reachable || outcome.error?.code !== 'UNREACHABLE') return outcome;
  return { ...outcome, reason: `UNREACHABLE: ${host.name ?? 'host'} not in the map, last reachable ${host.lastReachable}` };
}

function report(ctx: CommandContext, request: ExecRequest, outcomes: ExecOutcome[], skipped: InventoryHost[], options: ExecOptions): void {
  const summary = summarise(outcomes);
  const skippedOut = skipped.map((host) => ({ nodeId: host.nodeId, ...(host.name === undefined ? {} : { name: host.name }), lastReachable: host.lastReachable }));
  if (options.json) return ctx.printJson({ command: request, ...summary, results: outcomes, ...(options.reachableOnly ? { skipped: skippedOut } : {}) });
  ctx.print(table(['targets', 'ok', 'failed', 'timed out', 'p50 ms', 'p99 ms'], [[summary.targets, summary.ok, summary.failed, summary.timedOut, summary.p50Ms ?? NaN, summary.p99Ms ?? NaN]]));
  const bad = outcomes.filter((o) => o.status !== 'ok');
  if (bad.length > 0) {
    ctx.print(`not ok (${bad.length}):\n`);
    for (const o of bad) ctx.print(`  ${o.nodeId}  ${o.reason}\n`);
  }
  if (skipped.length > 0) {
    ctx.print(`skipped, not reachable now (${skipped.length}):\n`);
    for (const host of skippedOut) ctx.print(`  ${host.nodeId}  ${host.name ?? ''} last reachable ${host.lastReachable}\n`);
  }
  if (options.output) {
    for (const o of [...outcomes].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))) ctx.print(hostOutput(o));
  }
}

/** `all`, "KEY=VALUE,...", "ID,ID", or "@file" with one id per line ('#' starts a comment). */
export async function parseTargets(spec: string): Promise<TargetSpec> {
  const text = spec.trim();
  if (text === 'all') return 'all';
  const select = parseSelector(text);
  if (select !== undefined) return { select };
  let items: string[];
  if (text.startsWith('@')) {
    const file = resolve(expandHome(text.slice(1)));
    let content: string;
    try {
      content = await readFile(file, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read targets file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    items = content.split('\n').map((line) => line.replace(/#.*/, '').trim());
  } else {
    items = text.split(',').map((part) => part.trim());
  }
  const ids: NodeId[] = [];
  for (const item of items.filter((part) => part !== '')) {
    try {
      ids.push(parseNodeId(item));
    } catch (error) {
      throw new UsageError(`bad target "${item}": ${(error as Error).message}`);
    }
  }
  if (ids.length === 0) throw new UsageError('no targets: give --targets all, a list of node ids, or @FILE');
  return [...new Set(ids)];
}
