import t from 'tap';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { PnetError } from '../src/errors.js';
import {
  AcceptorNegotiation,
  ChannelRejectedError,
  FrameReader,
  MAX_BODY_LENGTH,
  MAX_FRAME_LENGTH,
  OpenerNegotiation,
  encodeAccept,
  encodeOpen,
  encodeReject,
  isValidChannelName,
  tryDecodeFrame,
  type Frame,
} from '../src/channel/index.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof PnetError ? err.code : `non-PnetError: ${String(err)}`;
  }
  return undefined;
}

/** Plain-object view of a decoded frame for deep comparison (metadata objects have a null prototype). */
function plain(f: Frame): unknown {
  const o: Record<string, unknown> = { ...f };
  if ('metadata' in f) o.metadata = Object.entries(f.metadata);
  if ('credentials' in f && f.credentials !== undefined) o.credentials = Buffer.from(f.credentials).toString('hex');
  return o;
}

// ---------------------------------------------------------------------------
// Test vectors, read from docs/PROTOCOL.md so the document and the code cannot drift apart.

interface Vector {
  name: string;
  outcome: 'ok' | 'need-more' | 'bad-frame' | 'version';
  bytes: Buffer;
}

function readVectors(): Vector[] {
  const doc = readFileSync(new URL('../docs/PROTOCOL.md', import.meta.url), 'utf8');
  const m = /```vectors\n([\s\S]*?)```/.exec(doc);
  if (!m) throw new Error('no ```vectors block in docs/PROTOCOL.md');
  const lines = m[1]!.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const out: Vector[] = [];
  for (let i = 0; i < lines.length; i += 2) {
    const [name, outcome] = lines[i]!.split(/\s+/);
    out.push({ name: name!, outcome: outcome as Vector['outcome'], bytes: hex(lines[i + 1]!) });
  }
  return out;
}

const okVectors: Record<string, { encode: () => Buffer; frame: unknown }> = {
  'open-min': {
    encode: () => encodeOpen('echo'),
    frame: { type: 'open', version: 1, channel: 'echo', metadata: [] },
  },
  'open-full': {
    encode: () => encodeOpen('ops/exec', { metadata: { trace: 'abc' }, credentials: hex('deadbeef') }),
    frame: { type: 'open', version: 1, channel: 'ops/exec', metadata: [['trace', 'abc']], credentials: 'deadbeef' },
  },
  'open-empty-cred': {
    encode: () => encodeOpen('a', { credentials: new Uint8Array(0) }),
    frame: { type: 'open', version: 1, channel: 'a', metadata: [], credentials: '' },
  },
  'accept-empty': { encode: () => encodeAccept(), frame: { type: 'accept', version: 1, metadata: [] } },
  'accept-md': { encode: () => encodeAccept({ v: '1.2' }), frame: { type: 'accept', version: 1, metadata: [['v', '1.2']] } },
  'accept-utf8': { encode: () => encodeAccept({ é: 'ü' }), frame: { type: 'accept', version: 1, metadata: [['é', 'ü']] } },
  'reject-unknown': {
    encode: () => encodeReject('UNKNOWN_CHANNEL', 'no such channel'),
    frame: { type: 'reject', version: 1, code: 'UNKNOWN_CHANNEL', reason: 'no such channel' },
  },
  'reject-version': { encode: () => encodeReject('VERSION'), frame: { type: 'reject', version: 1, code: 'VERSION', reason: '' } },
  'reject-overloaded': {
    encode: () => encodeReject('OVERLOADED', 'busy'),
    frame: { type: 'reject', version: 1, code: 'OVERLOADED', reason: 'busy' },
  },
};

t.test('PROTOCOL.md test vectors', async (t) => {
  const vectors = readVectors();
  t.ok(vectors.length >= 30, `found ${vectors.length} vectors in the document`);
  const okNames = vectors.filter((v) => v.outcome === 'ok').map((v) => v.name);
  t.strictSame(okNames.sort(), Object.keys(okVectors).sort(), 'every ok vector has an expectation here and vice versa');
  for (const v of vectors) {
    if (v.outcome === 'ok') {
      const exp = okVectors[v.name]!;
      t.equal(exp.encode().toString('hex'), v.bytes.toString('hex'), `${v.name}: encoder output matches the document`);
      const r = tryDecodeFrame(v.bytes);
      assert(r !== 'need-more');
      t.equal(r.bytesUsed, v.bytes.length, `${v.name}: whole vector used`);
      t.strictSame(plain(r.frame), exp.frame, `${v.name}: decodes as documented`);
      // and with trailing payload, at an offset
      const padded = Buffer.concat([hex('ffff'), v.bytes, Buffer.from('payload')]);
      const r2 = tryDecodeFrame(padded, 2);
      assert(r2 !== 'need-more');
      t.equal(padded.subarray(2 + r2.bytesUsed).toString(), 'payload', `${v.name}: payload after the frame is left alone`);
    } else if (v.outcome === 'need-more') {
      t.equal(tryDecodeFrame(v.bytes), 'need-more', `${v.name}: need-more`);
    } else if (v.outcome === 'bad-frame') {
      t.equal(codeOf(() => tryDecodeFrame(v.bytes)), 'BAD_FRAME', `${v.name}: BAD_FRAME`);
      t.throws(() => new FrameReader().push(v.bytes), { code: 'BAD_FRAME' }, `${v.name}: FrameReader BAD_FRAME`);
    } else {
      const r = tryDecodeFrame(v.bytes);
      assert(r !== 'need-more');
      t.strictSame(r.frame, { type: 'unsupported-version', version: v.bytes[1] }, `${v.name}: unsupported version`);
      const n = new AcceptorNegotiation().push(v.bytes);
      assert(n !== null && n.type === 'reject');
      t.equal(n.code, 'VERSION', `${v.name}: acceptor answers REJECT VERSION`);
      const reply = tryDecodeFrame(n.reply);
      assert(reply !== 'need-more' && reply.frame.type === 'reject');
      t.equal(reply.frame.code, 'VERSION', 'reply decodes as a v1 REJECT VERSION');
      t.match(reply.frame.reason, /supported: 1/);
    }
  }
});

// ---------------------------------------------------------------------------
// Round trips (fast-check)

const nameArb = fc.stringMatching(/^[a-z0-9][a-z0-9._/-]{0,63}$/);
const utf8Bounded = (min: number, max: number, maxChars: number) =>
  fc.string({ unit: 'binary', minLength: min, maxLength: maxChars }).filter((s) => {
    const n = Buffer.byteLength(s);
    return n >= min && n <= max;
  });
const metadataArb = fc.dictionary(utf8Bounded(1, 64, 20), utf8Bounded(0, 1024, 300), { maxKeys: 32 });
const credArb = fc.option(fc.uint8Array({ maxLength: 2048 }), { nil: undefined });

function mdSize(md: Record<string, string>): number {
  let n = 1;
  for (const [k, v] of Object.entries(md)) n += 1 + Buffer.byteLength(k) + 2 + Buffer.byteLength(v);
  return n;
}

/** Split `buf` into chunks at the given relative cut points. */
function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * buf.length)))].filter((p) => p > 0 && p < buf.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

/** Feed chunks to a FrameReader; returns the frame and every byte after it. */
function feed(chunks: Buffer[]): { frame: Frame; after: Buffer } {
  const r = new FrameReader();
  let frame: Frame | undefined;
  const after: Buffer[] = [];
  for (const c of chunks) {
    if (frame !== undefined) {
      after.push(c);
      continue;
    }
    assert(r.bufferedBytes <= MAX_FRAME_LENGTH);
    const got = r.push(c);
    if (got !== null) {
      frame = got.frame;
      after.push(got.rest);
    }
  }
  assert(frame !== undefined, 'frame never completed');
  return { frame, after: Buffer.concat(after) };
}

t.test('OPEN round trip over random chunk splits', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(
        nameArb,
        metadataArb,
        credArb,
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }),
        (channel, metadata, credentials, payload, cuts) => {
          const size = 4 + 1 + 1 + channel.length + mdSize(metadata) + (credentials ? 2 + credentials.length : 0);
          if (size > MAX_FRAME_LENGTH) {
            assert.equal(codeOf(() => encodeOpen(channel, { metadata, credentials })), 'ERR_BAD_OPTION');
            return;
          }
          const frame = encodeOpen(channel, { metadata, credentials });
          assert.equal(frame.length, size);
          const wire = Buffer.concat([frame, payload]);
          const { frame: f, after } = feed(split(wire, cuts));
          assert(f.type === 'open');
          assert.equal(f.channel, channel);
          assert.deepEqual(Object.entries(f.metadata), Object.entries(metadata));
          assert.deepEqual(f.credentials === undefined ? undefined : Buffer.from(f.credentials), credentials === undefined ? undefined : Buffer.from(credentials));
          assert.deepEqual(after, Buffer.from(payload));
          // every strict prefix is need-more
          for (let i = 0; i < frame.length; i += Math.max(1, frame.length >> 3)) assert.equal(tryDecodeFrame(frame.subarray(0, i)), 'need-more');
          assert.equal(tryDecodeFrame(frame.subarray(0, frame.length - 1)), 'need-more');
        },
      ),
      { numRuns: 300 },
    ),
  );
});

t.test('ACCEPT and REJECT round trips', async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(metadataArb, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }), (metadata, cuts) => {
        if (4 + mdSize(metadata) > MAX_FRAME_LENGTH) {
          assert.equal(codeOf(() => encodeAccept(metadata)), 'ERR_BAD_OPTION');
          return;
        }
        const { frame: f, after } = feed(split(Buffer.concat([encodeAccept(metadata), Buffer.from('x')]), cuts));
        assert(f.type === 'accept');
        assert.deepEqual(Object.entries(f.metadata), Object.entries(metadata));
        assert.equal(after.toString(), 'x');
      }),
      { numRuns: 200 },
    ),
  );
  const codes = ['UNKNOWN_CHANNEL', 'UNAUTHORIZED', 'BAD_FRAME', 'VERSION', 'OVERLOADED'] as const;
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.constantFrom(...codes), fc.string({ unit: 'binary', maxLength: 300 }), (code, reason) => {
        const r = tryDecodeFrame(encodeReject(code, reason));
        assert(r !== 'need-more' && r.frame.type === 'reject');
        assert.equal(r.frame.code, code);
        assert(Buffer.byteLength(r.frame.reason) <= 256);
        assert(reason.startsWith(r.frame.reason), 'reason is a prefix of the original (cut on a character boundary)');
      }),
      { numRuns: 200 },
    ),
  );
});

t.test('random and mutated input never throws anything but BAD_FRAME', async (t) => {
  const check = (buf: Buffer): void => {
    try {
      const r = tryDecodeFrame(buf);
      if (r !== 'need-more') assert(r.bytesUsed <= buf.length);
    } catch (err) {
      assert(err instanceof PnetError && err.code === 'BAD_FRAME', `unexpected ${String(err)}`);
    }
  };
  t.doesNotThrow(() => fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => check(Buffer.from(b))), { numRuns: 2000 }));
  const base = encodeOpen('svc/a', { metadata: { k: 'v', kk: 'vv' }, credentials: hex('0102') });
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }), (i, b) => {
        const m = Buffer.from(base);
        m[i] = b;
        check(m);
      }),
      { numRuns: 2000 },
    ),
  );
});

// ---------------------------------------------------------------------------
// Bounds

t.test('length bounds are enforced on the header, before buffering', async (t) => {
  // The largest length the format can express (u16 0xffff) is refused on the 4 header bytes.
  const r = new FrameReader();
  t.equal(r.push(hex('a1')), null);
  t.equal(r.push(hex('01')), null);
  t.equal(r.push(hex('ff')), null);
  t.equal(r.bufferedBytes, 3, 'only the header bytes are held');
  t.throws(() => r.push(Buffer.alloc(1 << 20, 0xff)), { code: 'BAD_FRAME' }, 'claim of 65535 bytes refused before reading the 1 MiB chunk');

  // A frame claiming the maximum legal length buffers at most MAX_FRAME_LENGTH bytes.
  const r2 = new FrameReader();
  const hdr = Buffer.from([0xa2, 1, MAX_BODY_LENGTH >> 8, MAX_BODY_LENGTH & 0xff]);
  t.equal(r2.push(hdr), null);
  let held = 0;
  let err: unknown;
  try {
    for (let i = 0; i < 100; i++) {
      r2.push(Buffer.alloc(1000));
      held = Math.max(held, r2.bufferedBytes);
    }
  } catch (e) {
    err = e;
  }
  t.equal((err as PnetError | undefined)?.code, 'BAD_FRAME', 'zero-filled body of 8188 bytes: count 0 then trailing bytes');
  t.ok(held > 0 && held <= MAX_FRAME_LENGTH, `held at most ${held} bytes`);

  // tryDecodeFrame: huge buffer behind a bad header is not scanned or copied
  const big = Buffer.alloc(64 << 20);
  big.set(hex('a1 01 ff ff'));
  t.equal(codeOf(() => tryDecodeFrame(big)), 'BAD_FRAME', 'rejected with 64 MiB behind the header');
  // Decided on the 4 header bytes alone: the same verdict with no body at all (no waiting, no scan).
  t.equal(codeOf(() => tryDecodeFrame(hex('a1 01 ff ff'))), 'BAD_FRAME', 'decided on the header alone');
});

t.test('encoders validate every bound (ERR_BAD_OPTION)', async (t) => {
  const cases: [string, () => unknown][] = [
    ['empty name', () => encodeOpen('')],
    ['65-byte name', () => encodeOpen('a'.repeat(65))],
    ['uppercase name', () => encodeOpen('Echo')],
    ['leading dot', () => encodeOpen('.echo')],
    ['space in name', () => encodeOpen('e cho')],
    ['non-ASCII name', () => encodeOpen('échо')],
    ['33 metadata entries', () => encodeOpen('a', { metadata: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, ''])) })],
    ['empty key', () => encodeOpen('a', { metadata: { '': 'v' } })],
    ['65-byte key', () => encodeOpen('a', { metadata: { ['k'.repeat(65)]: 'v' } })],
    ['key of 33 two-byte chars', () => encodeOpen('a', { metadata: { ['é'.repeat(33)]: 'v' } })],
    ['1025-byte value', () => encodeAccept({ k: 'v'.repeat(1025) })],
    ['value of 342 three-byte chars', () => encodeAccept({ k: '€'.repeat(342) })],
    ['non-string value', () => encodeAccept({ k: 5 as unknown as string })],
    ['lone surrogate', () => encodeAccept({ k: '\ud800' })],
    ['2049-byte credentials', () => encodeOpen('a', { credentials: new Uint8Array(2049) })],
    ['frame over 8 KiB', () => encodeAccept(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, 'v'.repeat(1024)])))],
    ['unknown reject code', () => encodeReject('NOPE' as 'VERSION')],
  ];
  for (const [what, fn] of cases) t.equal(codeOf(fn), 'ERR_BAD_OPTION', what);
  // at the bounds: accepted
  t.equal(codeOf(() => encodeOpen('a'.repeat(64))), undefined, '64-byte name ok');
  t.equal(codeOf(() => encodeOpen('0/._-', { credentials: new Uint8Array(2048) })), undefined, '2048-byte credentials ok');
  t.equal(codeOf(() => encodeAccept({ ['k'.repeat(64)]: 'v'.repeat(1024) })), undefined, '64-byte key, 1024-byte value ok');
  t.equal(codeOf(() => encodeAccept(Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, ''])))), undefined, '32 entries ok');
  // biggest legal frame is exactly 8192 bytes: 7 values of 1024 + one filling the rest
  const md: Record<string, string> = {};
  for (let i = 0; i < 7; i++) md[`k${i}`] = 'v'.repeat(1024);
  const used = 1 + 7 * (1 + 2 + 2 + 1024);
  md.z = 'v'.repeat(MAX_BODY_LENGTH - used - (1 + 1 + 2));
  t.equal(encodeAccept(md).length, MAX_FRAME_LENGTH, 'frame of exactly 8192 bytes');
  md.z += 'v';
  t.equal(codeOf(() => encodeAccept(md)), 'ERR_BAD_OPTION', '8193 bytes refused');
  // reject reason cut to 256 bytes on a character boundary
  const r = tryDecodeFrame(encodeReject('UNAUTHORIZED', '€'.repeat(100)));
  assert(r !== 'need-more' && r.frame.type === 'reject');
  t.equal(r.frame.reason, '€'.repeat(85), '300-byte reason cut to 255 bytes (85 whole characters)');
});

t.test('channel name rule', async (t) => {
  for (const ok of ['a', '0', 'echo', 'ops/exec', 'a.b_c-d/e', 'pnet/relay', 'z'.repeat(64)]) t.ok(isValidChannelName(ok), ok);
  for (const bad of ['', '/a', '-a', '.a', '_a', 'A', 'a b', 'a\u0000', 'ä', 'a'.repeat(65), 'a:b', 'a\n']) {
    t.notOk(isValidChannelName(bad), JSON.stringify(bad));
  }
  t.notOk(isValidChannelName(5 as unknown as string), 'non-string');
});

// ---------------------------------------------------------------------------
// Sans-IO negotiation machines

t.test('OpenerNegotiation', async (t) => {
  const accept = Buffer.concat([encodeAccept({ who: 'b' }), Buffer.from('hello')]);
  const n = new OpenerNegotiation();
  t.equal(n.push(accept.subarray(0, 3)), null);
  const out = n.push(accept.subarray(3));
  assert(out !== null && out.type === 'accepted');
  t.strictSame(Object.entries(out.metadata), [['who', 'b']]);
  t.equal(out.rest.toString(), 'hello', 'payload after ACCEPT is returned, ACCEPT is not');
  t.ok(n.settled);

  const rej = new OpenerNegotiation().push(encodeReject('UNAUTHORIZED', 'go away'));
  assert(rej !== null && rej.type === 'failed');
  t.ok(rej.error instanceof ChannelRejectedError);
  t.equal(rej.error.code, 'UNAUTHORIZED');
  t.equal((rej.error as ChannelRejectedError).reason, 'go away');

  const open = new OpenerNegotiation().push(encodeOpen('x'));
  assert(open !== null && open.type === 'failed');
  t.equal(open.error.code, 'BAD_FRAME', 'OPEN from the acceptor is BAD_FRAME');

  const v2 = new OpenerNegotiation().push(hex('a2 02 00 01 00'));
  assert(v2 !== null && v2.type === 'failed');
  t.equal(v2.error.code, 'VERSION');

  const garbage = new OpenerNegotiation().push(Buffer.from('HTTP/1.1 200 OK'));
  assert(garbage !== null && garbage.type === 'failed');
  t.equal(garbage.error.code, 'BAD_FRAME');

  const early = new OpenerNegotiation();
  t.equal(early.push(hex('a2 01')), null);
  t.equal(early.end().type === 'failed' && early.end().type, 'failed');
  const e = early.end();
  t.equal(e.type === 'failed' ? e.error.code : '', 'ERR_STREAM_RESET', 'EOF before the answer is ERR_STREAM_RESET');
});

t.test('AcceptorNegotiation', async (t) => {
  const wire = Buffer.concat([encodeOpen('svc', { metadata: { a: '1' } }), Buffer.from('payload')]);
  const n = new AcceptorNegotiation();
  let out = null;
  for (const c of split(wire, [0.1, 0.2, 0.5])) out = out ?? n.push(c);
  assert(out !== null && out.type === 'open');
  t.equal(out.frame.channel, 'svc');
  t.equal(out.rest.toString(), 'payload'.slice(-out.rest.length), 'rest is the tail of the chunk that completed OPEN');

  for (const [what, bytes] of [
    ['garbage', Buffer.from('GET / HTTP/1.1\r\n')],
    ['ACCEPT instead of OPEN', encodeAccept()],
    ['REJECT instead of OPEN', encodeReject('VERSION')],
  ] as const) {
    const o = new AcceptorNegotiation().push(bytes);
    assert(o !== null && o.type === 'reject', what);
    t.equal(o.code, 'BAD_FRAME', `${what}: BAD_FRAME`);
    const reply = tryDecodeFrame(o.reply);
    assert(reply !== 'need-more' && reply.frame.type === 'reject');
    t.equal(reply.frame.code, 'BAD_FRAME', `${what}: reply is REJECT BAD_FRAME`);
  }
  const cut = new AcceptorNegotiation();
  t.equal(cut.push(encodeOpen('svc').subarray(0, 5)), null);
  const ended = cut.end();
  t.equal(ended.type === 'reject' ? ended.code : '', 'BAD_FRAME', 'EOF inside OPEN');
});

// acceptChannel feeds the machine exactly `wanted` bytes at a time (header, then body), so the
// payload behind the OPEN stays in the stream: what the former read(4) + read(n) decoder did.
t.test('AcceptorNegotiation.wanted: header then body, nothing of the payload', async (t) => {
  const open = encodeOpen('svc', { metadata: { a: '1' }, credentials: Buffer.from('c') });
  const wire = Buffer.concat([open, Buffer.from('payload')]);
  const n = new AcceptorNegotiation();
  t.equal(n.wanted, 4, 'first the 4-byte header');
  t.equal(n.push(wire.subarray(0, 1)), null);
  t.equal(n.wanted, 3, 'the rest of the header');
  t.equal(n.push(wire.subarray(1, 4)), null);
  t.equal(n.wanted, open.length - 4, 'then exactly the body');
  const out = n.push(wire.subarray(4, open.length));
  assert(out !== null && out.type === 'open');
  t.equal(out.rest.length, 0, 'no payload byte was taken');
  t.equal(n.wanted, 0, 'nothing more once decided');

  const v2 = new AcceptorNegotiation();
  const verdict = v2.push(Buffer.from([0xa1, 0x02, 0x00, 0x04]));
  t.equal(verdict !== null && verdict.type === 'reject' ? verdict.code : '', 'VERSION', 'a header of another version decides at once');
  t.equal(v2.wanted, 0);

  const slow = new AcceptorNegotiation();
  t.equal(slow.push(open.subarray(0, 4)), null);
  const late = slow.timeout(250);
  assert(late.type === 'reject');
  t.equal(late.code, 'BAD_FRAME', 'no whole OPEN by the deadline: REJECT BAD_FRAME');
  t.match(late.reason, /within 250 ms/);
  t.equal(slow.end(), late, 'the first outcome stays');
});
