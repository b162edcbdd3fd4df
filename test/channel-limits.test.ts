// The channel layer's negotiation scope (src/channel/limits.ts), sans-IO: the node cap, fair
// eviction of the heaviest peer's oldest negotiation (waiting for bytes before waiting in a hook),
// the per-peer share of async authorise hooks, and the counters.
import t from 'tap';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import type { NodeId } from '../src/identity/index.js';
import { NegotiationScope, type NegotiationTicket } from '../src/channel/limits.js';
import { ChannelRegistry, acceptChannel, type AcceptChannelOptions } from '../src/channel/index.js';

const A = 'a' as NodeId;
const B = 'b' as NodeId;
const C = 'c' as NodeId;
const caps = { maxPending: 4, maxPendingPerPeer: 2 };

function ticket(x: NegotiationTicket | 'node'): NegotiationTicket {
  if (x === 'node') throw new Error('refused at the node cap');
  return x;
}

t.test('free slots are anyone\'s; at the cap nobody heavier means refused; release gives the slot back', async (t) => {
  const scope = new NegotiationScope();
  const a = [0, 1, 2].map(() => ticket(scope.admit(A, caps, () => undefined)));
  const b = ticket(scope.admit(B, caps, () => undefined));
  t.equal(scope.pendingOf(A), 3, 'a burst beyond the share uses free slots');
  for (const x of [...a, b]) x.evictable = false; // all deciding: nothing may be evicted
  t.equal(scope.admit(C, caps, () => undefined), 'node', 'the node cap, nothing evictable');
  scope.release(a[0]!);
  scope.release(a[0]!); // idempotent
  t.equal(scope.pending, 3);
  t.equal(scope.pendingOf(A), 2);
  ticket(scope.admit(C, caps, () => undefined));
  t.match(scope.stats(), { pending: 4, pendingPeers: 3, peakPending: 4, admitted: 5, rejectedNodeLimit: 1 });
});

t.test('at the node cap the heaviest peer loses its oldest negotiation, waiting-for-bytes first, never to a peer as heavy', async (t) => {
  const scope = new NegotiationScope();
  const evicted: string[] = [];
  const admit = (peer: NodeId, name: string): NegotiationTicket | 'node' => scope.admit(peer, caps, () => evicted.push(name));
  const a1 = ticket(admit(A, 'a1'));
  ticket(admit(A, 'a2'));
  ticket(admit(A, 'a3'));
  ticket(admit(B, 'b1'));
  t.ok(scope.authorise(a1, caps), 'a1 waits in an async hook');
  ticket(admit(C, 'c1'));
  t.strictSame(evicted, ['a2'], "c (0 held) takes a's oldest waiting for bytes, not a1 in its hook");
  t.equal(scope.pendingOf(A), 2);
  t.equal(admit(C, 'c2'), 'node', 'a holds 2 and c would hold 2: no eviction, refused at the cap');
  t.strictSame(evicted, ['a2']);
  t.match(scope.stats(), { pending: 4, rejectedNodeLimit: 1, evicted: 0 }, "'evicted' is counted by the acceptor that answers it");
});

t.test('a negotiation in a hook is evicted when its peer has nothing else to lose', async (t) => {
  const scope = new NegotiationScope();
  const evicted: string[] = [];
  const wide = { maxPending: 4, maxPendingPerPeer: 4 };
  const a = [1, 2, 3, 4].map((i) => ticket(scope.admit(A, wide, () => evicted.push(`a${i}`))));
  for (const x of a) t.ok(scope.authorise(x, wide));
  t.equal(scope.authorisingOf(A), 4);
  ticket(scope.admit(B, caps, () => undefined));
  t.strictSame(evicted, ['a1'], 'the oldest hook of the heaviest peer');
  t.equal(scope.authorisingOf(A), 3);
});

t.test('the per-peer share of async hooks', async (t) => {
  const scope = new NegotiationScope();
  const a = [0, 1, 2].map(() => ticket(scope.admit(A, caps, () => undefined)));
  t.ok(scope.authorise(a[0]!, caps));
  t.ok(scope.authorise(a[1]!, caps));
  t.notOk(scope.authorise(a[2]!, caps), 'the third hook in flight is beyond the share of 2');
  scope.release(a[0]!);
  t.ok(scope.authorise(a[2]!, caps), 'a released hook frees a place');
  t.equal(scope.authorisingOf(A), 2);
  t.notOk(scope.authorise(a[0]!, caps), 'a released ticket holds nothing');
});

t.test('acceptChannel checks maxPendingPerPeer and headerTimeoutMs', async (t) => {
  const registry = new ChannelRegistry();
  const options: AcceptChannelOptions[] = [{ maxPendingPerPeer: -1 }, { maxPendingPerPeer: 2.5 }, { headerTimeoutMs: 0 }, { headerTimeoutMs: 2 ** 31 }];
  for (const o of options) {
    const stream = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
    await t.rejects(acceptChannel(stream, registry, A, o), { code: 'ERR_BAD_OPTION' }, JSON.stringify(o));
  }
  t.equal(registry.pendingNegotiations, 0);
});

t.test('property: any sequence of admissions, hooks and releases keeps the bounds and the books', async (t) => {
  const op = fc.record({ kind: fc.constantFrom('admit', 'admit', 'hook', 'decide', 'release'), peer: fc.nat({ max: 5 }), pick: fc.nat() });
  fc.assert(
    fc.property(fc.array(op, { maxLength: 300 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 6 }), (ops, maxPending, share) => {
      const limits = { maxPending, maxPendingPerPeer: share };
      const scope = new NegotiationScope();
      const live: NegotiationTicket[] = [];
      for (const o of ops) {
        const peer = `p${o.peer}` as NodeId;
        if (o.kind === 'admit') {
          const before = scope.pendingOf(peer);
          const got = scope.admit(peer, limits, () => {
            const victim = live.find((x) => x.released && x.evictable);
            if (victim === undefined) throw new Error('evict called for a ticket that was not released as evictable');
            live.splice(live.indexOf(victim), 1);
          });
          if (got === 'node') {
            assert(scope.pending === maxPending && scope.pendingOf(peer) === before, 'refused only at the cap');
            const heavier = live.filter((x) => x.evictable && scope.pendingOf(x.peer) > before + 1);
            assert(heavier.length === 0, 'refused only when no peer holding more has anything to give back');
          } else live.push(got);
        } else {
          const ticket = live[o.pick % Math.max(1, live.length)];
          if (ticket === undefined) continue;
          if (o.kind === 'hook' && ticket.evictable && !ticket.authorising) scope.authorise(ticket, limits);
          else if (o.kind === 'decide') ticket.evictable = false;
          else if (o.kind === 'release') {
            scope.release(ticket);
            live.splice(live.indexOf(ticket), 1);
          }
        }
        const peers = new Set(live.map((x) => x.peer));
        assert(scope.pending === live.length && scope.pending <= maxPending, 'the books match and the cap holds');
        for (const p of peers) assert(scope.authorisingOf(p) <= Math.min(share, maxPending), 'hooks within the share');
        assert(scope.stats().pendingPeers === peers.size);
      }
    }),
    { numRuns: 300 },
  );
  t.pass('300 random sequences');
});
