import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNode, Identity, saveIdentity } from '../src/index.js';
import type { PnetNode } from '../src/index.js';
import { runCli, serveOps, validateOpsConfig } from '../src/cli/index.js';
import type { OpsService, PerfReply } from '../src/cli/index.js';
import { collector } from './fixtures/cli-io.js';

// `pnet perf NODE` (issue 17): RTT percentiles and throughput both ways, direct and relayed.
// Figures are printed, never asserted (the machine is shared).
t.setTimeout(120_000);


t.test('perf from a daemon to a neighbour (direct) and to a node two hops away (relayed)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-perf-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const operator = await Identity.generate();
  const key = join(dir, 'operator.key');
  await saveIdentity(operator, key);
  const nodes: PnetNode[] = [];
  const services: OpsService[] = [];
  for (let i = 0; i < 3; i++) {
    const node = await createNode({ routing: { rttSampleMs: 60_000 } });
    services.push(serveOps(node, validateOpsConfig({ operators: [operator.nodeId] })));
    nodes.push(node);
  }
  t.teardown(async () => {
    for (const service of services) await service.close();
    await Promise.all(nodes.map((node) => node.close({ timeoutMs: 100 })));
  });
  const [a, b, c] = nodes as [PnetNode, PnetNode, PnetNode];
  await a.dial(b.address);
  await b.dial(c.address);
  const deadline = Date.now() + 30_000;
  while (a.routes().length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  const perf = async (target: string, json = true): Promise<{ code: number; out: string; err: string }> => {
    const out = collector();
    const err = collector();
    const args = ['perf', target, '--node', a.address, '--key', key, '--bytes', String(2 * 1024 * 1024), '--count', '20', ...(json ? ['--json'] : [])];
    const code = await runCli(args, { stdout: out, stderr: err, env: {} });
    return { code, out: out.text, err: err.text };
  };
  const direct = await perf(b.id);
  t.equal(direct.code, 0, direct.err);
  const d = JSON.parse(direct.out) as PerfReply;
  t.equal(d.way, 'direct');
  t.same(d.path, [a.id, b.id]);
  t.equal(d.rtt.samples, 20);
  t.ok(d.rtt.p50Ms <= d.rtt.p99Ms && d.rtt.minMs <= d.rtt.p50Ms);
  t.equal(d.up.bytes, 2 * 1024 * 1024);
  t.ok(d.up.mbitPerS > 0 && d.down.mbitPerS > 0);
  t.comment(`direct: rtt p50 ${d.rtt.p50Ms} ms, up ${d.up.mbitPerS} Mbit/s, down ${d.down.mbitPerS} Mbit/s`);

  const far = await perf(c.id);
  t.equal(far.code, 0, far.err);
  const r = JSON.parse(far.out) as PerfReply;
  t.equal(r.way, 'relayed');
  t.same(r.path, [a.id, b.id, c.id]);
  t.equal(r.down.bytes, 2 * 1024 * 1024);
  t.comment(`relayed: rtt p50 ${r.rtt.p50Ms} ms, up ${r.up.mbitPerS} Mbit/s, down ${r.down.mbitPerS} Mbit/s`);

  const text = await perf(c.id, false);
  t.match(text.out, /^PERF .* relayed \(relay\), 2 hop\(s\)\npath .*\nrtt {3}20 samples: min .* ms\nup {4}2 MiB in .* Mbit\/s\ndown {2}2 MiB in .* Mbit\/s\n$/);
  t.comment(text.out);
  const self = collector();
  t.equal(await runCli(['perf', a.id, '--node', a.address, '--key', key, '--json'], { stdout: self, stderr: collector(), env: {} }), 2, 'perf to the daemon itself is refused (usage: exit 2)');
  t.equal(JSON.parse(self.text).error.code, 'ERR_BAD_OPTION');
});
