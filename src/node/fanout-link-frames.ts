/**
 * The fan-out link stream's wire (docs/FANOUT.md, "Wire format (version 2 link)"): what the
 * OPEN/ACCEPT metadata asks and answers, the frame header, and the reader that splits a link's
 * bytes into frames. Both ends use it: the sender's links (fanout-link.ts) and the receiver's
 * (fanout-link-server.ts).
 */
import { PnetError } from '../errors.js';

/** OPEN and ACCEPT metadata of a v2 link stream. */
export const LINK_KEY = 'leg';
export const LINK_VERSION = '2';
export const LINK_METADATA: Readonly<Record<string, string>> = Object.freeze({ [LINK_KEY]: LINK_VERSION });
/**
 * Version 3: a v2 link whose first leg follows the OPEN at once, before the ACCEPT (OPEN metadata
 * `leg: "3"`, `lead: "<bytes>"`: that many bytes of one v1 leg, link frames after them). A node
 * that answers without `leg: "3"` reads the stream as one v1 leg, which it is once the opener ends it.
 */
export const LINK_LEAD_VERSION = '3';
export const LEAD_KEY = 'lead';

/** What an OPEN on the fan-out channel asks for: a link (its version, and the lead leg's bytes; 0: none), or undefined for a v1 leg. */
export interface LinkAsk {
  readonly version: string;
  readonly lead: number;
}

/** Reads a fan-out OPEN's metadata; throws BAD_FRAME for a version 3 ask whose lead is not a length in 1..maxLegBytes. */
export function linkAsked(metadata: Readonly<Record<string, string>> | undefined, maxLegBytes: number): LinkAsk | undefined {
  const version = metadata?.[LINK_KEY];
  if (version === LINK_VERSION) return { version, lead: 0 };
  if (version !== LINK_LEAD_VERSION) return undefined;
  const text = metadata?.[LEAD_KEY] ?? '';
  const lead = /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : 0;
  if (lead < 1 || lead > maxLegBytes) throw new PnetError('BAD_FRAME', `fan-out link lead of "${text.slice(0, 16)}" bytes`);
  return { version, lead };
}

/** The ACCEPT metadata for a link asked for with `ask`. */
export function linkAnswer(ask: LinkAsk): Record<string, string> {
  return { [LINK_KEY]: ask.version };
}

/** OPEN metadata of a version 3 link whose lead leg is `leadBytes` long. */
export function leadMetadata(leadBytes: number): Record<string, string> {
  return { [LINK_KEY]: LINK_LEAD_VERSION, [LEAD_KEY]: String(leadBytes) };
}

/** Downstream frame types: a leg (its v1 encoding), the sender giving a leg up. */
export const LINK_LEG = 1;
export const LINK_CANCEL = 2;
/** Upstream frame types: some of a leg's result/EXPECT frames, a leg's end (empty body: normal; else an error body). */
export const LINK_FRAMES = 0x11;
export const LINK_END = 0x12;
/** u32 length (of type, leg id and body), type, u32 leg id. */
export const LINK_HEADER_BYTES = 9;
/** A FRAMES frame joins a leg's frames up to this many bytes (one larger frame goes alone). */
export const LINK_BATCH_BYTES = 256 * 1024;
/** An END body: code length, code, message (at most 1 KiB). */
export const MAX_END_BODY = 1 + 255 + 1024;

export function writeLinkHeader(out: Buffer, type: number, legId: number, bodyLength: number, at = 0): void {
  out.writeUInt32BE(5 + bodyLength, at);
  out[at + 4] = type;
  out.writeUInt32BE(legId, at + 5);
}

export function linkFrame(type: number, legId: number, body?: Buffer): Buffer {
  const out = Buffer.allocUnsafe(LINK_HEADER_BYTES + (body?.length ?? 0));
  writeLinkHeader(out, type, legId, body?.length ?? 0);
  body?.copy(out, LINK_HEADER_BYTES);
  return out;
}

/** What a link reader asks of its owner, frame by frame. */
export interface LinkFrameHandler {
  /** A frame starts: true to keep its body, false to skip it unbuffered; throws BAD_FRAME (the link is reset). */
  begin(type: number, legId: number, bodyLength: number): boolean;
  /** Some bytes of a kept body arrived; false: skip the rest. */
  chunk(legId: number, n: number): boolean;
  /** A kept frame is whole. */
  frame(type: number, legId: number, body: Buffer): void;
  /** A kept body is still incomplete at the end of a chunk (a leg split over packets): when a read deadline starts. */
  partial?(legId: number): void;
}

/** Splits a link's byte stream into frames; bodies are bounded by the handler before they are buffered. */
export class LinkReader {
  private readonly header = Buffer.allocUnsafe(LINK_HEADER_BYTES);
  private headerBytes = 0;
  private type = 0;
  private legId = 0;
  private left = 0;
  private keep = false;
  private parts: Buffer[] = [];
  private inBody = false;

  constructor(private readonly handler: LinkFrameHandler) {}

  /** The leg whose body is being read, if any. */
  get reading(): number | undefined {
    return this.inBody ? this.legId : undefined;
  }

  /** Drops the body being read; its remaining bytes are skipped. */
  skip(): void {
    this.keep = false;
    this.parts = [];
  }

  push(chunk: Buffer): void {
    let o = 0;
    while (o < chunk.length) {
      if (!this.inBody) {
        const n = Math.min(LINK_HEADER_BYTES - this.headerBytes, chunk.length - o);
        chunk.copy(this.header, this.headerBytes, o, o + n);
        this.headerBytes += n;
        o += n;
        if (this.headerBytes < LINK_HEADER_BYTES) return;
        this.startFrame();
        continue;
      }
      const n = Math.min(this.left, chunk.length - o);
      if (this.keep) {
        this.parts.push(chunk.subarray(o, o + n));
        if (!this.handler.chunk(this.legId, n)) this.skip();
      }
      o += n;
      this.left -= n;
      if (this.left === 0) this.endFrame();
    }
    if (this.inBody && this.keep) this.handler.partial?.(this.legId);
  }

  private startFrame(): void {
    this.headerBytes = 0;
    const length = this.header.readUInt32BE(0);
    if (length < 5) throw new PnetError('BAD_FRAME', `fan-out link frame of ${length} bytes`);
    this.expect(this.header[4]!, this.header.readUInt32BE(5), length - 5);
  }

  /** The next `length` bytes are the body of a frame with no header on the wire (a version 3 link's lead leg). */
  expect(type: number, legId: number, length: number): void {
    this.type = type;
    this.legId = legId;
    this.left = length;
    this.keep = this.handler.begin(type, legId, length);
    this.inBody = true;
    if (this.left === 0) this.endFrame();
  }

  private endFrame(): void {
    this.inBody = false;
    const keep = this.keep;
    const parts = this.parts;
    this.parts = [];
    this.keep = false;
    if (keep) this.handler.frame(this.type, this.legId, parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  }
}
