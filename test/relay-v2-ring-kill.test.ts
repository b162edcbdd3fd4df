import t from 'tap';
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { createNode } from '../src/index.js';
import type { NodeId, PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { childEnv } from './fixtures/child-env.js';

// Relay v2 across a ring of processes: the relay on the current path is SIGKILLed mid-transfer
// (no CONNECTION_CLOSE: its neighbours find out by their links' idle timeout) and the same
// stream, on the same relayed connection, completes byte-exact the other way round.

interface Peer {
  readonly child: ChildProcess;
  readonly id: NodeId;
  readonly address: string;
  /** Sends a command and resolves with the next line that has `key`. */
  ask(command: object, key: string): Promise<Record<string, unknown>>;
}

async function spawnPeer(t: Test): Promise<Peer> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/ring-peer.mts', import.meta.url).pathname], {
    env: childEnv(),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const waiting: { key: string; resolve: (line: Record<string, unknown>) => void }[] = [];
  const first = new Promise<Record<string, unknown>>((resolve) => waiting.push({ key: 'address', resolve }));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    const line = JSON.parse(text) as Record<string, unknown>;
    const i = waiting.findIndex((w) => w.key in line);
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(line);
  });
  const hello = await first;
  return {
    child,
    id: hello.id as NodeId,
    address: hello.address as string,
    ask: (command, key) => {
      const reply = new Promise<Record<string, unknown>>((resolve) => waiting.push({ key, resolve }));
      child.stdin!.write(JSON.stringify(command) + '\n');
      return reply;
    },
  };
}

async function until(what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

t.test('64 MiB across a ring of processes: the relay on the path is killed, the same stream completes byte-exact', async (t) => {
  const started = performance.now();
  // a (this process) - p1 - p2 - p3 - p4 - a: a reaches p2 through p1 (two links; the other way is three)
  const a: PnetNode = await createNode({ routing: { rttSampleMs: 200, cost: { unitMs: 1_000_000 } } });
  t.teardown(() => a.close({ timeoutMs: 200 }));
  const [p1, p2, p3, p4] = (await Promise.all([spawnPeer(t), spawnPeer(t), spawnPeer(t), spawnPeer(t)])) as [Peer, Peer, Peer, Peer];
  await a.dial(p1.address, { expectedNodeId: p1.id });
  await a.dial(p4.address, { expectedNodeId: p4.id });
  for (const [from, to] of [[p2, p1], [p3, p2], [p4, p3]] as const) {
    const reply = await from.ask({ dial: to.address, id: to.id }, 'dialed');
    t.notOk(reply.error, `${from === p2 ? 'p2' : from === p3 ? 'p3' : 'p4'} dialed its neighbour`);
  }
  // every end knows the whole ring: a's way to p2 is through p1, and p2's way back through p1, its bypass through p3
  await until('ring routes', 30_000, async () => {
    const back = (await p2.ask({ path: a.id }, 'path')).path as NodeId[] | null;
    const around = (await p2.ask({ path: p4.id }, 'path')).path as NodeId[] | null;
    return a.path(p2.id)?.[1] === p1.id && a.path(p3.id)?.length === 3 && back?.[1] === p1.id && around?.length === 3;
  });

  const total = 64 * 1024 * 1024;
  const payload = Buffer.allocUnsafe(total);
  for (let i = 0; i < total; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
  const expected = `${total}:${createHash('sha256').update(payload).digest('hex')}`;
  const stream = await a.openStream(p2.id, 'digest');
  const relayed = nodeServices(a).datagrams!.live(p2.id);
  t.ok(relayed, 'the stream goes on a relayed connection to p2');
  const reply: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => reply.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  const slice = 64 * 1024;
  let killedAt = -1;
  for (let offset = 0; offset < total; offset += slice) {
    if (killedAt < 0 && offset >= total / 4) {
      t.same(a.path(p2.id), [a.id, p1.id, p2.id], 'the path still goes through p1 when it is killed');
      killedAt = offset;
      p1.child.kill('SIGKILL');
    }
    if (!stream.write(payload.subarray(offset, offset + slice))) {
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error): void => reject(error);
        stream.once('error', onError);
        stream.once('drain', () => {
          stream.off('error', onError);
          resolve();
        });
      });
    }
  }
  stream.end();
  await ended;
  t.equal(Buffer.concat(reply).toString(), expected, `p2 received all ${total} bytes byte-exact (killed at ${killedAt} written)`);
  t.equal(nodeServices(a).datagrams!.live(p2.id), relayed, 'on the same relayed connection');
  t.same(a.path(p2.id), [a.id, p4.id, p3.id, p2.id], 'now the other way round');
  const seconds = (performance.now() - started) / 1000;
  t.ok(seconds < 60, `done in ${seconds.toFixed(1)} s`);
  for (const peer of [p2, p3, p4]) peer.child.kill('SIGTERM');
});
