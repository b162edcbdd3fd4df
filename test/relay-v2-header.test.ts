// Relay v2 wire format: the test vectors of docs/RELAY-V2.md, garbage never throws, the key table
// and the length-prefixed framing of HTTP/2 link streams.
import t from 'tap';
import fc from 'fast-check';
import { PnetError } from '../src/errors.js';
import {
  DATAGRAM_ROOM,
  ERROR_BYTES,
  HEADER_BYTES,
  INNER_DATAGRAM_SIZE,
  MAX_RELAYED_BYTES,
  DatagramStreamReader,
  KeyTable,
  decodeRelayed,
  encodeData,
  frameDatagram,
  headerProblem,
  writeErrorReport,
} from '../src/relay/v2/index.js';

const DST = Buffer.alloc(32, 0xdd);
const SRC = Buffer.alloc(32, 0x55);
const HOP = Buffer.alloc(32, 0xbb);
const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

// Vectors, as printed in docs/RELAY-V2.md.
const DATA_VECTOR = hex(`10 10 ${'dd'.repeat(32)} ${'55'.repeat(32)} 40 01 02 03`);
const ERROR_VECTOR = hex(`11 10 ${'55'.repeat(32)} ${'bb'.repeat(32)} 01 ${'dd'.repeat(32)} 40 01 02 03 ${'00'.repeat(28)}`);

t.test('sizes: 1350-byte links leave 1310 bytes of DATAGRAM room, 1244 for the inner packet', async (t) => {
  t.equal(HEADER_BYTES, 66);
  t.equal(DATAGRAM_ROOM, 1310);
  t.equal(INNER_DATAGRAM_SIZE, 1244);
  t.ok(INNER_DATAGRAM_SIZE >= 1200, 'RFC 9000: an inner QUIC path carries 1200-byte datagrams');
  t.equal(ERROR_BYTES, 131);
  t.equal(MAX_RELAYED_BYTES, 66 + 16383);
});

t.test('DATA vector: encode and decode', async (t) => {
  const bytes = encodeData(16, DST, SRC, hex('40010203'));
  t.same(bytes, DATA_VECTOR, 'bytes as documented');
  t.equal(bytes.length, 70);
  const decoded = decodeRelayed(bytes);
  t.ok(decoded.ok);
  if (!decoded.ok) return;
  t.equal(decoded.value.kind, 'data');
  t.equal(decoded.value.hopLimit, 16);
  t.same(decoded.value.destination, DST);
  t.same(decoded.value.source, SRC);
  t.same(decoded.value.packet, hex('40010203'));
});

t.test('ERROR vector: a report about the DATA vector goes back to its source', async (t) => {
  const out = Buffer.alloc(ERROR_BYTES);
  writeErrorReport(out, 16, HOP, 'UNREACHABLE', DATA_VECTOR);
  t.same(out, ERROR_VECTOR, 'bytes as documented');
  const decoded = decodeRelayed(out);
  t.ok(decoded.ok);
  if (!decoded.ok) return;
  t.equal(decoded.value.kind, 'error');
  t.same(decoded.value.destination, SRC, 'addressed to the source');
  t.same(decoded.value.source, HOP, 'from the reporting hop');
  t.same(decoded.value.error?.code, 'UNREACHABLE');
  t.same(decoded.value.error?.destination, DST, 'names the destination that failed');
  t.same(decoded.value.error?.quote.subarray(0, 4), hex('40010203'));
  // Codes 2 and 3.
  writeErrorReport(out, 16, HOP, 'HOP_LIMIT', DATA_VECTOR);
  t.equal(out[66], 2);
  writeErrorReport(out, 16, HOP, 'RELAY_REFUSED', DATA_VECTOR);
  t.equal(out[66], 3);
});

t.test('malformed datagrams: a reason, BAD_FRAME, no throw', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['header only', DATA_VECTOR.subarray(0, 66)],
    ['unknown type 0x1f', Buffer.concat([hex('1f'), DATA_VECTOR.subarray(1)])],
    ['version 2', Buffer.concat([hex('20'), DATA_VECTOR.subarray(1)])],
    ['kind 0x00', Buffer.concat([hex('00'), DATA_VECTOR.subarray(1)])],
    ['hop limit 0', Buffer.concat([hex('1000'), DATA_VECTOR.subarray(2)])],
    ['destination = source', encodeDataUnchecked(DST, DST)],
    ['error report of the wrong size', ERROR_VECTOR.subarray(0, 130)],
    ['error code 0', Buffer.concat([ERROR_VECTOR.subarray(0, 66), hex('00'), ERROR_VECTOR.subarray(67)])],
    ['error code 5', Buffer.concat([ERROR_VECTOR.subarray(0, 66), hex('05'), ERROR_VECTOR.subarray(67)])],
    ['too long', Buffer.concat([DATA_VECTOR, Buffer.alloc(MAX_RELAYED_BYTES)])],
  ];
  for (const [name, bytes] of cases) {
    const decoded = decodeRelayed(bytes);
    t.notOk(decoded.ok, name);
    if (decoded.ok) continue;
    t.equal(decoded.reason, 'malformed', name);
    t.type(decoded.error, PnetError, name);
    t.equal(decoded.error.code, 'BAD_FRAME', name);
  }
  t.equal(headerProblem(DATA_VECTOR), undefined);
  t.equal(headerProblem(ERROR_VECTOR), undefined);
});

function encodeDataUnchecked(dst: Buffer, src: Buffer): Buffer {
  const bytes = Buffer.from(DATA_VECTOR);
  dst.copy(bytes, 2);
  src.copy(bytes, 34);
  return bytes;
}

t.test('decoding random bytes never throws', async () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.nat(255), (bytes, first) => {
      if (bytes.length > 0) bytes[0] = first % 3 === 0 ? 0x10 : first % 3 === 1 ? 0x11 : first;
      const decoded = decodeRelayed(bytes);
      if (!decoded.ok && decoded.error.code !== 'BAD_FRAME') throw new Error('wrong code');
    }),
    { numRuns: 3000 },
  );
});

t.test('local input errors are RangeErrors', async (t) => {
  t.throws(() => encodeData(0, DST, SRC, hex('00')), RangeError);
  t.throws(() => encodeData(256, DST, SRC, hex('00')), RangeError);
  t.throws(() => encodeData(1, DST.subarray(0, 31), SRC, hex('00')), RangeError);
  t.throws(() => encodeData(1, DST, SRC, Buffer.alloc(0)), RangeError);
  t.throws(() => encodeData(1, DST, SRC, Buffer.alloc(16384)), RangeError);
});

t.test('KeyTable: keys looked up where they lie, set, replace, delete, grow', async (t) => {
  const table = new KeyTable<number>();
  const keys = Array.from({ length: 3000 }, (_, i) => {
    const key = Buffer.alloc(32);
    key.writeUInt32BE(i, 0);
    key.writeUInt32BE(i * 7919, 28);
    return key;
  });
  keys.forEach((key, i) => table.set(key, i));
  t.equal(table.size, 3000);
  const frame = Buffer.alloc(100);
  let found = 0;
  keys.forEach((key, i) => {
    key.copy(frame, 34);
    if (table.get(frame, 34) === i) found++;
  });
  t.equal(found, 3000, 'every key found inside another buffer');
  for (let i = 0; i < 3000; i += 2) t.equal(table.delete(keys[i]!), true);
  t.equal(table.size, 1500);
  let right = 0;
  keys.forEach((key, i) => {
    if (table.get(key, 0) === (i % 2 === 0 ? undefined : i)) right++;
  });
  t.equal(right, 3000, 'deleted keys gone, the others still found (backward shift kept probe runs whole)');
  table.set(keys[1]!, -1);
  t.equal(table.get(keys[1]!, 0), -1, 'replace');
  t.equal(table.size, 1500);
  t.equal(table.get(Buffer.alloc(10), 0), undefined, 'short buffer: no key');
  t.equal(table.get(keys[1]!, 5), undefined, 'out of range offset: no key');
  t.equal([...table.entries()].length, 1500);
  table.clear();
  t.equal(table.size, 0);
  t.equal(table.get(keys[1]!, 0), undefined);
});

t.test('link framing: length-prefixed datagrams survive any chunking', async (t) => {
  const datagrams = [DATA_VECTOR, ERROR_VECTOR, encodeData(3, DST, SRC, Buffer.alloc(1244, 7)), encodeData(1, SRC, DST, Buffer.alloc(16383, 9))];
  const stream = Buffer.concat(datagrams.map(frameDatagram));
  for (const size of [1, 2, 3, 7, 100, 1500, stream.length]) {
    const reader = new DatagramStreamReader();
    const got: Buffer[] = [];
    let errors = 0;
    for (let at = 0; at < stream.length; at += size) {
      if (reader.push(stream.subarray(at, at + size), (d) => got.push(Buffer.from(d))) !== undefined) errors++;
    }
    t.equal(errors, 0);
    t.same(got, datagrams, `chunks of ${size}`);
  }
});

t.test('link framing vector: the DATA vector behind 00 46', async (t) => {
  t.same(frameDatagram(DATA_VECTOR), Buffer.concat([hex('0046'), DATA_VECTOR]));
});

t.test('link framing: a bad length is BAD_FRAME and sticks', async (t) => {
  for (const bad of [hex('0000'), hex('ffff')]) {
    const reader = new DatagramStreamReader();
    const got: Buffer[] = [];
    const error = reader.push(Buffer.concat([frameDatagram(DATA_VECTOR), bad, DATA_VECTOR]), (d) => got.push(Buffer.from(d)));
    t.equal(error?.code, 'BAD_FRAME');
    t.equal(got.length, 1, 'what came before is delivered');
    t.equal(reader.push(frameDatagram(DATA_VECTOR), () => got.push(DATA_VECTOR))?.code, 'BAD_FRAME', 'later input ignored');
    t.equal(got.length, 1);
  }
  const split = new DatagramStreamReader();
  t.equal(split.push(hex('ff'), () => undefined), undefined);
  t.equal(split.push(hex('ff'), () => undefined)?.code, 'BAD_FRAME', 'a bad length split across chunks');
  t.throws(() => frameDatagram(Buffer.alloc(0)), RangeError);
});
