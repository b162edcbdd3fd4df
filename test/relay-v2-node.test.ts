import t from 'tap';
import type { Test } from 'tap';
import { createHash } from 'node:crypto';
import { createNode } from '../src/index.js';
import type { PnetNode, NodeOptions } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

// Relay v2 wired into real nodes (QUIC on loopback): one end-to-end QUIC connection per far node,
// its packets forwarded by the hops as QUIC DATAGRAM frames.

const options: NodeOptions = { routing: { rttSampleMs: 200 } };

async function converged(nodes: PnetNode[], timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const live = nodes.filter((node) => !node.closed);
  while (!live.every((node) => node.routes().length === live.length - 1)) {
    if (Date.now() > deadline) throw new Error(`routes did not converge: ${live.map((n) => n.routes().length).join(',')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function network(t: Test, size: number, edges: Array<[number, number]>, each: (i: number) => NodeOptions = () => ({})): Promise<PnetNode[]> {
  const nodes: PnetNode[] = [];
  for (let i = 0; i < size; i++) {
    const node = await createNode({ ...options, ...each(i) });
    node.handleRequest('whoami', (request, info) => Buffer.concat([Buffer.from(`${node.id}<-${info.remoteNodeId}:`), request]));
    nodes.push(node);
  }
  t.teardown(() => Promise.all(nodes.map((node) => node.close({ timeoutMs: 200 }))).then(() => undefined));
  for (const [x, y] of edges) await nodes[x]!.dial(nodes[y]!.address);
  await converged(nodes);
  return nodes;
}

const relayPeers = (node: PnetNode): number => node.peers().filter((peer) => peer.transport === 'relay').length;
const line4: Array<[number, number]> = [[0, 1], [1, 2], [2, 3]];

t.test('a line a-b-c-d: requests from a to d on one relayed connection, reused', async (t) => {
  const nodes = await network(t, 4, line4);
  const [a, b, c, d] = nodes as [PnetNode, PnetNode, PnetNode, PnetNode];
  const reply = await a.request(d.id, 'whoami', 'hello');
  t.equal(reply.toString(), `${d.id}<-${a.id}:hello`, 'the far node answered and saw the real sender');
  const relayed = nodeServices(a).datagrams!.live(d.id);
  t.ok(relayed, 'a keeps a relayed connection to d');
  t.equal(relayPeers(a), 1, "it is in a's peers() as transport 'relay'");
  t.equal(relayPeers(d), 1, "and in d's");
  for (let i = 0; i < 20; i++) t.equal((await a.request(d.id, 'whoami', `n${i}`)).toString(), `${d.id}<-${a.id}:n${i}`);
  const stream = await a.openStream(d.id, 'whoami-stream').catch((error: { code: string }) => error);
  t.equal((stream as { code: string }).code, 'UNKNOWN_CHANNEL', 'a second openStream negotiates as on a direct stream');
  t.equal(nodeServices(a).datagrams!.live(d.id), relayed, 'later streams reuse the same connection (no new handshake)');
  t.equal(relayPeers(a), 1);
  t.equal(nodeServices(a).datagrams!.stats().connections, 1, 'one relayed QUIC connection at a');
  for (const hop of [b, c]) {
    t.ok(nodeServices(hop).datagrams!.forwarder.stats.forwarded > 0, 'the hops forwarded datagrams');
    t.equal(nodeServices(hop).streams.relayStats().flows, 0, 'and spliced no relayed stream (the old relay is not used)');
  }
  // d can answer back on the same connection: the way back reuses it too.
  t.equal((await d.request(a.id, 'whoami', 'back')).toString(), `${a.id}<-${d.id}:back`);
  t.equal(relayPeers(d), 1, 'd reuses the inbound relayed connection');
});

t.test('errors through relay v2 are the far end\'s: ERR_HANDLER_FAILED, ERR_REQUEST_TOO_LARGE, UNREACHABLE at once', async (t) => {
  const nodes = await network(t, 4, line4);
  const [a, , , d] = nodes as [PnetNode, PnetNode, PnetNode, PnetNode];
  d.handleRequest('throws', () => {
    throw new Error('boom');
  });
  d.handleRequest('small', (request) => request, { maxRequestBytes: 10 });
  d.on('error', () => undefined);
  await t.rejects(a.request(d.id, 'throws', 'x'), { code: 'ERR_HANDLER_FAILED' }, 'a throwing handler at d');
  await t.rejects(a.request(d.id, 'small', Buffer.alloc(100)), { code: 'ERR_REQUEST_TOO_LARGE' }, 'an oversized request');
  t.equal((await a.request(d.id, 'small', 'tiny')).toString(), 'tiny');
  const stranger = await createNode(options);
  t.teardown(() => stranger.close({ timeoutMs: 100 }));
  const started = performance.now();
  await t.rejects(a.request(stranger.id, 'whoami', 'x'), { code: 'UNREACHABLE' }, 'no route');
  t.ok(performance.now() - started < 2000, 'UNREACHABLE comes from the routes, not a timeout');
});

t.test('hops never see a plaintext marker', async (t) => {
  const forwarded: Buffer[] = [];
  const nodes = await network(t, 4, line4, (i) => (i === 1 || i === 2 ? { relay: { onForward: (chunk: Buffer) => void forwarded.push(Buffer.from(chunk)) } } : {}));
  const [a, , , d] = nodes as [PnetNode, PnetNode, PnetNode, PnetNode];
  d.handle('sink', (stream) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => stream.end(Buffer.concat(chunks)));
  });
  const marker = 'THE-SECRET-MARKER-'.repeat(64);
  const stream = await a.openStream(d.id, 'sink');
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise((resolve) => stream.on('end', resolve));
  stream.end(marker);
  await ended;
  t.equal(Buffer.concat(chunks).toString(), marker, 'the marker arrived and came back');
  const seen = Buffer.concat(forwarded);
  t.ok(seen.length > 2 * marker.length, 'the hops forwarded the traffic');
  t.equal(seen.indexOf('THE-SECRET-MARKER'), -1, 'no hop saw the marker in clear');
  t.equal(seen.indexOf('sink'), -1, 'nor the channel name');
});

t.test('a ring whose relay on the current path closes mid-transfer: the same stream completes byte-exact', async (t) => {
  // 0-1-2-3-4-0: 0 reaches 2 through 1 (two links), the other way round is three. Costs count
  // hops only (an RTT unit of 1,000 s), so a loaded machine's RTT noise cannot pick the long way.
  const hopsOnly: NodeOptions = { routing: { rttSampleMs: 200, cost: { unitMs: 1_000_000 } } };
  const nodes = await network(t, 5, [[0, 1], [1, 2], [2, 3], [3, 4], [4, 0]], () => hopsOnly);
  const [from, hop, to] = nodes as [PnetNode, PnetNode, PnetNode];
  t.same(from.path(to.id), [from.id, hop.id, to.id], 'the path goes through the hop');
  to.handle('digest', (stream) => {
    const hash = createHash('sha256');
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    stream.on('end', () => stream.end(`${bytes}:${hash.digest('hex')}`));
  });
  const total = 4 * 1024 * 1024;
  const payload = Buffer.alloc(total);
  for (let i = 0; i < total; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
  const stream = await from.openStream(to.id, 'digest');
  const reply: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => reply.push(chunk));
  const ended = new Promise((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  const chunk = 64 * 1024;
  let killed = false;
  for (let offset = 0; offset < total; offset += chunk) {
    if (!killed && offset >= total / 4) {
      killed = true;
      void hop.close({ timeoutMs: 0 });
    }
    if (!stream.write(payload.subarray(offset, offset + chunk))) await new Promise((resolve) => stream.once('drain', resolve));
  }
  stream.end();
  await ended;
  t.equal(Buffer.concat(reply).toString(), `${total}:${createHash('sha256').update(payload).digest('hex')}`, 'byte-exact');
  t.same(from.path(to.id), [from.id, nodes[4]!.id, nodes[3]!.id, to.id], 'the route went the other way round');
  t.equal(relayPeers(from), 1, 'on the same relayed connection');
});

t.test('an idle relayed connection closes after relay.idleTimeoutMs; the next request opens a new one', async (t) => {
  const nodes = await network(t, 3, [[0, 1], [1, 2]], () => ({ relay: { idleTimeoutMs: 300 } }));
  const [a, , c] = nodes as [PnetNode, PnetNode, PnetNode];
  t.equal((await a.request(c.id, 'whoami', 'one')).toString(), `${c.id}<-${a.id}:one`);
  t.equal(relayPeers(a), 1);
  const deadline = Date.now() + 10_000;
  while (relayPeers(a) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(relayPeers(a), 0, 'closed when idle');
  t.equal((await a.request(c.id, 'whoami', 'two')).toString(), `${c.id}<-${a.id}:two`, 'and a new one serves the next request');
});

t.test('a relayed connection is replaced after rotateAfterStreams streams; one kept past twice that is closed', async (t) => {
  const budget = 20;
  const nodes = await network(t, 3, [[0, 1], [1, 2]], (i) => ({ rotateAfterStreams: i === 0 ? 1_000_000 : budget }));
  const [a, , c] = nodes as [PnetNode, PnetNode, PnetNode];
  // c uses its relayed connection to a: a fresh one every `budget` streams, every request answered.
  const seen = new Set<unknown>();
  for (let i = 0; i < 3 * budget + 5; i++) {
    t.equal((await c.request(a.id, 'whoami', `r${i}`)).toString(), `${a.id}<-${c.id}:r${i}`);
    seen.add(nodeServices(c).datagrams!.live(a.id));
  }
  t.ok(seen.size >= 3, `c used ${seen.size} relayed connections in turn`);
  t.equal(nodeServices(c).datagrams!.stats().rotated, seen.size - 1, 'each replacement counted');
  const deadline = Date.now() + 10_000;
  while (relayPeers(c) > 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(relayPeers(c), 1, 'the replaced ones closed (their streams had finished)');
  // a never rotates (its budget is 1,000,000): c closes a connection a keeps using past twice c's budget.
  const worn = nodeServices(a).datagrams!.live(c.id);
  for (let i = 0; i < 2 * budget + 2; i++) await a.request(c.id, 'whoami', `s${i}`).catch(() => undefined);
  const until = Date.now() + 5_000;
  while (nodeServices(c).datagrams!.stats().overBudgetClosed === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
  t.ok(nodeServices(c).datagrams!.stats().overBudgetClosed >= 1, 'c closed the connection a wore past twice the budget');
  // A request sent before c's close reaches a fails on the closing connection (ERR_CONNECTION_CLOSED): wait for a to hear it.
  const heard = Date.now() + 10_000;
  while (worn !== undefined && !worn.closed && Date.now() < heard) await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal((await a.request(c.id, 'whoami', 'after')).toString(), `${c.id}<-${a.id}:after`, 'a new one serves the next request');
});

t.test('relay.datagrams false: the stream relay carries it', async (t) => {
  const nodes = await network(t, 3, [[0, 1], [1, 2]], () => ({ relay: { datagrams: false } }));
  const [a, b, c] = nodes as [PnetNode, PnetNode, PnetNode];
  t.equal((await a.request(c.id, 'whoami', 'x')).toString(), `${c.id}<-${a.id}:x`);
  t.equal(relayPeers(a), 0, 'no relayed connection');
  t.equal(nodeServices(b).streams.relayStats().flows, 1, 'the hop spliced one relayed stream');
});

t.test('disconnect(far) closes the relayed connection at both ends; the next request opens a new one', async (t) => {
  const nodes = await network(t, 3, [[0, 1], [1, 2]]);
  const [a, b, c] = nodes as [PnetNode, PnetNode, PnetNode];
  t.equal((await a.request(c.id, 'whoami', 'one')).toString(), `${c.id}<-${a.id}:one`);
  const first = nodeServices(a).datagrams!.live(c.id);
  t.ok(first, 'a relayed connection to c');
  t.equal(relayPeers(c), 1, "c lists it too");
  await a.disconnect(c.id);
  t.ok(first!.closed, 'the end-to-end connection is closed at a');
  t.equal(relayPeers(a), 0, "gone from a's peers()");
  t.equal(nodeServices(a).datagrams!.live(c.id), undefined);
  const deadline = Date.now() + 10_000;
  while (relayPeers(c) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(relayPeers(c), 0, "and from c's: the close reached the far end");
  t.ok(a.peers().some((peer) => peer.nodeId === b.id), 'the neighbour link to the hop stays up');
  t.equal((await a.request(c.id, 'whoami', 'two')).toString(), `${c.id}<-${a.id}:two`);
  const second = nodeServices(a).datagrams!.live(c.id);
  t.ok(second && second !== first, 'the next request opened a new relayed connection');
});

t.test('a far node that restarts tells a relayed connection it forgot it (UNKNOWN_CONNECTION): the next request redials at once', async (t) => {
  const nodes = await network(t, 4, line4);
  const [a, , c, d] = nodes as [PnetNode, PnetNode, PnetNode, PnetNode];
  t.equal((await a.request(d.id, 'whoami', 'before')).toString(), `${d.id}<-${a.id}:before`);
  const stale = nodeServices(a).datagrams!.live(d.id);
  t.ok(stale, 'a holds a relayed connection to d');
  // d is gone without a word reaching a (c's link to it drops the CONNECTION_CLOSE), and back on its port with its key.
  const identity = d.identity;
  const address = d.address;
  await d.close({ timeoutMs: 0 });
  const again = await createNode({ ...options, identity, listen: address });
  t.teardown(() => again.close({ timeoutMs: 200 }));
  again.handleRequest('whoami', (request, info) => Buffer.concat([Buffer.from(`${again.id}<-${info.remoteNodeId}:`), request]));
  await again.dial(c.address);
  await converged([a, nodes[1]!, c, again]);
  const before = nodeServices(a).datagrams!.endpoint.stats.errorsReported;
  // The first request's packets reach the new d, which has no such connection: its report closes a's
  // at once (the request in flight fails with that reason), instead of after the relayed idle timeout.
  const started = performance.now();
  const reply = await a.request(d.id, 'whoami', 'after', { timeoutMs: 4000 }).catch((error: Error) => error);
  const tookMs = performance.now() - started;
  t.comment(`request after the restart: ${reply instanceof Error ? reply.message : 'answered'} in ${tookMs.toFixed(0)} ms; reports ${nodeServices(a).datagrams!.endpoint.stats.errorsReported - before}`);
  t.ok(nodeServices(a).datagrams!.endpoint.stats.errorsReported > before, 'a heard UNKNOWN_CONNECTION from d');
  t.ok(tookMs < 3000, 'the request ended before the stale connection could time out (answered, or closed by the report)');
  for (const until = performance.now() + 5000; !stale!.closed && performance.now() < until; ) await new Promise((resolve) => setTimeout(resolve, 10));
  t.ok(stale!.closed, 'the stale relayed connection closed');
  t.equal((await a.request(d.id, 'whoami', 'later', { timeoutMs: 4000 })).toString(), `${d.id}<-${a.id}:later`, 'a new relayed connection reaches the new d');
});
