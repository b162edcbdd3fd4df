import t from 'tap';
import { sign } from 'node:crypto';
import { Identity } from '../src/identity/index.js';
import { keyBytesOf } from '../src/routing/index.js';
import { signOffThread, signerCounters, verifyOffThread } from '../src/node/fanout-signer.js';
import { verifySignatureAsync } from '../src/identity/index.js';

// Fan-out answers' Ed25519 signatures and checks leave the event loop's thread: a few per turn on
// libuv's thread pool, many per turn (an origin checking thousands of answers, one process playing
// thousands of targets) in batches on one worker thread. Both give node:crypto's answers.

t.test('a few signatures in a turn: the thread pool, the same signatures as node:crypto', async (t) => {
  const identity = await Identity.generate();
  const before = signerCounters().workerJobs;
  const data = [Buffer.from('a'), Buffer.from('b')];
  const signatures = await Promise.all(data.map((d) => signOffThread(identity.privateKey, d)));
  signatures.forEach((s, i) => t.same(s, sign(null, data[i]!, identity.privateKey)));
  t.equal(signerCounters().workerJobs, before, 'no worker for two signatures');
});

t.test('many signatures and checks in a turn: batched on the worker, same answers', async (t) => {
  const identities = await Promise.all(Array.from({ length: 8 }, () => Identity.generate()));
  const before = signerCounters();
  const data = Array.from({ length: 300 }, (_, i) => Buffer.from(`answer ${i}`));
  const signatures = await Promise.all(data.map((d, i) => signOffThread(identities[i % 8]!.privateKey, d)));
  signatures.forEach((s, i) => t.ok(s.equals(sign(null, data[i]!, identities[i % 8]!.privateKey)), `signature ${i}`));
  const after = signerCounters();
  t.ok(after.workerJobs - before.workerJobs >= 300, 'the worker signed them');
  t.ok(after.batches - before.batches >= 2, 'in batches of at most 256');

  // Half the checks with the right key, half forged (another key's signature, or a flipped bit).
  const checks = await Promise.all(
    data.map((d, i) => {
      const key = keyBytesOf(identities[i % 8]!.nodeId);
      const signature = Buffer.from(signatures[i]!);
      if (i % 4 === 1) signature[5]! ^= 1;
      const signed = i % 4 === 3 ? Buffer.from(sign(null, d, identities[(i + 1) % 8]!.privateKey)) : signature;
      return verifyOffThread(key, d, signed, () => verifySignatureAsync(identities[i % 8]!.nodeId, d, signed));
    }),
  );
  checks.forEach((ok, i) => t.equal(ok, i % 4 === 0 || i % 4 === 2, `check ${i}`));
  t.ok(signerCounters().workerJobs - after.workerJobs >= 300, 'the worker checked them');
  // A key that is not a point on the curve, or a bad length, is simply invalid.
  t.equal(await verifyOffThread(Buffer.alloc(31), data[0]!, signatures[0]!, async () => true), false);
  t.equal(await verifyOffThread(keyBytesOf(identities[0]!.nodeId), data[0]!, Buffer.alloc(10), async () => true), false);
});

t.test('an idle worker does not keep the process alive', async (t) => {
  // tap ends this file's process when its tests are done: a referenced worker would hang it
  // (the test's own timeout reports that).
  const identity = await Identity.generate();
  await Promise.all(Array.from({ length: 40 }, (_, i) => signOffThread(identity.privateKey, Buffer.from([i]))));
  t.pass();
});
