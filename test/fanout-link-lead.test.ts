// Fan-out link version 3 (issue 14, the first exec after a join): the first leg to a neighbour
// goes right behind the link's OPEN (metadata leg: "3", lead: its bytes) instead of waiting a
// round trip for the ACCEPT. The sender against a v3 peer, a v1 peer (the lead is read as a v1
// leg, no leg lost) and a REJECT (the legs go as v1 legs), on in-memory streams; the receiver
// (FanoutService) serving a lead; and real nodes on loopback.
import t from 'tap';
import { Duplex } from 'node:stream';
import type { NodeId, PnetNode } from '../src/index.js';
import { ChannelRejectedError } from '../src/channel/index.js';
import { nodeServices } from '../src/node/node.js';
import { ACCEPTED_EVENT } from '../src/node/streams.js';
import { Identity } from '../src/identity/index.js';
import { keyBytesOf } from '../src/routing/index.js';
import { FanoutService } from '../src/node/fanout.js';
import { selfHost } from './fixtures/fanout-host.js';
import { collect, fakeOpener, keep, legBytes, line, resultFrame, sleep, until } from './fixtures/fanout-link.js';
import { FRAME_RESULT, decodeErrorBody, encodeEnvelope, encodeLeg, splitUpFrames, type UpFrame } from '../src/node/fanout-codec.js';
import {
  LEAD_KEY,
  LINK_CANCEL,
  LINK_END,
  LINK_FRAMES,
  LINK_HEADER_BYTES,
  LINK_KEY,
  LINK_LEAD_VERSION,
  LINK_LEG,
  LegLinks,
  LinkReader,
  leadMetadata,
  linkFrame,
  writeLinkHeader,
  type LegSink,
  type LinkOpen,
} from '../src/node/fanout-link.js';

t.setTimeout(120_000);

// ---- the sender, on in-memory streams -----------------------------------------

const hop = 'hop' as unknown as NodeId;

t.test('sender, v3 peer: the lead leg leaves with the OPEN, before the ACCEPT; legs queued meanwhile follow as frames', async (t) => {
  const { opens, open } = fakeOpener();
  const links = new LegLinks(open, () => true);
  const first = keep();
  const second = keep();
  const lead = legBytes(0xaa);
  links.send(hop, lead, 1 << 20, first.sink);
  await sleep(0);
  t.equal(opens.length, 1, 'one stream opened');
  t.same(opens[0]!.how, leadMetadata(40), 'asked as a version 3 link with its lead of 40 bytes');
  t.same(opens[0]!.how, { [LINK_KEY]: LINK_LEAD_VERSION, [LEAD_KEY]: '40' });
  t.same(Buffer.concat(opens[0]!.written), lead.subarray(LINK_HEADER_BYTES), 'the lead (its v1 bytes, no frame header) written at once, no ACCEPT yet');
  links.send(hop, legBytes(0xbb), 1 << 20, second.sink);
  await sleep(0);
  t.equal(opens[0]!.written.length, 1, 'a second leg waits for the ACCEPT');
  const target = keyBytesOf((await Identity.generate()).nodeId);
  // The peer's first FRAMES for the lead can come before the ACCEPT's event: kept for the reader.
  const up = resultFrame(target);
  const frames = Buffer.alloc(LINK_HEADER_BYTES);
  writeLinkHeader(frames, LINK_FRAMES, 0, up.length);
  opens[0]!.stream.push(Buffer.concat([frames, up]));
  opens[0]!.stream.emit(ACCEPTED_EVENT, { [LINK_KEY]: LINK_LEAD_VERSION });
  await sleep(0);
  t.equal(first.frames.length, 1, "the lead's frame that came before the ACCEPT's event is read");
  const after = Buffer.concat(opens[0]!.written.slice(1));
  t.equal(after.readUInt32BE(0), 5 + 40, 'the queued leg follows as a LEG frame');
  t.equal(after[4], LINK_LEG);
  t.equal(after.readUInt32BE(5), 1, 'with leg id 1 (the lead is 0)');
  opens[0]!.stream.push(linkFrame(LINK_END, 0));
  opens[0]!.stream.push(linkFrame(LINK_END, 1));
  await until(() => first.closed() !== undefined && second.closed() !== undefined);
  t.equal(links.counters.opened, 1);
  t.equal(links.counters.leads, 1);
  t.equal(links.counters.v1Legs, 0);
  t.equal(links.size, 1, 'the link stays for the next legs');
  links.close();
});

/** A link opened by a first leg (its lead) with a second leg queued behind it, no ACCEPT yet. */
async function twoLegsBeforeAccept() {
  const { opens, open } = fakeOpener();
  const links = new LegLinks(open, () => true);
  const first = keep();
  const second = keep();
  links.send(hop, legBytes(0xaa), 1 << 20, first.sink);
  await sleep(0);
  links.send(hop, legBytes(0xbb), 1 << 20, second.sink);
  await sleep(0);
  return { opens, links, first, second };
}

t.test('sender, v1 peer: the lead goes on as a v1 leg on its stream (ended after it), the queued legs on streams of their own; nothing lost', async (t) => {
  const { opens, links, first, second } = await twoLegsBeforeAccept();
  opens[0]!.stream.emit(ACCEPTED_EVENT, {}); // a v1 node: ACCEPT without `leg`
  await until(() => opens[0]!.ended && opens.length === 2);
  t.equal(Buffer.concat(opens[0]!.written).length, 40, 'the stream carries exactly the lead, then its end: one v1 leg');
  t.equal(opens[1]!.how, false, 'the queued leg went on a v1 stream of its own');
  t.same(Buffer.concat(opens[1]!.written), legBytes(0xbb).subarray(LINK_HEADER_BYTES), 'as its v1 bytes');
  const target = keyBytesOf((await Identity.generate()).nodeId);
  for (const fake of opens) {
    fake.stream.push(resultFrame(target));
    fake.stream.push(null);
  }
  await until(() => first.closed() !== undefined && second.closed() !== undefined);
  t.equal(first.frames.length, 1, "the lead's answer, read as v1 frames");
  t.equal(second.frames.length, 1, "the queued leg's answer");
  t.equal(links.counters.v1Legs, 2);
  t.equal(links.counters.opened, 0, 'no link');
  links.send(hop, legBytes(0xcc), 1 << 20, keep().sink);
  await sleep(0);
  t.equal(opens[2]!.how, false, 'the next leg to that peer goes v1 at once (remembered)');
});

t.test('sender, REJECT: the lead and the queued legs go as v1 legs; the next leg asks for a link again', async (t) => {
  const { opens, links, first, second } = await twoLegsBeforeAccept();
  opens[0]!.stream.destroy(new ChannelRejectedError('OVERLOADED', 'two links here already'));
  await until(() => opens.length === 3);
  t.same(
    opens.slice(1).map((o) => o.how),
    [false, false],
    'both legs re-sent on v1 streams',
  );
  t.same(Buffer.concat(opens[1]!.written), legBytes(0xaa).subarray(LINK_HEADER_BYTES), 'the lead among them');
  const target = keyBytesOf((await Identity.generate()).nodeId);
  for (const fake of opens.slice(1)) {
    fake.stream.push(resultFrame(target));
    fake.stream.push(null);
  }
  await until(() => first.closed() !== undefined && second.closed() !== undefined);
  t.same([first.frames.length, second.frames.length], [1, 1], 'both answered: no leg lost');
  t.equal(links.counters.rejected, 1, 'counted');
  links.send(hop, legBytes(0xcc), 1 << 20, keep().sink);
  await sleep(0);
  t.same(opens[3]!.how, leadMetadata(40), 'not remembered as v1: the next leg opens a v3 link');
  links.close();
});

t.test('sender: a lead given up before the ACCEPT is cancelled once the link is known; a reset before it fails the legs', async (t) => {
  const { opens, open } = fakeOpener();
  const links = new LegLinks(open, () => true);
  const first = keep();
  const handle = links.send(hop, legBytes(0xaa), 1 << 20, first.sink);
  await sleep(0);
  handle.cancel();
  opens[0]!.stream.emit(ACCEPTED_EVENT, { [LINK_KEY]: LINK_LEAD_VERSION });
  await sleep(0);
  const cancel = opens[0]!.written[1];
  t.ok(cancel !== undefined && cancel[4] === LINK_CANCEL && cancel.readUInt32BE(5) === 0, 'CANCEL for leg 0 after the ACCEPT');
  t.equal(first.closed(), undefined, 'a cancelled leg reports nothing');
  links.close();
  // A reset before the ACCEPT: the lead fails (the fan-out retries it as for any broken link).
  const second = keep();
  links.send(hop, legBytes(0xbb), 1 << 20, second.sink);
  await sleep(0);
  opens.at(-1)!.stream.destroy(new Error('reset'));
  await until(() => second.closed() !== undefined);
  t.ok(second.closed() !== undefined, 'the lead failed with the reset');
  t.equal(links.counters.broken, 1);
});

// ---- the receiver -----------------------------------------------------------------

async function service() {
  const identity = await Identity.generate();
  const host = selfHost(identity, true, async (_channel, _request, _info, answerLimits) => {
    answerLimits.admitted?.();
    return { ok: true, reply: Buffer.from('done') };
  });
  return { fanouts: new FanoutService(host, {}), identity };
}

async function leg(target: Identity): Promise<Buffer> {
  const signer = await Identity.generate();
  const envelope = encodeEnvelope(signer, { all: true, ttlMs: 10_000, maxReplyBytes: 1000, channel: 'work', metadata: {}, payload: Buffer.from('p') });
  return encodeLeg({ flags: 0, hopLimit: 4, budgetMs: 10_000, envelope: envelope.bytes, targets: keyBytesOf(target.nodeId), tickets: Buffer.alloc(0) }, LINK_HEADER_BYTES);
}

t.test('receiver: a v3 link is accepted as v3; its lead is leg 0, link frames follow; a malformed lead is refused', async (t) => {
  const { fanouts, identity } = await service();
  const peer = (await Identity.generate()).nodeId;
  const first = await leg(identity);
  const metadata = leadMetadata(first.length - LINK_HEADER_BYTES);
  t.same(fanouts.authorise({ channel: 'pnet/fanout', remoteNodeId: peer, metadata }), { metadata: { [LINK_KEY]: LINK_LEAD_VERSION } }, 'ACCEPT says leg "3"');
  for (const bad of ['0', '-1', 'x', '99999999999', '']) {
    t.throws(() => fanouts.authorise({ channel: 'pnet/fanout', remoteNodeId: peer, metadata: { [LINK_KEY]: LINK_LEAD_VERSION, [LEAD_KEY]: bad } }), { code: 'BAD_FRAME' }, `lead "${bad}" refused`);
  }
  const ends = new Map<number, string>();
  const answers = new Map<number, UpFrame[]>();
  const reader = new LinkReader({
    begin: () => true,
    chunk: () => true,
    frame: (type, id, body) => {
      if (type === LINK_FRAMES) answers.set(id, [...(answers.get(id) ?? []), ...splitUpFrames(body, 1 << 20)]);
      if (type === LINK_END) ends.set(id, body.length === 0 ? '' : decodeErrorBody(body).code);
    },
  });
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      reader.push(chunk);
      callback();
    },
  });
  const second = await leg(identity);
  writeLinkHeader(second, LINK_LEG, 1, second.length - LINK_HEADER_BYTES);
  // The lead and the next frame in one chunk, split mid-lead: as the bytes may come.
  const bytes = Buffer.concat([first.subarray(LINK_HEADER_BYTES), second]);
  stream.push(bytes.subarray(0, 30));
  stream.push(bytes.subarray(30));
  fanouts.serveLeg(stream, peer, metadata);
  await until(() => ends.size === 2);
  t.same([ends.get(0), ends.get(1)], ['', ''], 'the lead (leg 0) and the framed leg 1 end normally');
  t.ok([0, 1].every((id) => answers.get(id)?.[0]?.type === FRAME_RESULT), 'with their answers');
  fanouts.linksEnabled = false;
  t.equal(fanouts.authorise({ channel: 'pnet/fanout', remoteNodeId: peer, metadata }), true, 'a v1 node accepts it as a plain leg stream (no leg in its ACCEPT)');
});

// ---- real nodes -------------------------------------------------------------------------

t.test('real nodes: the first fan-out opens v3 links with their leads; a v1 hop gets the lead as a v1 leg', async (t) => {
  const nodes = await line(t);
  const [a, b, c] = nodes as [PnetNode, PnetNode, PnetNode];
  const counters = (node: PnetNode) => nodeServices(node).fanouts.linkCounters;
  const results = await collect(a.fanout([b.id, c.id], 'job', 'one', { deadlineMs: 10_000 }));
  t.same(results.map((r) => r.ok), [true, true], 'both answered');
  t.same([counters(a).leads, counters(b).leads], [1, 1], 'a -> b and b -> c opened with a lead leg');
  t.equal(counters(a).v1Legs + counters(b).v1Legs, 0, 'no v1 leg');
  const again = await collect(a.fanout([b.id, c.id], 'job', 'two', { deadlineMs: 10_000 }));
  t.same(again.map((r) => r.ok), [true, true], 'the next fan-out on the same links');
  t.same([counters(a).opened, counters(b).opened], [1, 1], 'no new link');
  // c behaves as version 1: b's next link to it is read as one v1 leg. b's current link is ended first.
  nodeServices(c).fanouts.linksEnabled = false;
  (nodeServices(b).fanouts as unknown as { links: LegLinks }).links.close();
  const v1 = await collect(a.fanout([c.id], 'job', 'three', { deadlineMs: 10_000 }));
  t.ok(v1[0]?.ok, 'answered through a v1 hop');
  t.equal(counters(b).v1Legs, 1, "b's lead went on as a v1 leg");
  t.equal(v1[0]?.ok === true ? v1[0].data.toString() : '', `${c.id}:three`);
});
