/**
 * Defaults every command reads before it knows whether it needs the library: the daemon's port
 * and where keys live. No import of pnet, so `pnet --help`, `keygen`'s option parsing and the
 * like load nothing heavy (config.ts re-exports these).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_PORT = 7300;

/** ~/.pnet/<name>: where keys live when no path is given. */
export function defaultKeyFile(name: string): string {
  return join(homedir(), '.pnet', name);
}

export function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}
