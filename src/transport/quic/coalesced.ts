/**
 * Where the first QUIC packet of a UDP datagram ends (RFC 9000 §12.2: long-header packets carry
 * a Length, so several may share a datagram, a short-header one last). quiche 0.18 drops the rest
 * of a datagram whose first packet it cannot decrypt, e.g. a late Handshake packet after it
 * discarded the Handshake keys, and with it the coalesced 1-RTT packet behind it.
 */
export function firstPacketLength(datagram: Uint8Array): number {
  const length = datagram.length;
  const first = datagram[0]!;
  if ((first & 0x80) === 0) return length; // short header: the rest of the datagram
  const type = (first >> 4) & 3;
  if (type === 3) return length; // Retry: no Length, alone in its datagram
  let offset = 5; // flags, version
  if (offset >= length) return length;
  offset += 1 + datagram[offset]!; // destination connection id
  if (offset >= length) return length;
  offset += 1 + datagram[offset]!; // source connection id
  if (type === 0) {
    // Initial: a token before the Length
    const token = readVarint(datagram, offset);
    if (token === undefined) return length;
    offset = token.next + token.value;
  }
  const payload = readVarint(datagram, offset);
  if (payload === undefined) return length;
  const end = payload.next + payload.value;
  return end > 0 && end < length ? end : length;
}

function readVarint(bytes: Uint8Array, offset: number): { value: number; next: number } | undefined {
  if (offset >= bytes.length) return undefined;
  const size = 1 << (bytes[offset]! >> 6);
  if (offset + size > bytes.length) return undefined;
  let value = bytes[offset]! & 0x3f;
  for (let i = 1; i < size; i++) value = value * 256 + bytes[offset + i]!;
  return { value, next: offset + size };
}
