/**
 * The spawn helper: one small long-lived child process per node process that does ops/exec's
 * forks, so the node's event loop never forks. Node's spawn() is synchronous up to the child's
 * exec (fork + exec, 10-50 ms on a loaded machine, more for a process holding hundreds of
 * nodes): done in the node's process it stalls keep-alives and handshakes; done in the helper it
 * costs the node one IPC message each way. The helper runs runCommand (exec.ts) unchanged:
 * process groups, timeouts, output caps. PNET_EXEC_SPAWN=inline spawns in the process instead.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { runCommand } from './exec.js';
import type { ExecResult, ExecSpec } from './exec.js';

/** Parent to helper: run a command, or stop one (its process group gets SIGTERM, then SIGKILL). */
export type HelperRequest = { readonly type: 'run'; readonly id: number; readonly spec: ExecSpec } | { readonly type: 'abort'; readonly id: number };
/** Helper to parent: a command's result. */
export interface HelperReply {
  readonly type: 'done';
  readonly id: number;
  readonly result: ExecResult;
}

export interface SpawnHelperStats {
  /** Commands sent to the helper. */
  commands: number;
  /** Helper processes started (1 unless one died). */
  helperStarts: number;
  /** Helper processes that exited while this process still used them. */
  helperExits: number;
  /** Commands reported as not started because the helper died or could not start. */
  helperLost: number;
}

interface Pending {
  readonly resolve: (result: ExecResult) => void;
  readonly started: number;
}

/** The helper's entry: .ts when this module runs from source (tests), .js from dist. */
function entry(): { path: string; execArgv: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  const path = new URL(fromSource ? './spawn-helper-child.ts' : './spawn-helper-child.js', import.meta.url).pathname;
  // From dist a bare node (no --cpu-prof or loaders of the parent); from source it needs tsx as the tests do.
  return { path, execArgv: fromSource ? ['--import', 'tsx'] : [] };
}

export class SpawnHelper {
  private child: ChildProcess | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private readonly counts: SpawnHelperStats = { commands: 0, helperStarts: 0, helperExits: 0, helperLost: 0 };

  stats(): SpawnHelperStats {
    return { ...this.counts };
  }

  /** The helper's process id while one runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Runs `spec` in the helper; never rejects (like runCommand): a lost helper is a spawnError. */
  run(spec: ExecSpec, signal?: AbortSignal): Promise<ExecResult> {
    const started = performance.now();
    const child = this.ensure();
    if (child === undefined) return Promise.resolve(lost(started, 'the spawn helper could not start'));
    const id = this.nextId++;
    return new Promise<ExecResult>((resolve) => {
      const onAbort = (): void => void this.send({ type: 'abort', id });
      this.pending.set(id, {
        started,
        resolve: (result) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(result);
        },
      });
      this.refWhileBusy();
      this.counts.commands++;
      if (!this.send({ type: 'run', id, spec })) {
        this.pending.delete(id);
        this.counts.helperLost++;
        resolve(lost(started, 'the spawn helper is not connected'));
        return;
      }
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Forks the helper now rather than at the first command (a daemon at start: the fork of a
   * process that grew large blocks its event loop for tens of ms, in the middle of a fan-out).
   */
  start(): void {
    this.ensure();
    this.refWhileBusy();
  }

  /** Stops the helper (tests; a process that is done with exec). Commands still running are aborted by it. */
  close(): void {
    this.child?.disconnect();
    this.child = undefined;
  }

  private ensure(): ChildProcess | undefined {
    if (this.child !== undefined) return this.child;
    const { path, execArgv } = entry();
    let child: ChildProcess;
    try {
      // The one fork of this process; ignore stdin, share stdout/stderr for a crash's message.
      child = fork(path, [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    } catch {
      return undefined;
    }
    this.counts.helperStarts++;
    this.child = child;
    child.on('message', (message: HelperReply) => {
      if (message?.type !== 'done') return;
      const waiting = this.pending.get(message.id);
      if (waiting === undefined) return;
      this.pending.delete(message.id);
      waiting.resolve(message.result);
      this.refWhileBusy();
    });
    child.on('error', () => undefined); // 'exit' below settles what it ran
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (this.pending.size === 0) return;
      this.counts.helperExits++;
      const why = `the spawn helper exited (${code ?? signal}) before the command finished`;
      for (const [id, waiting] of this.pending) {
        this.pending.delete(id);
        this.counts.helperLost++;
        waiting.resolve(lost(waiting.started, why));
      }
    });
    return child;
  }

  private send(message: HelperRequest): boolean {
    const child = this.child;
    if (child === undefined || !child.connected) return false;
    child.send(message, (error) => error && child.kill('SIGKILL')); // a broken channel: 'exit' reports what was pending
    return true;
  }

  /** The helper keeps this process alive only while it runs commands for it. */
  private refWhileBusy(): void {
    const child = this.child;
    if (child === undefined) return;
    if (this.pending.size > 0) {
      child.ref();
      child.channel?.ref();
    } else {
      child.unref();
      child.channel?.unref();
    }
  }
}

function lost(started: number, why: string): ExecResult {
  return { exitCode: null, signal: null, stdout: '', stderr: '', truncated: false, ms: Math.round((performance.now() - started) * 10) / 10, timedOut: false, spawnError: why };
}

/** How ops/exec starts commands: 'helper' (default) or 'inline' (PNET_EXEC_SPAWN=inline: spawn() in this process). */
export type SpawnMode = 'helper' | 'inline';

export function spawnModeFrom(env: NodeJS.ProcessEnv): SpawnMode {
  return env['PNET_EXEC_SPAWN'] === 'inline' ? 'inline' : 'helper';
}

/** The one helper of this process: every node's ops/exec shares it. */
export const spawnHelper = new SpawnHelper();

/** Runs one command the way this process is set to: in the helper, or inline. */
export function startCommand(spec: ExecSpec, signal: AbortSignal | undefined, mode: SpawnMode = spawnModeFrom(process.env)): Promise<ExecResult> {
  return mode === 'inline' ? runCommand(spec, signal) : spawnHelper.run(spec, signal);
}
