// Smoke check of the benchmark harness (not a benchmark): one tiny filtered
// run, then the shape of its JSON. Needs a built dist/ (npm run build).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');

t.test('bench harness: quick smoke run writes well-formed JSON', { skip: !existsSync(join(root, 'dist', 'index.js')) && 'dist/ not built', timeout: 60_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'pnet-bench-smoke-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  execFileSync(process.execPath, [join(root, 'bench', 'quic.mjs'), '--quick', '--only=echo,fanout', '--systems=pnet', '--runs=1', `--out=${out}`], {
    cwd: root,
    stdio: 'ignore',
    timeout: 45_000,
  });
  const json = JSON.parse(readFileSync(join(out, 'partial.json.tmp'), 'utf8')) as Record<string, any>;
  t.equal(json.mode, 'quick');
  for (const key of ['cpuModel', 'cores', 'nodeVersion', 'date']) t.ok(json.machine[key] !== undefined, `machine.${key}`);
  t.ok(Array.isArray(json.figures) && json.figures.length > 0, 'figures');
  const echo = json.figures.filter((f: any) => f.figure === 'echo');
  t.ok(echo.length > 0, 'echo figure present');
  for (const f of echo) {
    t.equal(f.system, 'pnet');
    for (const key of ['median', 'min', 'max', 'runs', 'unit', 'samples']) t.ok(key in f, `${f.metric}.${key}`);
    t.equal(f.runs, 1);
    t.ok(f.min <= f.median && f.median <= f.max, `${f.metric} min ≤ median ≤ max`);
  }
  const fanout = json.figures.find((f: any) => f.figure === 'fanout');
  t.equal(fanout?.status, 'not built', 'fan-out is reported as not built');
  t.equal(fanout?.median, null);
  t.ok(existsSync(join(out, 'partial.md.tmp')), 'markdown written');
  t.ok(readFileSync(join(out, 'partial.svg.tmp'), 'utf8').startsWith('<svg'), 'svg chart written');
});
