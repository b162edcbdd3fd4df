// `npm pack` (prepack): removes dist/ files whose source in src/ is gone, so the tarball carries no
// stale module; tsc (prepare, right after) rewrites the rest. Never the whole of dist/: other
// processes in this tree may be running from it.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
/** dist/a/b.js, .d.ts, .js.map, .d.ts.map -> src/a/b.ts */
const sourceOf = (file) => join(root, 'src', relative(dist, file).replace(/(\.d)?\.(js|ts)(\.map)?$/, '.ts'));

function walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path);
    else if (!existsSync(sourceOf(path))) {
      rmSync(path);
      process.stdout.write(`prune-dist: removed ${relative(root, path)} (no ${relative(root, sourceOf(path))})\n`);
    }
  }
}

if (existsSync(dist)) walk(dist);
