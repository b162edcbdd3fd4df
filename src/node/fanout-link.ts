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
import type { LegAccounts, LegRead } from './fanout-limits.js';
import type { FanoutStats } from './types.js';
import { UpFrameReader, decodeErrorBody, encodeErrorBody, splitUpFrames, type UpFrame } from './fanout-codec.js';

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

function linkFrame(type: number, legId: number, body?: Buffer): Buffer {
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
const LINK_IDLE_MS = 30_000;
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
    const v1Until = this.v1Peers.get(hop);
    if (!this.enabled() || (v1Until !== undefined && v1Until > performance.now())) return this.sendV1(hop, bytes, maxFrameBytes, sink, this.open(hop, false));
    let link = this.links.get(hop);
    if (link === undefined) link = this.openLink(hop);
    const leg: SentLeg = { id: 0, hop, bytes, maxFrameBytes, sink, over: false };
    if (link.stream === undefined) link.queue.push(leg);
    else this.write(link, leg);
    return { cancel: () => this.cancel(link, leg) };
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


// ---- receiver side ----------------------------------------------------------

/** Where a served leg's upstream goes: its frames (batched by the carrier), then its normal end. */
export interface LegOut {
  write(frame: Buffer): void;
  end(): void;
}

/** What a link being served needs from the fan-out service. */
export interface LinkHost {
  readonly legs: LegAccounts;
  readonly stats: FanoutStats;
  readonly legReadTimeoutMs: number;
  readonly maxLegBytes: number;
  isNeighbour(peer: NodeId): boolean;
  /** Serves one whole leg; the result ends it early (cancelled, link gone). Throws BAD_FRAME or VERSION for a leg it cannot read. */
  runLeg(bytes: Buffer, from: NodeId, neighbour: boolean, out: LegOut): (() => void) | undefined;
}

interface ServedLeg {
  readonly id: number;
  /** Bytes being read (charged to the peer's share until the leg is whole). */
  read: LegRead | undefined;
  timer: NodeJS.Timeout | undefined;
  stop: (() => void) | undefined;
  batch: Buffer[];
  ended: boolean;
  /** The error it ends with (refused, cut, unreadable), instead of a normal END. */
  error: PnetError | undefined;
}

/**
 * One v2 link served for a peer: legs are read as frames (each charged to the peer's leg count
 * and byte share, with its own read deadline), run like v1 legs, and their frames written up
 * together once per loop turn.
 */
export class LinkServer {
  private readonly served = new Map<number, ServedLeg>();
  private readonly reader: LinkReader;
  private readonly dirty = new Set<ServedLeg>();
  private flushing = false;
  private inputEnded = false;
  private closed = false;

  constructor(
    private readonly host: LinkHost,
    private readonly stream: Duplex,
    private readonly from: NodeId,
    private readonly onClose: () => void,
  ) {
    this.reader = new LinkReader({ begin: (type, id, length) => this.begin(type, id, length), chunk: (id, n) => this.charge(id, n), frame: (type, id, body) => this.frame(type, id, body) });
    stream.on('data', (chunk: Buffer) => {
      try {
        this.reader.push(chunk);
      } catch (error) {
        stream.destroy(error as Error);
      }
    });
    stream.on('end', () => {
      this.inputEnded = true;
      this.maybeEnd();
    });
    stream.on('error', () => this.close());
    stream.on('close', () => this.close());
  }

  private begin(type: number, id: number, length: number): boolean {
    if (type === LINK_CANCEL) {
      const leg = this.served.get(id);
      if (leg !== undefined && leg.read === undefined) this.release(leg);
      return false;
    }
    if (type !== LINK_LEG) throw new PnetError('BAD_FRAME', `fan-out link frame type ${type} downstream`);
    if (length > this.host.maxLegBytes) throw new PnetError('BAD_FRAME', `fan-out leg over ${this.host.maxLegBytes} bytes`);
    if (this.served.has(id)) throw new PnetError('BAD_FRAME', `fan-out leg id ${id} in use`);
    const leg: ServedLeg = { id, read: undefined, timer: undefined, stop: undefined, batch: [], ended: false, error: undefined };
    this.served.set(id, leg);
    const refused = this.host.legs.mayOpen(this.from, this.host.isNeighbour(this.from));
    if (refused !== 'ok') {
      this.fail(leg, new PnetError('OVERLOADED', refused === 'node' ? 'serving too many fan-out legs already' : `fan-out legs from ${this.from} over the limit`), false);
      return false;
    }
    this.host.legs.opened(this.from);
    this.host.stats.legsServed++;
    leg.read = { peer: this.from, bytes: 0, cut: () => this.cut(leg, new PnetError('OVERLOADED', 'fan-out leg cut: the node buffers too many leg bytes')) };
    leg.timer = setTimeout(() => {
      this.host.stats.legReadTimeouts++;
      this.cut(leg, new PnetError('ERR_REQUEST_TIMEOUT', `fan-out leg from ${this.from} not read whole within ${this.host.legReadTimeoutMs} ms`));
    }, this.host.legReadTimeoutMs);
    leg.timer.unref();
    return true;
  }

  private charge(id: number, n: number): boolean {
    const leg = this.served.get(id);
    if (leg?.read === undefined) return false;
    if (this.host.legs.charge(leg.read, n)) return true;
    this.cut(leg, new PnetError('OVERLOADED', `fan-out legs from ${this.from} buffer over their share`));
    return false;
  }

  /** A leg being read is given up (deadline, bytes): the rest of its frame is skipped, its sender told. */
  private cut(leg: ServedLeg, error: PnetError): void {
    if (leg.read === undefined) return;
    if (this.reader.reading === leg.id) this.reader.skip();
    this.fail(leg, error, true);
  }

  private frame(type: number, id: number, body: Buffer): void {
    const leg = this.served.get(id);
    if (type !== LINK_LEG || leg?.read === undefined) return;
    this.doneReading(leg);
    try {
      const stop = this.host.runLeg(body, this.from, this.host.isNeighbour(this.from), { write: (frame) => this.write(leg, frame), end: () => this.end(leg) });
      // A leg answered at once (a bad envelope, nothing left to wait for) ended before its stop came back.
      if (leg.ended) stop?.();
      else leg.stop = stop;
    } catch (error) {
      this.fail(leg, error instanceof PnetError ? error : new PnetError('BAD_FRAME', String(error)), true);
    }
  }

  private doneReading(leg: ServedLeg): void {
    clearTimeout(leg.timer);
    leg.timer = undefined;
    if (leg.read !== undefined) this.host.legs.done(leg.read);
    leg.read = undefined;
  }

  private fail(leg: ServedLeg, error: PnetError, counted: boolean): void {
    leg.error = error;
    this.end(leg, counted);
  }

  private write(leg: ServedLeg, frame: Buffer): void {
    if (leg.ended || this.closed) return;
    leg.batch.push(frame);
    this.schedule(leg);
  }

  private end(leg: ServedLeg, counted = true): void {
    if (leg.ended) return;
    leg.ended = true;
    this.doneReading(leg);
    if (counted) this.host.legs.closed(this.from);
    leg.stop?.();
    leg.stop = undefined;
    this.schedule(leg);
  }

  /** The sender gave the leg up: nothing more goes up for it. */
  private release(leg: ServedLeg): void {
    leg.batch = [];
    leg.error = undefined;
    this.end(leg);
    this.dirty.delete(leg);
    this.served.delete(leg.id);
    this.maybeEnd();
  }

  private schedule(leg: ServedLeg): void {
    this.dirty.add(leg);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => this.flush());
  }

  /** One write per loop turn for all the link's legs: a QUIC stream write costs the same for one result or many. */
  private flush(): void {
    this.flushing = false;
    if (this.closed) return;
    const parts: Buffer[] = [];
    for (const leg of this.dirty) {
      let start = 0;
      let bytes = 0;
      for (let i = 0; i <= leg.batch.length; i++) {
        const next = leg.batch[i];
        if (i > start && (next === undefined || bytes + next.length > LINK_BATCH_BYTES)) {
          const header = Buffer.allocUnsafe(LINK_HEADER_BYTES);
          writeLinkHeader(header, LINK_FRAMES, leg.id, bytes);
          parts.push(header, ...leg.batch.slice(start, i));
          start = i;
          bytes = 0;
        }
        if (next !== undefined) bytes += next.length;
      }
      leg.batch = [];
      if (leg.ended) {
        parts.push(linkFrame(LINK_END, leg.id, leg.error === undefined ? undefined : encodeErrorBody(leg.error.code, leg.error.message)));
        this.served.delete(leg.id);
      }
    }
    this.dirty.clear();
    if (parts.length > 0) this.stream.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
    this.maybeEnd();
  }

  /** The sender ended the link: it is closed once every leg on it is over. */
  private maybeEnd(): void {
    if (this.inputEnded && this.served.size === 0 && !this.closed) this.stream.end();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const leg of this.served.values()) this.end(leg);
    this.served.clear();
    this.dirty.clear();
    this.onClose();
  }
}
