// The soak's in-process watchdog (issue 15: a worker stopped answering and nobody knew where).
// The soak worker's main thread bumps a counter in a SharedArrayBuffer twice a second; a worker
// thread reads it every second and, when it has not moved for `staleMs`, pauses the main thread
// through the inspector (Debugger.pause interrupts running JS), writes the paused call frames (3
// pauses, 2 s apart: the same frames each time is a loop), the source line of each and the soak's
// trace ring (globalThis.__soakTrace) to `file`, then lets it run on. Nothing runs when all is well
// but the counter and a 1 s timer; the debugger is enabled only once the loop is stale.
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { writeFileSync } from 'node:fs';

const BEAT_MS = 500;

/** Starts the watchdog for this (main) thread; returns a stop function. */
export function startWatchdog({ file, staleMs = 15_000 }) {
  const shared = new SharedArrayBuffer(4);
  const beat = new Int32Array(shared);
  const timer = setInterval(() => Atomics.add(beat, 0, 1), BEAT_MS);
  timer.unref();
  const thread = new Worker(new URL(import.meta.url), { workerData: { shared, file, staleMs } });
  thread.unref();
  thread.on('error', () => undefined);
  return () => {
    clearInterval(timer);
    void thread.terminate();
  };
}

if (!isMainThread && workerData?.shared) await watch(workerData);

async function watch({ shared, file, staleMs }) {
  const { Session } = await import('node:inspector');
  const beat = new Int32Array(shared);
  let seen = Atomics.load(beat, 0);
  let movedAt = Date.now();
  let armed = true;
  let reports = 0;
  setInterval(async () => {
    const now = Atomics.load(beat, 0);
    if (now !== seen) {
      seen = now;
      movedAt = Date.now();
      armed = true; // a new stall gets a new report
      return;
    }
    if (!armed || Date.now() - movedAt < staleMs || reports >= 3) return;
    armed = false;
    reports++;
    const report = { at: new Date().toISOString(), staleForMs: Date.now() - movedAt, pid: process.pid, pauses: [] };
    try {
      await capture(Session, report);
    } catch (error) {
      report.error = String(error?.stack ?? error);
    }
    report.loopMovedSince = Atomics.load(beat, 0) !== seen;
    writeFileSync(reports === 1 ? file : file.replace(/\.json$/, `-${reports}.json`), JSON.stringify(report, null, 1) + '\n');
  }, 1000);
}

/** Three pauses of the main thread, 2 s apart: each one's frames, source lines and the soak's trace. */
async function capture(Session, report) {
  const session = new Session();
  session.connectToMainThread();
  const post = (method, params = {}) =>
    new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
  const sources = new Map();
  const sourceLine = async (scriptId, line) => {
    if (!sources.has(scriptId)) sources.set(scriptId, await post('Debugger.getScriptSource', { scriptId }).then((r) => r.scriptSource.split('\n'), () => []));
    return (sources.get(scriptId)[line] ?? '').trim().slice(0, 200);
  };
  // Frames carry a script id; its url comes with the scriptParsed events that Debugger.enable sends.
  const urls = new Map();
  const maps = new Map();
  session.on('Debugger.scriptParsed', (m) => {
    urls.set(m.params.scriptId, m.params.url);
    if (m.params.sourceMapURL?.startsWith('data:')) maps.set(m.params.scriptId, m.params.sourceMapURL);
  });
  // tsx runs each .ts file as one minified line with an inline source map: frames are mapped back to the file's own lines.
  const { SourceMap } = await import('node:module');
  const { readFileSync } = await import('node:fs');
  const original = (scriptId, line, column) => {
    const url = maps.get(scriptId);
    if (url === undefined) return undefined;
    try {
      if (typeof url === 'string') maps.set(scriptId, new SourceMap(JSON.parse(Buffer.from(url.slice(url.indexOf(',') + 1), 'base64').toString('utf8'))));
      const entry = maps.get(scriptId).findEntry(line, column);
      if (entry?.originalSource === undefined) return undefined;
      const file = entry.originalSource.startsWith('file://') ? new URL(entry.originalSource) : entry.originalSource;
      const text = readFileSync(file, 'utf8').split('\n')[entry.originalLine] ?? '';
      return { url: entry.originalSource, line: entry.originalLine + 1, column: entry.originalColumn + 1, source: text.trim().slice(0, 200) };
    } catch {
      return undefined;
    }
  };
  await post('Debugger.enable');
  try {
    for (let i = 0; i < 3; i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 2000));
      const paused = new Promise((resolve) => {
        session.once('Debugger.paused', (m) => resolve(m.params));
        setTimeout(() => resolve(undefined), 5000);
      });
      await post('Debugger.pause');
      const params = await paused;
      if (params === undefined) {
        // No JS ran within 5 s: the thread is blocked outside JS (native code, a lock) or idle in the loop.
        report.pauses.push({ paused: false });
        await post('Debugger.resume').catch(() => undefined);
        continue;
      }
      const frames = [];
      for (const f of params.callFrames.slice(0, 40)) {
        const mapped = original(f.location.scriptId, f.location.lineNumber, f.location.columnNumber);
        frames.push({ fn: f.functionName || '(anonymous)', ...(mapped ?? { url: f.url || urls.get(f.location.scriptId) || '', line: f.location.lineNumber + 1, column: f.location.columnNumber + 1, source: await sourceLine(f.location.scriptId, f.location.lineNumber) }) });
      }
      // The top frames' locals (name: value or class), and the caller's own probe (SOAK_HANG_EVAL, evaluated in each of them).
      if (i === 0) {
        for (const [k, f] of params.callFrames.slice(0, 4).entries()) {
          const local = f.scopeChain.find((sc) => sc.type === 'local');
          if (local?.object.objectId) {
            const props = await post('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true }).catch(() => ({ result: [] }));
            frames[k].locals = Object.fromEntries(props.result.slice(0, 30).map((p) => [p.name, p.value?.type === 'object' ? p.value.className ?? p.value.description : p.value?.value ?? p.value?.description]));
          }
          if (process.env.SOAK_HANG_EVAL) {
            const r = await post('Debugger.evaluateOnCallFrame', { callFrameId: f.callFrameId, expression: process.env.SOAK_HANG_EVAL, returnByValue: true, silent: true }).catch((e) => ({ result: { value: String(e) } }));
            frames[k].probe = r.result?.value;
          }
        }
      }
      let trace;
      if (i === 0 && params.callFrames[0]) {
        const r = await post('Debugger.evaluateOnCallFrame', { callFrameId: params.callFrames[0].callFrameId, expression: 'JSON.stringify(globalThis.__soakTrace ?? null)', returnByValue: true, silent: true }).catch((e) => ({ result: { value: String(e) } }));
        trace = r.result?.value;
      }
      report.pauses.push({ paused: true, reason: params.reason, frames, ...(trace ? { trace: JSON.parse(trace) } : {}) });
      await post('Debugger.resume');
    }
  } finally {
    await post('Debugger.disable').catch(() => undefined);
    session.disconnect();
  }
}
