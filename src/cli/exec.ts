/**
 * Runs one allow-listed command on this host: no shell unless asked, its own process group
 * (so a timeout kills the whole tree, not just the leader), output capped per stream.
 */
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

export interface ExecSpec {
  /** Program to run (looked up on PATH when it has no slash). */
  readonly file: string;
  readonly args: readonly string[];
  /** Wall-clock limit; past it the process group gets SIGTERM, then SIGKILL after `killGraceMs`. */
  readonly timeoutMs: number;
  /** Bytes kept per stream (stdout, stderr); the rest is read and dropped so the child never blocks. */
  readonly maxOutputBytes: number;
  /** Between SIGTERM and SIGKILL of the group (default 1000 ms). */
  readonly killGraceMs?: number;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** What the host reports for one run (the `ops/exec` reply). */
export interface ExecResult {
  /** null when the process was killed by a signal or never started. */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout or stderr went past maxOutputBytes and was cut. */
  readonly truncated: boolean;
  readonly ms: number;
  readonly timedOut: boolean;
  /** Set when the program could not be started (ENOENT, EACCES, ...). */
  readonly spawnError?: string;
}

/** Collects a stream up to `max` bytes and keeps draining past it. */
class Capped {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  truncated = false;
  constructor(stream: Readable | null, private readonly max: number) {
    stream?.on('data', (chunk: Buffer) => {
      const room = this.max - this.kept;
      if (chunk.length > room) this.truncated = true;
      if (room <= 0) return;
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.chunks.push(part);
      this.kept += part.length;
    });
    stream?.on('error', () => undefined); // a destroyed pipe at a hard stop is expected
  }
  text(): string {
    return Buffer.concat(this.chunks, this.kept).toString('utf8');
  }
}

/**
 * Runs `spec` to completion (or to its timeout) and never rejects: a program that cannot start
 * is reported in `spawnError`. `signal` aborts the run like a timeout does (used on shutdown).
 */
export function runCommand(spec: ExecSpec, signal?: AbortSignal): Promise<ExecResult> {
  const started = performance.now();
  const killGraceMs = spec.killGraceMs ?? 1000;
  return new Promise<ExecResult>((resolve) => {
    let child;
    try {
      child = spawn(spec.file, [...spec.args], {
        detached: true, // own process group: process.kill(-pid) reaches every descendant that stayed in it
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(spec.cwd !== undefined ? { cwd: spec.cwd } : {}),
        ...(spec.env !== undefined ? { env: spec.env } : {}),
        windowsHide: true,
      });
    } catch (error) {
      resolve(failedToStart(error, started));
      return;
    }
    const out = new Capped(child.stdout, spec.maxOutputBytes);
    const err = new Capped(child.stderr, spec.maxOutputBytes);
    let timedOut = false;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const killGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // ESRCH: the group is already gone
      }
    };
    let stopping = false;
    /** At the timeout (`timedOut` in the result) or on abort (a daemon shutting down: not a timeout). */
    const stop = (byTimeout: boolean): void => {
      if (settled || stopping) return;
      stopping = true;
      timedOut = byTimeout;
      killGroup('SIGTERM');
      timers.push(setTimeout(() => killGroup('SIGKILL'), killGraceMs));
      // A descendant that left the group (setsid) may still hold our pipes: stop waiting for them.
      timers.push(
        setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
          finish(child.exitCode, child.signalCode);
        }, killGraceMs + 1000),
      );
    };
    const onAbort = (): void => stop(false);
    const finish = (exitCode: number | null, sig: NodeJS.Signals | null): void => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve({
        exitCode,
        signal: sig,
        stdout: out.text(),
        stderr: err.text(),
        truncated: out.truncated || err.truncated,
        ms: Math.round((performance.now() - started) * 10) / 10,
        timedOut,
      });
    };
    child.on('error', (error) => {
      if (child.pid === undefined && !settled) {
        settled = true;
        for (const timer of timers) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(failedToStart(error, started));
      }
    });
    // 'close' waits for the pipes too: output written just before exit is not lost.
    child.on('close', (code, sig) => finish(code, sig));
    timers.push(setTimeout(() => stop(true), spec.timeoutMs));
    if (signal?.aborted) stop(false);
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function failedToStart(error: unknown, started: number): ExecResult {
  return {
    exitCode: null,
    signal: null,
    stdout: '',
    stderr: '',
    truncated: false,
    ms: Math.round((performance.now() - started) * 10) / 10,
    timedOut: false,
    spawnError: error instanceof Error ? error.message : String(error),
  };
}
