import t from 'tap';
import { Duplex } from 'node:stream';
import { Identity } from '../src/identity/index.js';
import type { NodeId } from '../src/identity/index.js';
import { keyBytesOf } from '../src/routing/index.js';
import { FanoutService } from '../src/node/fanout.js';
import { selfHost } from './fixtures/fanout-host.js';
import { LegAccounts, ReplayMemory, emptyLimitStats } from '../src/node/fanout-limits.js';
import type { LegRead } from '../src/node/fanout-limits.js';
import {
  FRAME_RESULT,
  STATUS_HOP_ERROR,
  STATUS_OK,
  UpFrameReader,
  decodeErrorBody,
  encodeEnvelope,
  encodeLeg,
  encodeResult,
  type UpFrame,
} from '../src/node/fanout-codec.js';

// Issue 15, fan-out items 1, 3 and 9 (the reader), below the network: the sans-IO tables, the
// frame reader, and one FanoutService fed legs on in-memory streams.

t.test('UpFrameReader is linear: a 16 MiB partial frame in 1,350-byte chunks is copied about once', async (t) => {
  const frameBytes = 16 * 1024 * 1024;
  const reader = new UpFrameReader(frameBytes + 1024);
  // Count the bytes Buffer.concat copies: the old reader concatenated everything at every chunk (8.4 s, ~100 GB copied).
  const concat = Buffer.concat;
  let copied = 0;
  Buffer.concat = ((list: readonly Uint8Array[], totalLength?: number) => {
    const out = concat(list, totalLength);
    copied += out.length;
    return out;
  }) as typeof Buffer.concat;
  try {
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(frameBytes, 0);
    const body = Buffer.alloc(1350);
    t.same(reader.push(prefix.subarray(0, 2)), [], 'a prefix split over chunks');
    t.same(reader.push(prefix.subarray(2)), []);
    let pushes = 0;
    for (let sent = 0; sent + body.length < frameBytes; sent += body.length) {
      if (reader.push(body).length !== 0) t.fail('no frame before the end');
      pushes++;
    }
    t.ok(pushes > 12_000, `${pushes} chunks pushed`);
    t.ok(copied <= frameBytes, `${copied} bytes copied while the frame was partial (bound ${frameBytes})`);
  } finally {
    Buffer.concat = concat;
  }
  const signer = await Identity.generate();
  const result = encodeResult(signer, Buffer.alloc(16), keyBytesOf(signer.nodeId), STATUS_OK, Buffer.alloc(100_000, 7));
  const fresh = new UpFrameReader(200_000);
  const frames: UpFrame[] = [];
  for (let i = 0; i < result.length; i += 1350) frames.push(...fresh.push(result.subarray(i, i + 1350)));
  frames.push(...fresh.push(Buffer.concat([result, result])));
  t.equal(frames.length, 3, 'whole frames still come out, across chunks and several in one chunk');
  t.ok(frames.every((f) => f.type === FRAME_RESULT && f.body.length === 100_000));
  t.throws(() => new UpFrameReader(100).push(Buffer.from([0, 0, 1, 0])), { code: 'BAD_FRAME' }, 'the bound is checked on the prefix, before buffering');
});

const A = 'A' as NodeId;
const B = 'B' as NodeId;
const C = 'C' as NodeId;

t.test('ReplayMemory: an origin evicts only its own; a full node evicts the heaviest; forgotten ids stay refused', async (t) => {
  const stats = emptyLimitStats();
  const memory = new ReplayMemory<number>(10, 4, stats);
  const life = 1000;
  for (let i = 0; i < 100; i++) t.ok(memory.remember(A, `a${i}`, i, life, i, i));
  t.equal(memory.count, 4, 'an origin past its share keeps its share');
  t.equal(stats.rememberedEvictedOwn, 96);
  t.equal(memory.lookup(A, 'a99', 99, 100)?.kind, 'seen');
  t.equal(memory.lookup(A, 'a10', 10, 100)?.kind, 'floor', 'an evicted id is refused, not run again');
  t.equal(memory.lookup(A, 'a200', 200, 100), undefined, 'a newer id of the same origin is new');
  t.equal(memory.lookup(B, 'b0', 0, 100), undefined, "another origin is untouched by A's floor");
  // Sybil: origins C1..C3 hold 2 each, then B arrives with the node full of A (4) and them.
  for (let i = 0; i < 6; i++) memory.remember(`C${i % 3}` as NodeId, `c${i}`, 100, life, i, 100);
  t.equal(memory.count, 10);
  t.ok(memory.remember(B, 'b1', 100, life, 1, 100), 'a newcomer gets room');
  t.equal(stats.rememberedEvictedHeaviest, 1, 'taken from the heaviest origin (A)');
  t.equal(memory.lookup(A, 'a96', 96, 100)?.kind, 'floor');
  t.equal(memory.lookup(B, 'b1', 100, 100)?.kind, 'seen');
  // Everything expires: the table empties, floors included.
  t.ok(memory.remember(C, 'late', 2000, 3000, 0, 2000));
  t.equal(memory.count, 1, 'expired ids are swept');
  t.equal(memory.lookup(A, 'a10', 10, 2000), undefined, 'an expired floor is gone (the envelope is stale by then)');
  const full = new ReplayMemory<number>(3, 3, emptyLimitStats());
  for (const origin of ['X', 'Y', 'Z']) full.remember(origin as NodeId, origin, 0, life, 0, 0);
  t.notOk(full.remember(C, 'c', 0, life, 0, 0), 'full of origins holding one each: refused, not evicted');
});

t.test('LegAccounts: per-peer leg share, per-peer bytes, node budget evicts the heaviest', async (t) => {
  const stats = emptyLimitStats();
  const legs = new LegAccounts({ maxActiveLegs: 10, maxLegsPerPeer: 4, maxLegsPerStranger: 1, maxLegBytes: 100, maxLegBytesPerPeer: 60 }, stats);
  for (let i = 0; i < 4; i++) {
    t.equal(legs.mayOpen(A, true), 'ok');
    legs.opened(A);
  }
  t.equal(legs.mayOpen(A, true), 'peer', 'a neighbour past its share');
  t.equal(legs.mayOpen(B, false), 'ok');
  legs.opened(B);
  t.equal(legs.mayOpen(B, false), 'peer', 'a stranger gets one');
  for (let i = 0; i < 5; i++) legs.opened(C);
  t.equal(legs.mayOpen(C, true), 'node', 'the node cap');
  legs.closed(A);
  t.equal(legs.mayOpen(A, true), 'ok', 'a closed leg frees its slot');
  let cut = 0;
  const read = (peer: NodeId): LegRead => ({ peer, bytes: 0, cut: () => cut++ });
  const a1 = read(A);
  t.ok(legs.charge(a1, 50));
  t.notOk(legs.charge(read(A), 20), 'over the peer share');
  const b1 = read(B);
  t.ok(legs.charge(b1, 40));
  const c1 = read(C);
  t.ok(legs.charge(c1, 30), 'past the node budget: the heaviest (A) loses its read');
  t.equal(cut, 1);
  t.equal(legs.bufferedBytes, 70);
  const D = 'D' as NodeId;
  t.notOk(legs.charge(read(D), 40), 'nobody heavier than the newcomer would be: the newcomer is cut');
  legs.done(b1);
  legs.done(c1);
  t.equal(legs.bufferedBytes, 0);
  t.equal(stats.legBytesPeerLimit, 1);
  t.equal(stats.legBytesEvicted, 2);
  t.equal(stats.legsRefusedPeerLimit, 2);
  t.equal(stats.legsRefusedNodeLimit, 1);
});

/** A fan-out service on a fake host: it is every target itself, and serves legs fed on in-memory streams. */
async function service(neighbour: boolean, limits = {}): Promise<{ fanouts: FanoutService; identity: Identity; runs: () => number }> {
  const identity = await Identity.generate();
  let runs = 0;
  const host = selfHost(identity, neighbour, async (channel, _request, _info, limits) => {
    if (channel !== 'work') return { ok: false, error: new (await import('../src/errors.js')).PnetError('UNKNOWN_CHANNEL', 'no') };
    limits.admitted?.();
    runs++;
    return { ok: true, reply: Buffer.from('done') };
  });
  return { fanouts: new FanoutService(host, limits), identity, runs: () => runs };
}

/** Feeds one leg to `fanouts` as if from `from`; resolves with the frames it sent back. */
function feed(fanouts: FanoutService, from: NodeId, leg: Buffer | undefined): { frames: Promise<UpFrame[]>; stream: Duplex } {
  const out: Buffer[] = [];
  let ended!: () => void;
  const done = new Promise<void>((resolve) => (ended = resolve));
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      out.push(chunk);
      callback();
    },
    final(callback) {
      ended();
      callback();
    },
  });
  stream.on('close', () => ended());
  stream.on('error', () => undefined);
  fanouts.serveLeg(stream, from);
  if (leg !== undefined) {
    stream.push(leg);
    stream.push(null);
  }
  const frames = done.then(() => new UpFrameReader(1 << 20).push(Buffer.concat(out)));
  return { frames, stream };
}

t.test('a target honours an envelope for at most 1 h, whatever its lifetime field says', async (t) => {
  const { fanouts, identity, runs } = await service(true);
  const origin = await Identity.generate();
  // A crafted envelope: lifetime 2^32-1 ms (~49 days), issued 2 h ago.
  const envelope = encodeEnvelope(origin, { all: true, ttlMs: 0xffff_ffff, maxReplyBytes: 1000, channel: 'work', metadata: {}, payload: Buffer.alloc(0) }, Date.now() - 2 * 3_600_000);
  const target = keyBytesOf(identity.nodeId);
  const [frame] = await feed(fanouts, origin.nodeId, encodeLeg({ flags: 0, hopLimit: 4, budgetMs: 5000, envelope: envelope.bytes, targets: target, tickets: Buffer.alloc(0) })).frames;
  t.equal(frame?.type === FRAME_RESULT && frame.status === STATUS_HOP_ERROR ? decodeErrorBody(frame.body).code : 'answered', 'ERR_STALE_REQUEST');
  t.equal(runs(), 0, 'the handler did not run');
});

t.test('legs from a peer that is not a routing neighbour: only its own fan-out, and only a few at once', async (t) => {
  const { fanouts, identity, runs } = await service(false);
  const stranger = await Identity.generate();
  const someoneElse = await Identity.generate();
  const target = keyBytesOf(identity.nodeId);
  const legOf = (signer: Identity): Buffer => {
    const envelope = encodeEnvelope(signer, { all: true, ttlMs: 5000, maxReplyBytes: 1000, channel: 'work', metadata: {}, payload: Buffer.alloc(0) });
    return encodeLeg({ flags: 0, hopLimit: 4, budgetMs: 5000, envelope: envelope.bytes, targets: target, tickets: Buffer.alloc(0) });
  };
  const [own] = await feed(fanouts, stranger.nodeId, legOf(stranger)).frames;
  t.equal(own?.type === FRAME_RESULT ? own.status : -1, STATUS_OK, "the stranger's own fan-out is served (via)");
  const [forwarded] = await feed(fanouts, stranger.nodeId, legOf(someoneElse)).frames;
  t.equal(forwarded?.type === FRAME_RESULT && forwarded.status === STATUS_HOP_ERROR ? decodeErrorBody(forwarded.body).code : 'served', 'UNREACHABLE', "someone else's fan-out through a non-neighbour is refused (the parent may retry another way)");
  t.equal(fanouts.stats.legsRefusedNotNeighbour, 1);
  t.equal(runs(), 1);
  const held = Array.from({ length: 4 }, () => feed(fanouts, stranger.nodeId, undefined));
  t.throws(() => fanouts.authorise({ channel: 'pnet/fanout', remoteNodeId: stranger.nodeId, metadata: {} }), { code: 'OVERLOADED' }, 'a fifth leg at once is refused');
  for (const { stream } of held) stream.destroy();
});

t.test('a leg not read whole within the read deadline is cut, and its slot freed', async (t) => {
  const { fanouts } = await service(true, { legReadTimeoutMs: 200 });
  const peer = (await Identity.generate()).nodeId;
  const { stream, frames } = feed(fanouts, peer, undefined);
  stream.push(Buffer.alloc(10));
  const keepAlive = setTimeout(() => undefined, 5000); // the leg timer is unref'd: a real node has sockets open
  await frames;
  clearTimeout(keepAlive);
  t.ok(stream.destroyed, 'the stream is destroyed');
  t.equal(fanouts.stats.legReadTimeouts, 1);
  t.doesNotThrow(() => {
    for (let i = 0; i < 64; i++) fanouts.authorise({ channel: 'pnet/fanout', remoteNodeId: peer, metadata: {} });
  });
});
