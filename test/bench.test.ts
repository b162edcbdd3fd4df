// Smoke check of the benchmark harness (not a benchmark): one tiny filtered
// run, then the shape of its JSON. Needs a built dist/ (npm run build).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');

t.test('bench harness: quick smoke run writes well-formed JSON', { skip: !existsSync(join(root, 'dist', 'index.js')) && 'dist/ not built', timeout: 120_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'pnet-bench-smoke-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  execFileSync(process.execPath, [join(root, 'bench', 'quic.mjs'), '--quick', '--only=echo,fanout', '--systems=pnet,pnet-h2,libp2p-tcp', '--runs=1', `--out=${out}`], {
    cwd: root,
    stdio: 'ignore',
    timeout: 100_000,
  });
  const json = JSON.parse(readFileSync(join(out, 'partial.json.tmp'), 'utf8')) as Record<string, any>;
  t.equal(json.mode, 'quick');
  for (const key of ['cpuModel', 'cores', 'nodeVersion', 'date']) t.ok(json.machine[key] !== undefined, `machine.${key}`);
  t.ok(Array.isArray(json.figures) && json.figures.length > 0, 'figures');
  const echo = json.figures.filter((f: any) => f.figure === 'echo');
  t.ok(echo.length > 0, 'echo figure present');
  t.same([...new Set(echo.map((f: any) => f.system))].sort(), ['libp2p-tcp', 'pnet', 'pnet-h2'], 'echo rows of pnet, pnet-h2 and js-libp2p TCP');
  for (const f of echo) {
    for (const key of ['median', 'min', 'max', 'runs', 'unit', 'samples']) t.ok(key in f, `${f.metric}.${key}`);
    t.equal(f.runs, 1);
    t.ok(f.min <= f.median && f.median <= f.max, `${f.metric} min ≤ median ≤ max`);
  }
  // issue 4's target against js-libp2p TCP, and pnet-h2 against QUIC driven the same way
  const target = json.ratios.find((r: any) => r.figure === 'echo' && r.baseline === 'libp2p-tcp' && r.metric === 'rtps');
  t.ok(target?.target && typeof target.pass === 'boolean' && target.ratio > 0, 'echo target against libp2p-tcp with its ratio');
  const h2 = json.ratios.find((r: any) => r.kind === 'h2 vs' && r.figure === 'echo' && r.metric === 'rtps' && r.baselineLabel === 'pnet QUIC, same API');
  t.ok(h2?.ratio > 0, 'pnet-h2 / QUIC ratio');
  const md = readFileSync(join(out, 'partial.md.tmp'), 'utf8');
  t.match(md, /round trips \(figure 2\) ≥ 1× js-libp2p TCP\+noise\+yamux — \*\*(met|missed)\*\*: measured/, 'markdown says met or missed with the ratio');
  t.match(md, /## pnet over HTTP\/2 \(pnet-h2\)/, 'markdown has the HTTP/2 section');
  const fanout = json.figures.find((f: any) => f.figure === 'fanout');
  t.equal(fanout?.status, 'measured', 'fan-out (figure 8) is measured');
  t.ok(fanout?.median > 0, `all replies from 100 nodes in ${fanout?.median} ms`);
  t.match(fanout?.variant, /^100 nodes/);
  t.ok(readFileSync(join(out, 'partial.svg.tmp'), 'utf8').startsWith('<svg'), 'svg chart written');
});
