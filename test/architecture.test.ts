// The layer rules of docs/ARCHITECTURE.md, checked on the source: each layer imports only layers
// below it, another folder only through its index.ts, and no file imports itself back (type-only
// imports included).
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');
/** Bottom to top; a folder may import the ones before it. Files at src/ root are listed by name. */
const LAYERS = ['errors.ts', 'options.ts', 'shares.ts', 'timers.ts', 'native-addons.ts', 'identity', 'transport', 'channel', 'routing', 'relay', 'node', 'index.ts', 'cli', 'demo.ts'];
// index.ts is the package's public door; the CLI and the demo are clients of it.

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const match of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g)) {
    const spec = match[1] ?? match[2]!;
    found.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
  }
  return found;
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((file) => [file, importsOf(file)]));
const layerOf = (file: string): string => relative(SRC, file).split('/')[0]!;
const rank = (file: string): number => LAYERS.indexOf(layerOf(file));

t.test('every source file belongs to a layer', async (t) => {
  t.same(files.filter((file) => rank(file) < 0).map((file) => relative(SRC, file)), [], 'no file outside the layers');
});

t.test('a layer imports only itself and the layers below it', async (t) => {
  const wrong: string[] = [];
  for (const [file, imports] of graph) {
    for (const target of imports) {
      if (rank(target) > rank(file)) wrong.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
    }
  }
  t.same(wrong, [], 'no upward imports');
});

t.test("another folder is entered only through its index.ts", async (t) => {
  // A folder with an index.ts (a layer, or a part of one such as routing/table) is a room: from
  // outside it, only its door (index.ts; testing.ts for test-only entries) may be imported. errors.ts and options.ts at src/ are every layer's floor.
  const roomOf = (file: string): string | undefined => {
    for (let dir = dirname(file); dir.startsWith(SRC) && dir !== SRC; dir = dirname(dir)) {
      if (files.includes(join(dir, 'index.ts'))) return dir;
    }
    return undefined;
  };
  const wrong: string[] = [];
  for (const [file, imports] of graph) {
    for (const target of imports) {
      const room = roomOf(target);
      if (room === undefined || target === join(room, 'index.ts') || `${dirname(file)}/`.startsWith(`${room}/`)) continue;
      // A layer's testing.ts is its second door, for tests and benchmarks only (e.g. the routing simulation).
      if (file.endsWith('/testing.ts') && layerOf(file) === layerOf(target)) continue;
      wrong.push(`${relative(SRC, file)} -> ${relative(SRC, target)}`);
    }
  }
  t.same(wrong, [], 'no reach into another folder past its index.ts');
});

t.test('no import cycle between files (type-only imports included)', async (t) => {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]): void => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'open') {
      cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(SRC, f)).join(' -> '));
      return;
    }
    state.set(file, 'open');
    for (const next of graph.get(file) ?? []) visit(next, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of files) visit(file, []);
  t.same(cycles, [], 'no cycles');
});

t.test('a test that runs sources through tsx in a child process keeps that child out of coverage (childEnv)', async (t) => {
  // tsx transpiles a file differently from tap's loader: one such child's V8 ranges merged with
  // the rest garble that file's report (CI at b7a3854 read 77 % of statements instead of 92 %).
  const testDir = resolve(SRC, '../test');
  const offenders = readdirSync(testDir)
    .filter((file) => file.endsWith('.test.ts'))
    .filter((file) => {
      const text = readFileSync(join(testDir, file), 'utf8');
      return /['"]--import['"],\s*['"]tsx['"]|--import[= ]tsx/.test(text) && !text.includes('childEnv(');
    });
  t.same(offenders, [], 'every such test passes childEnv() to its children');
});
