import t from 'tap';
import { createNode } from '../src/index.js';

function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

t.test('closing nodes leaves no timer or socket behind, also after a peer left abruptly', async (t) => {
  await new Promise((resolve) => setTimeout(resolve, 20));
  const before = resources();
  const a = await createNode({ quic: { idleTimeoutMs: 600 } });
  const b = await createNode({ quic: { idleTimeoutMs: 600 } });
  b.handle('echo', (stream) => { stream.pipe(stream); });
  const id = await a.dial(b.address);
  const stream = await a.openStream(id, 'echo');
  stream.on('error', () => undefined);
  stream.write('x');
  // b goes away at once, without draining
  const down = new Promise((resolve) => a.once('peer:down', resolve));
  await b.close({ timeoutMs: 0 });
  await down;
  t.equal(a.peers().length, 0, 'the vanished peer is gone');
  await a.close();
  await new Promise((resolve) => setTimeout(resolve, 50));
  const after = resources();
  for (const kind of ['Timeout', 'UDPWRAP', 'Immediate']) {
    t.equal(after[kind] ?? 0, before[kind] ?? 0, `no ${kind} left over`);
  }
});
