// Real nodes: a hub in a child process and 50 leaves in two others (createNode's bootstrap,
// default redial schedule); the hub is SIGKILLed and started again with the same key and port,
// and every leaf comes back by itself and reaches a leaf of the other process through it. A small
// hub restart storm: the QUIC gate's admission and the hub's longer inbound handshake wait must not
// leave any leaf out (docs/ROUTING.md, "Bootstrap peers and a hub restart").
import t from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNode } from '../src/index.js';
import type { NodeId } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { childEnv } from './fixtures/child-env.js';

t.setTimeout(110_000);

const PER_PROCESS = 25;
const tsx = (fixture: string): string[] => ['--import', 'tsx', new URL(`./fixtures/${fixture}`, import.meta.url).pathname];

async function startHub(keyFile: string, listen: string): Promise<{ child: ChildProcess; id: NodeId; address: string }> {
  const child = spawn(process.execPath, tsx('bootstrap-hub.mts'), { env: childEnv({ KEY_FILE: keyFile, LISTEN: listen }), stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, ...(JSON.parse(line.toString()) as { id: NodeId; address: string }) };
}

/** A process of PER_PROCESS leaves: its ids, and its latest count of leaves attached to the hub. */
async function startLeaves(hub: { id: NodeId; address: string }): Promise<{ child: ChildProcess; ids: NodeId[]; attached: () => number }> {
  const child = spawn(process.execPath, tsx('restart-leaves.mts'), { env: childEnv({ HUB: hub.address, HUB_ID: hub.id, COUNT: String(PER_PROCESS) }), stdio: ['pipe', 'pipe', 'inherit'] });
  let attached = 0;
  let ids: NodeId[] | undefined;
  const got = new Promise<void>((resolve) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const message = JSON.parse(line) as { ids?: NodeId[]; attached?: number };
      if (message.ids !== undefined) {
        ids = message.ids;
        resolve();
      }
      if (message.attached !== undefined) attached = message.attached;
    });
  });
  await got;
  return { child, ids: ids!, attached: () => attached };
}

/** Polls `check` every 100 ms until it holds; false after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

t.test('a hub with 50 leaves in two processes killed and restarted: every leaf is back and routes through it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-hub-many-'));
  let hub = await startHub(join(dir, 'hub.key'), '127.0.0.1:0');
  const first = hub;
  const groups: Awaited<ReturnType<typeof startLeaves>>[] = [];
  // The test's own leaf asks a leaf of each process through the hub.
  const probe = await createNode({ bootstrap: [hub.address], routing: { role: 'leaf' } });
  t.teardown(async () => {
    for (const h of [first, hub]) if (h.child.exitCode === null) h.child.kill('SIGKILL');
    for (const group of groups) if (group.child.exitCode === null) group.child.kill('SIGKILL');
    await probe.close({ timeoutMs: 200 });
    await rm(dir, { recursive: true, force: true });
  });
  groups.push(...(await Promise.all([startLeaves(hub), startLeaves(hub)])));
  const all = (): number => groups.reduce((n, group) => n + group.attached(), 0);
  /** Every leaf attached, and the probe reaches the last leaf of each process through the hub. */
  const back = async (): Promise<boolean> => {
    if (all() < 2 * PER_PROCESS || nodeServices(probe).neighbours.router.defaultRoute !== hub.id) return false;
    try {
      const answers = await Promise.all(groups.map((group) => probe.request(group.ids.at(-1)!, 'whoami', 'x', { timeoutMs: 2000 })));
      return answers.every((answer, i) => answer.toString() === groups[i]!.ids.at(-1));
    } catch {
      return false;
    }
  };
  t.ok(await until(back, 40_000), `all ${2 * PER_PROCESS} leaves attached and reached through the hub before the kill (${all()})`);

  hub.child.kill('SIGKILL');
  await once(hub.child, 'exit');
  t.ok(await until(() => all() === 0, 30_000), 'the leaves noticed the hub gone');
  hub = await startHub(join(dir, 'hub.key'), hub.address);
  const returned = Date.now();
  t.equal(hub.id, first.id, 'same key');
  t.equal(hub.address, first.address, 'same port');
  // Generous for load 10: ~10 s on a quiet machine (the leaves redial within their 5 s spread, then the backoff).
  t.ok(await until(back, 45_000), `all ${2 * PER_PROCESS} leaves back and reached through the hub ${Date.now() - returned} ms after it returned (${all()} attached)`);
});
