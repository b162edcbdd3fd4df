import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** The package version (src/cli and dist/cli both sit two levels below package.json). */
export function readVersion(): string {
  if (cached === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
      cached = typeof pkg.version === 'string' ? pkg.version : '0.0.0';
    } catch {
      cached = '0.0.0';
    }
  }
  return cached;
}
