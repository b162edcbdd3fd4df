// Real nodes: a hub in a child process is SIGKILLed and started again with the same key and
// port; its leaves (createNode's bootstrap, default redial schedule) come back by themselves.
import t from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNode } from '../src/index.js';
import type { NodeId, PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { childEnv } from './fixtures/child-env.js';

t.setTimeout(110_000);

const LEAVES = 5;

async function startHub(keyFile: string, listen: string): Promise<{ child: ChildProcess; id: NodeId; address: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/bootstrap-hub.mts', import.meta.url).pathname], {
    env: childEnv({ KEY_FILE: keyFile, LISTEN: listen }),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, ...(JSON.parse(line.toString()) as { id: NodeId; address: string }) };
}

/** Polls `check` every 50 ms until it holds; false after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

/** Every leaf has the hub as a live neighbour and its default route, and leaf 0 reaches the last leaf through it. */
async function attached(leaves: PnetNode[], hubId: NodeId): Promise<boolean> {
  if (!leaves.every((leaf) => leaf.peers().some((peer) => peer.nodeId === hubId) && nodeServices(leaf).neighbours.router.defaultRoute === hubId)) return false;
  try {
    return (await leaves[0]!.request(leaves.at(-1)!.id, 'whoami', 'x', { timeoutMs: 1000 })).toString() === leaves.at(-1)!.id;
  } catch {
    return false;
  }
}

t.test('a hub killed and restarted with the same key and port: every leaf is back and routes through it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-hub-'));
  let hub = await startHub(join(dir, 'hub.key'), '127.0.0.1:0');
  const first = hub;
  const leaves: PnetNode[] = [];
  t.teardown(async () => {
    for (const h of [first, hub]) if (h.child.exitCode === null) h.child.kill('SIGKILL');
    await Promise.all(leaves.map((leaf) => leaf.close({ timeoutMs: 200 })));
    await rm(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < LEAVES; i++) {
    const leaf = await createNode({ bootstrap: [hub.address], routing: { role: 'leaf' } });
    leaf.handleRequest('whoami', () => leaf.id);
    leaves.push(leaf);
  }
  t.ok(leaves.every((leaf) => leaf.bootstrapResults[0]?.ok), 'every leaf joined at start');
  t.ok(await until(() => attached(leaves, hub.id), 20_000), 'leaf to leaf through the hub before the kill');

  hub.child.kill('SIGKILL');
  await once(hub.child, 'exit');
  const killedAt = Date.now();
  t.ok(await until(() => leaves.every((leaf) => !leaf.peers().some((peer) => peer.nodeId === hub.id)), 20_000), `the leaves noticed the hub gone (${Date.now() - killedAt} ms)`);
  hub = await startHub(join(dir, 'hub.key'), hub.address);
  const back = Date.now();
  t.equal(hub.id, first.id, 'same key');
  t.equal(hub.address, first.address, 'same port');
  t.ok(await until(() => attached(leaves, hub.id), 30_000), `all ${LEAVES} leaves back and routing through the hub ${Date.now() - back} ms after it returned`);
  for (const leaf of leaves) {
    const stats = leaf.stats().bootstrap;
    t.ok(stats.addresses === 1 && stats.redials >= 1 && stats.reconnected >= 1, `redials counted: ${JSON.stringify(stats)}`);
  }
});

t.test('bootstrapRedial: false: a dropped bootstrap peer stays dropped', async (t) => {
  const peer = await createNode();
  const node = await createNode({ bootstrap: [peer.address], bootstrapRedial: false });
  t.teardown(() => Promise.all([peer.close(), node.close()]).then(() => undefined));
  await node.disconnect(peer.id);
  await new Promise((resolve) => setTimeout(resolve, 3500));
  t.notOk(node.peers().some((info) => info.nodeId === peer.id), 'not redialed');
  t.same(node.stats().bootstrap, { addresses: 0, redials: 0, redialFailures: 0, reconnected: 0 });
});
