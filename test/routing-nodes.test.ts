import t from 'tap';
import type { Test } from 'tap';
import { createNode } from '../src/index.js';
import type { PnetNode, PnetError, NodeId } from '../src/index.js';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { childEnv } from './fixtures/child-env.js';
import { nodeServices } from '../src/node/node.js';
import { openChannel } from '../src/channel/index.js';

// Real QUIC nodes on loopback, each connected only to its topology neighbours; everything else goes
// through the router and the relay.

type Edges = Array<[number, number]>;

const line = (n: number): Edges => Array.from({ length: n - 1 }, (_, i) => [i, i + 1] as [number, number]);
const ring = (n: number): Edges => [...line(n), [n - 1, 0]];
const tree = (n: number): Edges => Array.from({ length: n - 1 }, (_, i) => [Math.floor(i / 2), i + 1] as [number, number]);
const mesh = (n: number): Edges => {
  const edges: Edges = ring(n);
  for (let i = 0; i < n; i += 2) edges.push([i, (i + n / 2) % n]);
  return edges;
};

const options = { quic: { idleTimeoutMs: 1500 }, routing: { rttSampleMs: 200 } };

async function network(t: Test, size: number, edges: Edges): Promise<PnetNode[]> {
  const nodes: PnetNode[] = [];
  for (let i = 0; i < size; i++) {
    const node = await createNode(options);
    node.handleRequest('whoami', (request, info) => Buffer.concat([Buffer.from(`${node.id}<-${info.remoteNodeId}:`), request]));
    nodes.push(node);
  }
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  for (const [x, y] of edges) await nodes[x]!.dial(nodes[y]!.address);
  await converged(nodes);
  return nodes;
}

async function converged(nodes: PnetNode[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const live = nodes.filter((node) => !node.closed);
  while (!live.every((node) => node.routes().length === live.length - 1)) {
    if (Date.now() > deadline) throw new Error(`routes did not converge: ${live.map((n) => n.routes().length).join(',')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function allPairs(t: Test, nodes: PnetNode[]): Promise<void> {
  let ok = 0;
  let total = 0;
  for (const from of nodes) {
    await Promise.all(
      nodes
        .filter((to) => to !== from)
        .map(async (to) => {
          total++;
          const payload = Buffer.from(`${from.id}->${to.id}`);
          const reply = await from.request(to.id, 'whoami', payload);
          if (reply.equals(Buffer.concat([Buffer.from(`${to.id}<-${from.id}:`), payload]))) ok++;
        }),
    );
  }
  t.equal(ok, total, `${total} requests, every one byte-exact with the real sender seen`);
}

for (const [name, size, edges] of [
  ['line of 8', 8, line(8)],
  ['ring of 8', 8, ring(8)],
  ['tree of 15', 15, tree(15)],
  ['mesh of 10', 10, mesh(10)],
] as const) {
  t.test(`${name}: every node reaches every other`, async (t) => {
    const nodes = await network(t, size, edges);
    await allPairs(t, nodes);
    if (name === 'line of 8') {
      t.same(nodes[0]!.path(nodes[7]!.id), nodes.map((n) => n.id), 'the path follows the line');
    }
  });
}

t.test('kill a ring node (SIGKILL of its process): the survivors reach each other again', async (t) => {
  // Nodes 0..6 here; the 8th ring member runs in a child process between 6 and 0.
  const nodes: PnetNode[] = [];
  for (let i = 0; i < 7; i++) {
    const node = await createNode(options);
    node.handleRequest('whoami', (request, info) => Buffer.concat([Buffer.from(`${node.id}<-${info.remoteNodeId}:`), request]));
    nodes.push(node);
  }
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  for (let i = 0; i < 6; i++) await nodes[i]!.dial(nodes[i + 1]!.address);
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/peer.mts', import.meta.url).pathname], {
    env: childEnv({ IDLE_MS: '1500', BOOTSTRAP: `${nodes[6]!.address},${nodes[0]!.address}` }),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const victim = JSON.parse(line.toString()) as { id: NodeId };
  const deadline = Date.now() + 10_000;
  while (!nodes.every((node) => node.routes().length === 7)) {
    if (Date.now() > deadline) throw new Error('the ring of 8 did not converge');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.ok((await nodes[0]!.request(victim.id, 'whoami', 'hi')).toString().endsWith('hi'), 'the child answers before the kill');
  const killedAt = Date.now();
  child.kill('SIGKILL');
  await converged(nodes, 15_000);
  const reply = await nodes[0]!.request(nodes[6]!.id, 'whoami', 'around');
  t.ok(reply.toString().endsWith('around'), `0 reaches 6 the long way round, ${Date.now() - killedAt} ms after the kill`);
  t.equal(nodes[0]!.path(nodes[6]!.id)!.length, 7, 'the path goes the other way round the ring');
  await t.rejects(nodes[0]!.request(victim.id, 'whoami', 'x'), { code: 'UNREACHABLE' }, 'the dead node is unreachable, clearly');
});

t.test('split a line: UNREACHABLE, then reachable when the link returns', async (t) => {
  const nodes = await network(t, 4, line(4));
  await nodes[1]!.disconnect(nodes[2]!.id);
  const deadline = Date.now() + 10_000;
  while (nodes[0]!.routes().some((route) => route.nodeId === nodes[3]!.id)) {
    if (Date.now() > deadline) throw new Error('route to 3 never went away');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await t.rejects(nodes[0]!.request(nodes[3]!.id, 'whoami', 'x'), { code: 'UNREACHABLE' });
  await nodes[1]!.dial(nodes[2]!.address);
  await converged(nodes);
  t.ok((await nodes[0]!.request(nodes[3]!.id, 'whoami', 'back')).toString().endsWith('back'));
});

t.test('a relay hop sees only ciphertext', async (t) => {
  const forwarded: Buffer[] = [];
  const nodes: PnetNode[] = [];
  for (let i = 0; i < 3; i++) {
    const node = await createNode({ ...options, relay: i === 1 ? { onForward: (chunk: Buffer) => void forwarded.push(Buffer.from(chunk)) } : {} });
    node.handle('sink', (stream) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => stream.end(Buffer.concat(chunks)));
    });
    nodes.push(node);
  }
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  await nodes[0]!.dial(nodes[1]!.address);
  await nodes[1]!.dial(nodes[2]!.address);
  await converged(nodes);
  const marker = 'THE-SECRET-MARKER-'.repeat(64);
  const stream = await nodes[0]!.openStream(nodes[2]!.id, 'sink');
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise((resolve) => stream.on('end', resolve));
  stream.end(marker);
  await ended;
  t.equal(Buffer.concat(chunks).toString(), marker, 'the marker arrived and came back');
  const seen = Buffer.concat(forwarded);
  t.ok(seen.length > marker.length, 'the hop forwarded the traffic');
  t.equal(seen.indexOf('THE-SECRET-MARKER'), -1, 'the hop never saw the marker in clear');
  t.equal(seen.indexOf('sink'), -1, 'nor the channel name');
});

t.test('a hop limit shorter than the path gives HOP_LIMIT', async (t) => {
  const nodes: PnetNode[] = [];
  for (let i = 0; i < 4; i++) {
    const node = await createNode({ ...options, relay: { maxHops: 2 } });
    node.handleRequest('whoami', () => node.id);
    nodes.push(node);
  }
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  for (let i = 0; i < 3; i++) await nodes[i]!.dial(nodes[i + 1]!.address);
  await converged(nodes);
  t.equal((await nodes[0]!.request(nodes[2]!.id, 'whoami', '')).toString(), nodes[2]!.id, 'two hops are allowed');
  await t.rejects(nodes[0]!.request(nodes[3]!.id, 'whoami', ''), { code: 'HOP_LIMIT' }, 'three are not');
});

t.test('unknown destinations and channels give clear errors through the relay', async (t) => {
  const nodes = await network(t, 3, line(3));
  nodes[2]!.handleRequest('small', (request) => request, { maxRequestBytes: 10 });
  await t.rejects(nodes[0]!.request(nodes[2]!.id, 'small', Buffer.alloc(100)), 'an oversized request through the relay is refused');
  t.equal((await nodes[0]!.request(nodes[2]!.id, 'small', 'tiny')).toString(), 'tiny', 'and the next one works');
  const stranger = await createNode();
  t.teardown(() => stranger.close());
  await t.rejects(nodes[0]!.request(stranger.id, 'whoami', 'x'), { code: 'UNREACHABLE' });
  const error = await nodes[0]!.openStream(nodes[2]!.id, 'no-such-channel').catch((e: PnetError) => e);
  t.equal((error as PnetError).code, 'UNKNOWN_CHANNEL', 'negotiation inside the tunnel answers as on a direct stream');
});

t.test('a peer that never speaks routing (a CLI node) is never a neighbour or a link in the map', async (t) => {
  const nodes = await network(t, 2, line(2));
  const cli = await createNode({ ...options, routing: { ...options.routing, neighbourHoldDownMs: 2 ** 31 - 1 } });
  t.teardown(() => cli.close({ timeoutMs: 100 }));
  await cli.dial(nodes[0]!.address);
  await new Promise((resolve) => setTimeout(resolve, 800)); // well past the daemon's 200 ms hold-down
  t.ok(nodes[0]!.peers().some((peer) => peer.nodeId === cli.id), 'connected');
  const links = nodes.flatMap((node) => node.topology().links);
  t.notOk(links.some((link) => link.from === cli.id || link.to === cli.id), 'no record mentions the CLI node');
  t.notOk(nodes[1]!.routes().some((route) => route.nodeId === cli.id), 'nobody routes to it');
  t.equal(cli.routes().length, 0, 'and it routes nowhere');
  t.ok(links.some((link) => link.from === nodes[0]!.id && link.to === nodes[1]!.id), 'the real link is in the map');
});

t.test('a link-state message over the size limit is dropped and reported as ERR_ROUTING_MESSAGE_TOO_LARGE', async (t) => {
  const [a, b] = (await network(t, 2, line(2))) as [PnetNode, PnetNode];
  const reported = new Promise<Error>((resolve) => b.once('error', resolve));
  // A raw stream on the routing channel, from a's peer table (openStream refuses pnet/ channels).
  const stream = await nodeServices(a).peers.get(b.id)!.openStream();
  stream.on('error', () => undefined);
  openChannel(stream, 'pnet/routing').accepted.catch(() => undefined);
  stream.end(Buffer.alloc(nodeServices(b).neighbours.router.maxMessageBytes + 1));
  const error = (await reported) as PnetError;
  t.equal(error.code, 'ERR_ROUTING_MESSAGE_TOO_LARGE');
  t.equal((await a.request(b.id, 'whoami', 'x')).toString(), `${b.id}<-${a.id}:x`, 'the connection still serves');
  t.equal(b.routes().length, 1, 'the routes stay');
});
