#!/usr/bin/env node
// Micro-benchmarks (the `benchmark` package) of pnet's hot small functions,
// from the built package (dist/): channel frame encode/decode, node id parse,
// routing record encode+sign / decode+verify.
//   node bench/micro.mjs [--quick] [--json=PATH]
// Each case's figure is the median of Benchmark.js's samples (ops/s); its
// min/max are the slowest and fastest sample; `runs` is the sample count.
import { writeFileSync } from 'node:fs';
import Benchmark from 'benchmark';
import { Identity, parseNodeId, verifySignature } from '../dist/index.js';
import { encodeOpen, tryDecodeFrame } from '../dist/channel/codec.js';
import { encodeRecord, decodeRecord, verifyRecord, keyBytesOf } from '../dist/routing/router/codec.js';

const quick = process.argv.includes('--quick');
const jsonOut = process.argv.find((a) => a.startsWith('--json='))?.slice('--json='.length);

const identity = await Identity.generate();
const peers = await Promise.all(Array.from({ length: 8 }, () => Identity.generate()));
const openFrame = encodeOpen('echo', { metadata: { role: 'operator', trace: 'abc123' } });
const links = peers.map((p, i) => ({ to: p.nodeId, cost: 10 + i })).sort((a, b) => Buffer.compare(keyBytesOf(a.to), keyBytesOf(b.to)));
const fields = { origin: identity.nodeId, seq: 1n, lifetimeMs: 60_000, links };
let recordBytes;
try {
  recordBytes = encodeRecord(fields, (data) => identity.sign(data));
} catch (error) {
  console.error(`routing record cases skipped: ${error.message}`);
  recordBytes = undefined;
}
const verify = (id, data, sig) => verifySignature(id, data, sig);

let sink = 0;
const cases = [
  ['channel OPEN frame encode', () => { sink += encodeOpen('echo', { metadata: { role: 'operator' } }).length; }],
  ['channel OPEN frame decode', () => { sink += tryDecodeFrame(openFrame) ? 1 : 0; }],
  ['node id parse (text → checked id)', () => { sink += parseNodeId(identity.nodeId).length; }],
];
if (recordBytes) {
  cases.push(
    ['routing record encode + sign (8 links)', () => { sink += encodeRecord({ ...fields, seq: BigInt(sink & 0xffff) }, (d) => identity.sign(d)).length; }],
    ['routing record decode + verify (8 links)', () => {
      const r = decodeRecord(recordBytes);
      if (!r.ok || verifyRecord(r.value, verify) !== 'ok') throw new Error('record does not verify');
      sink++;
    }],
  );
}

const suite = new Benchmark.Suite();
for (const [name, fn] of cases) suite.add(name, fn, { maxTime: quick ? 0.25 : 1, minSamples: 5 });
const results = [];
suite.on('cycle', (event) => {
  const b = event.target;
  if (b.error) {
    results.push({ name: b.name, error: String(b.error.message ?? b.error) });
    return;
  }
  // samples are seconds per op; report ops/s
  const opsps = b.stats.sample.map((s) => 1 / s).sort((x, y) => x - y);
  results.push({ name: b.name, opsps, hz: b.hz, rme: b.stats.rme });
  console.log(String(b));
});
suite.run({ async: false });
const out = { quick, results, recordCase: Boolean(recordBytes), sink };
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(out) + '\n');
