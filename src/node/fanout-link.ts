/**
 * Fan-out legs version 2 (docs/FANOUT.md, "Wire format (version 2)"): one long-lived
 * `pnet/fanout` stream per link carries many fan-outs' legs downstream and their results upstream
 * as frames tagged with a leg id, instead of one stream per leg. Negotiated in the OPEN/ACCEPT
 * metadata (`leg: "2"`); a peer that does not answer it gets version 1 legs. Results of one leg
 * interleave with others' and are written as they come, so a slow handler blocks only its own leg.
 */
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { UpFrameReader, decodeErrorBody, splitUpFrames, type UpFrame } from './fanout-codec.js';

/** OPEN and ACCEPT metadata of a v2 link stream. */
export const LINK_KEY = 'leg';
export const LINK_VERSION = '2';
export const LINK_METADATA: Readonly<Record<string, string>> = Object.freeze({ [LINK_KEY]: LINK_VERSION });

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
    this.type = this.header[4]!;
    this.legId = this.header.readUInt32BE(5);
    this.left = length - 5;
    this.keep = this.handler.begin(this.type, this.legId, this.left);
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

/** A version-1 leg: a stream of its own, the leg written and ended, frames read until the end. */
export function sendV1Leg(opened: Promise<Duplex>, hop: NodeId, leg: Buffer, maxFrameBytes: number, sink: LegSink): LegHandle {
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
      opened.on('data', (chunk: Buffer) => {
        if (over) return;
        let frames: UpFrame[];
        try {
          frames = reader.push(chunk);
        } catch (error) {
          opened.destroy();
          return close(error as Error);
        }
        sink.frames(frames);
      });
      opened.on('error', (error: Error) => close(error));
      // The error is made only if answers are missing: a leg's normal end builds no Error (a stack trace per target).
      opened.on('end', () => close(() => new PnetError('ERR_STREAM_RESET', `${hop} ended its leg with answers missing`)));
      opened.on('close', () => close(() => new PnetError('ERR_STREAM_RESET', `leg to ${hop} closed with answers missing`)));
      opened.end(leg);
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

/** How the sender opens fan-out streams: `link` asks for a v2 link (waits for the ACCEPT), else an optimistic v1 leg stream. */
export type OpenLegStream = (hop: NodeId, link: boolean) => Promise<LegStream>;

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
  /** Links that failed (reset, connection lost, bad frame) with legs on them. */
  broken: number;
  /** Legs sent as v1 because the peer does not speak v2. */
  v1Legs: number;
}

/** The sender's links, one per next hop: legs go down as frames, their results come back tagged. */
export class LegLinks {
  readonly counters: LinkCounters = { opened: 0, broken: 0, v1Legs: 0 };
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
    let link = this.links.get(hop);
    if (link === undefined) link = this.openLink(hop);
    const leg: SentLeg = { id: 0, hop, bytes, maxFrameBytes, sink, over: false };
    if (link.stream === undefined) link.queue.push(leg);
    else this.write(link, leg);
    return { cancel: () => this.cancel(link, leg) };
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

  private openLink(hop: NodeId): Link {
    const link: Link = { hop, stream: undefined, legs: new Map(), queue: [], nextId: 0, idleSince: 0, idleTimer: undefined, closed: false };
    this.links.set(hop, link);
    this.open(hop, true).then(
      (stream) => this.opened(link, stream),
      (error: Error) => this.broken(link, error),
    );
    return link;
  }

  private opened(link: Link, stream: LegStream): void {
    if (link.closed) return void stream.destroy();
    if (stream.remoteMetadata?.[LINK_KEY] !== LINK_VERSION) return this.versionOne(link, stream);
    this.counters.opened++;
    link.stream = stream;
    const reader = new LinkReader(this.upstream(link));
    stream.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (error) {
        stream.destroy();
        this.broken(link, error as Error);
      }
    });
    stream.on('error', (error: Error) => this.broken(link, error));
    stream.on('end', () => this.broken(link, new PnetError('ERR_STREAM_RESET', `${link.hop} ended the fan-out link`)));
    stream.on('close', () => this.broken(link, new PnetError('ERR_STREAM_RESET', `fan-out link to ${link.hop} closed`)));
    const queued = link.queue.splice(0);
    for (const leg of queued) this.write(link, leg);
    if (link.legs.size === 0) this.idle(link);
  }

  /** The peer answered OPEN without v2: the first leg waiting goes on this stream as v1, the others on streams of their own. */
  private versionOne(link: Link, stream: LegStream): void {
    this.v1Peers.set(link.hop, performance.now() + V1_MEMORY_MS);
    link.closed = true;
    if (this.links.get(link.hop) === link) this.links.delete(link.hop);
    const queued = link.queue.splice(0).filter((leg) => !leg.over);
    if (queued.length === 0) return void stream.destroy();
    queued.forEach((leg, i) => {
      leg.v1 = this.sendV1(link.hop, leg.bytes, leg.maxFrameBytes, leg.sink, i === 0 ? Promise.resolve(stream) : this.open(link.hop, false));
    });
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
    link.closed = true;
    if (this.links.get(link.hop) === link) this.links.delete(link.hop);
    clearTimeout(link.idleTimer);
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
      link.closed = true;
      if (this.links.get(link.hop) === link) this.links.delete(link.hop);
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
