/**
 * Lowercase RFC 4648 base32 ("abcdefghijklmnopqrstuvwxyz234567"), no padding.
 *
 * Small, allocation-light codec used for node ids. Decoding accepts upper- and
 * lowercase letters and rejects anything else (including '=' padding and
 * whitespace). Internal to src/identity; not part of the public API.
 */

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

/** Char code -> 5-bit value, or -1. Covers the ASCII range only. */
const DECODE = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) {
    const lower = ALPHABET.charCodeAt(i);
    table[lower] = i;
    // Letters also decode from uppercase; digits map to themselves.
    if (lower >= 0x61 && lower <= 0x7a) table[lower - 0x20] = i;
  }
  return table;
})();

export function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0; // holds at most 12 pending bits
  let bits = 0;
  for (let i = 0; i < bytes.length; i++) {
    buffer = (buffer << 8) | bytes[i]!;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(buffer >>> bits) & 31];
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

/**
 * Decodes unpadded base32. Returns `undefined` (never throws) when the text
 * contains a character outside the alphabet, has an impossible length, or has
 * non-zero trailing bits (non-canonical encoding).
 */
export function base32Decode(text: string): Uint8Array | undefined {
  const rem = text.length % 8;
  // Valid unpadded tails carry 2, 4, 5 or 7 characters.
  if (rem === 1 || rem === 3 || rem === 6) return undefined;
  const out = new Uint8Array(Math.floor((text.length * 5) / 8));
  let buffer = 0;
  let bits = 0;
  let pos = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const value = code < 128 ? DECODE[code]! : -1;
    if (value < 0) return undefined;
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[pos++] = (buffer >>> bits) & 0xff;
    }
    buffer &= (1 << bits) - 1;
  }
  if (buffer !== 0) return undefined; // leftover bits must be zero
  return out;
}
