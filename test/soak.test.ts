// The soak's short mode (bench/soak.mjs --quick, issue 15): 16 nodes in 2 processes with churn,
// requests, relayed streams and fan-outs for 30 s, an attacker doing every attack of issue 15
// from the warm-up's end. Asserts what must hold whatever the machine's load: no process
// crashed, memory stayed bounded, good traffic mostly succeeded (also to the attacked nodes),
// and the attacked nodes counted the limits the attacker tripped. `npm run soak` is the long one.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childEnv } from './fixtures/child-env.js';

interface Summary {
  crashes: string[];
  memory: { maxWorkerRssMiB: number; curve: Array<{ rssMiB: number }> };
  traffic: {
    goodSuccess: number;
    ok: number;
    successByPhase: Record<'warm-up' | 'attack', Record<'victims' | 'others', Record<'requests' | 'streams' | 'fanoutTargets', number | null>>>;
    relayedStreams: number;
  };
  churn: { kills: number; restarts: number; cuts: number };
  attacker: Record<string, number>;
  victims: Array<{ limits: Record<string, number> }>;
}

t.test('soak, short mode', async (t) => {
  const out = join(mkdtempSync(join(tmpdir(), 'pnet-soak-')), 'soak');
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('../bench/soak.mjs', import.meta.url).pathname, '--quick', `--out=${out}`], {
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const [code] = (await once(child, 'exit')) as [number | null];
  t.equal(code, 0, `the soak exited cleanly${code === 0 ? '' : `: ${stderr}`}`);
  const s = JSON.parse(readFileSync(`${out}.json`, 'utf8')) as Summary;
  t.same(s.crashes, [], 'no process crashed');
  t.ok(s.churn.kills > 0 && s.churn.restarts > 0 && s.churn.cuts > 0, `churn happened (${JSON.stringify(s.churn)})`);
  t.ok(s.traffic.relayedStreams > 0, 'streams crossed relays');
  t.ok((s.attacker.partialOpens ?? 0) > 0 && (s.attacker.undecryptableInitials ?? 0) > 0, 'the attacker ran');
  // 8 nodes per worker; the quick run measured ~225 MiB for the larger one: a bound with room, far below an unbounded leak.
  t.ok(s.memory.maxWorkerRssMiB < 700, `each worker stayed under 700 MiB (largest ${s.memory.maxWorkerRssMiB} MiB)`);
  t.ok(s.traffic.ok > 500, `good traffic flowed (${s.traffic.ok} ok)`);
  t.ok(s.traffic.goodSuccess >= 0.9, `good traffic mostly succeeded (${s.traffic.goodSuccess})`);
  const underAttack = s.traffic.successByPhase.attack.victims.requests;
  t.ok(underAttack !== null && underAttack >= 0.8, `requests to the attacked nodes succeeded during the attack (${underAttack})`);
  const tripped = s.victims.flatMap((v) => Object.entries(v.limits).filter(([, n]) => n > 0).map(([k]) => k));
  t.ok(tripped.includes('routingStreamsPeerLimit') && tripped.includes('fanoutLegsPeerLimit'), `the attacked nodes counted their limits (${[...new Set(tripped)].join(', ')})`);
});
