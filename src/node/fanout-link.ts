/**
 * Fan-out legs version 2 (docs/FANOUT.md, "Legs on one link stream"): the sender's pool of link
 * streams, one per next hop. A link carries many fan-outs' legs downstream and their results
 * upstream as frames tagged with a leg id (fanout-link-frames.ts), instead of one stream per leg.
 * Negotiated in the OPEN/ACCEPT metadata; a peer that does not answer it gets version 1 legs
 * (fanout-link-v1.ts). Links may be opened ahead of the first leg (fanout-link-ahead.ts).
 */
import type { Duplex } from 'node:stream';
import { ChannelRejectedError } from '../channel/index.js';
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { ACCEPTED_EVENT } from './streams.js';
import { decodeErrorBody, splitUpFrames, type UpFrame } from './fanout-codec.js';
import { LINK_BATCH_BYTES, LINK_CANCEL, LINK_END, LINK_FRAMES, LINK_KEY, LINK_LEAD_VERSION, LINK_LEG, LINK_HEADER_BYTES, LINK_VERSION, LinkReader, MAX_END_BODY, leadMetadata, linkFrame, writeLinkHeader, type LinkFrameHandler } from './fanout-link-frames.js';
import { sendV1Leg, type LegHandle, type LegSink, type LegStream } from './fanout-link-v1.js';

export * from './fanout-link-frames.js';
export * from './fanout-link-v1.js';

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
  /** Opened ahead of any leg (fanout-link-ahead.ts); `used` once a leg went on it. */
  readonly ahead: boolean;
  used: boolean;
}

/** Why a link went out of use (what the links-ahead scheduler does next depends on it). */
export type LinkRetired = 'broken' | 'rejected' | 'v1' | 'idle';

/** Who opens links ahead: told when one goes out of use, asked before an idle link is ended. */
export interface LinkWatcher {
  /** True: an idle link to `hop` stays open (a routing neighbour that links are opened ahead to). */
  keepIdle(hop: NodeId): boolean;
  /** `unused`: it was opened ahead and never carried a leg. */
  retired(hop: NodeId, why: LinkRetired, unused: boolean): void;
  close(): void;
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
  /** Links opened ahead of any leg and ACCEPTed (fanout-link-ahead.ts); counted in `opened` too. */
  ahead: number;
  /** Of them, links whose first leg came (a fan-out found its link open). */
  aheadUsed: number;
  /** Links opened ahead that failed before any leg went on them (no ACCEPT in time, reset, connection gone). */
  aheadBroken: number;
}

/** The sender's links, one per next hop: legs go down as frames, their results come back tagged. */
export class LegLinks {
  readonly counters: LinkCounters = { opened: 0, leads: 0, broken: 0, rejected: 0, v1Legs: 0, ahead: 0, aheadUsed: 0, aheadBroken: 0 };
  /** The links-ahead scheduler, if the node runs one. */
  watcher: LinkWatcher | undefined;
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

  /**
   * Opens a version 2 link to `hop` with no leg on it yet (the ACCEPT's round trip and the stream's
   * set-up done before the first fan-out). False: links are off, `hop` speaks v1 or has a link.
   */
  openAhead(hop: NodeId): boolean {
    if (!this.enabled() || this.speaksV1(hop) || this.links.has(hop)) return false;
    this.openLink(hop, undefined, true);
    return true;
  }

  /** A link to `hop` is open or opening. */
  has(hop: NodeId): boolean {
    return this.links.has(hop);
  }

  /** Links opened ahead and not ACCEPTed yet (the scheduler keeps few in flight). */
  get aheadOpening(): number {
    let n = 0;
    for (const link of this.links.values()) if (link.ahead && !link.accepted) n++;
    return n;
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
  private openLink(hop: NodeId, lead: SentLeg | undefined, ahead = false): Link {
    const link: Link = { hop, stream: undefined, accepted: false, lead, legs: new Map(), queue: [], nextId: 0, idleSince: 0, idleTimer: undefined, closed: false, ahead, used: false };
    this.links.set(hop, link);
    if (lead !== undefined) {
      link.legs.set(0, lead);
      link.nextId = 1;
    }
    this.open(hop, lead === undefined ? true : leadMetadata(lead.bytes.length - LINK_HEADER_BYTES)).then(
      (stream) => (lead === undefined ? this.opened(link, stream) : this.leadOpened(link, lead, stream)),
      // A version 2 OPEN resolves at the ACCEPT: a REJECT (the peer's link limit) comes here.
      (error: Error) => (error instanceof ChannelRejectedError ? this.rejected(link) : this.broken(link, error)),
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
    if (link.ahead) this.counters.ahead++;
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
    this.retire(link, 'v1');
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
    this.retire(link, 'rejected');
    const legs = [...link.legs.values(), ...link.queue].filter((leg) => !leg.over);
    link.legs.clear();
    link.queue.length = 0;
    for (const leg of legs) leg.v1 = this.sendV1(link.hop, leg.bytes, leg.maxFrameBytes, leg.sink, this.open(link.hop, false));
  }

  /** The link is out of use: new legs open another. */
  private retire(link: Link, why: LinkRetired): void {
    link.closed = true;
    clearTimeout(link.idleTimer);
    if (this.links.get(link.hop) !== link) return;
    this.links.delete(link.hop);
    this.watcher?.retired(link.hop, why, link.ahead && !link.used);
  }

  private write(link: Link, leg: SentLeg): void {
    if (leg.over) return;
    leg.id = link.nextId;
    link.nextId = (link.nextId + 1) >>> 0;
    if (link.ahead && !link.used) this.counters.aheadUsed++;
    link.used = true;
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
    this.retire(link, 'broken');
    const lost = [...link.queue, ...link.legs.values()].filter((leg) => !leg.over);
    if (lost.length > 0) this.counters.broken++;
    else if (link.ahead && !link.used) this.counters.aheadBroken++;
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
      // A neighbour's link is kept for the next fan-out (links ahead): checked again a period later.
      const left = this.watcher?.keepIdle(link.hop) === true ? LINK_IDLE_MS : link.idleSince + LINK_IDLE_MS - performance.now();
      if (left > 0) {
        link.idleTimer = setTimeout(check, left);
        link.idleTimer.unref();
        return;
      }
      this.retire(link, 'idle');
      link.stream?.end();
    };
    link.idleTimer = setTimeout(check, LINK_IDLE_MS);
    link.idleTimer.unref();
  }

  /** Ends every link (the node is closing). */
  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    for (const link of [...this.links.values()]) this.broken(link, new PnetError('ERR_NODE_CLOSED', 'the node closed'));
  }

  /** Links open or opening now. */
  get size(): number {
    return this.links.size;
  }
}
