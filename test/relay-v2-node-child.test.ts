import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createNode } from '../src/index.js';
import type { NodeId, PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { childEnv } from './fixtures/child-env.js';

// Relay v2 with the far end in its own process (test/fixtures/peer.mts): a-b-c here, d there.

t.test('a line a-b-c-d with d in a child process: requests and a stream over one relayed connection', async (t) => {
  const nodes: PnetNode[] = [];
  for (let i = 0; i < 3; i++) nodes.push(await createNode({ routing: { rttSampleMs: 200 } }));
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  const [a, b, c] = nodes as [PnetNode, PnetNode, PnetNode];
  await a.dial(b.address);
  await b.dial(c.address);
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/peer.mts', import.meta.url).pathname], {
    env: childEnv({ BOOTSTRAP: c.address }),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const d = (JSON.parse(line.toString()) as { id: NodeId }).id;
  const deadline = Date.now() + 15_000;
  // The hops must have their routes too: a hop that has none yet answers UNREACHABLE.
  while (a.path(d)?.length !== 4 || b.path(d) === undefined || c.path(d) === undefined) {
    if (Date.now() > deadline) throw new Error('no route from a to d');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  for (let i = 0; i < 10; i++) t.equal((await a.request(d, 'whoami', `r${i}`)).toString(), `${d}<-${a.id}:r${i}`);
  const relayed = nodeServices(a).datagrams!.live(d);
  t.ok(relayed, 'one relayed connection to d');
  const stream = await a.openStream(d, 'echo');
  const payload = Buffer.alloc(512 * 1024, 0x5a);
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise((resolve) => stream.on('end', resolve));
  stream.end(payload);
  await ended;
  t.ok(Buffer.concat(chunks).equals(payload), 'echo byte-exact');
  t.equal(nodeServices(a).datagrams!.live(d), relayed, 'on the same connection');
  t.equal(nodeServices(b).streams.relayStats().flows, 0, 'the hop relayed no stream: datagrams only');
  child.kill('SIGTERM');
  await once(child, 'exit');
});
