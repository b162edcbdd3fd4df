// Aggregation (median of runs), ratios against baselines, and the JSON /
// Markdown / console renderings of one bench run.
import { median } from './common.mjs';

export const BASELINES = ['matrixai-quic', 'node-tls', 'libp2p-quic', 'libp2p-tcp'];

/** pnet's own rows: the primary system and its other transports (pnet-h2). */
export const isPnet = (system) => system === 'pnet' || system.startsWith('pnet-');

/** Display name of a system in target lines and comparisons. */
const SYSTEM_NAMES = {
  'libp2p-quic': 'js-libp2p QUIC',
  'libp2p-tcp': 'js-libp2p TCP+noise+yamux',
  'matrixai-quic': 'raw @matrixai/quic',
  'node-tls': 'Node tls',
  'pnet-h2': 'pnet HTTP/2 transport',
};
export const systemName = (system) => SYSTEM_NAMES[system] ?? system;

export function aggregate(values) {
  const ok = values.filter((v) => Number.isFinite(v));
  if (ok.length === 0) return { median: null, min: null, max: null, runs: 0, samples: [] };
  return { median: median(ok), min: Math.min(...ok), max: Math.max(...ok), runs: ok.length, samples: ok };
}

export function checkTarget(target, value) {
  if (!target || value === null || value === undefined) return undefined;
  return target.op === '>=' ? value >= target.value : value <= target.value;
}

/**
 * Ratio pnet/baseline for a metric, or null when it would compare different
 * workloads (a scaled baseline and a metric that is not a rate).
 */
export function ratioOf(figure, metric, pnetEntry, baselineEntry) {
  if (!pnetEntry || !baselineEntry) return null;
  if (pnetEntry.median === null || baselineEntry.median === null || baselineEntry.median === 0) return null;
  const comparable = metric.rate || !baselineEntry.scaled;
  if (!comparable) return null;
  return pnetEntry.median / baselineEntry.median;
}

/** "2.3× faster" style reading of a ratio, given which direction is better. */
export function verdict(ratio, better, subject = 'pnet') {
  if (ratio === null || !Number.isFinite(ratio)) return '';
  const good = better === 'higher' ? ratio : 1 / ratio;
  if (Math.abs(good - 1) < 0.005) return 'same';
  return good >= 1 ? `${subject} ${fmtRatio(good)} better` : `${subject} ${fmtRatio(1 / good)} worse`;
}

const opSign = (op) => (op === '>=' ? '≥' : '≤');

/**
 * A pnet-h2 row's counterparts in its figure: the pnet (QUIC) row measured
 * the same way (same API, 1350-byte datagrams) and Node tls.
 */
function h2Counterparts(cells, h2Cell) {
  return [
    { label: 'pnet QUIC, same API', cell: cells.find((x) => x.cell.system === 'pnet' && x.params.api === h2Cell.params.api && (x.params.datagram ?? 1350) === 1350) },
    { label: 'Node tls', cell: cells.find((x) => x.cell.system === 'node-tls') },
  ].filter((p) => p.cell);
}

const sameWork = (a, b) => a.workload === b.workload;

export function fmtRatio(r) {
  if (r === null || !Number.isFinite(r)) return 'n/a';
  return r >= 100 ? `${r.toFixed(0)}×` : r >= 10 ? `${r.toFixed(1)}×` : `${r.toFixed(2)}×`;
}

export function fmt(value, unit) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  const abs = Math.abs(value);
  const digits = unit === 's' ? (abs < 10 ? 2 : 1) : abs >= 1000 ? 0 : abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Builds the figure entries (one per cell and metric) and the ratios. */
export function buildResults({ figures, cellResults }) {
  const entries = [];
  const ratios = [];
  for (const figure of figures) {
    const cells = cellResults.filter((c) => c.cell.figure === figure.id);
    if (cells.length === 0) continue;
    for (const metric of figure.metrics) {
      const byCell = new Map();
      for (const c of cells) {
        const agg = aggregate(c.runs.map((r) => r.metrics?.[metric.key]));
        const entry = {
          figure: figure.id,
          figureNumber: figure.number,
          name: `${figure.number}. ${figure.title}: ${metric.name}`,
          metric: metric.key,
          system: c.cell.system,
          variant: c.cell.variant,
          primary: Boolean(c.cell.primary),
          workload: c.workload,
          params: c.params,
          scaled: Boolean(c.scaled),
          unit: metric.unit,
          better: metric.better,
          ...agg,
          failedRuns: c.runs.filter((r) => r.error).length,
          errors: c.runs.filter((r) => r.error).map((r) => r.error),
        };
        if (c.cell.primary && figure.target?.metric === metric.key) {
          entry.target = { op: figure.target.op, value: figure.target.value, unit: metric.unit };
          entry.pass = checkTarget(figure.target, agg.median);
        }
        entries.push(entry);
        byCell.set(c, entry);
      }
      const primary = cells.find((c) => c.cell.primary);
      // pnet-h2 (the HTTP/2 transport) against QUIC and Node tls
      for (const c of cells.filter((x) => x.cell.system === 'pnet-h2')) {
        const h2 = byCell.get(c);
        for (const { label, cell } of h2Counterparts(cells, c)) {
          const other = byCell.get(cell);
          const comparable = metric.rate || sameWork(h2, other);
          const ratio = comparable && h2.median !== null && other.median ? h2.median / other.median : null;
          ratios.push({
            figure: figure.id,
            metric: metric.key,
            unit: metric.unit,
            better: metric.better,
            kind: 'h2 vs',
            system: 'pnet-h2',
            pnetVariant: c.cell.variant,
            baseline: cell.cell.system,
            baselineLabel: label,
            baselineVariant: cell.cell.variant,
            ratio,
            reading: ratio === null ? (comparable ? 'no result' : 'not comparable (different workload)') : verdict(ratio, metric.better, 'HTTP/2'),
          });
        }
      }
      if (!primary) continue;
      if (figure.relative) {
        // relayed / direct, per pnet variant (figure 7)
        for (const c of cells) {
          if (c === primary) continue;
          const a = byCell.get(c);
          const d = byCell.get(primary);
          const ratio = a.median !== null && d.median ? a.median / d.median : null;
          const r = {
            figure: figure.id,
            metric: metric.key,
            unit: metric.unit,
            better: metric.better,
            kind: 'relative to direct',
            pnetVariant: c.cell.variant,
            baseline: 'pnet direct',
            baselineVariant: primary.cell.variant,
            ratio,
            reading: ratio === null ? 'no result' : `${fmtRatio(ratio)} of direct`,
          };
          ratios.push(r);
        }
        continue;
      }
      for (const c of cells) {
        if (!BASELINES.includes(c.cell.system)) continue;
        const ratio = ratioOf(figure, metric, byCell.get(primary), byCell.get(c));
        const r = {
          figure: figure.id,
          metric: metric.key,
          unit: metric.unit,
          better: metric.better,
          pnetVariant: primary.cell.variant,
          baseline: c.cell.system,
          baselineVariant: c.cell.variant,
          ratio,
          reading: ratio === null ? 'not comparable (baseline ran a scaled-down workload)' : verdict(ratio, metric.better),
        };
        const t = (figure.baselineTargets ?? []).find((x) => x.baseline === c.cell.system && (x.metric ?? figure.metrics[0].key) === metric.key);
        if (t) {
          r.target = { op: t.op, value: t.value, on: `pnet ★ ÷ ${c.cell.system}` };
          r.pass = ratio === null ? undefined : checkTarget(t, ratio);
        }
        ratios.push(r);
      }
    }
  }
  return { entries, ratios };
}

/**
 * The figure's targets against other stacks (issue 4), as measured:
 * [{ text, pass, ratio, figure }]. Ratios are pnet ★'s median ÷ the baseline's
 * median of the figure's headline metric, in the same run.
 */
export function baselineTargetResults({ figures, entries, ratios }) {
  const out = [];
  for (const figure of figures) {
    for (const t of figure.baselineTargets ?? []) {
      const metricKey = t.metric ?? figure.metrics[0].key;
      const m = figure.metrics.find((x) => x.key === metricKey);
      const r = ratios.find((x) => x.figure === figure.id && x.baseline === t.baseline && x.metric === metricKey && x.target);
      const pnet = entries.find((e) => e.figure === figure.id && e.primary && e.metric === metricKey);
      const base = entries.find((e) => e.figure === figure.id && e.system === t.baseline && e.metric === metricKey);
      const goal = `pnet ${m.name} (figure ${figure.number}) ${opSign(t.op)} ${t.value}× ${systemName(t.baseline)}`;
      let status;
      if (!pnet || !base) status = `no result (${!pnet ? 'pnet ★' : t.baseline} not measured in this run)`;
      else if (r?.ratio == null) status = 'no result (a run failed)';
      else status = `**${r.pass ? 'met' : 'missed'}**: measured ${fmtRatio(r.ratio)} (${fmt(pnet.median, m.unit)} vs ${fmt(base.median, m.unit)} ${m.unit})`;
      out.push({ figure: figure.id, baseline: t.baseline, text: `${goal} — ${status}`, pass: r?.pass, ratio: r?.ratio ?? null });
    }
  }
  return out;
}

/** Markdown section: every pnet-h2 row against pnet QUIC (same API) and Node tls, headline metric (and p50 where there is one). */
function h2Section({ figures, entries, ratios }) {
  const rows = [];
  for (const figure of figures) {
    for (const metric of figure.metrics.filter((m, i) => i === 0 || m.key === 'p50us')) {
      for (const h2 of entries.filter((e) => e.figure === figure.id && e.system === 'pnet-h2' && e.metric === metric.key)) {
        const rs = ratios.filter((r) => r.kind === 'h2 vs' && r.figure === figure.id && r.metric === metric.key && r.pnetVariant === h2.variant);
        const col = (label) => {
          const r = rs.find((x) => x.baselineLabel === label);
          if (!r) return '— | —';
          const e = entries.find((x) => x.figure === figure.id && x.system === r.baseline && x.variant === r.baselineVariant && x.metric === metric.key);
          return `${fmt(e?.median, metric.unit)} | ${r.ratio === null ? 'n/a' : `${fmtRatio(r.ratio)} (${verdict(r.ratio, metric.better, 'HTTP/2').replace(/^HTTP\/2 /, '')})`}`;
        };
        const value = h2.median === null ? 'failed' : `${fmt(h2.median, metric.unit)} [${fmt(h2.min, metric.unit)}–${fmt(h2.max, metric.unit)}]`;
        rows.push(`| ${figure.number}. ${figure.title} | ${h2.variant} | ${metric.name} (${metric.unit}) | ${value} | ${col('pnet QUIC, same API')} | ${col('Node tls')} |`);
      }
    }
  }
  if (rows.length === 0) return [];
  return [
    '## pnet over HTTP/2 (pnet-h2) against pnet over QUIC and Node tls',
    '',
    'pnet-h2 is pnet with nodes made with `quic: false` (HTTP/2 over TLS 1.3 on TCP, Node\'s http2); pnet\'s QUIC rows use `h2: false`. Each pnet-h2 row is compared with the pnet QUIC row measured the same way (same API and workload) and with Node tls: one TLS 1.3 socket for figures 1, 2, 5 and 6, HTTP/2 over TLS (node:http2, no pnet) for figures 3 and 4. Ratio = pnet-h2 median ÷ that row\'s median, read in the metric\'s direction.',
    '',
    '| Figure | pnet-h2 row | Metric | pnet-h2 median [min–max] | pnet QUIC, same API | h2 ÷ QUIC | Node tls | h2 ÷ tls |',
    '|---|---|---|---:|---:|---|---:|---|',
    ...rows,
    '',
  ];
}

export function renderMarkdown({ figures, entries, ratios, machine, mode, notes, durationS, extras = [] }) {
  const lines = [];
  lines.push(`# pnet benchmark results (${mode} run)`);
  lines.push('');
  lines.push(`${machine.date} · ${machine.cpuModel} · ${machine.cores} cores · Node ${machine.nodeVersion} · ${machine.platform} · ${machine.baselineVersions ? Object.entries(machine.baselineVersions).map(([p, v]) => `${p} ${v ?? '?'}`).join(', ') : `@matrixai/quic ${machine.matrixaiQuicVersion ?? '?'}`} · run took ${durationS.toFixed(0)} s`);
  lines.push('');
  lines.push('Loopback (127.0.0.1); server and client in separate child processes; each figure is the median of its runs (min–max in brackets). ');
  lines.push('"pnet/this" is the pnet primary row\'s median divided by that row\'s median, for the headline metric; the last column reads it in the right direction (higher is better for rates, lower for times).');
  lines.push('');
  const targets = baselineTargetResults({ figures, entries, ratios });
  if (targets.length) {
    lines.push('## Targets against other stacks (issue 4)');
    lines.push('');
    lines.push('Measured in this run, as ratios of medians (pnet ★ ÷ the other stack, headline metric).' + (mode === 'quick' ? ' Quick mode: indicative only.' : ''));
    lines.push('');
    for (const t of targets) lines.push(`- ${t.text}`);
    lines.push('');
  }
  for (const figure of figures) {
    const figEntries = entries.filter((e) => e.figure === figure.id);
    if (figEntries.length === 0) continue;
    const head = figure.metrics[0];
    lines.push(`## ${figure.number}. ${figure.title}`);
    lines.push('');
    if (figure.target) {
      const t = figEntries.find((e) => e.target);
      const m = figure.metrics.find((x) => x.key === figure.target.metric);
      lines.push(`Target for pnet: ${m.name} ${figure.target.op === '>=' ? '≥' : '≤'} ${fmt(figure.target.value, m.unit)} ${m.unit} — **${t?.pass === undefined ? 'no result' : t.pass ? 'PASS' : 'FAIL'}**`);
      lines.push('');
    }
    for (const t of targets.filter((x) => x.figure === figure.id)) {
      lines.push(`Target: ${t.text}`);
      lines.push('');
    }
    const cols = ['System', 'Variant', 'Workload', 'Runs', ...figure.metrics.map((m) => `${m.name} (${m.unit})`), figure.relative ? `this/direct (${head.name})` : `pnet/this (${head.name})`, 'Reading'];
    lines.push(`| ${cols.join(' | ')} |`);
    lines.push(`|${cols.map((_, i) => (i >= 3 && i < cols.length - 1 ? '---:' : '---')).join('|')}|`);
    const cellKeys = [...new Set(figEntries.map((e) => `${e.system}\u0000${e.variant}`))];
    const primaryHead = figEntries.find((e) => e.primary && e.metric === head.key);
    for (const key of cellKeys) {
      const [system, variant] = key.split('\u0000');
      const row = figEntries.filter((e) => e.system === system && e.variant === variant);
      const headEntry = row.find((e) => e.metric === head.key);
      const cells = figure.metrics.map((m) => {
        const e = row.find((x) => x.metric === m.key);
        if (!e || e.median === null) return 'failed';
        return `${fmt(e.median, m.unit)} [${fmt(e.min, m.unit)}–${fmt(e.max, m.unit)}]`;
      });
      let ratioCell = '';
      let reading = '';
      if (headEntry.primary) {
        ratioCell = '—';
        reading = 'primary pnet row';
      } else if (figure.relative && primaryHead) {
        const r = headEntry.median !== null && primaryHead.median ? headEntry.median / primaryHead.median : null;
        ratioCell = fmtRatio(r);
        reading = r === null ? 'no result' : `${fmtRatio(r)} of direct`;
      } else if (primaryHead) {
        const r = ratioOf(figure, head, primaryHead, headEntry);
        ratioCell = fmtRatio(r);
        if (isPnet(headEntry.system)) {
          const kind = headEntry.system === 'pnet-h2' ? 'pnet over HTTP/2' : 'pnet variant';
          reading = r === null ? kind : `${kind} (★ is ${verdict(r, head.better).replace(/^pnet /, '')})`;
        }
        else reading = r === null ? 'scaled workload, not comparable' : verdict(r, head.better);
      }
      const label = `${system}${headEntry.primary ? ' ★' : ''}`;
      const workload = `${headEntry.workload}${headEntry.scaled ? ' (scaled down)' : ''}`;
      const runs = `${headEntry.runs}${headEntry.failedRuns ? ` (+${headEntry.failedRuns} failed)` : ''}`;
      lines.push(`| ${[label, variant, workload, runs, ...cells, ratioCell, reading].join(' | ')} |`);
    }
    const figRatios = ratios.filter((r) => r.figure === figure.id && r.kind !== 'h2 vs' && r.metric !== head.key && r.ratio !== null);
    if (figRatios.length) {
      lines.push('');
      lines.push(
        (figure.relative ? 'Other ratios (relayed / direct): ' + figRatios.map((r) => `${r.metric} ${r.pnetVariant} ${fmtRatio(r.ratio)}`).join('; ') + '.' : '') ||
        'Other ratios (pnet ★ / baseline): ' +
          figRatios.map((r) => `${r.metric} vs ${r.baseline} ${fmtRatio(r.ratio)} (${r.reading})`).join('; ') +
          '.',
      );
    }
    lines.push('');
  }
  lines.push(...h2Section({ figures, entries, ratios }));
  for (const section of extraSections(extras)) lines.push(...section);
  if (notes.length) {
    lines.push('## Notes');
    lines.push('');
    for (const note of notes) lines.push(`- ${note}`);
    lines.push('');
  }
  return lines.join('\n');
}

export function renderConsole({ figures, entries }) {
  const out = [];
  for (const figure of figures) {
    const figEntries = entries.filter((e) => e.figure === figure.id);
    if (figEntries.length === 0) continue;
    const head = figure.metrics[0];
    out.push(`${figure.number}. ${figure.title}`);
    const heads = figEntries.filter((e) => e.metric === head.key);
    const primary = heads.find((e) => e.primary);
    for (const e of heads) {
      const value = e.median === null ? 'FAILED' : `${fmt(e.median, e.unit)} ${e.unit}`;
      let tail = '';
      if (e.target) {
        tail = `  target ${e.target.op === '>=' ? '≥' : '≤'} ${e.target.value} → ${e.pass === undefined ? 'no result' : e.pass ? 'PASS' : 'FAIL'}`;
      } else if (primary && !e.primary && !isPnet(e.system)) {
        const r = ratioOf(figure, head, primary, e);
        tail = r === null ? '  (scaled workload)' : `  pnet/this ${fmtRatio(r)} (${verdict(r, head.better)})`;
      }
      const extras = figEntries
        .filter((x) => x.system === e.system && x.variant === e.variant && x.metric !== head.key && x.median !== null)
        .map((x) => `${x.metric}=${fmt(x.median, x.unit)}`)
        .join(' ');
      out.push(`   ${(e.system + (e.primary ? ' ★' : '')).padEnd(15)} ${value.padStart(16)}  ${e.variant}${e.scaled ? ' [' + e.workload + ']' : ''}${tail}${extras ? `\n${' '.repeat(36)}${extras}` : ''}`);
    }
  }
  return out.join('\n');
}

// ---- Figures measured outside the server/client worker pair (convergence,
// routing table, micro-benchmarks) and figures reported as "not built". They
// use the same entry shape as the worker figures.

/** An entry from a list of per-run samples. */
export function extraEntry({ figure, figureNumber, title, metric, name, system = 'pnet', variant, workload, unit, better, samples, primary = false, target, notes }) {
  const agg = aggregate(samples);
  const entry = {
    figure,
    figureNumber,
    name: `${figureNumber}. ${title}: ${name}`,
    title,
    metric,
    system,
    variant,
    primary,
    workload,
    params: {},
    scaled: false,
    unit,
    better,
    ...agg,
    failedRuns: 0,
    errors: [],
    status: agg.median === null ? 'failed' : 'measured',
  };
  if (notes) entry.notes = notes;
  if (target) {
    entry.target = target;
    entry.pass = checkTarget(target, target.on === 'ratio' ? target.ratio : agg.median);
  }
  return entry;
}

/** A figure (or a system's cells of a figure) that is not measured, with the reason. */
export function notBuilt({ figure, figureNumber, title, system = 'pnet', variant = '—', reason }) {
  return {
    figure,
    figureNumber,
    name: `${figureNumber}. ${title}`,
    title,
    metric: null,
    system,
    variant,
    primary: false,
    workload: null,
    params: {},
    scaled: false,
    unit: null,
    better: null,
    median: null,
    min: null,
    max: null,
    runs: 0,
    samples: [],
    failedRuns: 0,
    errors: [],
    status: 'not built',
    reason,
  };
}

function extraSections(extras) {
  const out = [];
  const ids = [...new Set(extras.map((e) => e.figure))];
  for (const id of ids) {
    const rows = extras.filter((e) => e.figure === id);
    out.push([`## ${rows[0].figureNumber}. ${rows[0].title}`, '']);
    const lines = out[out.length - 1];
    for (const e of rows.filter((x) => x.target)) {
      const t = e.target;
      const shown = t.on === 'ratio' ? `${t.ratioName} ${t.op === '>=' ? '≥' : '≤'} ${t.value}× (measured ${fmtRatio(t.ratio)})` : `${e.metric} ${t.op === '>=' ? '≥' : '≤'} ${t.value} ${e.unit}`;
      lines.push(`Target: ${shown} — **${e.pass === undefined ? 'no result' : e.pass ? 'PASS' : 'FAIL'}**`, '');
    }
    lines.push('| System | Variant | Workload | Measure | Median [min–max] | Runs |', '|---|---|---|---|---:|---:|');
    for (const e of rows) {
      if (e.status === 'not built') {
        lines.push(`| ${e.system} | ${e.variant} | — | — | **not built**: ${e.reason} | 0 |`);
        continue;
      }
      const value = e.median === null ? 'failed' : `${fmt(e.median, e.unit)} [${fmt(e.min, e.unit)}–${fmt(e.max, e.unit)}] ${e.unit}`;
      lines.push(`| ${e.system} | ${e.variant} | ${e.workload ?? ''} | ${e.name.split(': ').slice(1).join(': ')} | ${value} | ${e.runs} |`);
    }
    const withNotes = rows.filter((e) => e.notes);
    if (withNotes.length) lines.push('', ...withNotes.map((e) => `- ${e.notes}`));
    lines.push('');
  }
  return out;
}

export function renderExtrasConsole(extras) {
  const out = [];
  for (const e of extras) {
    if (e.status === 'not built') out.push(`   ${e.figureNumber}. ${e.title} [${e.system}]: not built (${e.reason})`);
    else out.push(`   ${e.name} [${e.system}, ${e.variant}]: ${e.median === null ? 'FAILED' : `${fmt(e.median, e.unit)} ${e.unit}`}${e.target ? ` → ${e.pass ? 'PASS' : 'FAIL'}` : ''}`);
  }
  return out.join('\n');
}
