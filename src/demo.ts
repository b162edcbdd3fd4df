/**
 * `npm run demo`: a network on loopback. Nodes join one at a time, each through one node that
 * is already in (so the topology is a random tree plus a few extra links); routes converge; a
 * stream crosses several hops through the relay, end-to-end encrypted; then every node answers a
 * request from node 0. Prints what happened and how long each step took. Exits 0 on success.
 */
import { createNode } from './index.js';
import type { PnetNode } from './index.js';

const NODE_COUNT = Number(process.env.PNET_DEMO_NODES ?? 24);

function ms(since: number): string {
  return `${(performance.now() - since).toFixed(0)} ms`;
}

/** A small deterministic PRNG, so every run builds the same shape. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
}

async function main(): Promise<void> {
  const random = prng(7);
  let t0 = performance.now();
  const nodes: PnetNode[] = [];
  for (let i = 0; i < NODE_COUNT; i++) {
    const via = i === 0 ? undefined : nodes[Math.floor(random() * i)]!;
    const node = await createNode({ listen: '127.0.0.1:0', bootstrap: via ? [via.address] : [], routing: { rttSampleMs: 250 } });
    node.handle('echo', (stream) => {
      stream.pipe(stream);
    });
    node.handleRequest('whoami', (request, info) => `${node.id.slice(0, 8)} answering ${info.remoteNodeId.slice(0, 8)}: ${request.toString()}`, {
      authorise: (info) => info.metadata['role'] === 'operator',
    });
    nodes.push(node);
  }
  // A few extra links turn the tree into a mesh with alternative paths.
  for (let k = 0; k < Math.floor(NODE_COUNT / 6); k++) {
    const a = nodes[Math.floor(random() * NODE_COUNT)]!;
    const b = nodes[Math.floor(random() * NODE_COUNT)]!;
    if (a !== b) await a.dial(b.address);
  }
  console.log(`${NODE_COUNT} nodes joined, each through one member: ${ms(t0)}`);

  t0 = performance.now();
  while (!nodes.every((node) => node.routes().length === NODE_COUNT - 1)) {
    if (performance.now() - t0 > 30_000) throw new Error('routes did not converge within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const links = nodes.reduce((sum, node) => sum + node.peers().length, 0) / 2;
  console.log(`routes converged over ${links} direct links: every node has a route to all ${NODE_COUNT - 1} others: ${ms(t0)}`);

  // The farthest pair from node 0.
  const far = nodes.slice(1).reduce((best, node) => (nodes[0]!.path(node.id)!.length > nodes[0]!.path(best.id)!.length ? node : best));
  const path = nodes[0]!.path(far.id)!;
  console.log(`farthest node from node 0 is ${path.length - 1} hops away:`);
  console.log(`  ${path.map((id) => `node ${nodes.findIndex((n) => n.id === id)}`).join(' -> ')}`);

  t0 = performance.now();
  const stream = await nodes[0]!.openStream(far.id, 'echo');
  console.log(`  stream opened through ${path.length - 2} relays (end-to-end TLS inside): ${ms(t0)}`);
  const payload = Buffer.alloc(1024, 0x2a);
  const rtts: number[] = [];
  for (let round = 0; round < 50; round++) {
    const sent = performance.now();
    await new Promise<void>((resolve) => {
      let got = 0;
      const onData = (chunk: Buffer): void => {
        got += chunk.length;
        if (got >= payload.length) {
          stream.off('data', onData);
          resolve();
        }
      };
      stream.on('data', onData);
      stream.write(payload);
    });
    rtts.push(performance.now() - sent);
  }
  stream.end();
  rtts.sort((x, y) => x - y);
  console.log(`  50 x 1 KiB echo over ${path.length - 1} hops: median RTT ${(rtts[25]! * 1000).toFixed(0)} µs`);

  t0 = performance.now();
  try {
    await nodes[0]!.request(far.id, 'whoami', 'hello');
    throw new Error('an unauthorised request was answered');
  } catch (error) {
    console.log(`  request without the operator role -> ${(error as { code?: string }).code}`);
  }
  const answers = await Promise.all(nodes.slice(1).map((node) => nodes[0]!.request(node.id, 'whoami', 'hello', { metadata: { role: 'operator' } })));
  console.log(`node 0 asked all ${answers.length} others (direct or relayed) and got ${answers.length} authenticated answers: ${ms(t0)}`);
  console.log(`  e.g. "${answers.at(-1)!.toString()}"`);

  t0 = performance.now();
  await Promise.all(nodes.map((node) => node.close({ timeoutMs: 500 })));
  console.log(`closed all nodes: ${ms(t0)}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error('demo failed:', error);
    process.exit(1);
  },
);
