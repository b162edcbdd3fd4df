import t from 'tap';
import { sign } from 'node:crypto';
import { Identity } from '../src/identity/index.js';
import { keyBytesOf } from '../src/routing/index.js';
import { signerCounters, verifyOffThread } from '../src/node/fanout-signer.js';
import { verifySignatureAsync } from '../src/identity/index.js';

// Fan-out answers' Ed25519 checks leave the event loop's thread: a few per turn on libuv's thread
// pool, many per turn (an origin checking thousands of answers) in batches on one worker thread.
// Both give node:crypto's answers.

const check = (identity: Identity, data: Buffer, signature: Buffer): Promise<boolean> =>
  verifyOffThread(keyBytesOf(identity.nodeId), data, signature, () => verifySignatureAsync(identity.nodeId, data, signature));

t.test('a few checks in a turn: the thread pool, the same answers as node:crypto', async (t) => {
  const identity = await Identity.generate();
  const before = signerCounters().workerJobs;
  const data = [Buffer.from('a'), Buffer.from('b')];
  const signatures = data.map((d) => sign(null, d, identity.privateKey));
  const forged = Buffer.from(signatures[1]!);
  forged[0]! ^= 1;
  t.same(await Promise.all([check(identity, data[0]!, signatures[0]!), check(identity, data[1]!, forged)]), [true, false]);
  t.equal(signerCounters().workerJobs, before, 'no worker for two checks');
});

t.test('many checks in a turn: batched on the worker, same answers', async (t) => {
  const identities = await Promise.all(Array.from({ length: 8 }, () => Identity.generate()));
  const data = Array.from({ length: 300 }, (_, i) => Buffer.from(`answer ${i}`));
  const signatures = data.map((d, i) => sign(null, d, identities[i % 8]!.privateKey));
  const before = signerCounters();
  // Half the checks with the right key, half forged (another key's signature, or a flipped bit).
  const checks = await Promise.all(
    data.map((d, i) => {
      const signature = Buffer.from(signatures[i]!);
      if (i % 4 === 1) signature[5]! ^= 1;
      const signed = i % 4 === 3 ? Buffer.from(sign(null, d, identities[(i + 1) % 8]!.privateKey)) : signature;
      return check(identities[i % 8]!, d, signed);
    }),
  );
  checks.forEach((ok, i) => t.equal(ok, i % 4 === 0 || i % 4 === 2, `check ${i}`));
  const after = signerCounters();
  t.ok(after.workerJobs - before.workerJobs >= 300, 'the worker checked them');
  t.ok(after.batches - before.batches >= 2, 'in batches of at most 256');
  // A key that is not a point on the curve, or a bad length, is simply invalid.
  t.equal(await verifyOffThread(Buffer.alloc(31), data[0]!, signatures[0]!, async () => true), false);
  t.equal(await verifyOffThread(keyBytesOf(identities[0]!.nodeId), data[0]!, Buffer.alloc(10), async () => true), false);
});

t.test('an idle worker does not keep the process alive', async (t) => {
  // tap ends this file's process when its tests are done: a referenced worker would hang it
  // (the test's own timeout reports that).
  const identity = await Identity.generate();
  const data = Array.from({ length: 40 }, (_, i) => Buffer.from([i]));
  const results = await Promise.all(data.map((d) => check(identity, d, sign(null, d, identity.privateKey))));
  t.ok(results.every(Boolean));
});
