// Stateless resets (RFC 9000 §10.3; src/transport/quic/stateless-reset.ts): the token each issued
// connection id carries comes from the node's key, so a node restarted with the same key tells
// the peers of its last run at their next packet that the connection is gone, instead of their
// idle timeout. The hub is a real node in a child process, SIGKILLed and started again.
import t from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { createNode } from '../src/index.js';
import type { NodeId, PnetError } from '../src/index.js';
import { StatelessResets, RESET_TOKEN_LENGTH } from '../src/transport/quic/stateless-reset.js';
import { childEnv } from './fixtures/child-env.js';

t.setTimeout(60_000);

t.test('tokens come from the key and the id; a reset is a short header, smaller than what it answers, ending in the token', async (t) => {
  const key = generateKeyPairSync('ed25519').privateKey;
  const cid = Buffer.alloc(16, 7);
  const resets = new StatelessResets(key);
  t.same(new StatelessResets(key).token(cid), resets.token(cid), 'the same key: the same token (a restart keeps it)');
  t.notSame(new StatelessResets(generateKeyPairSync('ed25519').privateKey).token(cid), resets.token(cid), 'another key: another token');
  t.notSame(resets.token(Buffer.alloc(16, 8)), resets.token(cid), 'another id: another token');
  t.equal(resets.tokenValue(cid), BigInt(`0x${resets.token(cid).toString('hex')}`), "quiche's u128, big-endian");
  t.equal(resets.packet(cid, 21), undefined, 'a 21-byte packet is not answered (the reset would not be smaller)');
  t.equal(resets.packet(cid, 30)?.length, 29, 'a short packet: one byte less');
  for (const size of [44, 1200]) {
    const packet = resets.packet(cid, size)!;
    t.equal(packet.length, 43, `a ${size}-byte packet: 43 bytes`);
    t.equal(packet[0]! & 0xc0, 0x40, 'a short header with the fixed bit');
    t.same(packet.subarray(packet.length - RESET_TOKEN_LENGTH), resets.token(cid), 'the token last');
  }
});

async function startHub(keyFile: string, listen: string): Promise<{ child: ChildProcess; id: NodeId; address: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/bootstrap-hub.mts', import.meta.url).pathname], {
    env: childEnv({ KEY_FILE: keyFile, LISTEN: listen }),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, ...(JSON.parse(line.toString()) as { id: NodeId; address: string }) };
}

t.test('a hub restarted with the same key resets its old connections at their next packet', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-reset-'));
  const first = await startHub(join(dir, 'hub.key'), '127.0.0.1:0');
  let second: Awaited<ReturnType<typeof startHub>> | undefined;
  // Without the reset the leaf would let the connection go at its idle timeout (5 s after the hub's last packet; ERR_IDLE_TIMEOUT).
  const leaf = await createNode({ listen: '127.0.0.1:0', h2: false, bootstrap: [first.address], bootstrapRedial: false, quic: { keepAliveIntervalMs: 500 } });
  t.teardown(async () => {
    for (const hub of [first, second]) if (hub !== undefined && hub.child.exitCode === null) hub.child.kill('SIGKILL');
    await leaf.close({ timeoutMs: 200 });
    await rm(dir, { recursive: true, force: true });
  });
  t.ok(leaf.peers().some((peer) => peer.nodeId === first.id), 'connected to the hub');
  const down = new Promise<PnetError | undefined>((resolve) => leaf.on('peer:down', ({ nodeId, error }) => nodeId === first.id && resolve(error)));
  first.child.kill('SIGKILL');
  await once(first.child, 'exit');
  second = await startHub(join(dir, 'hub.key'), first.address);
  t.equal(second.address, first.address, 'the same port');
  const back = Date.now();
  const error = await Promise.race([down, new Promise<'none'>((resolve) => setTimeout(() => resolve('none'), 20_000))]);
  t.not(error, 'none', `the leaf let the old connection go ${Date.now() - back} ms after the hub returned`);
  t.match((error as PnetError | undefined)?.message ?? '', /stateless reset/, 'reset by the hub, not timed out');
});
