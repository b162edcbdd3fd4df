// Issue 15, relay v2 (docs/LIMITS.md): flows a far node opens are pending until its certificate
// proves the source key, which anyone may claim, so they are held per previous hop (the neighbour
// that delivered the Initial, authenticated by its link): a share per hop, and at the whole cap
// the hop holding the most gives back its oldest for a hop holding fewer. Sans-IO, virtual time.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { RelayEndpoint, encodeData, type EndpointOptions } from '../src/relay/v2/index.js';

const key = (fill: number, n = 0): Buffer => {
  const k = Buffer.alloc(32, fill);
  k.writeUInt16BE(n, 0);
  return k;
};
const DST = key(0xdd);

function initial(): Buffer {
  const packet = Buffer.alloc(1200, 0xaa);
  packet[0] = 0xc3;
  packet.writeUInt32BE(1, 1);
  packet[5] = 16;
  randomBytes(16).copy(packet, 6);
  return packet;
}

function endpoint(options: EndpointOptions): RelayEndpoint<string> {
  return new RelayEndpoint<string>({ selfKey: DST, nextHop: () => 'n', room: () => 1310, sendTo: () => true }, options);
}

/** An Initial from a far node with a key the attacker minted (`n`), delivered by `hop`. */
const from = (e: RelayEndpoint<string>, hop: string, fill: number, n: number) => e.receive(encodeData(5, DST, key(fill, n), initial()), 0, hop);

t.test('one previous hop cannot take every pending flow: its share, then eviction by the hop holding the most', async (t) => {
  const e = endpoint({});
  let created = 0;
  for (let n = 0; n < 100; n++) if (from(e, 'attacker', 0x66, n).kind === 'packet') created++;
  t.equal(created, 32, 'the attacker hop got its share of 32 (64 on the old code: the whole table)');
  t.equal(e.stats.pendingHopLimit, 68, 'the rest dropped, counted');
  for (let n = 0; n < 32; n++) t.equal(from(e, 'second', 0x77, n).kind, 'packet');
  t.equal(e.flowCount, 64, 'the table is full: two hops at their share');
  const good = from(e, 'good', 0x11, 0);
  t.equal(good.kind, 'packet', "a third hop's handshake still opens a flow");
  t.equal(e.stats.pendingEvicted, 1, 'by evicting the oldest pending flow of a hop holding the most');
  if (good.kind === 'packet') t.ok(good.evicted?.closed, 'the evicted flow is reported (its connection is closed by the caller)');
  t.equal(from(e, 'attacker', 0x66, 200).kind, 'drop', 'the heaviest hop gets nothing back');
  t.equal(e.flowCount, 64);
});

t.test('a confirmed flow leaves its hop\'s share; one hop alone may use its share', async (t) => {
  const e = endpoint({ maxPendingFlows: 4, maxPendingFlowsPerHop: 2 });
  const a = from(e, 'h', 1, 0);
  const b = from(e, 'h', 1, 1);
  t.match(from(e, 'h', 1, 2), { kind: 'drop', reason: 'pendingHopLimit' });
  if (a.kind === 'packet') e.confirm(a.flow);
  t.equal(from(e, 'h', 1, 3).kind, 'packet', 'room again once one was confirmed');
  if (b.kind === 'packet') e.close(b.flow);
  t.equal(from(e, 'h', 1, 4).kind, 'packet', 'and once one closed');
  t.throws(() => endpoint({ maxPendingFlows: 4, maxPendingFlowsPerHop: 5 }), { code: 'ERR_BAD_OPTION' });
});
