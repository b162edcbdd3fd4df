// `pnet node` re-executes itself with glibc's malloc on transparent huge pages (src/cli/huge-pages.ts):
// the decision on every branch, then real daemons: the tunable in the process's start environment
// and in its heap's mappings, the same pid (signals still stop it), stdio kept, children without
// it, and that it is off unless asked for.
import t from 'tap';
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HUGE_PAGES_TUNABLE, OFF_BY_DEFAULT, REEXEC_MARKER, hugePagesFactsHere, planHugePages } from '../src/cli/huge-pages.js';
import type { HugePagesFacts } from '../src/cli/huge-pages.js';
import { childEnv } from './fixtures/child-env.js';

t.setTimeout(240_000);

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = new URL('../src/cli/main.ts', import.meta.url).pathname;

const FACTS: HugePagesFacts = { platform: 'linux', env: {}, args: ['--huge-pages'], forked: false, thp: 'always [madvise] never\n', glibcVersion: '2.36' };
const plan = (change: Partial<HugePagesFacts>) => planHugePages({ ...FACTS, ...change });

t.test('the decision', async (t) => {
  t.same(plan({}), { exec: true }, 'Linux, THP madvise, glibc 2.36, --huge-pages: re-execute');
  t.same(plan({ args: [], env: { PNET_HUGE_PAGES: '1' } }), { exec: true }, 'PNET_HUGE_PAGES=1 turns it on too');
  t.same(plan({ thp: '[always] madvise never' }), { exec: true }, 'THP always');
  t.same(plan({ glibcVersion: '2.35' }), { exec: true }, 'glibc 2.35');
  t.same(plan({ glibcVersion: '3.0' }), { exec: true }, 'a later major version');
  const off = (change: Partial<HugePagesFacts>, reason: RegExp, what: string): void => {
    const p = plan(change);
    t.equal(p.exec, false, what);
    if (!p.exec) t.match(p.state, { enabled: false, reason }, what);
  };
  off({ args: ['--listen', '127.0.0.1:0'] }, /off by default/, 'off unless asked for');
  off({ args: [], env: { PNET_HUGE_PAGES: '0' } }, /off by default/, 'PNET_HUGE_PAGES=0 is off');
  off({ platform: 'darwin' }, /not Linux/, 'not Linux');
  off({ forked: true }, /IPC channel/, 'a forked process keeps its IPC channel');
  off({ thp: 'always madvise [never]' }, /"never"/, 'THP never');
  off({ thp: undefined }, /unavailable/, 'no THP file');
  off({ glibcVersion: '2.34' }, /glibc 2\.34/, 'glibc before 2.35');
  off({ glibcVersion: '1.99' }, /glibc 1\.99/, 'an older major version');
  off({ glibcVersion: null }, /not glibc/, 'musl');
  off({ glibcVersion: undefined }, /addon/, 'no addon with execve');
  t.match(plan({ env: { [REEXEC_MARKER]: '1', GLIBC_TUNABLES: HUGE_PAGES_TUNABLE } }), { exec: false, state: { enabled: true, reason: /re-executed/ } }, 'the re-executed image does not re-execute again');
  t.match(plan({ env: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' } }), { exec: false, state: { enabled: false, reason: /left as is/ } }, "the operator's own GLIBC_TUNABLES wins (off)");
  t.match(plan({ env: { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1' } }), { exec: false, state: { enabled: true } }, "the operator's own GLIBC_TUNABLES wins (on)");
  t.match(plan({ args: [], env: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' } }), { exec: false, state: { enabled: true } }, 'an explicit GLIBC_TUNABLES counts without the flag');
});

type LogLine = Record<string, unknown> & { event?: string };
interface Daemon {
  readonly child: ChildProcess;
  readonly started: LogLine;
  readonly lines: LogLine[];
  readonly exited: Promise<number | null>;
}

/** `pnet node ARGS` from the sources (bounded: killed at the end of the test), until its `started` line. */
async function startNode(t: Test, dir: string, args: string[], env: Record<string, string> = {}): Promise<Daemon> {
  const base = childEnv(env);
  for (const key of Object.keys(base)) if ((key.startsWith('PNET_') || key === 'GLIBC_TUNABLES') && !(key in env)) delete base[key];
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'node', '--key', join(dir, 'node.key'), '--listen', '127.0.0.1:0', '--allow', 'true', ...args], { cwd: ROOT, env: base, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
  const lines: LogLine[] = [];
  let stderr = '';
  let partial = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const started = await new Promise<LogLine>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no started line in 60 s: ${stderr}`)), 60_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop()!;
      for (const part of parts) lines.push(JSON.parse(part) as LogLine);
      const found = lines.find((line) => line.event === 'started');
      if (found !== undefined) (clearTimeout(timer), resolve(found));
    });
    void exited.then((code) => reject(new Error(`exited ${code} before starting: ${stderr}`)));
  });
  return { child, started, lines, exited };
}

/** The process's start environment (what glibc read), as /proc shows it. */
async function startEnv(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
}

/** Mappings madvise(MADV_HUGEPAGE)d: glibc's malloc does it to its heap with the tunable. */
async function hugePageMappings(pid: number): Promise<number> {
  return ((await readFile(`/proc/${pid}/smaps`, 'utf8')).match(/^VmFlags:.* hg\b/gm) ?? []).length;
}

/** The daemon's spawn helper: its child running spawn-helper-child (tsx may run an esbuild child beside it). */
async function spawnHelpers(pid: number): Promise<number[]> {
  const found: number[] = [];
  for (const name of (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry))) {
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    // After the command's closing parenthesis: state, then the parent's pid.
    if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
    if ((await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).includes('spawn-helper-child')) found.push(Number(name));
  }
  return found;
}

async function stop(t: Test, daemon: Daemon): Promise<void> {
  daemon.child.kill('SIGTERM');
  t.equal(await daemon.exited, 0, 'SIGTERM to the pid the parent knows stops the daemon cleanly');
  t.ok(daemon.lines.some((line) => line.event === 'stopped'), 'and it logged its stop on the same stdout');
}

// This machine's own answer (THP mode, glibc, the addon), for a daemon started with no opt-out.
const here = planHugePages({ ...hugePagesFactsHere(['--huge-pages']), env: {}, forked: false });
const applies = here.exec;

t.test('pnet node re-executes itself with the tunable: same pid, stdio kept, children without it', { skip: applies ? false : `not applicable here: ${JSON.stringify(here)}` }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-huge-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const daemon = await startNode(t, dir, ['--huge-pages']);
  const pid = daemon.child.pid!;
  t.equal(daemon.started['pid'], pid, 'the log line comes from the pid that was spawned');
  t.match(daemon.started['hugePages'], { enabled: true, reason: /re-executed/ }, 'the started line says so');
  const env = await startEnv(pid);
  t.ok(env.includes(`GLIBC_TUNABLES=${HUGE_PAGES_TUNABLE}`), 'the tunable is in the start environment glibc read');
  t.ok(env.includes(`${REEXEC_MARKER}=1`), 'with the marker that stops a second re-execution');
  t.ok((await hugePageMappings(pid)) > 0, "malloc's heap is madvised for huge pages (VmFlags hg)");
  const helpers = await spawnHelpers(pid);
  t.equal(helpers.length, 1, 'the spawn helper runs');
  t.notOk((await startEnv(helpers[0]!)).some((entry) => entry.startsWith('GLIBC_TUNABLES=') || entry.startsWith(REEXEC_MARKER)), 'the spawn helper (and so every command) starts without the tunable');
  await stop(t, daemon);
});

t.test('off by default, and with PNET_HUGE_PAGES=0', { skip: applies ? false : 'not applicable here' }, async (t) => {
  for (const [args, env, reason] of [[[], {}, OFF_BY_DEFAULT], [[], { PNET_HUGE_PAGES: '0' }, OFF_BY_DEFAULT]] as const) {
    const dir = await mkdtemp(join(tmpdir(), 'pnet-huge-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const daemon = await startNode(t, dir, [...args], { ...env });
    const pid = daemon.child.pid!;
    t.same(daemon.started['hugePages'], { enabled: false, reason }, `${reason}: the started line says off`);
    t.notOk((await startEnv(pid)).some((entry) => entry.startsWith('GLIBC_TUNABLES=')), `${reason}: no tunable in the start environment`);
    t.equal(await hugePageMappings(pid), 0, `${reason}: no mapping madvised for huge pages`);
    await stop(t, daemon);
  }
});

t.test("the operator's own GLIBC_TUNABLES is left as is", { skip: applies ? false : 'not applicable here' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-huge-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const daemon = await startNode(t, dir, [], { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' });
  t.match(daemon.started['hugePages'], { enabled: false, reason: /left as is/ }, 'not re-executed');
  const env = await startEnv(daemon.child.pid!);
  t.ok(env.includes('GLIBC_TUNABLES=glibc.malloc.arena_max=2') && !env.some((entry) => entry.startsWith(REEXEC_MARKER)), 'the start environment is the one given');
  await stop(t, daemon);
});
