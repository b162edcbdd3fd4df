// Issue 15: the codec fuzzers as a test. Every target of scripts/fuzz.mjs (the channel layer's
// decoders, machines and encoders; relay v2's datagram decoder and link framing; node ids) runs
// a bounded number of random and mutated inputs over src/: nothing but a PnetError escapes and
// nothing decoded or buffered passes its bound. `npm run fuzz -- --seconds N` is the long run.
import t from 'tap';
import fc from 'fast-check';
import * as channel from '../src/channel/index.js';
import * as relayV2 from '../src/relay/v2/index.js';
import * as identity from '../src/identity/index.js';
import { PnetError } from '../src/errors.js';

interface FuzzTarget {
  readonly name: string;
  readonly runs: number;
  readonly property: fc.IPropertyWithHooks<unknown[]>;
}
interface FuzzModule {
  fuzzTargets(lib: unknown, fastCheck: typeof fc): FuzzTarget[];
}

// a plain .mjs (it runs over dist/ too): imported by URL, typed here
const script = new URL('../scripts/fuzz.mjs', import.meta.url).href;
const { fuzzTargets } = (await import(script)) as FuzzModule;
const targets = fuzzTargets({ channel, relayV2, identity, PnetError }, fc);

t.ok(targets.length >= 8, `${targets.length} targets`);
for (const target of targets) {
  t.test(target.name, async (t) => {
    const details = fc.check(target.property, { numRuns: target.runs });
    if (details.failed) t.fail(fc.defaultReportMessage(details) ?? 'failed');
    else t.pass(`${details.numRuns} inputs, seed ${details.seed}`);
  });
}
