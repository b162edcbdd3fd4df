// The relay v2 hop (Forwarder) and ends (RelayEndpoint), one rule at a time, in virtual time.
import t from 'tap';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import type { NodeId } from '../src/identity/index.js';
import { nodeIdAt } from '../src/routing/index.js';
import {
  ERROR_BYTES,
  Forwarder,
  HEADER_BYTES,
  KeyTable,
  NextHopTable,
  RelayEndpoint,
  WAY_BACK_MS,
  encodeData,
  pathAddress,
  writeErrorReport,
  type ForwardAction,
  type ForwarderHost,
  type ForwarderOptions,
} from '../src/relay/v2/index.js';

const key = (fill: number): Buffer => Buffer.alloc(32, fill);
const SELF = key(0x0b);
const DST = key(0xdd);
const SRC = key(0x55);
/** A QUIC v1 Initial-looking inner packet: long header, type 0, dcid of 16 bytes. */
function initial(dcid: Buffer, size = 1200): Buffer {
  const packet = Buffer.alloc(size, 0xaa);
  packet[0] = 0xc3;
  packet.writeUInt32BE(1, 1);
  packet[5] = dcid.length;
  dcid.copy(packet, 6);
  return packet;
}
/** A short-header inner packet for a 16-byte dcid. */
function short(dcid: Buffer, size = 200): Buffer {
  const packet = Buffer.alloc(size, 0x77);
  packet[0] = 0x41;
  dcid.copy(packet, 1);
  return packet;
}

function hop(routes: Array<[Buffer, string]>, options: ForwarderOptions = {}, extra: Partial<ForwarderHost<string>> = {}): Forwarder<string> {
  const table = new KeyTable<string>();
  for (const [k, n] of routes) table.set(k, n);
  return new Forwarder<string>({ selfKey: SELF, nextHop: (b, o) => table.get(b, o), room: () => 1310, ...extra }, options);
}

const copyOf = (action: ForwardAction<string>): Record<string, unknown> => ({ ...action });

t.test('deliver, forward with the hop limit decremented in place, counted', async (t) => {
  const f = hop([[DST, 'n2']]);
  const data = encodeData(5, DST, SRC, short(randomBytes(16)));
  const action = f.handleDatagram('n1', data, 0);
  t.equal(action.kind, 'forward');
  if (action.kind !== 'forward') return;
  t.equal(action.to, 'n2');
  t.equal(action.datagram, data, 'the same buffer, no copy');
  t.equal(data[1], 4, 'hop limit decremented in place');
  const mine = encodeData(1, SELF, SRC, short(randomBytes(16)));
  const delivered = f.handleDatagram('n1', mine, 1);
  t.equal(delivered.kind, 'deliver');
  t.equal(f.stats.forwarded, 1);
  t.equal(f.stats.forwardedBytes, data.length);
  t.equal(f.stats.delivered, 1);
  t.equal(f.stats.received, 2);
});

t.test('the documented DATA vector, forwarded once', async (t) => {
  const vector = encodeData(16, DST, SRC, Buffer.from('40010203', 'hex'));
  hop([[DST, 'n2']]).handleDatagram('n1', vector, 0);
  t.same(vector, Buffer.concat([Buffer.from('100f', 'hex'), DST, SRC, Buffer.from('40010203', 'hex')]));
});

t.test('drops: malformed, no route, hop limit, loops, too big, refused', async (t) => {
  let allow = true;
  let room = 1310;
  const f = hop([[DST, 'n2'], [key(0xee), 'n1']], {}, { allow: () => allow, room: () => room });
  const packet = short(randomBytes(16));
  t.match(copyOf(f.handleDatagram('n1', Buffer.from('garbage'), 0)), { kind: 'drop', reason: 'malformed' });
  t.match(copyOf(f.handleDatagram('n1', encodeData(5, key(0x99), SRC, packet), 0)), { kind: 'drop', reason: 'noRoute' });
  t.match(copyOf(f.handleDatagram('n1', encodeData(1, DST, SRC, packet), 0)), { kind: 'drop', reason: 'hopLimit' });
  t.match(copyOf(f.handleDatagram('n1', encodeData(5, key(0xee), SRC, packet), 0)), { kind: 'drop', reason: 'loop' }, 'back to the neighbour it came from');
  t.match(copyOf(f.handleDatagram('n1', encodeData(5, DST, SELF, packet), 0)), { kind: 'drop', reason: 'loop' }, 'came back to its source');
  room = 100;
  t.match(copyOf(f.handleDatagram('n1', encodeData(5, DST, SRC, packet), 0)), { kind: 'drop', reason: 'tooBig' });
  room = 1310;
  allow = false;
  t.match(copyOf(f.handleDatagram('n1', encodeData(5, DST, SRC, packet), 0)), { kind: 'drop', reason: 'refused' });
  t.match(copyOf(f.handleDatagram('n1', encodeData(5, SELF, SRC, packet), 0)), { kind: 'deliver' }, 'policy is about transit only');
  t.match(f.stats, { malformed: 1, noRoute: 1, hopLimit: 1, loop: 2, tooBig: 1, refused: 1, delivered: 1, forwarded: 0 });
});

t.test('the way back: a destination with no route here goes the way its own datagrams came, for WAY_BACK_MS, while that link is up', async (t) => {
  let room = 1310;
  const f = hop([], {}, { room: () => room });
  const packet = short(randomBytes(16));
  t.match(copyOf(f.handleDatagram('n1', encodeData(5, DST, SRC, packet), 0)), { kind: 'drop', reason: 'noRoute' }, 'nothing known of DST yet');
  t.match(copyOf(f.handleDatagram('n2', encodeData(5, SRC, DST, packet), 10)), { kind: 'forward', to: 'n1' }, "DST's answer goes where SRC's datagram came from");
  t.match(copyOf(f.handleDatagram('n1', encodeData(5, DST, SRC, packet), 20)), { kind: 'forward', to: 'n2' }, "and SRC's next one where DST's came from");
  t.equal(f.stats.forwardedBack, 2, 'counted');
  room = 0;
  t.match(copyOf(f.handleDatagram('n2', encodeData(5, SRC, DST, packet), 30)), { kind: 'drop', reason: 'noRoute' }, 'not to a link that is down');
  room = 1310;
  t.match(copyOf(f.handleDatagram('n2', encodeData(5, SRC, DST, packet), 20 + WAY_BACK_MS + 1)), { kind: 'drop', reason: 'noRoute' }, 'forgotten after WAY_BACK_MS without a datagram from SRC');
  const routed = hop([[SRC, 'n9']]);
  routed.handleDatagram('n1', encodeData(5, DST, SRC, packet), 0);
  t.match(copyOf(routed.handleDatagram('n2', encodeData(5, SRC, DST, packet), 1)), { kind: 'forward', to: 'n9' }, 'a route wins: nothing learnt for a source with one');
  t.equal(routed.stats.forwardedBack, 0);
});

t.test("the ways back: one neighbour's made-up sources take at most its share, another's way back stays", async (t) => {
  const f = hop([]);
  const packet = short(randomBytes(16));
  t.match(copyOf(f.handleDatagram('n2', encodeData(5, SRC, DST, packet), 0)), { kind: 'drop', reason: 'noRoute' }, "n2 brings SRC's first datagram");
  for (let i = 0; i < 10_000; i++) f.handleDatagram('n1', encodeData(5, DST, randomBytes(32), packet), 1);
  t.equal(f.stats.waysBackRefused, 10_000 - 512, "n1's sources past its share (512) are not learnt, counted");
  t.match(copyOf(f.handleDatagram('n1', encodeData(5, DST, SRC, packet), 2)), { kind: 'forward', to: 'n2' }, "SRC's way back is still n2");
  t.equal(f.stats.waysBackRefused, 10_000 - 512 + 1, 'n1, at its share, could not move it either');
  f.neighbourDown('n1');
  f.handleDatagram('n3', encodeData(5, DST, randomBytes(32), packet), 3);
  t.equal(f.stats.waysBackRefused, 10_000 - 512 + 1, 'another neighbour has a share of its own');
});

t.test('error reports: for DATA only, never larger than the trigger, rate-limited, addressed to the source', async (t) => {
  const f = hop([], { errorsPerSecond: 2, burstMs: 1000 });
  const trigger = encodeData(5, DST, SRC, short(randomBytes(16)));
  const first = f.handleDatagram('n1', trigger, 0);
  t.equal(first.kind, 'drop');
  if (first.kind !== 'drop') return;
  t.equal(first.replyTo, 'n1', 'sent back the way it came');
  t.equal(first.reply?.length, ERROR_BYTES);
  const expected = Buffer.alloc(ERROR_BYTES);
  writeErrorReport(expected, 16, SELF, 'UNREACHABLE', trigger);
  t.same(Buffer.from(first.reply!), expected);
  t.equal(f.handleDatagram('n1', trigger, 0).kind, 'drop');
  const third = f.handleDatagram('n1', trigger, 0);
  t.equal(third.kind === 'drop' && third.reply, undefined, 'third within a second: suppressed');
  t.equal(f.stats.errorsSent, 2);
  t.equal(f.stats.errorsSuppressed, 1);
  const later = f.handleDatagram('n1', trigger, 1000);
  t.ok(later.kind === 'drop' && later.reply !== undefined, 'the budget refills');
  const tiny = f.handleDatagram('n1', encodeData(5, DST, SRC, Buffer.alloc(10)), 5000);
  t.equal(tiny.kind === 'drop' && tiny.reply, undefined, 'a datagram smaller than a report gets none');
  const report = Buffer.alloc(ERROR_BYTES);
  writeErrorReport(report, 16, key(0x44), 'UNREACHABLE', encodeData(5, key(0x99), DST, short(randomBytes(16))));
  const aboutError = f.handleDatagram('n1', report, 5000);
  t.match(copyOf(aboutError), { kind: 'drop', reason: 'noRoute', reply: undefined }, 'no report about a report');
  const silent = hop([], { errorsPerSecond: 0 });
  const none = silent.handleDatagram('n1', trigger, 0);
  t.equal(none.kind === 'drop' && none.reply, undefined, 'errorsPerSecond 0: never');
});

t.test('budgets per inbound neighbour: datagrams/s and bytes/s, dropped and counted, never queued', async (t) => {
  const f = hop([[DST, 'n2']], { datagramsPerSecond: 100, burstMs: 100 });
  const packet = short(randomBytes(16));
  let forwarded = 0;
  for (let i = 0; i < 50; i++) if (f.handleDatagram('n1', encodeData(5, DST, SRC, packet), 0).kind === 'forward') forwarded++;
  t.equal(forwarded, 10, 'a burst of 100 ms at 100/s');
  t.equal(f.stats.overBudget, 40);
  t.equal(f.handleDatagram('n3', encodeData(5, DST, SRC, packet), 0).kind, 'forward', 'another neighbour has its own budget');
  t.equal(f.handleDatagram('n1', encodeData(5, DST, SRC, packet), 50).kind, 'forward', 'refilled after 50 ms (5 datagrams)');
  t.equal(f.neighbourCount, 2);
  f.neighbourDown('n1');
  t.equal(f.neighbourCount, 1, 'a neighbour that went down leaves nothing behind');

  const bytes = hop([[DST, 'n2']], { bytesPerSecond: 100_000, burstMs: 100 });
  const big = encodeData(5, DST, SRC, Buffer.alloc(1244));
  let passed = 0;
  for (let i = 0; i < 100; i++) if (bytes.handleDatagram('n1', Buffer.from(big), 0).kind === 'forward') passed++;
  t.equal(passed, Math.floor(16449 / big.length), 'bytes: the burst floor is one largest datagram (10 KB at 100 KB/s would be less)');
  t.equal(bytes.stats.overBudget, 100 - passed);
  t.equal(bytes.handleDatagram('n1', Buffer.from(big), 100).kind, 'forward', '100 ms later: 10 KB more');

  const capped = hop([[DST, 'n2']], { maxNeighbours: 1 });
  t.equal(capped.handleDatagram('a', encodeData(5, DST, SRC, packet), 0).kind, 'forward');
  t.match(copyOf(capped.handleDatagram('b', encodeData(5, DST, SRC, packet), 0)), { kind: 'drop', reason: 'overBudget' }, 'past maxNeighbours');
  t.equal(capped.neighbourCount, 1);
});

t.test('options are checked', async (t) => {
  for (const bad of [{ datagramsPerSecond: 0 }, { bytesPerSecond: -1 }, { burstMs: 0 }, { hopLimit: 256 }, { hopLimit: 1.5 }, { errorsPerSecond: Number.NaN }, { maxNeighbours: 0 }]) {
    t.throws(() => hop([], bad as ForwarderOptions), { code: 'ERR_BAD_OPTION' }, JSON.stringify(bad));
  }
  const host = { selfKey: SELF, nextHop: () => 'x', room: () => 1310, sendTo: () => true };
  for (const bad of [{ maxFlows: 0 }, { innerDatagramSize: 1199 }, { innerDatagramSize: 16384 }, { idleTimeoutMs: 0 }, { maxPendingFlows: 2000 }]) {
    t.throws(() => new RelayEndpoint(host, bad), { code: 'ERR_BAD_OPTION' }, JSON.stringify(bad));
  }
  t.throws(() => new Forwarder({ selfKey: Buffer.alloc(3), nextHop: () => undefined, room: () => 0 }), RangeError);
});

/** An endpoint whose sends land in `sent`, with a route to everyone through 'n1'. */
function endpoint(self: Buffer, options = {}) {
  const sent: Array<{ to: string; datagram: Buffer }> = [];
  let route: string | undefined = 'n1';
  let room = 1310;
  const e = new RelayEndpoint<string>(
    {
      selfKey: self,
      nextHop: () => route,
      room: () => room,
      sendTo: (to, datagram) => {
        sent.push({ to, datagram: Buffer.from(datagram) });
        return true;
      },
    },
    options,
  );
  return { e, sent, setRoute: (r: string | undefined) => (route = r), setRoom: (r: number) => (room = r) };
}

t.test('endpoint: open, send with the header, the far end accepts an Initial and answers', async (t) => {
  const a = endpoint(SRC);
  const d = endpoint(DST);
  t.throws(() => a.e.open(nodeIdAt(SRC, 0), 0), { code: 'UNREACHABLE' }, 'not to itself');
  t.throws(() => a.e.open(nodeIdAt(DST, 0), 0, 17), { code: 'HOP_LIMIT' }, 'route longer than the hop limit');
  a.setRoute(undefined);
  t.throws(() => a.e.open(nodeIdAt(DST, 0), 0), { code: 'UNREACHABLE' });
  a.setRoute('n1');
  const flow = a.e.open(nodeIdAt(DST, 0), 0, 3);
  t.equal(a.e.open(nodeIdAt(DST, 0), 0), flow, 'one flow per far node');
  t.equal(flow.maxDatagramSize, 1244);
  t.equal(flow.remoteNodeId, nodeIdAt(DST, 0));
  t.match(flow.address, { host: /^100::/, port: Number }, 'a discard-prefix stand-in address');
  t.same(pathAddress(DST), flow.address, 'stable');
  const dcid = randomBytes(16);
  t.ok(flow.send(initial(dcid)));
  t.equal(a.sent.length, 1);
  const out = a.sent[0]!.datagram;
  t.same(out, encodeData(16, DST, SRC, initial(dcid)), 'header + packet');
  const event = d.e.receive(out, 5);
  t.equal(event.kind, 'packet');
  if (event.kind !== 'packet') return;
  t.equal(event.created, true, 'a far node opened a flow');
  t.same(event.packet, initial(dcid));
  t.equal(event.flow.pending, true);
  t.equal(event.flow.remoteNodeId, nodeIdAt(SRC, 0), 'keyed by the claimed source: TLS must confirm it');
  t.ok(event.flow.send(short(randomBytes(16))));
  const back = a.e.receive(d.sent[0]!.datagram, 6);
  t.ok(back.kind === 'packet' && back.flow === flow && !back.created, 'the answer reaches the opener’s flow');
  d.e.confirm(event.flow);
  t.equal(event.flow.pending, false);
  t.equal(flow.send(Buffer.alloc(1245)), false, 'over maxDatagramSize');
  a.setRoom(1000);
  t.equal(flow.send(Buffer.alloc(1200)), false, 'the next link is too small');
  a.setRoute(undefined);
  t.equal(flow.send(Buffer.alloc(100)), false, 'no route now');
  t.match(a.e.stats, { sent: 1, sendFailed: 1, sendTooBig: 1, sendNoRoute: 1 });
});

t.test('endpoint: with no route to the far node, a flow sends to the neighbour its packets came from, while fresh and that link is up', async (t) => {
  const a = endpoint(SRC);
  const d = endpoint(DST);
  const flow = a.e.open(nodeIdAt(DST, 0), 0, 3);
  t.ok(flow.send(initial(randomBytes(16))));
  const event = d.e.receive(a.sent[0]!.datagram, 5, 'n7');
  if (event.kind !== 'packet') return t.fail('a packet');
  d.e.confirm(event.flow);
  d.setRoute(undefined);
  t.ok(event.flow.send(short(randomBytes(16))), 'sent with no route');
  t.equal(d.sent.at(-1)!.to, 'n7', 'to the neighbour the far node\'s packets came from');
  t.equal(d.e.stats.sentBack, 1, 'counted');
  d.setRoom(0);
  t.notOk(event.flow.send(short(randomBytes(16))), 'not on a link that is down');
  d.setRoom(1310);
  d.e.handleTimeout(5 + WAY_BACK_MS + 1);
  t.notOk(event.flow.send(short(randomBytes(16))), 'nor after WAY_BACK_MS without a packet from it');
  d.setRoute('n1');
  t.ok(event.flow.send(short(randomBytes(16))));
  t.equal(d.sent.at(-1)!.to, 'n1', 'a route wins');
  t.equal(d.e.stats.sentBack, 1);
});

t.test('endpoint: only a full-size Initial opens a flow, within maxFlows and maxPendingFlows', async (t) => {
  const d = endpoint(DST, { maxFlows: 4, maxPendingFlows: 2 });
  t.match(d.e.receive(encodeData(3, DST, key(1), short(randomBytes(16))), 0), { kind: 'drop', reason: 'unknownFlow' }, 'short header from a stranger');
  t.match(d.e.receive(encodeData(3, DST, key(1), initial(randomBytes(16), 1100)), 0), { kind: 'drop', reason: 'unknownFlow' }, 'Initial under 1200');
  t.match(d.e.receive(encodeData(3, DST, key(1), initial(randomBytes(16))), 0), { kind: 'packet', created: true });
  t.match(d.e.receive(encodeData(3, DST, key(2), initial(randomBytes(16))), 0), { kind: 'packet', created: true });
  t.match(d.e.receive(encodeData(3, DST, key(3), initial(randomBytes(16))), 0), { kind: 'drop', reason: 'flowLimit' }, 'two pending already');
  t.match(d.e.receive(encodeData(3, SRC, key(3), initial(randomBytes(16))), 0), { kind: 'drop', reason: 'malformed' }, 'not for this node');
  t.equal(d.e.flowCount, 2);
});

t.test('endpoint: idle and unconfirmed flows are evicted in virtual time', async (t) => {
  const d = endpoint(DST, { idleTimeoutMs: 1000, pendingTimeoutMs: 400 });
  const spoof = d.e.receive(encodeData(3, DST, key(1), initial(randomBytes(16))), 0);
  const real = d.e.receive(encodeData(3, DST, key(2), initial(randomBytes(16))), 0);
  if (spoof.kind !== 'packet' || real.kind !== 'packet') throw new Error('expected flows');
  d.e.confirm(real.flow);
  const mine = d.e.open(nodeIdAt(key(3), 0), 0);
  t.equal(d.e.pollTimeout(), 100, 'a sweep every quarter of the shorter timeout');
  t.same(d.e.handleTimeout(50), [], 'early: nothing');
  t.same(d.e.handleTimeout(400), [spoof.flow], 'unconfirmed after 400 ms');
  for (let now = 500; now <= 1500; now += 100) {
    mine.send(short(randomBytes(16)));
    d.e.handleTimeout(now);
  }
  t.equal(real.flow.closed, true, 'silent for 1 s');
  t.equal(mine.closed, false, 'sending keeps a flow alive');
  t.equal(d.e.flowCount, 1);
  t.equal(d.e.stats.evicted, 2);
  t.equal(spoof.flow.send(short(randomBytes(16))), false, 'an evicted flow sends nothing');
});

t.test('endpoint: an error report is believed only if it quotes a connection id we sent', async (t) => {
  const a = endpoint(SRC);
  const flow = a.e.open(nodeIdAt(DST, 0), 0);
  const clientDcid = randomBytes(16);
  const serverCid = randomBytes(16);
  flow.send(initial(clientDcid));
  flow.send(short(serverCid));
  const reportAbout = (inner: Buffer, code: 'UNREACHABLE' | 'HOP_LIMIT' | 'RELAY_REFUSED' = 'HOP_LIMIT'): Buffer => {
    const report = Buffer.alloc(ERROR_BYTES);
    writeErrorReport(report, 16, key(0x44), code, encodeData(3, DST, SRC, inner));
    return report;
  };
  const believed = a.e.receive(reportAbout(initial(clientDcid)), 1);
  t.equal(believed.kind, 'error');
  if (believed.kind === 'error') {
    t.equal(believed.flow, flow);
    t.equal(believed.error.code, 'HOP_LIMIT');
    t.match(believed.error.message, nodeIdAt(key(0x44), 0), 'names the reporting hop');
  }
  t.match(a.e.receive(reportAbout(short(serverCid), 'RELAY_REFUSED'), 1), { kind: 'error', error: { code: 'RELAY_REFUSED' } }, 'the newer id too');
  t.match(a.e.receive(reportAbout(short(randomBytes(16))), 1), { kind: 'drop', reason: 'staleError' }, 'a guessed id');
  const other = Buffer.alloc(ERROR_BYTES);
  writeErrorReport(other, 16, key(0x44), 'UNREACHABLE', encodeData(3, key(0x99), SRC, short(serverCid)));
  t.match(a.e.receive(other, 1), { kind: 'drop', reason: 'unknownFlow' }, 'about a far node we have no flow to');
  t.equal(HEADER_BYTES, 66);
});

t.test('garbage never throws, at a hop or at an end', async (t) => {
  const f = hop([[DST, 'n2']], { datagramsPerSecond: 1e9, bytesPerSecond: 1e12 });
  const self = endpoint(SELF, { maxFlows: 100_000, maxPendingFlows: 100_000 });
  const flow = self.e.open(nodeIdAt(DST, 0), 0);
  flow.send(initial(randomBytes(8)));
  const kinds = new Set<string>();
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1400, maxLength: 1400 }), fc.constantFrom(0, 1, 66, 67, 98, 131, 132, 1310, 1400), fc.constantFrom(0x10, 0x11, 0x00, 0x12), fc.boolean(), fc.boolean(), (bytes, length, kind, toSelf, aboutDst) => {
      const datagram = Buffer.from(bytes.subarray(0, length));
      if (datagram.length > 0) datagram[0] = kind;
      if (toSelf && datagram.length >= 34) SELF.copy(datagram, 2);
      else if (datagram.length >= 34) DST.copy(datagram, 2);
      if (aboutDst && datagram.length >= 99) DST.copy(datagram, 67);
      const action = f.handleDatagram('n1', datagram, 0);
      kinds.add(action.kind === "drop" ? `drop:${action.reason}` : action.kind);
      if (action.kind === 'deliver') kinds.add(`end:${self.e.receive(action.datagram, 0).kind}`);
    }),
    { numRuns: 5000 },
  );
  t.ok(kinds.has('drop:malformed') && kinds.has('deliver') && kinds.has('forward'), [...kinds].join(', '));
});

t.test('NextHopTable follows the router’s route changes, with a default route for a leaf', async (t) => {
  const routes = new NextHopTable();
  const [d, n1, n2] = [nodeIdAt(DST, 0), nodeIdAt(key(1), 0), nodeIdAt(key(2), 0)];
  const frame = encodeData(5, DST, SRC, short(randomBytes(16)));
  t.equal(routes.nextHop(frame, 2), undefined);
  routes.apply([{ dest: d, nextHop: n1, previousNextHop: undefined, hops: 3 }]);
  t.equal(routes.nextHop(frame, 2), n1, 'looked up where the key lies in the datagram');
  t.equal(routes.hopsTo(d), 3);
  routes.apply([{ dest: d, nextHop: n2, previousNextHop: n1 }]);
  t.equal(routes.nextHop(frame, 2), n2);
  t.equal(routes.hopsTo(d), undefined, 'length unknown');
  routes.apply([{ dest: d, nextHop: undefined, previousNextHop: n2 }]);
  t.equal(routes.nextHop(frame, 2), undefined);
  routes.defaultHop = n1;
  t.equal(routes.nextHop(frame, 2), n1, 'a leaf: everything else by its default route');
  t.equal(routes.size, 0);
  const f = new Forwarder<NodeId>({ selfKey: SELF, nextHop: routes.nextHop, room: () => 1310 });
  t.match(copyOf(f.handleDatagram(n1, frame, 0) as ForwardAction<string>), { kind: 'drop', reason: 'loop' }, 'a leaf bouncing a datagram back to its hub is a loop');
});

t.test('RelayPath: drains a machine after the header, demultiplexes by connection id, lives with its connection', async (t) => {
  const a = endpoint(SRC, { idleTimeoutMs: 1000 });
  const flow = a.e.open(nodeIdAt(DST, 0), 0);
  const ids = [randomBytes(16), randomBytes(16)];
  const paths = ids.map((id) => a.e.path(flow, [id]));
  t.same(paths[0]!.remoteAddress, flow.address);
  t.same(paths[0]!.localAddress, pathAddress(SRC), 'this node’s own stand-in address');
  const queue = [short(randomBytes(16), 300), short(randomBytes(16), 1244)];
  const machine = { pollTransmit: (buffer: Buffer): number | null => {
    const next = queue.shift();
    if (next === undefined) return null;
    t.ok(buffer.length >= 1244, 'room for a full inner packet');
    next.copy(buffer);
    return next.length;
  } };
  const expected = [...queue];
  paths[0]!.transmit(machine);
  t.same(a.sent.map((s) => s.datagram), expected.map((p) => encodeData(16, DST, SRC, p)), 'header + packet, no copy in between');
  const to = (id: Buffer): Buffer => encodeData(3, SRC, DST, short(id));
  t.match(a.e.receive(to(ids[1]!), 1), { kind: 'packet', path: paths[1] }, 'by connection id');
  t.match(a.e.receive(to(ids[0]!), 1), { kind: 'packet', path: paths[0] });
  t.match(a.e.receive(to(randomBytes(16)), 1), { kind: 'packet', path: undefined }, 'no connection has it');
  for (let now = 1000; now <= 5000; now += 250) a.e.handleTimeout(now);
  t.equal(flow.closed, false, 'idle, but connections are on it: their own idle timeouts decide');
  paths[0]!.release();
  t.equal(flow.closed, false);
  paths[1]!.release();
  t.equal(flow.closed, true, 'gone with its last connection');
  t.throws(() => a.e.path(flow, [randomBytes(16)]), { code: 'ERR_CONNECTION_CLOSED' });
  queue.push(short(randomBytes(16)));
  paths[0]!.transmit(machine);
  t.equal(queue.length, 0, 'a path on a closed flow still drains its machine');
  t.equal(a.e.stats.sendFailed, 1, 'and counts what it could not send');
});
