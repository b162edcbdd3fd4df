// SVG chart of the main ratios, rendered server-side with Vega-Lite → Vega
// (View.toSVG needs no canvas). One bar per (figure, baseline): how many
// times better pnet is, in the figure's own direction (log scale; 1 = same).
// Relay rows (figure 7) show relayed / direct instead.
import * as vega from 'vega';
import * as vl from 'vega-lite';

const HEADLINE = new Set(['mibps', 'rtps', 'opsps', 'totalMs', 'connps', 'kibPerConn']);

export function chartSpec(results) {
  const values = [];
  for (const r of results.ratios ?? []) {
    if (r.ratio === null || !Number.isFinite(r.ratio) || r.ratio <= 0 || !HEADLINE.has(r.metric)) continue;
    if (r.kind === 'h2 vs') continue; // pnet-h2 against QUIC / tls: a table in latest.md, not a bar here
    const relative = r.kind === 'relative to direct';
    if (relative && r.metric !== 'mibps' && r.metric !== 'rtps') continue;
    const factor = r.better === 'higher' ? r.ratio : 1 / r.ratio;
    values.push({
      row: relative ? `${r.figure} ${r.metric}: ${r.pnetVariant}` : `${r.figure} ${r.metric}`,
      against: relative ? 'pnet direct' : r.baseline,
      factor,
    });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `pnet vs baselines (${results.mode} run, ${results.machine?.date?.slice(0, 10) ?? ''})`, subtitle: '× better for pnet in each figure\'s direction (log scale; 1 = same); relay rows: relayed ÷ direct' },
    width: 520,
    data: { values },
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          y: { field: 'row', type: 'nominal', title: null, sort: null },
          yOffset: { field: 'against' },
          x: { field: 'factor', type: 'quantitative', scale: { type: 'log' }, title: 'factor (pnet better → right)' },
          color: { field: 'against', type: 'nominal', title: 'compared with' },
          tooltip: [{ field: 'row' }, { field: 'against' }, { field: 'factor', format: '.2f' }],
        },
      },
      { mark: { type: 'rule', color: 'black' }, encoding: { x: { datum: 1 } } },
    ],
  };
}

/** The SVG text of the chart for a results object (as written to latest.json). */
export async function renderChart(results) {
  const spec = vl.compile(chartSpec(results)).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}
