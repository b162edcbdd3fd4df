import t from 'tap';
import { readFileSync } from 'node:fs';

// The README's error table is the public list of codes; src/errors.ts is where they are defined.
const ROOT = new URL('..', import.meta.url).pathname;

t.test("every code of src/errors.ts has a row in README.md's error table, and the table names no other", async (t) => {
  const source = readFileSync(`${ROOT}src/errors.ts`, 'utf8');
  const union = source.slice(source.indexOf('export type PnetErrorCode'), source.indexOf(';', source.indexOf('export type PnetErrorCode')));
  const codes = [...union.matchAll(/\|\s*'([A-Z_]+)'/g)].map((m) => m[1]!);
  t.ok(codes.length >= 30, `${codes.length} codes in src/errors.ts`);
  const readme = readFileSync(`${ROOT}README.md`, 'utf8');
  const section = readme.slice(readme.indexOf('## Error codes'), readme.indexOf('\n## ', readme.indexOf('## Error codes') + 1));
  const rows = [...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]!);
  t.same(codes.filter((code) => !rows.includes(code)), [], 'no code missing from the table');
  t.same(rows.filter((code) => !codes.includes(code)), [], 'no row for a code that does not exist');
});
