/**
 * `pnet node --huge-pages` (or PNET_HUGE_PAGES=1) puts glibc's malloc on transparent huge pages:
 * at the start of the pnet executable it re-executes itself (execve(2) from the UDP addon: same
 * pid, same argv) with GLIBC_TUNABLES=glibc.malloc.hugetlb=1, which glibc reads only at a
 * process's start. A hub's first fan-out after a join then takes 2-7× fewer page faults
 * (docs/CLI.md, "The daemon"). `planHugePages` decides (no IO); `hugePagesAtStart` is its glue.
 */
import { readFileSync } from 'node:fs';
import { loadNativeAddon } from '../native-addons.js';

/** The tunable set, as GLIBC_TUNABLES holds it. */
export const HUGE_PAGES_TUNABLE = 'glibc.malloc.hugetlb=1';
/** Set beside GLIBC_TUNABLES for the re-executed image: it knows it is one, so it never re-executes again. */
export const REEXEC_MARKER = 'PNET_HUGE_PAGES_EXEC';
const THP_FILE = '/sys/kernel/mm/transparent_hugepage/enabled';
/** GLIBC_TUNABLES that puts malloc on huge pages (1: transparent, 2: hugetlbfs). */
const HUGETLB_ON = /(^|:)glibc\.malloc\.hugetlb=[12]($|:)/;
/** glibc.malloc.hugetlb exists from glibc 2.35. */
const MIN_GLIBC: readonly [number, number] = [2, 35];

/** Whether malloc runs on huge pages in this process, and why (the daemon logs it at start). */
export interface HugePagesState {
  readonly enabled: boolean;
  readonly reason: string;
}

/** What the decision reads; the glue gathers it. */
export interface HugePagesFacts {
  readonly platform: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The CLI's arguments after the command name. */
  readonly args: readonly string[];
  /** This process has an IPC channel to its parent (forked): execve would lose it. */
  readonly forked: boolean;
  /** The contents of THP_FILE ("always [madvise] never"), undefined when it cannot be read. */
  readonly thp: string | undefined;
  /** glibc's version at run time; null: not glibc; undefined: unknown (no addon with execve). */
  readonly glibcVersion: string | null | undefined;
}

export type HugePagesPlan = { readonly exec: true } | { readonly exec: false; readonly state: HugePagesState };

/** The reason given when nothing asked for it. */
export const OFF_BY_DEFAULT = 'off by default (--huge-pages or PNET_HUGE_PAGES=1 turns it on)';

const off = (reason: string): HugePagesPlan => ({ exec: false, state: { enabled: false, reason } });

/** The decision: re-execute with the tunable, or run as is (and why). */
export function planHugePages(facts: HugePagesFacts): HugePagesPlan {
  const { env } = facts;
  if (env[REEXEC_MARKER] === '1') return { exec: false, state: { enabled: true, reason: `re-executed at start with GLIBC_TUNABLES=${HUGE_PAGES_TUNABLE}` } };
  const tunables = env['GLIBC_TUNABLES'];
  if (tunables !== undefined) {
    // The operator's own setting wins, whatever it holds.
    return { exec: false, state: { enabled: HUGETLB_ON.test(tunables), reason: 'GLIBC_TUNABLES set at start: left as is' } };
  }
  // Opt-in: on a hub it took page faults 2-7x down but not the first exec's time, for ~30 MiB more RSS (docs/CLI.md).
  if (!facts.args.includes('--huge-pages') && env['PNET_HUGE_PAGES'] !== '1') return off(OFF_BY_DEFAULT);
  if (facts.platform !== 'linux') return off(`not Linux (${facts.platform})`);
  if (facts.forked) return off('started with an IPC channel (forked), which execve would lose');
  const mode = facts.thp === undefined ? undefined : /\[(\w+)\]/.exec(facts.thp)?.[1];
  if (mode !== 'always' && mode !== 'madvise') return off(`transparent huge pages ${mode === undefined ? 'unavailable' : `are "${mode}"`}`);
  if (facts.glibcVersion === undefined) return off('the native UDP addon (with execve) is not available');
  if (facts.glibcVersion === null) return off('the C library is not glibc');
  const [major = 0, minor = 0] = facts.glibcVersion.split('.').map(Number);
  if (major < MIN_GLIBC[0] || (major === MIN_GLIBC[0] && minor < MIN_GLIBC[1])) return off(`glibc ${facts.glibcVersion} (glibc.malloc.hugetlb needs ${MIN_GLIBC.join('.')})`);
  return { exec: true };
}

interface ProcessAddon {
  readonly execve?: (path: string, argv: string[], env: string[]) => string;
  readonly glibcVersion?: string | null;
}

function processAddon(): ProcessAddon | undefined {
  try {
    const addon = loadNativeAddon('pnet_udp') as ProcessAddon;
    return typeof addon.execve === 'function' ? addon : undefined;
  } catch {
    return undefined;
  }
}

function readThp(): string | undefined {
  try {
    return readFileSync(THP_FILE, 'utf8');
  } catch {
    return undefined;
  }
}

/** The facts of this process, for `args` (the arguments after `node`). */
export function hugePagesFactsHere(args: readonly string[], addon: ProcessAddon | undefined = processAddon()): HugePagesFacts {
  const glibcVersion = addon === undefined ? undefined : addon.glibcVersion ?? null;
  return { platform: process.platform, env: process.env, args, forked: process.send !== undefined, thp: readThp(), glibcVersion };
}

let decided: HugePagesState | undefined;

/**
 * At the start of `pnet node`, before stdio is touched (a re-executed image must find the file
 * descriptors as the first one did): re-executes this process with the tunable when the plan
 * says so, and does not return then. Otherwise returns the state; an execve that failed is
 * reported in it and the process runs on as it is.
 */
export function hugePagesAtStart(args: readonly string[]): HugePagesState {
  const addon = processAddon();
  const plan = planHugePages(hugePagesFactsHere(args, addon));
  if (process.env[REEXEC_MARKER] === '1') {
    // glibc has read it; the daemon's children (spawn helper, commands) start without it.
    delete process.env[REEXEC_MARKER];
    delete process.env['GLIBC_TUNABLES'];
  }
  if (!plan.exec) return (decided = plan.state);
  const env = Object.entries({ ...process.env, GLIBC_TUNABLES: HUGE_PAGES_TUNABLE, [REEXEC_MARKER]: '1' }).map(([key, value]) => `${key}=${value ?? ''}`);
  const failure = addon!.execve!(process.execPath, [process.argv0, ...process.execArgv, ...process.argv.slice(1)], env);
  return (decided = { enabled: false, reason: `${failure}: running without` });
}

/** This process's state: as decided at start, or (`pnet node` not started by the pnet executable) read from its environment. */
export function hugePagesState(): HugePagesState {
  if (decided !== undefined) return decided;
  const tunables = process.env['GLIBC_TUNABLES'];
  const enabled = tunables !== undefined && HUGETLB_ON.test(tunables);
  return { enabled, reason: 'not started by the pnet executable: no re-execution' };
}
