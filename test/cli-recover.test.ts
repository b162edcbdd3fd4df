import t from 'tap';
import { createNode, Identity } from '../src/index.js';
import type { NodeId, PnetNode } from '../src/index.js';

t.setTimeout(60_000);

t.test('a bootstrap peer that goes away for 4 s is connected again within ~2 s of coming back', async (t) => {
  const identity = await Identity.generate();
  let peer: PnetNode = await createNode({ identity });
  const address = peer.address;
  // The library keeps bootstrap peers connected (src/node/bootstrap.ts); a small network's quick schedule.
  const node = await createNode({ bootstrap: [address], bootstrapRedial: { minDelayMs: 250, maxDelayMs: 1500, spreadMs: 250 } });
  const failures: number[] = [];
  node.on('bootstrap', (event) => !event.ok && failures.push(event.attempt));
  t.teardown(async () => {
    await Promise.all([node.close(), peer.close()]);
  });
  const up = (id: NodeId): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (node.peers().some((info) => info.nodeId === id)) resolve();
        else setTimeout(check, 20);
      };
      check();
    });
  await up(identity.nodeId);
  await peer.close({ timeoutMs: 0 });
  await new Promise((resolve) => setTimeout(resolve, 4000));
  peer = await createNode({ identity, listen: address });
  const back = performance.now();
  await up(identity.nodeId);
  const ms = performance.now() - back;
  t.ok(failures.length >= 1, `redials failed while it was away (${failures.length})`);
  // ~2 s by design (1.5 s cap + jitter + a ~0.5 s refused dial); bounded loosely for a loaded machine.
  t.ok(ms < 3000, `connected again ${Math.round(ms)} ms after it was back (the old schedule: 5 s check, 1-30 s backoff)`);
});
