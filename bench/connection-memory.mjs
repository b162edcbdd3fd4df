// Native memory of one long-lived connection against the streams it carried (issue 15, the
// soak's victims): quiche keeps the id of every stream it finished until its connection closes,
// so a pair doing a request per stream grows outside V8 for as long as the connection lives. Two
// nodes in one process, 32 requests in flight, the same run with rotation off (a budget no run
// reaches) and at the default `rotateAfterStreams`; each setting in a process of its own, so both
// start from the same baseline. Native = rss − heapTotal − external, after two GCs.
//
//   node --import tsx bench/connection-memory.mjs                  600,000 requests per setting
//   node --import tsx bench/connection-memory.mjs --streams=200000 shorter
//   options: --out=PATH (default bench/results/connection-memory)
// Run it under the bench lock: flock /tmp/bench.lock node --import tsx bench/connection-memory.mjs
// Every loop is bounded by the request count; nothing binds beyond 127.0.0.1.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

const SELF = fileURLToPath(import.meta.url);
const IN_FLIGHT = 32;
const SETTINGS = [
  { name: 'rotation off', rotateAfterStreams: 1_000_000_000 },
  { name: 'rotateAfterStreams 65,536 (default)', rotateAfterStreams: undefined },
];

if (process.env.CONNECTION_MEMORY_CHILD) await child(JSON.parse(process.env.CONNECTION_MEMORY_CHILD));
else await parent();

function mib(n) {
  return Math.round((n / 1048576) * 10) / 10;
}

function memory() {
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  return { rssMiB: mib(m.rss), heapTotalMiB: mib(m.heapTotal), externalMiB: mib(m.external), nativeMiB: mib(m.rss - m.heapTotal - m.external) };
}

async function child({ streams, rotateAfterStreams }) {
  const { createNode } = await import('../src/index.js');
  const options = { listen: '127.0.0.1:0', h2: false, ...(rotateAfterStreams === undefined ? {} : { rotateAfterStreams }) };
  const a = await createNode(options);
  const b = await createNode(options);
  b.handleRequest('svc', (request) => request);
  await a.dial(b.address);
  const samples = [{ streams: 0, ...memory() }];
  const every = Math.max(1, Math.floor(streams / 6));
  let started = 0;
  let next = every;
  const t0 = performance.now();
  const worker = async () => {
    while (started < streams) {
      started++;
      await a.request(b.id, 'svc', 'x');
      if (started >= next) {
        next += every;
        samples.push({ streams: started, ...memory() });
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const seconds = (performance.now() - t0) / 1000;
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const idle = { streams: started, ...memory() };
  const kept = [...a.peers()][0];
  const result = { samples, idle, seconds: Math.round(seconds * 10) / 10, rotation: a.stats().rotation, peerRotation: b.stats().rotation, keptStreams: kept?.streams ?? null };
  await a.close({ timeoutMs: 0 });
  await b.close({ timeoutMs: 0 });
  process.send(result, () => process.exit(0));
}

async function parent() {
  const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
  const streams = Number(args.streams ?? 600_000);
  const out = args.out ?? 'bench/results/connection-memory';
  const runs = [];
  for (const setting of SETTINGS) {
    const proc = fork(SELF, [], {
      env: { ...process.env, CONNECTION_MEMORY_CHILD: JSON.stringify({ streams, rotateAfterStreams: setting.rotateAfterStreams }) },
      execArgv: ['--import', 'tsx', '--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const result = await new Promise((resolve, reject) => {
      proc.once('message', resolve);
      proc.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`${setting.name}: exit ${code}`))));
    });
    console.error(`[connection-memory] ${setting.name}: idle native ${result.idle.nativeMiB} MiB (start ${result.samples[0].nativeMiB}), ${result.seconds} s`);
    runs.push({ setting: setting.name, ...result });
  }
  const summary = { date: new Date().toISOString(), streams, inFlight: IN_FLIGHT, runs };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(`${out}.json`, JSON.stringify(summary, null, 2) + '\n');
  writeFileSync(`${out}.md`, markdown(summary));
  console.log(markdown(summary));
}

function markdown({ date, streams, inFlight, runs }) {
  const lines = [
    '# Native memory of one long-lived connection',
    '',
    `\`node --import tsx bench/connection-memory.mjs\` on ${date.slice(0, 10)} (2 shared cores): two nodes in one process, ${streams.toLocaleString('en')} requests (a stream each) over their one peer connection, ${inFlight} in flight; each setting in its own process. Native = rss − heapTotal − external after two GCs (both ends' quiche state is in it).`,
    '',
    `| setting | native at start | ${runs[0].samples.slice(1).map((s) => `after ${s.streams.toLocaleString('en')}`).join(' | ')} | idle 3 s after the last | grown (idle − start) | rotations | wall |`,
    `|---|---:|${runs[0].samples.slice(1).map(() => '---:|').join('')}---:|---:|---:|---:|`,
  ];
  for (const run of runs) {
    const cells = run.samples.slice(1).map((s) => `${s.nativeMiB}`);
    lines.push(`| ${run.setting} | ${run.samples[0].nativeMiB} MiB | ${cells.join(' | ')} | ${run.idle.nativeMiB} MiB | **${Math.round((run.idle.nativeMiB - run.samples[0].nativeMiB) * 10) / 10} MiB** | ${run.rotation.rotated} dialed, ${run.rotation.replaced} / ${run.peerRotation.replaced} replaced | ${run.seconds} s |`);
  }
  lines.push('', 'Without rotation the growth stays until the connection closes (quiche 0.18 keeps each finished stream id: ~20 bytes an id at each end); with it, a connection holds at most `rotateAfterStreams` ids and the replaced ones free theirs when they close.', '');
  return lines.join('\n');
}
