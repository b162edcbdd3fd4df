/**
 * `npm run demo`: a small network on loopback. Nodes start, join through
 * the first one, negotiate channels and echo over streams; it prints node
 * ids, round-trip times and how long each step took. Exits 0 on success.
 */
import { createNode } from './index.js';
import type { PnetNode } from './index.js';

const NODE_COUNT = Number(process.env.PNET_DEMO_NODES ?? 6);

function ms(since: number): string {
  return `${(performance.now() - since).toFixed(1)} ms`;
}

async function main(): Promise<void> {
  let t0 = performance.now();
  const nodes: PnetNode[] = [];
  for (let i = 0; i < NODE_COUNT; i++) {
    const node = await createNode({ listen: '127.0.0.1:0', bootstrap: i === 0 ? [] : [nodes[0]!.address] });
    node.handle('echo', (stream) => stream.pipe(stream));
    node.handleRequest('whoami', (_request, info) => `${node.id} sees you as ${info.remoteNodeId}`, {
      authorise: (info) => info.metadata['role'] === 'operator',
    });
    nodes.push(node);
  }
  console.log(`started ${NODE_COUNT} nodes, each joined through the first: ${ms(t0)}`);
  nodes.forEach((node, i) => console.log(`  node ${i}  ${node.id}  udp ${node.address}`));

  // Everyone dials everyone else directly (routing through neighbours comes with the router).
  t0 = performance.now();
  for (const node of nodes) {
    for (const other of nodes) if (other !== node) await node.dial(other.address, { expectedNodeId: other.id });
  }
  console.log(`full mesh of ${(NODE_COUNT * (NODE_COUNT - 1)) / 2} connections: ${ms(t0)}`);

  t0 = performance.now();
  const payload = Buffer.alloc(1024, 0x2a);
  for (let i = 1; i < nodes.length; i++) {
    const stream = await nodes[0]!.openStream(nodes[i]!.id, 'echo');
    const rtts: number[] = [];
    for (let round = 0; round < 50; round++) {
      const sent = performance.now();
      const echoed = new Promise<void>((resolve) => {
        let got = 0;
        const onData = (chunk: Buffer): void => {
          got += chunk.length;
          if (got >= payload.length) {
            stream.off('data', onData);
            resolve();
          }
        };
        stream.on('data', onData);
      });
      stream.write(payload);
      await echoed;
      rtts.push(performance.now() - sent);
    }
    stream.end();
    rtts.sort((x, y) => x - y);
    const median = rtts[rtts.length >> 1]!;
    console.log(`  node 0 -> node ${i}: 50 x 1 KiB echo on channel "echo", median RTT ${(median * 1000).toFixed(0)} µs`);
  }
  console.log(`echo over negotiated streams: ${ms(t0)}`);

  t0 = performance.now();
  try {
    await nodes[0]!.request(nodes[1]!.id, 'whoami', '');
    throw new Error('an unauthorised request was answered');
  } catch (error) {
    console.log(`  request without the operator role -> ${(error as { code?: string }).code}`);
  }
  const answer = await nodes[0]!.request(nodes[1]!.id, 'whoami', '', { metadata: { role: 'operator' } });
  console.log(`  request with it -> "${answer.toString().slice(0, 40)}…"`);
  console.log(`authorised request/response: ${ms(t0)}`);

  t0 = performance.now();
  await Promise.all(nodes.map((node) => node.close()));
  console.log(`closed all nodes gracefully: ${ms(t0)}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error('demo failed:', error);
    process.exit(1);
  },
);
