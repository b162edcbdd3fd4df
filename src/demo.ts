/**
 * `npm run demo`: the main job on an embedded default. A network of nodes on loopback, all in
 * this one process (each with its own UDP socket, keys and router, on the same code paths as
 * separate hosts): each node joins through one random earlier node, so the topology is an
 * irregular tree, plus a few extra links; routes converge; a stream crosses several relays; an
 * operator runs an allow-listed command on every node by fan-out; the map is printed as DOT.
 * Exits 0 on success.
 */
import { createNode } from './index.js';
import type { FanoutResult, PnetNode } from './index.js';
import { OPS_CHANNELS, percentile, serveOps, toDot, validateOpsConfig } from './cli/index.js';
import type { ExecReply, OpsService } from './cli/index.js';

const NODE_COUNT = Number(process.env.PNET_DEMO_NODES ?? 32);

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

/** Each node joins through one random earlier node; node 0 is the operator; a few extra links. */
async function join(random: () => number): Promise<{ nodes: PnetNode[]; services: OpsService[] }> {
  const t0 = performance.now();
  const nodes: PnetNode[] = [];
  for (let i = 0; i < NODE_COUNT; i++) {
    const via = i === 0 ? undefined : nodes[Math.floor(random() * i)]!;
    const node = await createNode({ listen: '127.0.0.1:0', bootstrap: via ? [via.address] : [], routing: { rttSampleMs: 250 } });
    node.handle('echo', (stream) => {
      stream.pipe(stream);
    });
    nodes.push(node);
  }
  // Node 0 is the operator: every node lets it run one allow-listed command, and nobody else.
  const ops = validateOpsConfig({ operators: [nodes[0]!.id], commands: { uname: { argv: ['uname', '-sr'] } } }, 'demo');
  const services = nodes.map((node) => serveOps(node, ops));
  // A few extra links turn the tree into a mesh with alternative paths.
  for (let k = 0; k < Math.floor(NODE_COUNT / 8); k++) {
    const a = nodes[Math.floor(random() * NODE_COUNT)]!;
    const b = nodes[Math.floor(random() * NODE_COUNT)]!;
    if (a !== b) await a.dial(b.address);
  }
  console.log(`${NODE_COUNT} nodes joined on loopback (one process), each through one random earlier node: ${ms(t0)}`);
  return { nodes, services };
}

async function converge(nodes: PnetNode[]): Promise<void> {
  const t0 = performance.now();
  while (!nodes.every((node) => node.routes().length === NODE_COUNT - 1)) {
    if (performance.now() - t0 > 60_000) throw new Error('routes did not converge within 60 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const links = nodes.reduce((sum, node) => sum + node.peers().length, 0) / 2;
  console.log(`routes converged over ${links} direct links, every node has a route to all ${NODE_COUNT - 1} others: ${ms(t0)}`);
}

/** Opens a stream to the node farthest from the operator and times 1 KiB echoes over it; returns that node. */
async function echoAcross(nodes: PnetNode[]): Promise<PnetNode> {
  const operator = nodes[0]!;
  const far = nodes.slice(1).reduce((best, node) => (operator.path(node.id)!.length > operator.path(best.id)!.length ? node : best));
  const path = operator.path(far.id)!;
  console.log(`farthest node from node 0 is ${path.length - 1} hops away: ${path.map((id) => `node ${nodes.findIndex((n) => n.id === id)}`).join(' -> ')}`);
  const t0 = performance.now();
  const stream = await operator.openStream(far.id, 'echo');
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
  console.log(`  50 x 1 KiB echo over ${path.length - 1} hops: median RTT ${((percentile(rtts, 50) ?? 0) * 1000).toFixed(0)} µs`);
  return far;
}

/** exec on every node: one fan-out, one copy per next hop, answers signed by each node; then the same from a non-operator. */
async function execEverywhere(nodes: PnetNode[], far: PnetNode): Promise<void> {
  const operator = nodes[0]!;
  const t0 = performance.now();
  const results: FanoutResult[] = [];
  for await (const result of operator.fanout('all', OPS_CHANNELS.exec, JSON.stringify({ command: 'uname' }), { deadlineMs: 10_000 })) results.push(result);
  const replies = results.map((result) => (result.ok ? (JSON.parse(result.data.toString()) as ExecReply) : undefined));
  const ok = replies.filter((reply) => reply?.exitCode === 0).length;
  const timedOut = results.filter((result) => !result.ok && result.error.code === 'ERR_REQUEST_TIMEOUT').length;
  const latencies = results.map((result) => result.ms);
  console.log(`exec "uname -sr" on all ${results.length} nodes by fan-out: ${ms(t0)}`);
  console.log(
    `  ok ${ok}, failed ${results.length - ok - timedOut}, timed out ${timedOut}; latency p50 ${percentile(latencies, 50)!.toFixed(1)} ms, p99 ${percentile(latencies, 99)!.toFixed(1)} ms; up to ${Math.max(...results.map((r) => r.hops))} hops; the operator sent ${operator.fanoutStats.legsSent} copies to its ${operator.peers().length} neighbours`,
  );
  console.log(`  e.g. node ${nodes.findIndex((n) => n.id === far.id)}: ${replies[results.findIndex((r) => r.nodeId === far.id)]?.stdout.trim()}`);
  const refused: FanoutResult[] = [];
  for await (const result of far.fanout([operator.id, nodes[1]!.id], OPS_CHANNELS.exec, JSON.stringify({ command: 'uname' }), { deadlineMs: 5000 })) refused.push(result);
  console.log(`  the same from a node that is not an operator -> ${[...new Set(refused.map((r) => (r.ok ? 'ok' : r.error.code)))].join(', ')}`);
}

async function main(): Promise<void> {
  const { nodes, services } = await join(prng(11));
  await converge(nodes);
  const far = await echoAcross(nodes);
  await execEverywhere(nodes, far);
  console.log('topology (Graphviz DOT):');
  process.stdout.write(toDot({ self: nodes[0]!.id, ...nodes[0]!.topology() }));
  const t0 = performance.now();
  await Promise.all(services.map((service) => service.close()));
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
