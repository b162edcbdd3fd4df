#!/usr/bin/env node
// Codec fuzzing (issue 15): random and mutated inputs into every decoder a peer's bytes reach: the
// channel layer's, relay v2's datagrams and link framing, node ids, the fan-out legs, envelopes
// and upstream frames, and the routing messages and records. The property is the same
// everywhere: nothing but a PnetError escapes (or none at all, where the API returns errors),
// nothing decoded or buffered is larger than its bound, and nothing passes a signature check but
// the bytes that were signed.
//
//   npm run build && npm run fuzz -- --seconds 600 [--seed 42] [--dist DIR]
//
// test/fuzz-codecs.test.ts runs the same targets over src/ with a bounded number of cases. The
// fan-out and routing codecs are not exported by their folders' index.ts: their modules are
// loaded by path (node/fanout-codec.js, routing/router/codec.js).
import { generateKeyPairSync, sign } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/**
 * The targets, given the library (`lib`: the channel, relayV2, identity, fanout (codec) and
 * routing (codec) modules and PnetError, from src/ or dist/) and fast-check. Each is
 * `{ name, property, runs }`: `runs` is the share of a bounded run (the test's budget), the long
 * run splits its time evenly instead.
 */
export function fuzzTargets(lib, fc) {
  const { channel, relayV2, identity, PnetError } = lib;
  const limits = channelLimits(channel);

  /** Calls `fn`; a throw must be a PnetError with one of `codes`. */
  function onlyPnetError(fn, codes) {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof PnetError)) throw new Error(`not a PnetError escaped: ${err?.stack ?? err}`);
      if (codes !== undefined && !codes.includes(err.code)) throw new Error(`unexpected PnetError code ${err.code}: ${err.message}`);
      return undefined;
    }
  }

  const frames = validFrames(fc, channel);
  const bytes = fc.oneof(
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 4, maxLength: channel.MAX_FRAME_LENGTH + 16 }) },
    { weight: 1, arbitrary: headerThenJunk(fc, channel) },
    { weight: 4, arbitrary: mutated(fc, frames) },
  ).map(toBuffer);
  const splits = chunkLengths(fc);

  return [
    {
      name: 'channel tryDecodeFrame',
      runs: 3000,
      property: fc.property(bytes, fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat({ max: 8 }) }), (input, offset) => {
        const got = onlyPnetError(() => channel.tryDecodeFrame(input, Math.min(offset, input.length)), ['BAD_FRAME']);
        if (got === undefined || got === 'need-more') return;
        check(got.bytesUsed <= channel.MAX_FRAME_LENGTH && got.bytesUsed <= input.length, 'bytesUsed within the frame bound');
        checkFrame(got.frame, limits);
      }),
    },
    {
      name: 'channel FrameReader (chunked, against tryDecodeFrame)',
      runs: 2000,
      property: fc.property(bytes, splits, (input, cuts) => {
        const reader = new channel.FrameReader();
        let result = null;
        let failed = false;
        for (const chunk of chunks(input, cuts)) {
          const r = onlyPnetError(() => reader.push(chunk), ['BAD_FRAME']);
          check(reader.bufferedBytes <= channel.MAX_FRAME_LENGTH && reader.wanted <= channel.MAX_FRAME_LENGTH, 'reader holds at most one frame');
          if (r === undefined) failed = true;
          else if (r !== null) result = r;
          if (failed || result !== null) break;
        }
        const whole = onlyPnetError(() => channel.tryDecodeFrame(input), ['BAD_FRAME']);
        if (result !== null) {
          checkFrame(result.frame, limits);
          check(whole !== undefined && whole !== 'need-more' && whole.frame.type === result.frame.type, 'chunked and whole decodes agree');
        } else if (!failed) check(whole === 'need-more', 'an incomplete frame is need-more whole too');
        else check(whole === undefined, 'a BAD_FRAME chunked is a BAD_FRAME whole');
      }),
    },
    {
      name: 'channel AcceptorNegotiation (fed what it wants)',
      runs: 2000,
      property: fc.property(bytes, fc.boolean(), fc.constantFrom('end', 'timeout', 'header'), (input, partialHeader, finish) => {
        const machine = new channel.AcceptorNegotiation();
        let at = 0;
        let out = null;
        while (out === null && at < input.length) {
          const want = machine.wanted;
          check(want >= 1 && want <= channel.MAX_FRAME_LENGTH, 'wanted within the frame bound');
          const take = partialHeader && want > 1 ? Math.ceil(want / 2) : want;
          out = machine.push(input.subarray(at, at + take));
          at += take;
        }
        if (out === null) out = finish === 'end' ? machine.end() : finish === 'timeout' ? machine.timeout(1) : (machine.headerTimeout(1) ?? machine.end());
        if (out.type === 'open') {
          checkFrame(out.frame, limits);
          return;
        }
        check(out.code === 'BAD_FRAME' || out.code === 'VERSION', 'the acceptor rejects BAD_FRAME or VERSION');
        const reply = channel.tryDecodeFrame(out.reply);
        check(reply !== 'need-more' && reply.frame.type === 'reject' && reply.bytesUsed === out.reply.length, 'the reply is one REJECT');
      }),
    },
    {
      name: 'channel OpenerNegotiation',
      runs: 2000,
      property: fc.property(bytes, splits, (input, cuts) => {
        const machine = new channel.OpenerNegotiation();
        let out = null;
        for (const chunk of chunks(input, cuts)) if ((out = machine.push(chunk)) !== null) break;
        out ??= machine.end();
        if (out.type === 'accepted') checkMetadata(out.metadata, limits);
        else check(out.error instanceof PnetError, 'the opener fails with a PnetError');
      }),
    },
    {
      name: 'channel encoders (any input: a frame or ERR_BAD_OPTION)',
      runs: 1000,
      property: fc.property(fc.string({ maxLength: 80 }), fc.dictionary(fc.string({ unit: 'binary', maxLength: 70 }), fc.string({ unit: 'binary', maxLength: 1100 }), { maxKeys: 40 }), (name, metadata) => {
        for (const encode of [() => channel.encodeOpen(name, { metadata }), () => channel.encodeAccept(metadata)]) {
          const frame = onlyPnetError(encode, ['ERR_BAD_OPTION']);
          if (frame === undefined) continue;
          const got = channel.tryDecodeFrame(frame); // what we encode, we decode
          check(got !== 'need-more' && got.bytesUsed === frame.length, 'encoded frames decode whole');
        }
        const reject = channel.encodeReject('OVERLOADED', name.repeat(10));
        check(reject.length <= channel.HEADER_LENGTH + 3 + channel.MAX_REASON_LENGTH, 'reject reason cut to its bound');
      }),
    },
    {
      name: 'relay v2 decodeRelayed',
      runs: 2000,
      property: fc.property(fc.oneof(fc.uint8Array({ maxLength: relayV2.MAX_RELAYED_BYTES + 8 }), mutated(fc, relayDatagrams(fc, relayV2))), (input) => {
        const got = relayV2.decodeRelayed(input); // never throws: errors are results
        if (!got.ok) {
          check(got.error instanceof PnetError && got.error.code === 'BAD_FRAME', 'malformed is a BAD_FRAME result');
          return;
        }
        const v = got.value;
        check(v.destination.length === 32 && v.source.length === 32, 'keys are 32 bytes');
        if (v.kind === 'data') check(v.packet.length <= relayV2.MAX_RELAYED_BYTES, 'packet within bound');
      }),
    },
    {
      name: 'relay v2 DatagramStreamReader',
      runs: 1000,
      property: fc.property(fc.oneof(fc.uint8Array({ maxLength: 4096 }), linkStream(fc, relayV2)), splits, (input, cuts) => {
        const reader = new relayV2.DatagramStreamReader();
        let error;
        for (const chunk of chunks(toBuffer(input), cuts)) {
          error = reader.push(chunk, (d) => check(d.length >= 1 && d.length <= relayV2.MAX_RELAYED_BYTES, 'datagram within bound'));
          if (error !== undefined) break;
        }
        check(error === undefined || (error instanceof PnetError && error.code === 'BAD_FRAME'), 'a bad length is a BAD_FRAME result');
      }),
    },
    {
      name: 'identity parseNodeId',
      runs: 2000,
      property: fc.property(fc.oneof(fc.string({ maxLength: 80 }), fc.stringMatching(/^[a-z2-7]{50,60}$/)), (text) => {
        const id = onlyPnetError(() => identity.parseNodeId(text), ['ERR_BAD_NODE_ID']);
        if (id !== undefined) check(identity.isNodeId(id), 'a parsed id is canonical');
      }),
    },
    ...fanoutTargets(lib, fc, onlyPnetError),
    ...routingTargets(lib, fc),
  ];
}

/** An Ed25519 signer made here (the codecs take any `{ nodeId, sign }`). */
function testSigner(identity) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const nodeId = identity.nodeIdFromPublicKey(Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url'));
  return { nodeId, sign: (data) => sign(null, data, privateKey) };
}

/** Signed fan-out bytes as a node makes them: envelopes (to all, listed), their legs, results and an EXPECT. */
function fanoutSamples(fanout, identity) {
  const origin = testSigner(identity);
  const answerer = testSigner(identity);
  const keys = [answerer, testSigner(identity)].map((s) => Buffer.from(identity.nodeIdToBytes(s.nodeId)));
  const fields = { ttlMs: 5000, maxReplyBytes: 4096, channel: 'ops/exec', metadata: { k: 'v' }, payload: Buffer.from('uptime') };
  const envelopes = [true, false].map((all) => fanout.encodeEnvelope(origin, { ...fields, all }));
  const legs = envelopes.map((envelope, i) =>
    fanout.encodeLeg({
      flags: 0,
      hopLimit: 8,
      budgetMs: 4000,
      envelope: envelope.bytes,
      targets: Buffer.concat(keys),
      tickets: i === 0 ? Buffer.alloc(0) : Buffer.concat(keys.map((k) => fanout.signTicket(origin, envelope.requestId, k))),
    }),
  );
  const requestId = envelopes[0].requestId;
  const results = [
    fanout.encodeResult(answerer, requestId, keys[0], fanout.STATUS_OK, Buffer.from('up 3 days')),
    fanout.encodeResult(answerer, requestId, keys[0], fanout.STATUS_ERROR, fanout.encodeErrorBody('ERR_HANDLER_FAILED', 'exit 1')),
    fanout.encodeResult(undefined, requestId, keys[1], fanout.STATUS_HOP_ERROR, fanout.encodeErrorBody('UNREACHABLE', 'no route')),
  ];
  return { envelopes, legs, requestId, signedResults: results.slice(0, 2), upStream: Buffer.concat([fanout.encodeExpect(keys[1]), ...results]) };
}

/** The fan-out's leg (and its envelope), upstream frames and error bodies. */
function fanoutTargets(lib, fc, onlyPnetError) {
  const { fanout, identity, PnetError } = lib;
  const { envelopes, legs, requestId, signedResults, upStream } = fanoutSamples(fanout, identity);
  const maxFrame = 4096;
  const signedBytes = (list) => new Set(list.map((b) => Buffer.from(b).toString('hex')));
  const validEnvelopes = signedBytes(envelopes.map((e) => e.bytes));
  const validResults = signedBytes(signedResults);
  const splits = chunkLengths(fc);
  return [
    {
      name: 'fan-out decodeLeg and decodeEnvelope',
      runs: 2000,
      property: fc.property(randomOrMutated(fc, legs, 600), (bytes) => {
        const leg = onlyPnetError(() => fanout.decodeLeg(bytes), ['BAD_FRAME', 'VERSION']);
        if (leg === undefined) return;
        const count = leg.targets.length / 32;
        check(Number.isInteger(count) && count <= fanout.MAX_FANOUT_TARGETS, 'whole keys within the target bound');
        check(leg.tickets.length === 0 || leg.tickets.length === count * 64, 'one ticket per target, or none');
        const envelope = onlyPnetError(() => fanout.decodeEnvelope(leg.envelope), ['BAD_FRAME', 'VERSION', 'UNAUTHORIZED']);
        if (envelope === undefined) return;
        check(validEnvelopes.has(envelope.bytes.toString('hex')), 'only the signed envelopes verify');
        check(envelope.payload.length <= fanout.MAX_FANOUT_PAYLOAD && Object.values(envelope.metadata).every((v) => typeof v === 'string'), 'payload and metadata within bounds');
      }),
    },
    {
      name: 'fan-out UpFrameReader (chunked, against splitUpFrames) and verifyResult',
      runs: 2000,
      property: fc.property(randomOrMutated(fc, [upStream], 700), splits, (bytes, cuts) => {
        const reader = new fanout.UpFrameReader(maxFrame);
        const chunked = [];
        let failed = false;
        for (const chunk of chunks(bytes, cuts)) {
          const frames = onlyPnetError(() => reader.push(chunk), ['BAD_FRAME']);
          if (frames === undefined) {
            failed = true;
            break;
          }
          chunked.push(...frames);
        }
        const whole = onlyPnetError(() => fanout.splitUpFrames(bytes, maxFrame), ['BAD_FRAME']);
        if (whole !== undefined) check(!failed && whole.length === chunked.length, 'chunked and whole agree');
        for (const frame of chunked) {
          if (frame.type !== fanout.FRAME_RESULT) continue;
          check(frame.frame.length <= 4 + maxFrame, 'a frame within its bound');
          // The hop count is not signed (each relaying node bumps it): compared as the answerer sent it.
          const sent = Buffer.from(frame.frame);
          sent[fanout.RESULT_HOPS_OFFSET] = 0;
          if (fanout.verifyResult(requestId, frame)) check(validResults.has(sent.toString('hex')), 'only the signed results verify');
          if (frame.status !== fanout.STATUS_OK) check(fanout.decodeErrorBody(frame.body) instanceof PnetError, 'an error body is a PnetError');
        }
      }),
    },
    {
      name: 'fan-out decodeErrorBody',
      runs: 1000,
      property: fc.property(fc.uint8Array({ maxLength: 1200 }).map(toBuffer), (body) => {
        const error = fanout.decodeErrorBody(body);
        check(error instanceof PnetError && /^[A-Z_]{1,40}$/.test(error.code), 'a PnetError with a code of the code alphabet');
        check(Buffer.byteLength(error.message) <= 3 * fanout.MAX_ERROR_MESSAGE_BYTES, 'message within bound');
      }),
    },
  ];
}

/** The routing stream's messages and the records in them (never throw: errors are results). */
function routingTargets(lib, fc) {
  const { routing, identity } = lib;
  const origin = testSigner(identity);
  const record = routing.encodeRecord({ origin: origin.nodeId, seq: 7n, lifetimeMs: 60_000, links: [{ to: testSigner(identity).nodeId, cost: 3 }] }, origin.sign);
  const message = routing.encodeMessage([{ remainingMs: 50_000, record }]);
  return [
    {
      name: 'routing decodeMessage, decodeRecord and verifyRecord',
      runs: 2000,
      property: fc.property(randomOrMutated(fc, [message, record], 400), (bytes) => {
        const decoded = routing.decodeMessage(bytes, 1 << 16);
        const records = decoded.ok ? decoded.value.map((e) => e.record).filter((r) => r !== undefined) : [bytes];
        for (const bytesOfRecord of records) {
          const got = routing.decodeRecord(bytesOfRecord);
          if (!got.ok) continue;
          check(got.value.links.length <= routing.MAX_LINKS, 'links within bound');
          if (routing.verifyRecord(got.value) === 'ok') check(Buffer.from(got.value.bytes).equals(Buffer.from(record)), 'only the signed record verifies');
        }
      }),
    },
  ];
}

function channelLimits(channel) {
  return {
    name: channel.MAX_CHANNEL_NAME_LENGTH,
    entries: channel.MAX_METADATA_ENTRIES,
    key: channel.MAX_METADATA_KEY_LENGTH,
    value: channel.MAX_METADATA_VALUE_LENGTH,
    credentials: channel.MAX_CREDENTIALS_LENGTH,
    reason: channel.MAX_REASON_LENGTH,
    isName: channel.isValidChannelName,
  };
}

function check(ok, what) {
  if (!ok) throw new Error(`property broken: ${what}`);
}

function checkMetadata(metadata, limits) {
  const keys = Object.keys(metadata);
  check(keys.length <= limits.entries, 'metadata entries within bound');
  for (const k of keys) {
    check(Buffer.byteLength(k) >= 1 && Buffer.byteLength(k) <= limits.key, 'metadata key within bound');
    check(Buffer.byteLength(metadata[k]) <= limits.value, 'metadata value within bound');
  }
}

function checkFrame(frame, limits) {
  if (frame.type === 'unsupported-version') return check(frame.version !== 1, 'unsupported is not version 1');
  if (frame.type === 'reject') return check(Buffer.byteLength(frame.reason) <= limits.reason, 'reason within bound');
  checkMetadata(frame.metadata, limits);
  if (frame.type !== 'open') return;
  check(limits.isName(frame.channel) && frame.channel.length <= limits.name, 'channel name valid');
  if (frame.credentials !== undefined) check(frame.credentials.length <= limits.credentials, 'credentials within bound');
}

function toBuffer(u8) {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** Chunk lengths for `chunks`. */
function chunkLengths(fc) {
  return fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 16 });
}

/** Random bytes, or one of the `samples` (encoded by the library) with a few edits: a Buffer. */
function randomOrMutated(fc, samples, maxLength) {
  return fc.oneof(fc.uint8Array({ maxLength }), mutated(fc, fc.constantFrom(...samples))).map(toBuffer);
}

/** `input` cut at the given lengths (cycled), every byte once, in order. */
function chunks(input, cuts) {
  const out = [];
  for (let at = 0, i = 0; at < input.length; i++) {
    const n = cuts[i % cuts.length];
    out.push(input.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** A header of any type and length, then random bytes (reaches body decoding more often). */
function headerThenJunk(fc, channel) {
  return fc
    .tuple(fc.constantFrom(channel.TYPE_OPEN, channel.TYPE_ACCEPT, channel.TYPE_REJECT, 0xa0, 0xa4), fc.constantFrom(1, 1, 1, 0, 2), fc.nat({ max: 600 }), fc.uint8Array({ maxLength: 600 }))
    .map(([type, version, length, body]) => Uint8Array.from([type, version, length >> 8, length & 0xff, ...body]));
}

/** Well-formed OPEN, ACCEPT and REJECT frames from generated fields. */
function validFrames(fc, channel) {
  const name = fc.stringMatching(/^[a-z0-9][a-z0-9._/-]{0,20}$/);
  const metadata = fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 40 }), { maxKeys: 4 });
  const credentials = fc.option(fc.uint8Array({ maxLength: 64 }), { nil: undefined });
  const safe = (make, fallback) => {
    try {
      return make();
    } catch {
      return fallback();
    }
  };
  return fc.oneof(
    fc.tuple(name, metadata, credentials).map(([n, md, cr]) => safe(() => channel.encodeOpen(n, { metadata: md, credentials: cr }), () => channel.encodeOpen(n))),
    metadata.map((md) => safe(() => channel.encodeAccept(md), () => channel.encodeAccept())),
    fc.tuple(fc.constantFrom(...Object.keys(channel.REJECT_CODE_VALUES)), fc.string({ maxLength: 300 })).map(([code, reason]) => channel.encodeReject(code, reason)),
  );
}

/** Relayed datagrams (DATA and error reports) made by the encoders. */
function relayDatagrams(fc, relayV2) {
  const key = fc.uint8Array({ minLength: 32, maxLength: 32 });
  return fc
    .tuple(fc.integer({ min: 1, max: 255 }), key, key, fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.boolean())
    .map(([hop, dst, src, packet, asError]) => {
      const data = relayV2.encodeData(hop, dst, src, packet);
      if (!asError) return data;
      const out = new Uint8Array(relayV2.ERROR_BYTES);
      relayV2.writeErrorReport(out, hop, src, relayV2.ERROR_CODES[0], data);
      return out;
    });
}

/** A link stream: length-prefixed datagrams, possibly mutated. */
function linkStream(fc, relayV2) {
  return mutated(
    fc,
    fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 6 }).map((ds) => Buffer.concat(ds.map((d) => relayV2.frameDatagram(d)))),
  );
}

/** `source` with 0..4 edits: flip, set, insert, delete a byte, or truncate. */
function mutated(fc, source) {
  const edit = fc.record({ kind: fc.constantFrom('flip', 'set', 'insert', 'delete', 'truncate'), at: fc.nat(), byte: fc.nat({ max: 255 }) });
  return fc.tuple(source, fc.array(edit, { maxLength: 4 })).map(([input, edits]) => {
    let b = Array.from(input);
    for (const e of edits) {
      const at = b.length === 0 ? 0 : e.at % b.length;
      if (e.kind === 'flip' && b.length > 0) b[at] ^= 1 << (e.byte % 8);
      else if (e.kind === 'set' && b.length > 0) b[at] = e.byte;
      else if (e.kind === 'insert') b.splice(at, 0, e.byte);
      else if (e.kind === 'delete') b.splice(at, 1);
      else if (e.kind === 'truncate') b = b.slice(0, at);
    }
    return Uint8Array.from(b);
  });
}

/** Runs every target for `seconds` in all (split evenly); returns a report line per target. */
export function fuzzFor(lib, fc, seconds, seed) {
  const targets = fuzzTargets(lib, fc);
  const ms = Math.max(1, Math.floor((seconds * 1000) / targets.length));
  const report = [];
  for (const target of targets) {
    const details = fc.check(target.property, {
      numRuns: Number.MAX_SAFE_INTEGER,
      interruptAfterTimeLimit: ms,
      markInterruptAsFailure: false,
      ...(seed === undefined ? {} : { seed }),
    });
    report.push({ name: target.name, runs: details.numRuns, failed: details.failed, seed: details.seed, details });
  }
  return report;
}

function parseArgs(argv) {
  const args = { seconds: 60, seed: undefined, dist: undefined };
  for (let i = 0; i < argv.length; i++) {
    const value = Number(argv[i + 1]);
    if (argv[i] === '--dist' && argv[i + 1] !== undefined) args.dist = argv[i + 1];
    else if (argv[i] === '--seconds' && Number.isFinite(value) && value > 0) args.seconds = value;
    else if (argv[i] === '--seed' && Number.isInteger(value)) args.seed = value;
    else if (argv[i] === '--help') args.help = true;
    else continue;
    i++;
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    console.log('usage: npm run fuzz -- [--seconds N (default 60)] [--seed S] [--dist DIR (default dist/)]   (npm run build first)');
    return;
  }
  const dist = args.dist === undefined ? new URL('../dist/', import.meta.url) : pathToFileURL(`${realpathSync(args.dist)}/`);
  let lib;
  try {
    const [channel, relayV2, identity, fanout, routing, errors] = await Promise.all(
      ['channel/index.js', 'relay/v2/index.js', 'identity/index.js', 'node/fanout-codec.js', 'routing/router/codec.js', 'errors.js'].map((p) => import(new URL(p, dist).href)),
    );
    lib = { channel, relayV2, identity, fanout, routing, PnetError: errors.PnetError };
  } catch (err) {
    console.error(`cannot load dist/ (run npm run build first): ${err.message}`);
    process.exitCode = 2;
    return;
  }
  const { default: fc } = await import('fast-check');
  console.log(`fuzzing for ${args.seconds} s${args.seed === undefined ? '' : ` (seed ${args.seed})`}`);
  let failed = 0;
  for (const r of fuzzFor(lib, fc, args.seconds, args.seed)) {
    console.log(`${r.failed ? 'FAIL' : 'ok  '} ${r.name}: ${r.runs} inputs (seed ${r.seed})`);
    if (r.failed) {
      failed++;
      console.log(fc.defaultReportMessage(r.details));
    }
  }
  if (failed > 0) process.exitCode = 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) await main();
