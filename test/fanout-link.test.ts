// Fan-out legs version 2 (issue 14): one long-lived pnet/fanout stream per link carries many
// fan-outs' legs and their results (docs/FANOUT.md, "Wire format (version 2)"). Real nodes on
// loopback for the link itself, v1 interop and a reset link; one FanoutService fed a link on an
// in-memory stream for the per-peer limits.
import t from 'tap';
import { Duplex } from 'node:stream';
import type { NodeId, PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { Identity } from '../src/identity/index.js';
import { keyBytesOf } from '../src/routing/index.js';
import { FanoutService } from '../src/node/fanout.js';
import { selfHost } from './fixtures/fanout-host.js';
import { collect, line, linkCounters, sleep, until } from './fixtures/fanout-link.js';
import { FRAME_RESULT, STATUS_HOP_ERROR, STATUS_OK, decodeErrorBody, encodeEnvelope, encodeLeg, splitUpFrames, type UpFrame } from '../src/node/fanout-codec.js';
import { LINK_END, LINK_FRAMES, LINK_HEADER_BYTES, LINK_LEG, LINK_METADATA, LinkReader, writeLinkHeader } from '../src/node/fanout-link.js';

t.setTimeout(120_000);

const links = linkCounters;

t.test('v2: many fan-outs share one link stream per neighbour; a slow answer does not hold up the others', async (t) => {
  const [a, b, c] = (await line(t, (payload) => (payload === 'slow' ? 3000 : 0))) as [PnetNode, PnetNode, PnetNode];
  const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => collect(a.fanout([b.id, c.id], 'job', `run${i}`, { deadlineMs: 20_000 }))));
  t.ok(runs.every((results) => results.length === 2 && results.every((r) => r.ok)), 'every run: both targets answered');
  t.ok(a.fanoutStats.legsSent >= 20, `a sent ${a.fanoutStats.legsSent} legs`);
  t.equal(links(a).opened, 1, 'all of them on one link a -> b');
  t.equal(links(b).opened, 1, 'and b forwarded them on one link b -> c');
  t.equal(links(a).v1Legs + links(b).v1Legs, 0, 'no v1 leg');
  // A slow handler's leg and a quick one's on the same link: the quick answer comes first.
  const order: string[] = [];
  const slow = collect(a.fanout([c.id], 'job', 'slow', { deadlineMs: 20_000 })).then((r) => (order.push('slow'), r));
  await sleep(100);
  const quick = collect(a.fanout([c.id], 'job', 'quick', { deadlineMs: 20_000 })).then((r) => (order.push('quick'), r));
  const [slowResults, quickResults] = await Promise.all([slow, quick]);
  t.ok(slowResults[0]!.ok && quickResults[0]!.ok, 'both answered');
  t.same(order, ['quick', 'slow'], 'results are written as they come: no head-of-line blocking on the link');
  t.equal(links(a).opened, 1, 'still the one link');
});

t.test('v2 and v1 nodes work together: a v1 neighbour gets v1 legs', async (t) => {
  const [a, b, c] = (await line(t)) as [PnetNode, PnetNode, PnetNode];
  nodeServices(b).fanouts.linksEnabled = false; // b behaves as a version 1 node
  for (let run = 0; run < 3; run++) {
    const results = await collect(a.fanout([b.id, c.id], 'job', `r${run}`, { deadlineMs: 10_000 }));
    t.same(results.map((r) => r.ok).sort(), [true, true], `run ${run}: both answered`);
  }
  t.equal(links(a).opened, 0, 'a opened no v2 link to the v1 node');
  t.equal(links(a).v1Legs, 3, 'a sent it v1 legs (the first on the stream that asked for v2)');
  t.equal(links(b).v1Legs, 3, 'the v1 node sends v1 legs on');
  t.equal(nodeServices(c).fanouts.stats.legsServed, 3, 'c (v2) served them');
  // And the other way: a v1 origin to a v2 hop.
  nodeServices(b).fanouts.linksEnabled = true;
  nodeServices(a).fanouts.linksEnabled = false;
  const results = await collect(a.fanout([c.id], 'job', 'v1-origin', { deadlineMs: 10_000 }));
  t.ok(results[0]?.ok, 'a v1 origin through a v2 hop');
  t.equal(links(b).opened, 1, 'b used its v2 link to c');
});

t.test('v2: a link reset mid-leg fails its legs like a broken v1 leg; they are retried on a new link', async (t) => {
  const [a, b, c] = (await line(t, (payload) => (payload === 'slow' ? 3000 : 0))) as [PnetNode, PnetNode, PnetNode];
  await collect(a.fanout([c.id], 'job', 'warm', { deadlineMs: 10_000 })); // the link a -> b is up
  t.equal(links(a).opened, 1);
  const running = collect(a.fanout([b.id, c.id], 'job', 'slow', { deadlineMs: 15_000 }));
  await sleep(300);
  // Reset a's link stream to b while both answers are outstanding on it.
  const sender = (nodeServices(a).fanouts as unknown as { links: { links: Map<NodeId, { stream: Duplex & { reset(code?: number): void } }> } }).links;
  const link = sender.links.get(b.id);
  t.ok(link?.stream, 'the link is open');
  link!.stream.reset(1);
  const results = await running;
  t.same(results.map((r) => (r.ok ? 'ok' : r.error.code)), ['ok', 'ok'], 'both answered after the retry');
  t.ok(a.fanoutStats.retried >= 2, `${a.fanoutStats.retried} targets retried`);
  t.equal(links(a).broken, 1, 'one link broke with legs on it');
  t.equal(links(a).opened, 2, 'the retry opened a new link');
  t.equal(results.map((r) => (r.ok ? r.data.toString() : '')).filter((d) => d.endsWith(':slow')).length, 2, 'the answers of this fan-out');
});

// ---- limits on a served link, one FanoutService on a fake host ---------------

/** A fan-out service that is every target itself; `work` answers after `hold()` resolves. */
async function service(limits = {}, hold: () => Promise<void> = async () => undefined, neighbour = true) {
  const identity = await Identity.generate();
  const host = selfHost(identity, neighbour, async (_channel, _request, _info, answerLimits) => {
    answerLimits.admitted?.();
    await hold();
    return { ok: true, reply: Buffer.from('done') };
  });
  return { fanouts: new FanoutService(host, limits), identity };
}

interface LinkEnd {
  stream: Duplex;
  /** Upstream per leg id: frames, and the END's error code ('' for a normal end). */
  frames: Map<number, UpFrame[]>;
  ends: Map<number, string>;
}

/** Serves a v2 link to `fanouts` as if from `from`, on an in-memory stream. */
function link(fanouts: FanoutService, from: NodeId): LinkEnd {
  const end: LinkEnd = { stream: undefined as unknown as Duplex, frames: new Map(), ends: new Map() };
  const reader = new LinkReader({
    begin: () => true,
    chunk: () => true,
    frame: (type, id, body) => {
      if (type === LINK_FRAMES) end.frames.set(id, [...(end.frames.get(id) ?? []), ...splitUpFrames(body, 1 << 20)]);
      if (type === LINK_END) end.ends.set(id, body.length === 0 ? '' : decodeErrorBody(body).code);
    },
  });
  end.stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      reader.push(chunk);
      callback();
    },
  });
  end.stream.on('error', () => undefined);
  fanouts.serveLeg(end.stream, from, LINK_METADATA);
  return end;
}

async function legFrame(id: number, target: Identity, origin?: Identity): Promise<Buffer> {
  const signer = origin ?? (await Identity.generate());
  const envelope = encodeEnvelope(signer, { all: true, ttlMs: 10_000, maxReplyBytes: 1000, channel: 'work', metadata: {}, payload: Buffer.from('p') });
  const bytes = encodeLeg({ flags: 0, hopLimit: 4, budgetMs: 10_000, envelope: envelope.bytes, targets: keyBytesOf(target.nodeId), tickets: Buffer.alloc(0) }, LINK_HEADER_BYTES);
  writeLinkHeader(bytes, LINK_LEG, id, bytes.length - LINK_HEADER_BYTES);
  return bytes;
}

t.test('v2 limits: legs in flight per peer, counted; the link serves on', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const { fanouts, identity } = await service({ maxLegsPerPeer: 2 }, () => held);
  const peer = (await Identity.generate()).nodeId;
  const end = link(fanouts, peer);
  for (let id = 0; id < 3; id++) end.stream.push(await legFrame(id, identity));
  await until(() => end.ends.has(2));
  t.equal(end.ends.get(2), 'OVERLOADED', 'the third leg at once is refused on the link');
  t.equal(fanouts.stats.legsRefusedPeerLimit, 1, 'and counted');
  release();
  await until(() => end.ends.size === 3);
  t.same([end.ends.get(0), end.ends.get(1)], ['', ''], 'the two held legs end normally');
  t.ok([0, 1].every((id) => end.frames.get(id)?.[0]?.type === FRAME_RESULT && (end.frames.get(id)![0] as { status: number }).status === STATUS_OK), 'with their answers');
  end.stream.push(await legFrame(3, identity));
  await until(() => end.ends.has(3));
  t.equal(end.ends.get(3), '', 'a slot is free again: the next leg is served');
  t.equal(fanouts.stats.legsServed, 3);
});

t.test('v2 limits: bytes per peer and the per-leg read deadline cut one leg; the link serves on', async (t) => {
  const { fanouts, identity } = await service({ maxLegBytesPerPeer: 600, legReadTimeoutMs: 300 });
  const peer = (await Identity.generate()).nodeId;
  const end = link(fanouts, peer);
  // A leg promising 2,000 bytes, sent whole: over the 600-byte share.
  const big = Buffer.alloc(LINK_HEADER_BYTES + 2000);
  writeLinkHeader(big, LINK_LEG, 7, 2000);
  end.stream.push(big);
  await until(() => end.ends.has(7));
  t.equal(end.ends.get(7), 'OVERLOADED', 'cut at the per-peer byte share');
  t.equal(fanouts.stats.legBytesPeerLimit, 1, 'counted');
  t.equal(fanouts.bufferedLegBytes, 0, 'its bytes are freed');
  // A leg whose frame never completes: its own timer cuts it.
  const slow = await legFrame(8, identity);
  end.stream.push(slow.subarray(0, 40));
  const keepAlive = setTimeout(() => undefined, 5000); // the leg timer is unref'd
  await until(() => end.ends.has(8));
  clearTimeout(keepAlive);
  t.equal(end.ends.get(8), 'ERR_REQUEST_TIMEOUT', 'cut at its read deadline');
  t.equal(fanouts.stats.legReadTimeouts, 1, 'counted');
  end.stream.push(slow.subarray(40)); // the rest of the cut leg is skipped
  end.stream.push(await legFrame(9, identity));
  await until(() => end.ends.has(9));
  t.equal(end.ends.get(9), '', 'the link serves the next leg');
  t.equal(end.frames.get(9)?.length, 1, 'with its answer');
});

t.test('v2 limits: link streams per peer, counted', async (t) => {
  const { fanouts, identity } = await service();
  const peer = (await Identity.generate()).nodeId;
  const info = { channel: 'pnet/fanout', remoteNodeId: peer, metadata: { ...LINK_METADATA } };
  t.same(fanouts.authorise(info), { metadata: { ...LINK_METADATA } }, 'a v2 OPEN is accepted as v2');
  const first = link(fanouts, peer);
  const second = link(fanouts, peer);
  t.throws(() => fanouts.authorise(info), { code: 'OVERLOADED' }, 'a third link from the same peer is refused');
  t.equal(fanouts.stats.legsRefusedPeerLimit, 1, 'counted');
  first.stream.destroy();
  second.stream.destroy();
  await sleep(10);
  t.doesNotThrow(() => fanouts.authorise(info), 'room again once they closed');
  fanouts.linksEnabled = false;
  t.equal(fanouts.authorise(info), true, 'a v1 node accepts it as a plain leg stream (no v2 in its ACCEPT)');
  void identity;
});

t.test('v2 limits: legs from a peer that is not a routing neighbour: only its own fan-out, and only 4 at once', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const { fanouts, identity } = await service({}, () => held, false);
  const stranger = await Identity.generate();
  const end = link(fanouts, stranger.nodeId);
  end.stream.push(await legFrame(0, identity)); // someone else's fan-out
  await until(() => end.ends.has(0));
  const [refused] = end.frames.get(0) ?? [];
  t.equal(refused?.type === FRAME_RESULT && refused.status === STATUS_HOP_ERROR ? decodeErrorBody(refused.body).code : 'served', 'UNREACHABLE', "someone else's fan-out through a non-neighbour: a hop error per target");
  t.equal(fanouts.stats.legsRefusedNotNeighbour, 1, 'counted');
  for (let id = 1; id <= 5; id++) end.stream.push(await legFrame(id, identity, stranger)); // its own fan-outs (via)
  await until(() => end.ends.has(5));
  t.equal(end.ends.get(5), 'OVERLOADED', 'a fifth of its own legs at once is refused');
  t.equal(fanouts.stats.legsRefusedPeerLimit, 1, 'counted');
  release();
  await until(() => [1, 2, 3, 4].every((id) => end.ends.has(id)));
  t.same([1, 2, 3, 4].map((id) => end.ends.get(id)), ['', '', '', ''], 'the four own legs are served');
});
