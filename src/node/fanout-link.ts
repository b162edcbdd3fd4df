/**
 * Fan-out legs version 2 (docs/FANOUT.md, "Wire format (version 2)"): one long-lived
 * `pnet/fanout` stream per link carries many fan-outs' legs downstream and their results upstream
 * as frames tagged with a leg id, instead of one stream per leg. Negotiated in the OPEN/ACCEPT
 * metadata (`leg: "2"`); a peer that does not answer it gets version 1 legs. Results of one leg
 * interleave with others' and are written as they come, so a slow handler blocks only its own leg.
 */
import type { Duplex } from 'node:stream';
import { ChannelRejectedError } from '../channel/index.js';
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { ACCEPTED_EVENT } from './streams.js';
import { UpFrameReader, decodeErrorBody, splitUpFrames, type UpFrame } from './fanout-codec.js';

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
const MAX_END_BODY = 1 + 255 + 1024;

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

// ---- sender side ------------------------------------------------------------

/** Where a leg's upstream goes: frames as they come, then one close (normal end, or why it failed). */
export interface LegSink {
  frames(frames: readonly UpFrame[]): void;
  /** The leg is over; the cause is built only if answers are missing (a lazy one costs nothing). */
  closed(cause: Error | (() => Error)): void;
}

export interface LegHandle {
  /** The sender gives the leg up (its fan-out ended): nothing more is reported. */
  cancel(): void;
}

/** A stream on the fan-out channel: the peer's ACCEPT metadata once negotiated. */
export type LegStream = Duplex & { readonly remoteMetadata?: Readonly<Record<string, string>> };

/**
 * A version-1 leg: a stream of its own, the leg written and ended, frames read until the end.
 * `leg` undefined: the leg was written already (a version 3 lead the peer read as v1); `early`:
 * bytes the stream delivered before this reader was attached.
 */
export function sendV1Leg(opened: Promise<Duplex>, hop: NodeId, leg: Buffer | undefined, maxFrameBytes: number, sink: LegSink, early: readonly Buffer[] = []): LegHandle {
  let stream: Duplex | undefined;
  let over = false;
  const close = (cause: Error | (() => Error)): void => {
    if (over) return;
    over = true;
    sink.closed(cause);
  };
  opened.then(
    (opened) => {
      if (over) return void opened.destroy();
      stream = opened;
      const reader = new UpFrameReader(maxFrameBytes);
      const onData = (chunk: Buffer): void => {
        if (over) return;
        let frames: UpFrame[];
        try {
          frames = reader.push(chunk);
        } catch (error) {
          opened.destroy();
          return close(error as Error);
        }
        sink.frames(frames);
      };
      for (const chunk of early) onData(chunk);
      opened.on('data', onData);
      opened.on('error', (error: Error) => close(error));
      // The error is made only if answers are missing: a leg's normal end builds no Error (a stack trace per target).
      opened.on('end', () => close(() => new PnetError('ERR_STREAM_RESET', `${hop} ended its leg with answers missing`)));
      opened.on('close', () => close(() => new PnetError('ERR_STREAM_RESET', `leg to ${hop} closed with answers missing`)));
      if (leg === undefined) opened.end();
      else opened.end(leg);
    },
    (error: Error) => close(error),
  );
  return {
    cancel: () => {
      over = true;
      stream?.destroy();
    },
  };
}

/** OPEN metadata of a version 3 link (optimistic: its lead leg follows the OPEN). */
export type LinkOpen = Readonly<Record<string, string>>;

/**
 * How the sender opens fan-out streams: false, an optimistic v1 leg stream; true, a v2 link
 * (resolved at the ACCEPT); metadata, a version 3 link, optimistic (its lead leg is written at
 * once), which emits ACCEPTED_EVENT when the ACCEPT comes.
 */
export type OpenLegStream = (hop: NodeId, link: boolean | LinkOpen) => Promise<LegStream>;

interface SentLeg {
  id: number;
  readonly hop: NodeId;
  /** Header room then the v1 leg encoding. */
  readonly bytes: Buffer;
  readonly maxFrameBytes: number;
  readonly sink: LegSink;
  over: boolean;
  /** Sent as a v1 leg instead (the peer answered OPEN without v2). */
  v1?: LegHandle;
}

interface Link {
  readonly hop: NodeId;
  stream: Duplex | undefined;
  /** The ACCEPT came and said link: frames may be written. */
  accepted: boolean;
  /** A version 3 link's lead leg (id 0), sent with the OPEN; let go at the ACCEPT (its sink holds its whole fan-out). */
  lead: SentLeg | undefined;
  readonly legs: Map<number, SentLeg>;
  readonly queue: SentLeg[];
  nextId: number;
  idleSince: number;
  idleTimer: NodeJS.Timeout | undefined;
  closed: boolean;
}

/** A link with no leg for this long is ended (its stream closed). */
const LINK_IDLE_MS = 120_000;
/** A peer that answered without v2 gets v1 legs for this long, then is asked again (it may have been upgraded). */
const V1_MEMORY_MS = 10 * 60_000;

/** Counters of the sender's links. */
export interface LinkCounters {
  /** v2 link streams opened (one per neighbour that legs went to, again after a reset or idle close). */
  opened: number;
  /** Of them, version 3 links whose first leg went with the OPEN. */
  leads: number;
  /** Links that failed (reset, connection lost, bad frame) with legs on them. */
  broken: number;
  /** Link OPENs the peer REJECTed (their legs went as v1 legs). */
  rejected: number;
  /** Legs sent as v1 because the peer does not speak v2 (or REJECTed the link). */
  v1Legs: number;
}

/** The sender's links, one per next hop: legs go down as frames, their results come back tagged. */
export class LegLinks {
  readonly counters: LinkCounters = { opened: 0, leads: 0, broken: 0, rejected: 0, v1Legs: 0 };
  /** False: links are opened as version 2 (the first leg waits for the ACCEPT) instead of 3 (for A/B runs and tests). */
  leadLegs = true;
  private readonly links = new Map<NodeId, Link>();
  private readonly v1Peers = new Map<NodeId, number>();

  constructor(
    private readonly open: OpenLegStream,
    /** False: send only v1 legs (a node that behaves as version 1). */
    private readonly enabled: () => boolean,
  ) {}

  /** Sends a leg (`bytes`: LINK_HEADER_BYTES of room, then the leg) to `hop`. */
  send(hop: NodeId, bytes: Buffer, maxFrameBytes: number, sink: LegSink): LegHandle {
    if (!this.enabled() || this.speaksV1(hop)) return this.sendV1(hop, bytes, maxFrameBytes, sink, this.open(hop, false));
    const leg: SentLeg = { id: 0, hop, bytes, maxFrameBytes, sink, over: false };
    let link = this.links.get(hop);
    if (link === undefined) link = this.openLink(hop, this.leadLegs ? leg : undefined);
    else if (!link.accepted) link.queue.push(leg);
    else this.write(link, leg);
    const on = link;
    return { cancel: () => this.cancel(on, leg) };
  }

  /** Whether `hop` answered without v2 within V1_MEMORY_MS (an older answer is forgotten: the map holds current v1 peers only). */
  private speaksV1(hop: NodeId): boolean {
    const until = this.v1Peers.get(hop);
    if (until === undefined) return false;
    if (until > performance.now()) return true;
    this.v1Peers.delete(hop);
    return false;
  }

  private sendV1(hop: NodeId, bytes: Buffer, maxFrameBytes: number, sink: LegSink, opened: Promise<Duplex>): LegHandle {
    this.counters.v1Legs++;
    return sendV1Leg(opened, hop, bytes.subarray(LINK_HEADER_BYTES), maxFrameBytes, sink);
  }

  /** A new link to `hop`: version 3 with `lead` as its first leg (no round trip before it), else version 2. */
  private openLink(hop: NodeId, lead: SentLeg | undefined): Link {
    const link: Link = { hop, stream: undefined, accepted: false, lead, legs: new Map(), queue: [], nextId: 0, idleSince: 0, idleTimer: undefined, closed: false };
    this.links.set(hop, link);
    if (lead !== undefined) {
      link.legs.set(0, lead);
      link.nextId = 1;
    }
    this.open(hop, lead === undefined ? true : leadMetadata(lead.bytes.length - LINK_HEADER_BYTES)).then(
      (stream) => (lead === undefined ? this.opened(link, stream) : this.leadOpened(link, lead, stream)),
      (error: Error) => this.broken(link, error),
    );
    return link;
  }

  private opened(link: Link, stream: LegStream): void {
    if (link.closed) return void stream.destroy();
    if (stream.remoteMetadata?.[LINK_KEY] !== LINK_VERSION) return this.versionOne(link, stream);
    this.established(link, stream, []);
  }

  /**
   * A version 3 link's stream, before its ACCEPT: the lead leg goes at once (with the OPEN); what
   * comes up before the ACCEPT's event is kept for the reader the ACCEPT decides on.
   */
  private leadOpened(link: Link, lead: SentLeg, stream: LegStream): void {
    if (link.closed) return void stream.destroy();
    link.stream = stream;
    stream.write(lead.bytes.subarray(LINK_HEADER_BYTES));
    const early: Buffer[] = [];
    const onData = (chunk: Buffer): void => void early.push(chunk);
    const onError = (error: Error): void => {
      off();
      if (error instanceof ChannelRejectedError) this.rejected(link);
      else this.broken(link, error);
    };
    const onClose = (): void => (off(), this.broken(link, new PnetError('ERR_STREAM_RESET', `fan-out link to ${link.hop} closed before its ACCEPT`)));
    const onAccepted = (metadata: Readonly<Record<string, string>>): void => {
      off();
      if (link.closed) return;
      if (metadata[LINK_KEY] === LINK_LEAD_VERSION) this.established(link, stream, early);
      else this.versionOne(link, stream, early);
    };
    const off = (): void => {
      stream.off('data', onData);
      stream.off('error', onError);
      stream.off('close', onClose);
      stream.off(ACCEPTED_EVENT, onAccepted);
    };
    stream.on('data', onData);
    stream.on('error', onError);
    stream.on('close', onClose);
    stream.on(ACCEPTED_EVENT, onAccepted);
  }

  /** The peer speaks links: upstream frames are read, legs that waited go down. */
  private established(link: Link, stream: Duplex, early: readonly Buffer[]): void {
    this.counters.opened++;
    if (link.lead !== undefined) this.counters.leads++;
    link.stream = stream;
    link.accepted = true;
    const reader = new LinkReader(this.upstream(link));
    const onData = (chunk: Buffer): void => {
      if (link.closed) return;
      try {
        reader.push(chunk);
      } catch (error) {
        stream.destroy();
        this.broken(link, error as Error);
      }
    };
    for (const chunk of early) onData(chunk);
    stream.on('data', onData);
    stream.on('error', (error: Error) => this.broken(link, error));
    stream.on('end', () => this.broken(link, new PnetError('ERR_STREAM_RESET', `${link.hop} ended the fan-out link`)));
    stream.on('close', () => this.broken(link, new PnetError('ERR_STREAM_RESET', `fan-out link to ${link.hop} closed`)));
    // The lead was given up before the ACCEPT: the peer is told now.
    if (link.lead?.over === true && !link.closed) stream.write(linkFrame(LINK_CANCEL, link.lead.id));
    // The lead, if still running, stays in link.legs; kept here it held its fan-out (and the closed connections under it) for the link's life.
    link.lead = undefined;
    const queued = link.queue.splice(0);
    for (const leg of queued) this.write(link, leg);
    if (link.legs.size === 0) this.idle(link);
  }

  /**
   * The peer answered OPEN without links: the lead (already on this stream) or else the first leg
   * waiting goes on it as a v1 leg, the others on streams of their own.
   */
  private versionOne(link: Link, stream: LegStream, early: readonly Buffer[] = []): void {
    this.v1Peers.set(link.hop, performance.now() + V1_MEMORY_MS);
    this.retire(link);
    const lead = link.lead !== undefined && !link.lead.over ? link.lead : undefined;
    const queued = link.queue.splice(0).filter((leg) => !leg.over);
    if (lead !== undefined) {
      this.counters.v1Legs++;
      lead.v1 = sendV1Leg(Promise.resolve(stream), link.hop, undefined, lead.maxFrameBytes, lead.sink, early);
    } else if (queued.length === 0 || link.lead !== undefined) {
      // Nothing for this stream: the lead was given up (its bytes are on it), or no leg waits.
      stream.destroy();
    }
    queued.forEach((leg, i) => {
      const onThis = lead === undefined && link.lead === undefined && i === 0;
      leg.v1 = this.sendV1(link.hop, leg.bytes, leg.maxFrameBytes, leg.sink, onThis ? Promise.resolve(stream) : this.open(link.hop, false));
    });
  }

  /** The peer REJECTed the link (its link limit, say): its legs go as v1 legs now; the next leg asks for a link again. */
  private rejected(link: Link): void {
    if (link.closed) return;
    this.counters.rejected++;
    this.retire(link);
    const legs = [...link.legs.values(), ...link.queue].filter((leg) => !leg.over);
    link.legs.clear();
    link.queue.length = 0;
    for (const leg of legs) leg.v1 = this.sendV1(link.hop, leg.bytes, leg.maxFrameBytes, leg.sink, this.open(link.hop, false));
  }

  /** The link is out of use: new legs open another. */
  private retire(link: Link): void {
    link.closed = true;
    clearTimeout(link.idleTimer);
    if (this.links.get(link.hop) === link) this.links.delete(link.hop);
  }

  private write(link: Link, leg: SentLeg): void {
    if (leg.over) return;
    leg.id = link.nextId;
    link.nextId = (link.nextId + 1) >>> 0;
    link.legs.set(leg.id, leg);
    writeLinkHeader(leg.bytes, LINK_LEG, leg.id, leg.bytes.length - LINK_HEADER_BYTES);
    link.stream!.write(leg.bytes);
  }

  private cancel(link: Link, leg: SentLeg): void {
    if (leg.over) return;
    leg.over = true;
    if (leg.v1 !== undefined) return leg.v1.cancel();
    if (link.legs.get(leg.id) !== leg) return; // still queued: never sent
    link.legs.delete(leg.id);
    // A lead given up before the ACCEPT is told once the ACCEPT says what the stream is (established, versionOne).
    if (!link.accepted) return;
    if (!link.closed) link.stream!.write(linkFrame(LINK_CANCEL, leg.id));
    if (link.legs.size === 0) this.idle(link);
  }

  /** The upstream of a link: FRAMES go to their leg's sink, END closes the leg. */
  private upstream(link: Link): LinkFrameHandler {
    return {
      begin: (type, legId, length) => {
        const leg = link.legs.get(legId);
        if (type === LINK_END) {
          if (length > MAX_END_BODY) throw new PnetError('BAD_FRAME', `fan-out link END of ${length} bytes`);
          return true;
        }
        if (type !== LINK_FRAMES) throw new PnetError('BAD_FRAME', `fan-out link frame type ${type} upstream`);
        if (length > Math.max(LINK_BATCH_BYTES, (leg?.maxFrameBytes ?? 0) + 4)) throw new PnetError('BAD_FRAME', `fan-out link FRAMES of ${length} bytes`);
        return leg !== undefined;
      },
      chunk: () => true,
      frame: (type, legId, body) => {
        const leg = link.legs.get(legId);
        if (leg === undefined) return; // cancelled here meanwhile
        if (type === LINK_END) return this.ended(link, leg, body.length === 0 ? undefined : decodeErrorBody(body));
        let frames: UpFrame[];
        try {
          frames = splitUpFrames(body, leg.maxFrameBytes);
        } catch (error) {
          this.cancel(link, leg);
          return leg.sink.closed(error as Error);
        }
        leg.sink.frames(frames);
      },
    };
  }

  private ended(link: Link, leg: SentLeg, error: PnetError | undefined): void {
    link.legs.delete(leg.id);
    leg.over = true;
    leg.sink.closed(error ?? (() => new PnetError('ERR_STREAM_RESET', `${link.hop} ended its leg with answers missing`)));
    if (link.legs.size === 0) this.idle(link);
  }

  /** A link that failed: its legs fail like a broken v1 leg (their senders retry them); the next leg opens a new link. */
  private broken(link: Link, error: Error): void {
    if (link.closed) return;
    this.retire(link);
    const lost = [...link.queue, ...link.legs.values()].filter((leg) => !leg.over);
    if (lost.length > 0) this.counters.broken++;
    link.queue.length = 0;
    link.legs.clear();
    for (const leg of lost) {
      leg.over = true;
      leg.sink.closed(error);
    }
    link.stream?.destroy();
  }

  /** No leg on the link now: it is ended after LINK_IDLE_MS unless legs come back (one timer, re-armed lazily). */
  private idle(link: Link): void {
    link.idleSince = performance.now();
    if (link.idleTimer !== undefined || link.closed) return;
    const check = (): void => {
      link.idleTimer = undefined;
      if (link.closed || link.legs.size > 0 || link.queue.length > 0) return;
      const left = link.idleSince + LINK_IDLE_MS - performance.now();
      if (left > 0) {
        link.idleTimer = setTimeout(check, left);
        link.idleTimer.unref();
        return;
      }
      this.retire(link);
      link.stream?.end();
    };
    link.idleTimer = setTimeout(check, LINK_IDLE_MS);
    link.idleTimer.unref();
  }

  /** Ends every link (the node is closing). */
  close(): void {
    for (const link of [...this.links.values()]) this.broken(link, new PnetError('ERR_NODE_CLOSED', 'the node closed'));
  }

  /** Links open or opening now. */
  get size(): number {
    return this.links.size;
  }
}
