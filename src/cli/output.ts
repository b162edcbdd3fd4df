/** Rendering for humans: tables, Graphviz DOT, the exec progress bar and summary. */
import cliProgress from 'cli-progress';
import Table from 'cli-table3';
import type { TopologyReply } from './ops/wire.js';

/** Where output goes (process.stdout / stderr, or a test's collectors). */
export interface Out {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export function table(head: string[], rows: Array<Array<string | number>>): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const row of rows) t.push(row.map((cell) => (typeof cell === 'number' ? formatNumber(cell) : cell)));
  return t.toString() + '\n';
}

export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1);
}

/** Nearest-rank percentile of `values` (undefined when empty). */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

const quote = (id: string): string => `"${id.replace(/["\\]/g, (c) => `\\${c}`)}"`;

/**
 * The map as an undirected Graphviz graph: one edge per linked pair, labelled with its cost
 * (both directions' costs when they differ); the node that answered is drawn as a box.
 */
export function toDot(topology: TopologyReply): string {
  const lines = ['graph pnet {', '  graph [overlap=false];', '  node [shape=ellipse, fontname="monospace"];'];
  for (const id of [...topology.nodes].sort()) {
    const attrs = [`label=${quote(id.slice(0, 8))}`, `tooltip=${quote(id)}`];
    if (id === topology.self) attrs.push('shape=box', 'style=bold');
    lines.push(`  ${quote(id)} [${attrs.join(', ')}];`);
  }
  const pairs = new Map<string, { a: string; b: string; ab?: number; ba?: number }>();
  for (const link of topology.links) {
    const [a, b] = link.from < link.to ? [link.from, link.to] : [link.to, link.from];
    const key = `${a} ${b}`;
    const pair = pairs.get(key) ?? { a, b };
    if (link.from === a) pair.ab = link.cost;
    else pair.ba = link.cost;
    pairs.set(key, pair);
  }
  for (const pair of [...pairs.values()].sort((x, y) => (x.a + x.b < y.a + y.b ? -1 : 1))) {
    const costs = [pair.ab, pair.ba].filter((c): c is number => c !== undefined);
    const label = costs.length === 2 && costs[0] !== costs[1] ? `${formatNumber(costs[0]!)} / ${formatNumber(costs[1]!)}` : formatNumber(costs[0] ?? NaN);
    lines.push(`  ${quote(pair.a)} -- ${quote(pair.b)} [label=${quote(label)}];`);
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

export type ExecStatus = 'ok' | 'failed' | 'timeout';

/** Live progress of an exec fan-out: a bar on a TTY, one line per target otherwise, nothing for --json. */
export class ExecProgress {
  private readonly bar: cliProgress.SingleBar | undefined;
  private counts = { ok: 0, failed: 0, timeout: 0 };
  private total: number;

  constructor(
    private readonly out: Out,
    private readonly mode: 'bar' | 'lines' | 'none',
    estimatedTotal: number | undefined,
  ) {
    this.total = estimatedTotal ?? 0;
    if (mode === 'bar') {
      this.bar = new cliProgress.SingleBar(
        {
          format: 'exec [{bar}] {value}/{total} | {ok} ok, {failed} failed, {timeout} timed out, {pending} pending | {duration_formatted}',
          stream: out as NodeJS.WritableStream,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 50,
          fps: 10,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(Math.max(this.total, 1), 0, this.payload());
    }
  }

  private get done(): number {
    return this.counts.ok + this.counts.failed + this.counts.timeout;
  }

  private payload(): Record<string, number> {
    return { ...this.counts, pending: Math.max(0, this.total - this.done) };
  }

  update(nodeId: string, status: ExecStatus, detail: string): void {
    this.counts[status]++;
    if (this.done > this.total) this.total = this.done;
    if (this.bar) {
      this.bar.setTotal(Math.max(this.total, 1));
      this.bar.update(this.done, this.payload());
    } else if (this.mode === 'lines') {
      const label = status === 'timeout' ? 'TIMEOUT' : status === 'ok' ? 'ok' : 'FAILED';
      this.out.write(`[${this.done}/${this.total || '?'}] ${label.padEnd(7)} ${nodeId} ${detail}\n`);
    }
  }

  stop(): void {
    if (this.bar) {
      this.bar.setTotal(Math.max(this.done, 1));
      this.bar.update(this.done, { ...this.counts, pending: 0 });
      this.bar.stop();
    }
  }
}
