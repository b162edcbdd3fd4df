import t from 'tap';
import fc from 'fast-check';
import { createHash, createPublicKey, randomBytes, generateKeyPairSync, verify as cryptoVerify, webcrypto, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inspect } from 'node:util';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import {
  Identity,
  NODE_ID_LENGTH,
  certificateDerFromPem,
  isNodeId,
  loadOrCreateIdentity,
  nodeIdFromPublicKey,
  nodeIdToBytes,
  parseNodeId,
  publicKeyFromNodeId,
  saveIdentity,
  verifyPeerCertificate,
  verifySignature,
  type NodeId,
} from '../src/identity/index.js';
import { base32Decode, base32Encode } from '../src/identity/base32.js';
import { readEd25519Certificate } from '../src/identity/certificate-der.js';

const webCrypto = webcrypto as unknown as Crypto;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Independent reference: BigInt base32 of key || checksum. */
function referenceNodeId(key: Uint8Array): string {
  const sum = createHash('sha256').update('pnet-node-id').update(key).digest().subarray(0, 3);
  let n = BigInt('0x' + Buffer.concat([key, sum]).toString('hex'));
  let s = '';
  for (let i = 0; i < 56; i++) {
    s = ALPHABET[Number(n & 31n)] + s;
    n >>= 5n;
  }
  return s;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

t.test('base32 codec', async (t) => {
  // RFC 4648 section 10 vectors, lowercase, padding removed.
  const vectors: Array<[string, string]> = [
    ['', ''],
    ['f', 'my'],
    ['fo', 'mzxq'],
    ['foo', 'mzxw6'],
    ['foob', 'mzxw6yq'],
    ['fooba', 'mzxw6ytb'],
    ['foobar', 'mzxw6ytboi'],
  ];
  for (const [plain, encoded] of vectors) {
    t.equal(base32Encode(Buffer.from(plain)), encoded, `encode ${JSON.stringify(plain)}`);
    t.equal(Buffer.from(base32Decode(encoded)!).toString(), plain, `decode ${encoded}`);
    t.equal(Buffer.from(base32Decode(encoded.toUpperCase())!).toString(), plain, `decode upper ${encoded}`);
  }
  t.equal(base32Decode('mzxw6ytbo'), undefined, 'impossible length rejected');
  t.equal(base32Decode('mz'), undefined, 'non-zero trailing bits rejected'); // 'my' is canonical
  t.equal(base32Decode('mzxw6ytb='), undefined, 'padding rejected');
  t.equal(base32Decode('mzxw6yt1'), undefined, 'digit 1 rejected');
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const text = base32Encode(bytes);
        return text.length === Math.ceil((bytes.length * 8) / 5) && Buffer.from(base32Decode(text)!).equals(Buffer.from(bytes));
      }),
    ),
  'round trip of random byte strings');
});

t.test('node id encoding', async (t) => {
  const rfc8032Key = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
  t.equal(nodeIdFromPublicKey(rfc8032Key), '25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenjbb6t', 'fixed vector (docs/IDENTITY.md)');
  t.equal(nodeIdFromPublicKey(new Uint8Array(32)), 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaap7syp', 'all-zero key vector');
  t.equal(NODE_ID_LENGTH, 56);

  t.doesNotThrow(() =>
    fc.assert(
      fc.property(key32, (key) => {
        const id = nodeIdFromPublicKey(key);
        return (
          id.length === 56 &&
          id === referenceNodeId(key) &&
          isNodeId(id) &&
          parseNodeId(id) === id &&
          Buffer.from(publicKeyFromNodeId(id)).equals(key) &&
          Buffer.from(nodeIdToBytes(id)).equals(key)
        );
      }),
      { numRuns: 200 },
    ),
  'round trip and agreement with a BigInt reference encoder');

  for (const bad of [new Uint8Array(31), new Uint8Array(33), new Uint8Array(0)]) {
    t.equal(codeOf(() => nodeIdFromPublicKey(bad)), 'ERR_BAD_NODE_ID', `key of ${bad.length} bytes rejected`);
  }

  const id = nodeIdFromPublicKey(rfc8032Key);
  const copy = publicKeyFromNodeId(id);
  copy.fill(0);
  t.same(publicKeyFromNodeId(id), rfc8032Key, 'returned key is a copy');
});

t.test('checksum catches single-character changes', async (t) => {
  // Exhaustive over every position and every other character, for fixed keys.
  // Deterministic: a 3-byte checksum could in principle miss a change in the key
  // part (probability 2^-24 each), so the random part below has few runs.
  let checked = 0;
  for (const fill of [0x00, 0x5a, 0xff]) {
    const id = nodeIdFromPublicKey(new Uint8Array(32).fill(fill));
    for (let pos = 0; pos < id.length; pos++) {
      for (const c of ALPHABET) {
        if (c === id[pos]) continue;
        const changed = id.slice(0, pos) + c + id.slice(pos + 1);
        if (isNodeId(changed) || codeOf(() => parseNodeId(changed)) !== 'ERR_BAD_NODE_ID') {
          t.fail(`change at ${pos} to ${c} not detected`);
        }
        checked++;
      }
    }
  }
  t.equal(checked, 3 * 56 * 31, 'all single-character changes of three ids rejected');

  t.doesNotThrow(() =>
    fc.assert(
      fc.property(key32, fc.nat({ max: 55 }), fc.nat({ max: 30 }), (key, pos, offset) => {
        const id = nodeIdFromPublicKey(key);
        const replacement = ALPHABET[(ALPHABET.indexOf(id[pos]!) + 1 + offset) % 32]!;
        const changed = id.slice(0, pos) + replacement + id.slice(pos + 1);
        return changed !== id && !isNodeId(changed) && codeOf(() => parseNodeId(changed)) === 'ERR_BAD_NODE_ID';
      }),
      { numRuns: 200 },
    ),
  'random key, random position, random other character');
});

t.test('parseNodeId case, alphabet and length', async (t) => {
  const id = nodeIdFromPublicKey(randomBytes(32));
  t.equal(parseNodeId(id.toUpperCase()), id, 'uppercase accepted, lowercase returned');
  const mixed = [...id].map((c, i) => (i % 2 ? c.toUpperCase() : c)).join('');
  t.equal(parseNodeId(mixed), id, 'mixed case accepted');
  t.notOk(isNodeId(id.toUpperCase()), 'isNodeId wants the canonical lowercase form');
  t.same(publicKeyFromNodeId(id.toUpperCase() as NodeId), publicKeyFromNodeId(id));

  for (const ch of ['0', '1', '8', '9', '=', ' ', '-', 'é', '\u0000']) {
    const bad = id.slice(0, 20) + ch + id.slice(21);
    t.throws(() => parseNodeId(bad), { code: 'ERR_BAD_NODE_ID', message: /position 20/ }, `char ${JSON.stringify(ch)} rejected`);
    t.notOk(isNodeId(bad));
  }
  for (const text of ['', id.slice(0, 55), id + 'a', id + id, ` ${id}`, `${id}\n`]) {
    t.throws(() => parseNodeId(text), { code: 'ERR_BAD_NODE_ID', message: /56 characters/ }, `length ${text.length} rejected`);
    t.notOk(isNodeId(text));
  }
  for (const notString of [null, undefined, 42, {}]) {
    t.throws(() => parseNodeId(notString as unknown as string), { code: 'ERR_BAD_NODE_ID' });
    t.notOk(isNodeId(notString as unknown as string));
  }
  t.throws(() => publicKeyFromNodeId('abc' as NodeId), { code: 'ERR_BAD_NODE_ID' });
  const flipped = id.slice(0, 5) + (id[5] === 'a' ? 'b' : 'a') + id.slice(6);
  t.throws(() => parseNodeId(flipped), { code: 'ERR_BAD_NODE_ID', message: /checksum/ });
});

t.test('sign and verifySignature', async (t) => {
  const a = await Identity.generate();
  const b = await Identity.generate();
  const data = Buffer.from('link-state record #1');
  const sig = a.sign(data);
  t.equal(sig.length, 64);
  t.ok(verifySignature(a.nodeId, data, sig), 'good signature verifies');
  t.ok(cryptoVerify(null, data, createPublicKey(a.privateKey), sig), 'node:crypto agrees');

  const tamperedData = Buffer.from(data);
  tamperedData[0]! ^= 1;
  t.notOk(verifySignature(a.nodeId, tamperedData, sig), 'tampered data fails');
  const tamperedSig = Uint8Array.from(sig);
  tamperedSig[10]! ^= 0x80;
  t.notOk(verifySignature(a.nodeId, data, tamperedSig), 'tampered signature fails');
  t.notOk(verifySignature(b.nodeId, data, sig), 'other node id fails');
  t.ok(verifySignature(b.nodeId, data, b.sign(data)));

  // Bad input returns false, never throws.
  t.notOk(verifySignature(a.nodeId, data, sig.subarray(0, 63)));
  t.notOk(verifySignature(a.nodeId, data, new Uint8Array(0)));
  t.notOk(verifySignature('not-a-node-id' as NodeId, data, sig));
  t.notOk(verifySignature(undefined as unknown as NodeId, data, sig));
  t.notOk(verifySignature(a.nodeId, 'text' as unknown as Uint8Array, sig));
  t.notOk(verifySignature(a.nodeId, data, null as unknown as Uint8Array));
  // A valid-looking id whose key bytes are not a curve point.
  const weird = nodeIdFromPublicKey(new Uint8Array(32).fill(0xff));
  t.notOk(verifySignature(weird, data, sig));
  t.ok(verifySignature(a.nodeId, new Uint8Array(0), a.sign(new Uint8Array(0))), 'empty message');
});

t.test('Identity and its certificate', async (t) => {
  const before = Date.now();
  const a = await Identity.generate();
  t.ok(isNodeId(a.nodeId));
  t.equal(nodeIdFromPublicKey(a.publicKey), a.nodeId);
  t.equal(a.publicKey.length, 32);
  t.equal(a.privateKey.asymmetricKeyType, 'ed25519');
  t.equal(a.privateKey.type, 'private');
  t.match(a.keyPem, /^-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n$/);
  t.match(a.certPem, /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
  t.same(certificateDerFromPem(a.certPem), a.certDer);

  const cert = new X509Certificate(a.certDer);
  t.equal(cert.subject, `CN=${a.nodeId}`);
  t.equal(cert.issuer, `CN=${a.nodeId}`);
  t.equal(cert.publicKey.asymmetricKeyType, 'ed25519');
  t.ok(cert.verify(cert.publicKey), 'self-signed');
  t.equal(cert.ca, false);
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  t.ok(from <= before - HOUR + 1000 && from >= before - HOUR - 2000, `notBefore ~1 h back (${cert.validFrom})`);
  t.ok(Math.abs(to - (from + HOUR + 3650 * DAY)) < 5000, `notAfter ~10 years ahead (${cert.validTo})`);
  t.ok(/^[0-7][0-9A-F]{31}$/.test(cert.serialNumber), `positive 128-bit serial ${cert.serialNumber}`);

  const short = await Identity.generate({ validityDays: 2 });
  const shortCert = new X509Certificate(short.certDer);
  t.ok(Math.abs(Date.parse(shortCert.validTo) - Date.parse(shortCert.validFrom) - (HOUR + 2 * DAY)) < 5000, 'validityDays honoured');
  for (const validityDays of [0, -1, Number.NaN, Infinity]) {
    await t.rejects(Identity.generate({ validityDays }), { code: 'ERR_BAD_OPTION' }, `validityDays ${validityDays} rejected`);
  }

  const again = await Identity.fromPrivateKeyPem(a.keyPem);
  t.equal(again.nodeId, a.nodeId, 'same key, same node id');
  t.equal(again.keyPem, a.keyPem);
  t.not(again.certPem, a.certPem, 'fresh certificate each time');
  t.not(new X509Certificate(again.certDer).serialNumber, cert.serialNumber, 'random serial');
  t.not(short.nodeId, a.nodeId, 'generate makes new keys');
  const viaKeyObject = await Identity.fromPrivateKey(a.privateKey);
  t.equal(viaKeyObject.nodeId, a.nodeId);

  // Immutability and no private key leaks.
  t.ok(Object.isFrozen(a));
  const pk = a.publicKey;
  pk.fill(0);
  t.equal(nodeIdFromPublicKey(a.publicKey), a.nodeId, 'publicKey getter returns a copy');
  const der = a.certDer;
  der[0] = 0;
  t.equal(a.certDer[0], 0x30, 'certDer getter returns a copy');
  t.throws(() => {
    (a as unknown as { nodeId: string }).nodeId = 'x';
  }, TypeError);
  t.notMatch(JSON.stringify(a), /PRIVATE KEY/);
  t.notMatch(inspect(a, { depth: 5 }), /PRIVATE KEY/);
  t.match(inspect(a), a.nodeId);
});

t.test('Identity.fromPrivateKeyPem rejects non-Ed25519 and garbage', async (t) => {
  const rsaPem = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'sec1' }).toString();
  const edPublicPem = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const encrypted = generateKeyPairSync('ed25519')
    .privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' })
    .toString();
  await t.rejects(Identity.fromPrivateKeyPem(rsaPem), { code: 'ERR_KEY_FILE', message: /Ed25519.*rsa/ });
  await t.rejects(Identity.fromPrivateKeyPem(ecPem), { code: 'ERR_KEY_FILE', message: /Ed25519.*ec/ });
  await t.rejects(Identity.fromPrivateKeyPem(edPublicPem), { code: 'ERR_KEY_FILE' });
  await t.rejects(Identity.fromPrivateKeyPem(encrypted), { code: 'ERR_KEY_FILE', message: /encrypted/ });
  await t.rejects(Identity.fromPrivateKeyPem('hello'), { code: 'ERR_KEY_FILE', message: /not PEM/ });
  await t.rejects(Identity.fromPrivateKeyPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), { code: 'ERR_KEY_FILE' });
  await t.rejects(Identity.fromPrivateKey(generateKeyPairSync('ed25519').publicKey), { code: 'ERR_KEY_FILE' });
});

t.test('loadOrCreateIdentity', async (t) => {
  t.test('creates a 0600 key file in a new 0700 directory and reloads it', async (t) => {
    const dir = t.testdir();
    const path = join(dir, 'nested', 'keys', 'node.pem');
    const created = await loadOrCreateIdentity(path);
    const st = await stat(path);
    t.ok(st.isFile());
    if (process.platform !== 'win32') {
      t.equal(st.mode & 0o777, 0o600, 'key file mode 0600');
      t.equal((await stat(join(dir, 'nested', 'keys'))).mode & 0o777, 0o700, 'parent dir mode 0700');
      t.equal((await stat(join(dir, 'nested'))).mode & 0o777, 0o700, 'grandparent dir mode 0700');
    }
    t.equal(await readFile(path, 'utf8'), created.keyPem);
    t.same(await readdir(join(dir, 'nested', 'keys')), ['node.pem'], 'no temp files left behind');
    const loaded = await loadOrCreateIdentity(path);
    t.equal(loaded.nodeId, created.nodeId, 'reloaded to the same node id');
    t.equal(await readFile(path, 'utf8'), created.keyPem, 'file unchanged by loading');
  });

  t.test('concurrent first starts agree on one key', async (t) => {
    const path = join(t.testdir(), 'node.pem');
    const ids = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateIdentity(path)));
    t.equal(new Set(ids.map((i) => i.nodeId)).size, 1, 'all callers got the same identity');
    t.equal((await loadOrCreateIdentity(path)).nodeId, ids[0]!.nodeId);
    t.same(await readdir(join(path, '..')), ['node.pem'], 'no temp files left behind');
  });

  t.test('saveIdentity writes atomically with mode 0600', async (t) => {
    const dir = t.testdir({ 'node.pem': 'old content' });
    const path = join(dir, 'node.pem');
    if (process.platform !== 'win32') await chmod(path, 0o644);
    const a = await Identity.generate();
    await saveIdentity(a, path);
    t.equal(await readFile(path, 'utf8'), a.keyPem, 'replaced');
    if (process.platform !== 'win32') t.equal((await stat(path)).mode & 0o777, 0o600);
    t.equal((await loadOrCreateIdentity(path)).nodeId, a.nodeId);
    const fresh = join(dir, 'sub', 'other.pem');
    await saveIdentity(a, fresh);
    t.equal((await loadOrCreateIdentity(fresh)).nodeId, a.nodeId, 'creates parent directory');
    t.same((await readdir(dir)).sort(), ['node.pem', 'sub']);
  });

  t.test('malformed, RSA, empty and directory paths give ERR_KEY_FILE naming the path', async (t) => {
    const rsaPem = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const dir = t.testdir({
      'garbage.pem': 'this is not a key\n',
      'rsa.pem': rsaPem,
      'empty.pem': '',
      'truncated.pem': '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2Vw\n-----END PRIVATE KEY-----\n',
      'adir.pem': {},
    });
    const cases: Array<[string, RegExp]> = [
      ['garbage.pem', /not PEM/],
      ['rsa.pem', /Ed25519.*rsa/],
      ['empty.pem', /not PEM/],
      ['truncated.pem', /PEM private key/],
      ['adir.pem', /directory/],
    ];
    for (const [name, reason] of cases) {
      const path = join(dir, name);
      const err = await loadOrCreateIdentity(path).then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string },
      );
      t.equal(err?.code, 'ERR_KEY_FILE', `${name}: code`);
      t.ok(err?.message.includes(path), `${name}: message names the path (${err?.message})`);
      t.match(err?.message, reason, `${name}: reason`);
    }
    t.equal(await readFile(join(dir, 'garbage.pem'), 'utf8'), 'this is not a key\n', 'a bad key file is never overwritten');
    await t.rejects(loadOrCreateIdentity(join(dir, 'garbage.pem', 'x.pem')), { code: 'ERR_KEY_FILE' }, 'parent is a file');
    await t.rejects(loadOrCreateIdentity(''), { code: 'ERR_KEY_FILE' });
  });

  t.test('unreadable file gives ERR_KEY_FILE', { skip: process.getuid?.() === 0 || process.platform === 'win32' ? 'root (or Windows) ignores file modes' : false }, async (t) => {
    const a = await Identity.generate();
    const dir = t.testdir({ 'locked.pem': a.keyPem });
    const path = join(dir, 'locked.pem');
    await chmod(path, 0o000);
    await t.rejects(loadOrCreateIdentity(path), { code: 'ERR_KEY_FILE', message: /permission denied/ });
  });

  t.test('group/world readable key file still loads, with one warning', { skip: process.platform === 'win32' }, async (t) => {
    const a = await Identity.generate();
    const dir = t.testdir({ 'shared.pem': a.keyPem });
    const path = join(dir, 'shared.pem');
    await chmod(path, 0o644);
    const warnings: Error[] = [];
    const onWarning = (w: Error) => {
      if ((w as Error & { code?: string }).code === 'PNET_KEY_FILE_MODE') warnings.push(w);
    };
    process.on('warning', onWarning);
    t.teardown(() => process.off('warning', onWarning));
    t.equal((await loadOrCreateIdentity(path)).nodeId, a.nodeId);
    t.equal((await loadOrCreateIdentity(path)).nodeId, a.nodeId);
    await new Promise((r) => setImmediate(r));
    t.equal(warnings.length, 1, 'warned once');
    t.match(warnings[0]?.message, path);
    t.equal((await stat(path)).mode & 0o777, 0o644, 'mode left alone');
  });
});

async function ecdsaSelfSigned(): Promise<Uint8Array> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webCrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({ name: 'CN=ecdsa', keys, signingAlgorithm: alg }, webCrypto);
  return new Uint8Array(cert.rawData);
}

async function ed25519Keys(): Promise<CryptoKeyPair> {
  return (await webCrypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function rawKey(keys: CryptoKeyPair): Promise<Uint8Array> {
  return new Uint8Array(await webCrypto.subtle.exportKey('raw', keys.publicKey));
}

t.test('verifyPeerCertificate', async (t) => {
  const a = await Identity.generate();
  t.equal(verifyPeerCertificate([a.certDer]), a.nodeId, 'good certificate gives its node id');
  t.equal(verifyPeerCertificate([Buffer.from(a.certDer)]), a.nodeId, 'Buffer accepted');
  t.equal(verifyPeerCertificate([a.certDer, new Uint8Array([1, 2, 3])]), a.nodeId, 'only the leaf counts');
  t.equal(verifyPeerCertificate([certificateDerFromPem(a.certPem)]), a.nodeId);

  const reject = (chain: readonly Uint8Array[] | null | undefined, reason: RegExp, msg: string, now?: Date) =>
    t.throws(() => verifyPeerCertificate(chain, now), { code: 'ERR_PEER_CERTIFICATE', message: reason }, msg);

  reject([], /no certificate/, 'empty chain');
  reject(null, /no certificate/, 'null chain');
  reject(undefined, /no certificate/, 'undefined chain');
  reject([new Uint8Array(0)], /empty/, 'empty leaf');
  reject([new Uint8Array([0x30, 0x82, 0x01, 0x00, 1, 2, 3])], /parsable/, 'garbage bytes');
  reject([Uint8Array.from(a.certDer.subarray(0, 100))], /parsable/, 'truncated DER');
  reject([await ecdsaSelfSigned()], /Ed25519, got ec/, 'ECDSA P-256 certificate');

  // Issuer == subject, but signed by a different Ed25519 key.
  const subjectKeys = await ed25519Keys();
  const otherKeys = await ed25519Keys();
  const name = `CN=${nodeIdFromPublicKey(await rawKey(subjectKeys))}`;
  const forged = await x509.X509CertificateGenerator.create(
    { subject: name, issuer: name, publicKey: subjectKeys.publicKey, signingKey: otherKeys.privateKey, signingAlgorithm: { name: 'Ed25519' } },
    webCrypto,
  );
  reject([new Uint8Array(forged.rawData)], /not signed by its own key/, 'bad self-signature');

  // Flipped bit in the signature.
  const flipped = a.certDer;
  flipped[flipped.length - 1]! ^= 1;
  reject([flipped], /not signed by its own key/, 'tampered signature');

  // Really expired certificate.
  const oldKeys = await ed25519Keys();
  const expired = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: 'CN=old',
      keys: oldKeys,
      signingAlgorithm: { name: 'Ed25519' },
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    },
    webCrypto,
  );
  reject([new Uint8Array(expired.rawData)], /expired/, 'expired certificate');
  t.equal(
    verifyPeerCertificate([new Uint8Array(expired.rawData)], new Date(Date.now() - 5 * DAY)),
    nodeIdFromPublicKey(await rawKey(oldKeys)),
    'same certificate accepted while it was valid',
  );

  // The `now` parameter: before notBefore (1 h skew window) and after notAfter.
  reject([a.certDer], /not valid before/, 'not yet valid', new Date(Date.now() - 2 * HOUR));
  t.equal(verifyPeerCertificate([a.certDer], new Date(Date.now() - HOUR / 2)), a.nodeId, 'within the clock-skew window');
  reject([a.certDer], /expired/, 'expired after ~10 years', new Date(Date.now() + 3651 * DAY));
  t.equal(verifyPeerCertificate([a.certDer], new Date(Date.now() + 3640 * DAY)), a.nodeId, 'valid for ~10 years');
});

/** What OpenSSL (node:crypto's X509Certificate) says of a leaf: its node id, or why not. */
function verifiedByOpenSsl(der: Uint8Array, now: number): string {
  try {
    const cert = new X509Certificate(der);
    if (cert.publicKey.asymmetricKeyType !== 'ed25519') return 'not ed25519';
    if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) return 'dates';
    if (!cert.verify(cert.publicKey)) return 'signature';
    const jwk = cert.publicKey.export({ format: 'jwk' });
    return nodeIdFromPublicKey(Buffer.from(jwk.x!, 'base64url'));
  } catch {
    return 'unparsable';
  }
}

t.test('the DER reader agrees with OpenSSL (fields of good certificates, verdicts on mutated ones)', async (t) => {
  const ids = await Promise.all(Array.from({ length: 8 }, () => Identity.generate()));
  for (const id of ids) {
    const fields = readEd25519Certificate(id.certDer);
    const cert = new X509Certificate(id.certDer);
    t.ok(fields, 'a pnet certificate is in the plain shape');
    t.equal(nodeIdFromPublicKey(fields!.publicKey), id.nodeId);
    t.equal(fields!.notBefore, Date.parse(cert.validFrom));
    t.equal(fields!.notAfter, Date.parse(cert.validTo));
    t.ok(cryptoVerify(null, fields!.signed, cert.publicKey, fields!.signature), 'signed part and signature as OpenSSL sees them');
  }
  // GeneralizedTime (after 2049) and a certificate with an extension are read too.
  const keys = await ed25519Keys();
  const late = await x509.X509CertificateGenerator.createSelfSigned(
    { name: 'CN=late', keys, signingAlgorithm: { name: 'Ed25519' }, notBefore: new Date('2049-06-01T00:00:00Z'), notAfter: new Date('2051-01-02T03:04:05Z'), extensions: [new x509.BasicConstraintsExtension(false, undefined, true)] },
    webCrypto,
  );
  const lateFields = readEd25519Certificate(new Uint8Array(late.rawData));
  t.equal(lateFields?.notAfter, Date.parse('2051-01-02T03:04:05Z'), 'GeneralizedTime');
  t.equal(verifyPeerCertificate([new Uint8Array(late.rawData)], new Date('2050-01-01T00:00:00Z')), nodeIdFromPublicKey(await rawKey(keys)));
  t.equal(readEd25519Certificate(await ecdsaSelfSigned()), undefined, 'ECDSA: left to OpenSSL');

  // One to three bytes changed anywhere: verifyPeerCertificate accepts exactly what OpenSSL
  // accepts, with the same node id (the reader may only hand over, never accept more).
  const now = Date.now();
  let agreed = 0;
  let readByUs = 0;
  fc.assert(
    fc.property(fc.nat(ids.length - 1), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }), (which, changes) => {
      const der = Uint8Array.from(ids[which]!.certDer);
      for (const [at, xor] of changes) der[at % der.length]! ^= xor;
      const expected = verifiedByOpenSsl(der, now);
      let got: string;
      try {
        got = verifyPeerCertificate([der], new Date(now));
      } catch {
        got = 'rejected';
      }
      if (readEd25519Certificate(der) !== undefined) readByUs++;
      agreed++;
      return expected.length === 56 ? got === expected : got === 'rejected';
    }),
    { numRuns: 3000 },
  );
  t.equal(agreed, 3000);
  t.ok(readByUs > 1000, `the reader itself judged ${readByUs} of the 3,000 (the rest went to OpenSSL)`);
});

t.test('certificateDerFromPem', async (t) => {
  const a = await Identity.generate();
  t.same(certificateDerFromPem(a.certPem), a.certDer);
  t.same(certificateDerFromPem(`junk before\n${a.certPem.replace(/\n/g, '\r\n')}junk after`), a.certDer, 'CRLF and surrounding text');
  t.throws(() => certificateDerFromPem('nope'), { code: 'ERR_PEER_CERTIFICATE' });
  t.throws(() => certificateDerFromPem(a.keyPem), { code: 'ERR_PEER_CERTIFICATE' }, 'a key is not a certificate');
});

t.test('certificates work for mutual TLS 1.3 with node:tls', async (t) => {
  const server = await Identity.generate();
  const client = await Identity.generate();
  let serverSaw: NodeId | undefined;
  const srv = tls.createServer(
    { key: server.keyPem, cert: server.certPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' },
    (socket) => {
      serverSaw = verifyPeerCertificate([socket.getPeerCertificate().raw]);
      socket.end('ok');
    },
  );
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => srv.close());
  const { port } = srv.address() as AddressInfo;
  const result = await new Promise<{ protocol: string | null; peer: NodeId; data: string }>((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, key: client.keyPem, cert: client.certPem, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    let data = '';
    let peer: NodeId | undefined;
    let protocol: string | null = null;
    socket.on('secureConnect', () => {
      protocol = socket.getProtocol();
      peer = verifyPeerCertificate([socket.getPeerCertificate().raw]);
    });
    socket.on('data', (d: Buffer) => (data += d.toString()));
    socket.on('end', () => resolve({ protocol, peer: peer!, data }));
    socket.on('error', reject);
  });
  t.equal(result.protocol, 'TLSv1.3');
  t.equal(result.peer, server.nodeId, 'client verified the server node id');
  t.equal(serverSaw, client.nodeId, 'server verified the client node id');
  t.equal(result.data, 'ok');
});

t.test('key file helpers write nothing beside the key file', async (t) => {
  // Guard against the key file helpers writing outside the target directory.
  const dir = t.testdir();
  await mkdir(join(dir, 'x'));
  await writeFile(join(dir, 'x', 'k.pem'), (await Identity.generate()).keyPem, { mode: 0o600 });
  await loadOrCreateIdentity(join(dir, 'x', 'k.pem'));
  await loadOrCreateIdentity(join(dir, 'y.pem'));
  t.same((await readdir(dir)).sort(), ['x', 'y.pem']);
  t.same(await readdir(join(dir, 'x')), ['k.pem']);
});
