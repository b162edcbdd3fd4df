// Issue 15, item 2 over real QUIC on loopback: two attacker nodes hold partial OPENs on 600
// streams each (more than the victim's whole negotiation table of 1,024 together), a good node
// keeps making requests: its OPENs evict the attackers' oldest (fair eviction at the node cap). Counts, not speeds: the good node's successes out of a fixed number of
// requests with and without the attack, and the answers the attackers' streams got.
import t from 'tap';
import type { Duplex } from 'node:stream';
import { createNode } from '../src/index.js';
import type { NodeId, PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';
import { DEFAULT_MAX_PENDING, tryDecodeFrame } from '../src/channel/index.js';

const REQUESTS = 40;
const BATCH = 8;
const STREAMS_PER_ATTACKER = 600;
/** A header promising a 16-byte OPEN body, and 1 byte of it. */
const PARTIAL_OPEN = Buffer.from('a101001000', 'hex');

async function node(): Promise<PnetNode> {
  const n = await createNode({ listen: '127.0.0.1:0', h2: false });
  t.teardown(() => n.close());
  return n;
}

/** REQUESTS requests, BATCH at a time: how many got their reply. */
async function goodPhase(good: PnetNode, victim: NodeId): Promise<{ ok: number; codes: Record<string, number> }> {
  let ok = 0;
  const codes: Record<string, number> = {};
  for (let i = 0; i < REQUESTS; i += BATCH) {
    const batch = [];
    for (let j = 0; j < BATCH; j++) {
      batch.push(
        good.request(victim, 'svc', 'ping', { timeoutMs: 30_000 }).then(
          (reply) => (reply.toString() === 'pong' ? 1 : 0),
          (error: { code?: string }) => {
            codes[error.code ?? 'other'] = (codes[error.code ?? 'other'] ?? 0) + 1;
            return 0;
          },
        ),
      );
    }
    for (const r of await Promise.all(batch)) ok += r;
  }
  return { ok, codes };
}

/** What each attacker stream heard back so far: a REJECT code, or 'none' while held. */
function answers(streams: { stream: Duplex; got: Buffer[] }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const { got } of streams) {
    const bytes = Buffer.concat(got);
    let code = 'none';
    if (bytes.length > 0) {
      const frame = tryDecodeFrame(bytes);
      code = frame === 'need-more' ? 'partial' : frame.frame.type === 'reject' ? frame.frame.code : frame.frame.type;
    }
    out[code] = (out[code] ?? 0) + 1;
  }
  return out;
}

t.test('attackers holding partial OPENs over QUIC do not lock a good node out', async (t) => {
  const victim = await node();
  victim.handleRequest('svc', () => 'pong');
  const good = await node();
  const victimId = await good.dial(victim.address);
  const without = await goodPhase(good, victimId);

  const held: { stream: Duplex; got: Buffer[] }[] = [];
  for (let a = 0; a < 2; a++) {
    const attacker = await node();
    await attacker.dial(victim.address);
    const connection = nodeServices(attacker).peers.get(victimId)!; // a raw connection: streams with no OPEN
    const opening = [];
    for (let i = 0; i < STREAMS_PER_ATTACKER; i++) {
      opening.push(
        connection.openStream().then((stream) => {
          const entry = { stream: stream as Duplex, got: [] as Buffer[] };
          stream.on('error', () => undefined);
          stream.on('data', (chunk: Buffer) => entry.got.push(chunk));
          stream.write(PARTIAL_OPEN); // a whole header, so only the 10 s OPEN deadline applies (not the header one)
          held.push(entry);
        }),
      );
    }
    await Promise.all(opening);
  }
  // the victim answers the streams beyond its node cap at once (refused, or evicted to even the two out)
  const refusedAtLeast = held.length - DEFAULT_MAX_PENDING;
  for (let i = 0; i < 200 && (answers(held).OVERLOADED ?? 0) < refusedAtLeast; i++) await new Promise((resolve) => setTimeout(resolve, 25));

  const withAttack = await goodPhase(good, victimId);
  const got = answers(held);
  t.comment(`good node: ${without.ok}/${REQUESTS} without the attack, ${withAttack.ok}/${REQUESTS} with it (failures ${JSON.stringify(withAttack.codes)})`);
  t.comment(`attacker streams (${held.length}, more than the node cap of ${DEFAULT_MAX_PENDING}) by answer: ${JSON.stringify(got)}`);
  t.equal(without.ok, REQUESTS, 'every request succeeds without the attack');
  t.ok(withAttack.ok >= without.ok * 0.5, `the good node keeps >= 50% of its successes (${withAttack.ok} vs ${without.ok})`);
  t.ok((got.OVERLOADED ?? 0) > refusedAtLeast, 'the attackers were refused beyond the cap, and evicted for the good node');
  t.ok((got.none ?? 0) <= DEFAULT_MAX_PENDING, 'never more than the node cap held');
  for (const { stream } of held) stream.destroy();
});
