// The channel layer's negotiation scope (src/channel/limits.ts), sans-IO: node cap, per-peer
// share, fair eviction of the heaviest peer's oldest unfinished OPEN, and the counters.
import t from 'tap';
import type { NodeId } from '../src/identity/index.js';
import { NegotiationScope, type NegotiationTicket } from '../src/channel/limits.js';
import { ChannelRegistry, acceptChannel, type AcceptChannelOptions } from '../src/channel/index.js';
import { Duplex } from 'node:stream';

const A = 'a' as NodeId;
const B = 'b' as NodeId;
const C = 'c' as NodeId;
const caps = { maxPending: 4, maxPendingPerPeer: 3 };

function ticket(x: NegotiationTicket | 'peer' | 'node'): NegotiationTicket {
  if (typeof x === 'string') throw new Error(`refused: ${x}`);
  return x;
}

t.test('per-peer share, then the node cap; release gives the slot back', async (t) => {
  const scope = new NegotiationScope();
  const a = [0, 1, 2].map(() => ticket(scope.admit(A, caps, () => undefined)));
  t.equal(scope.admit(A, caps, () => undefined), 'peer', "a's fourth is beyond its share");
  const b = ticket(scope.admit(B, caps, () => undefined));
  for (const x of [...a, b]) x.evictable = false; // all past their OPEN: nothing may be evicted
  t.equal(scope.admit(C, caps, () => undefined), 'node', 'the node cap, nothing evictable');
  scope.release(a[0]!);
  scope.release(a[0]!); // idempotent
  t.equal(scope.pending, 3);
  t.equal(scope.pendingOf(A), 2);
  ticket(scope.admit(C, caps, () => undefined));
  const s = scope.stats();
  t.match(s, { pending: 4, pendingPeers: 3, peakPending: 4, admitted: 5, rejectedPeerLimit: 1, rejectedNodeLimit: 1 });
});

t.test('at the node cap the heaviest peer loses its oldest unfinished OPEN, never to a peer as heavy', async (t) => {
  const scope = new NegotiationScope();
  const evicted: string[] = [];
  const admit = (peer: NodeId, name: string): NegotiationTicket | 'peer' | 'node' => scope.admit(peer, caps, () => evicted.push(name));
  const a1 = ticket(admit(A, 'a1'));
  ticket(admit(A, 'a2'));
  ticket(admit(A, 'a3'));
  ticket(admit(B, 'b1'));
  a1.evictable = false; // a1 is in its authorise hook: not evictable, a2 is the oldest that is
  ticket(admit(C, 'c1'));
  t.strictSame(evicted, ['a2'], "c (0 held) takes a's oldest evictable");
  t.equal(scope.pendingOf(A), 2);
  t.equal(admit(C, 'c2'), 'node', 'a holds 2 and c would hold 2: no eviction, refused at the cap');
  t.strictSame(evicted, ['a2']);
  t.equal(scope.pending, 4);
  t.match(scope.stats(), { rejectedNodeLimit: 1, evicted: 0 }, "'evicted' is counted by the acceptor that answers it");
});

t.test('acceptChannel checks maxPendingPerPeer and headerTimeoutMs', async (t) => {
  const registry = new ChannelRegistry();
  for (const options of [{ maxPendingPerPeer: -1 }, { maxPendingPerPeer: 2.5 }, { headerTimeoutMs: 0 }, { headerTimeoutMs: 2 ** 31 }] as AcceptChannelOptions[]) {
    await t.rejects(acceptChannel(new Duplex({ read() {}, write(_c, _e, cb) { cb(); } }), registry, A, options), { code: 'ERR_BAD_OPTION' }, JSON.stringify(options));
  }
  t.equal(registry.pendingNegotiations, 0);
});
