// Issue 15: the codec fuzzers as a test. Every target of scripts/fuzz.mjs (the channel layer's
// decoders, machines and encoders; relay v2's datagram decoder and link framing; node ids; the
// fan-out's legs, envelopes, upstream frames and error bodies; routing messages and records) runs
// a bounded number of random and mutated inputs over src/: nothing but a PnetError escapes and
// nothing decoded or buffered passes its bound. `npm run fuzz -- --seconds N` is the long run.
import t from 'tap';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as channel from '../src/channel/index.js';
import * as relayV2 from '../src/relay/v2/index.js';
import * as identity from '../src/identity/index.js';
import * as fanout from '../src/node/fanout-codec.js';
import * as routing from '../src/routing/router/codec.js';
import { PnetError } from '../src/errors.js';

interface FuzzTarget {
  readonly name: string;
  readonly runs: number;
  readonly property: fc.IPropertyWithHooks<unknown[]>;
}
interface FuzzReport {
  readonly name: string;
  readonly runs: number;
  readonly failed: boolean;
}
interface FuzzModule {
  fuzzTargets(lib: unknown, fastCheck: typeof fc): FuzzTarget[];
  fuzzFor(lib: unknown, fastCheck: typeof fc, seconds: number, seed?: number): FuzzReport[];
}

// a plain .mjs (it runs over dist/ too): imported by URL, typed here
const script = new URL('../scripts/fuzz.mjs', import.meta.url).href;
const { fuzzTargets, fuzzFor } = (await import(script)) as FuzzModule;
const lib = { channel, relayV2, identity, fanout, routing, PnetError };
const targets = fuzzTargets(lib, fc);

t.ok(targets.length >= 12, `${targets.length} targets`);
for (const target of targets) {
  t.test(target.name, async (t) => {
    const details = fc.check(target.property, { numRuns: target.runs });
    if (details.failed) t.fail(fc.defaultReportMessage(details) ?? 'failed');
    else t.pass(`${details.numRuns} inputs, seed ${details.seed}`);
  });
}

t.test('the long run splits its time over every target (npm run fuzz)', async (t) => {
  const report = fuzzFor(lib, fc, 0.4, 42);
  t.equal(report.length, targets.length);
  for (const r of report) t.notOk(r.failed, `${r.name}: ${r.runs} inputs`); // how many depends on the machine
  t.ok(report.reduce((n, r) => n + r.runs, 0) > 0, 'some inputs ran');
});

t.test('scripts/fuzz.mjs: --help, and a clear exit 2 when the build is missing', async (t) => {
  const path = fileURLToPath(script);
  const help = spawnSync(process.execPath, [path, '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0);
  t.match(help.stdout, /--seconds N/);
  const missing = spawnSync(process.execPath, [path, '--seconds', '1', '--dist', fileURLToPath(new URL('./fixtures', import.meta.url))], { encoding: 'utf8' });
  t.equal(missing.status, 2);
  t.match(missing.stderr, /npm run build/);
});
