/**
 * Tree fan-out (docs/FANOUT.md). The origin signs one envelope, splits its targets by next hop
 * (one routing-table call) and sends each neighbour one leg; every hop answers for itself if it
 * is a target and splits the rest again. Results come back up the same streams, each signed by
 * the node that answered, so no hop can forge another's answer. A leg that fails costs only its
 * subtree, which is retried once along the routes of that moment.
 */
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { Identity, NodeId } from '../identity/index.js';
import { numberOption } from '../options.js';
import type { AuthoriseHook, ChannelRequestInfo } from '../channel/index.js';
import { KEY_BYTES, keyBytesOf, nodeIdAt } from '../routing/index.js';
import type { NextHopShare } from '../routing/index.js';
import {
  FLAG_ALL,
  LEG_EXPAND,
  MAX_FANOUT_PAYLOAD,
  MAX_FANOUT_REPLY,
  MAX_FANOUT_TARGETS,
  MAX_LEG_BYTES,
  SIGNATURE_BYTES,
  STATUS_ERROR,
  STATUS_HOP_ERROR,
  STATUS_OK,
  decodeEnvelope,
  decodeErrorBody,
  decodeLeg,
  encodeEnvelope,
  encodeErrorBody,
  encodeExpect,
  encodeResult,
  envelopeIsTicketed,
  signTicket,
  verifyResultAsync,
  verifyTicket,
  type Envelope,
  type ResultFrame,
} from './fanout-codec.js';
import { LegAccounts, ReplayMemory, emptyLimitStats, type LegRead } from './fanout-limits.js';
import { Spread } from './spread.js';
import { LINK_METADATA, LegLinks, linkAnswer, linkAsked, type LegHandle, type LegSink, type LegStream, type LinkCounters, type LinkOpen } from './fanout-link.js';
import { LinkServer, type LegOut } from './fanout-link-server.js';
import type { AnswerLimits, RequestOutcome } from './requests.js';
import type { FanoutLimits, FanoutOptions, FanoutResult, FanoutStats } from './types.js';

export const FANOUT_CHANNEL = 'pnet/fanout';

/** How the node opens a fan-out stream: a v1 leg (optimistic), a v2 link (OPEN metadata `leg: "2"`, waits for the ACCEPT) or a v3 link (optimistic, `link` its OPEN metadata). */
export function legOpenOptions(link: boolean | LinkOpen | undefined): { optimistic?: true; metadata?: Record<string, string> } {
  if (typeof link === 'object') return { optimistic: true, metadata: { ...link } };
  return link === true ? { metadata: { ...LINK_METADATA } } : { optimistic: true };
}

/** v2 link streams one peer may have open here at once (one, and its replacement while the old one closes). */
const MAX_LINKS_PER_PEER = 2;

/** What the fan-out needs from its node. */
export interface FanoutHost {
  readonly identity: Identity;
  groupByNextHop(packed: Uint8Array): NextHopShare[];
  /** Every node of the map this node knows, itself included (packed keys). */
  allNodes(): Buffer;
  /**
   * A stream on FANOUT_CHANNEL to a neighbour: optimistic for a v1 leg (the leg follows OPEN at
   * once), or with `link` a v2 link asked for with legOpenOptions(true), resolved at the ACCEPT.
   */
  openLeg(neighbour: NodeId, link?: boolean | LinkOpen): Promise<LegStream>;
  isConnected(neighbour: NodeId): boolean;
  /** Whether `peer` is a routing neighbour now (absent: every connected peer counts as one). */
  isNeighbour?(peer: NodeId): boolean;
  /** Answers a request here through the node's one request pipeline (authorise, limits, handler). */
  answerRequest(channel: string, request: Buffer, info: ChannelRequestInfo, limits: AnswerLimits): Promise<RequestOutcome>;
}

const WHERE = 'fan-out option';
const DEFAULT_DEADLINE_MS = 10_000;
const MAX_DEADLINE_MS = 3_600_000;
const DEFAULT_MAX_REPLY = 1024 * 1024;
const DEFAULT_HOP_LIMIT = 32;
/** Replies this small are kept to answer a duplicate delivery (a retried subtree) again. */
const MAX_CACHED_REPLY = 64 * 1024;
const EMPTY_ID = Buffer.alloc(16);
/** The longest an envelope is honoured (and its id remembered) at a target, whatever its lifetime field says. */
export const MAX_HONOURED_LIFETIME_MS = MAX_DEADLINE_MS;

/** A remembered answer: the signed frame, kept for small replies (a duplicate delivery gets it again). */
interface Answered {
  frame: Promise<Buffer> | undefined;
}

/** Fan-out for one node: starts fan-outs (origin), serves legs (hop) and answers (target). */
export class FanoutService {
  readonly stats: FanoutStats = { forged: 0, legsServed: 0, legsSent: 0, retried: 0, ...emptyLimitStats() };
  private readonly spreads = new Set<Spread>();
  /** Wakes each fan-out this node originated, to end it with ERR_NODE_CLOSED (close()). */
  private readonly originated = new Set<() => void>();
  private readonly maxSkewMs: number;
  private readonly legReadTimeoutMs: number;
  private readonly legs: LegAccounts;
  /** False: this node neither offers nor accepts v2 links (it behaves as a version 1 node; for interop tests). */
  linksEnabled = true;
  /** The sender's v2 links, one per next hop (the node's links-ahead scheduler opens some early). */
  readonly links: LegLinks;
  /** v2 link streams served per peer. */
  private readonly linksServed = new Map<NodeId, number>();
  /** Authorised requests answered here, per origin: a duplicate delivery gets the same answer, never a second run. */
  private readonly answered: ReplayMemory<Answered>;
  /** Requests being answered here (not yet or never authorised): bounded by the legs being served. */
  private readonly answering = new Map<string, Promise<Buffer>>();

  /** Bytes of legs being read now (bounded by maxLegBytes). */
  get bufferedLegBytes(): number {
    return this.legs.bufferedBytes;
  }

  constructor(
    readonly host: FanoutHost,
    limits: FanoutLimits = {},
  ) {
    const option = (name: keyof FanoutLimits, fallback: number, min = 0): number =>
      numberOption('fanout option', name, limits[name], fallback, { integer: true, min });
    const maxActiveLegs = option('maxActiveLegs', 256);
    const maxRemembered = option('maxRememberedRequests', 10_000, 1);
    this.answered = new ReplayMemory(maxRemembered, option('maxRememberedPerOrigin', Math.max(1, Math.min(1024, Math.floor(maxRemembered / 4))), 1), this.stats);
    this.maxSkewMs = numberOption('fanout option', 'maxClockSkewMs', limits.maxClockSkewMs, 60_000);
    this.legReadTimeoutMs = option('legReadTimeoutMs', 10_000, 1);
    const maxLegBytes = option('maxLegBytes', 64 * 1024 * 1024);
    this.legs = new LegAccounts(
      {
        maxActiveLegs,
        maxLegsPerPeer: option('maxLegsPerPeer', Math.min(64, maxActiveLegs)),
        maxLegsPerStranger: option('maxLegsPerStranger', 4),
        maxLegBytes,
        maxLegBytesPerPeer: option('maxLegBytesPerPeer', Math.min(16 * 1024 * 1024, maxLegBytes)),
      },
      this.stats,
    );
    this.links = new LegLinks((hop, link) => this.host.openLeg(hop, link), () => this.linksEnabled);
  }

  /** The sender's link counters (v2 links opened, broken with legs on them, legs sent as v1). */
  get linkCounters(): Readonly<LinkCounters> {
    return { ...this.links.counters };
  }

  /** A leg to a neighbour: on its v2 link (one long-lived stream), or a v1 stream when the neighbour does not speak v2. */
  sendLeg(hop: NodeId, bytes: Buffer, maxFrameBytes: number, sink: LegSink): LegHandle {
    return this.links.send(hop, bytes, maxFrameBytes, sink);
  }

  /** Refuses new legs past the node's or the peer's limit (OVERLOADED reaches the parent, which reports the subtree). */
  readonly authorise: AuthoriseHook = (info) => {
    const peer = info.remoteNodeId;
    const ask = this.linksEnabled ? linkAsked(info.metadata, MAX_LEG_BYTES) : undefined;
    if (ask !== undefined) {
      // A link carries legs, each counted as it comes; the streams themselves are few per peer.
      if ((this.linksServed.get(peer) ?? 0) >= MAX_LINKS_PER_PEER) {
        this.stats.legsRefusedPeerLimit++;
        throw new PnetError('OVERLOADED', `${peer} has ${MAX_LINKS_PER_PEER} fan-out links here already`);
      }
      return { metadata: linkAnswer(ask) };
    }
    const refused = this.legs.mayOpen(peer, this.isNeighbour(peer));
    if (refused === 'node') throw new PnetError('OVERLOADED', `serving ${this.legs.activeLegs} fan-out legs already`);
    if (refused === 'peer') throw new PnetError('OVERLOADED', `serving ${peer}'s share of fan-out legs already`);
    return true;
  };

  private isNeighbour(peer: NodeId): boolean {
    return this.host.isNeighbour?.(peer) ?? true;
  }

  // ---- origin ---------------------------------------------------------------

  start(targets: readonly NodeId[] | 'all', channel: string, payload: Uint8Array | string, options: FanoutOptions): AsyncIterable<FanoutResult> {
    const deadlineMs = numberOption(WHERE, 'deadlineMs', options.deadlineMs, DEFAULT_DEADLINE_MS, { min: 1, max: MAX_DEADLINE_MS, integer: true });
    const concurrency = numberOption(WHERE, 'concurrency', options.concurrency, MAX_FANOUT_TARGETS, { min: 1, integer: true });
    const maxReplyBytes = numberOption(WHERE, 'maxReplyBytes', options.maxReplyBytes, DEFAULT_MAX_REPLY, { max: MAX_FANOUT_REPLY, integer: true });
    const hopLimit = numberOption(WHERE, 'hopLimit', options.hopLimit, DEFAULT_HOP_LIMIT, { min: 1, max: 255, integer: true });
    const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
    if (!(body instanceof Uint8Array)) throw new PnetError('ERR_BAD_OPTION', 'fan-out payload must be a Uint8Array or a string');
    if (body.length > MAX_FANOUT_PAYLOAD) throw new PnetError('ERR_BAD_OPTION', `fan-out payload over ${MAX_FANOUT_PAYLOAD} bytes`);
    const via = options.via;
    if (via !== undefined && !this.host.isConnected(via)) throw new PnetError('UNREACHABLE', `fan-out via ${via}: not connected`);
    let keys: Buffer | undefined;
    if (targets === 'all') {
      if (via === undefined) keys = this.host.allNodes();
    } else if (Array.isArray(targets)) {
      const unique = [...new Set(targets)];
      if (unique.length > MAX_FANOUT_TARGETS) throw new PnetError('ERR_BAD_OPTION', `more than ${MAX_FANOUT_TARGETS} fan-out targets`);
      keys = Buffer.concat(unique.map((id) => keyBytesOf(id))); // throws ERR_BAD_NODE_ID
    } else {
      throw new PnetError('ERR_BAD_OPTION', "fan-out targets must be an array of node ids or 'all'");
    }
    const identity = this.host.identity;
    const envelope = encodeEnvelope(identity, { all: targets === 'all', ttlMs: deadlineMs, maxReplyBytes, channel, metadata: options.metadata ?? {}, payload: body });
    return this.originate(envelope, keys, { deadlineMs, concurrency, hopLimit, via });
  }

  /** One signed ticket per target key of `part`, in order. */
  private ticketsFor(envelope: Envelope, part: Buffer): Buffer {
    const out = Buffer.allocUnsafe((part.length / KEY_BYTES) * SIGNATURE_BYTES);
    for (let i = 0; i < part.length; i += KEY_BYTES) out.set(signTicket(this.host.identity, envelope.requestId, part.subarray(i, i + KEY_BYTES)), (i / KEY_BYTES) * SIGNATURE_BYTES);
    return out;
  }

  private async *originate(
    envelope: Envelope,
    keys: Buffer | undefined,
    options: { deadlineMs: number; concurrency: number; hopLimit: number; via: NodeId | undefined },
  ): AsyncGenerator<FanoutResult> {
    const started = performance.now();
    const queue: FanoutResult[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let next = 0;
    let inFlight = 0;
    const total = keys === undefined ? 0 : keys.length / KEY_BYTES;
    const ticketed = envelopeIsTicketed(envelope.bytes);
    const release = (): void => {
      if (keys === undefined) return;
      const count = Math.min(options.concurrency - inFlight, total - next);
      if (count <= 0) return;
      const part = keys.subarray(next * KEY_BYTES, (next + count) * KEY_BYTES);
      next += count;
      inFlight += count;
      spread.add(part, ticketed ? this.ticketsFor(envelope, part) : undefined);
    };
    const push = (result: FanoutResult): void => {
      queue.push(result);
      wake?.();
    };
    const via = options.via;
    const spread = new Spread(
      this,
      envelope,
      started + options.deadlineMs,
      options.hopLimit,
      {
        result: (frame, fromLeg) =>
          this.checked(envelope.requestId, frame, () => {
            const nodeId = nodeIdAt(frame.target, 0);
            const ms = performance.now() - started;
            const hops = fromLeg ? frame.hops : 0;
            if (frame.status === STATUS_OK) push({ nodeId, ms, hops, ok: true, data: Buffer.from(frame.body) });
            else push({ nodeId, ms, hops, ok: false, error: decodeErrorBody(frame.body) });
            inFlight--;
            if (next < total) queueMicrotask(release);
            return true;
          }),
        expect: (targets) => void (inFlight += targets.length / KEY_BYTES),
        idle: () => {
          if (next < total) return;
          finished = true;
          wake?.();
        },
      },
      via === undefined ? undefined : (packed) => [{ hop: via, ids: packed, indexes: Uint32Array.from({ length: packed.length / KEY_BYTES }, (_, i) => i) }],
    );
    this.spreads.add(spread);
    let closed = false;
    const end = (): void => void ((closed = true), wake?.());
    this.originated.add(end);
    try {
      if (keys === undefined) spread.expandThrough(via!);
      else if (total === 0) finished = true;
      else release();
      while (true) {
        while (queue.length > 0) yield queue.shift()!;
        if (finished) return;
        if (closed) throw new PnetError('ERR_NODE_CLOSED', 'the node closed during the fan-out');
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.originated.delete(end);
      spread.end();
      this.spreads.delete(spread);
    }
  }

  /**
   * A result at the origin: a hop's (unsigned) report as it is, a target's answer once its
   * signature is checked, on the thread pool (thousands arrive at once, ~100 us each here).
   */
  private checked(requestId: Buffer, frame: ResultFrame, accept: () => true): boolean | Promise<boolean> {
    if (frame.status === STATUS_HOP_ERROR) return accept();
    return verifyResultAsync(requestId, frame).then((ok) => {
      if (ok) return accept();
      this.stats.forged++;
      return false;
    });
  }

  // ---- hop ------------------------------------------------------------------

  /** Serves a `pnet/fanout` stream from a peer: a v2 link (OPEN metadata `leg: "2"`) or one v1 leg. */
  serveLeg(stream: Duplex, from: NodeId, metadata?: Readonly<Record<string, string>>): void {
    const ask = this.linksEnabled ? linkAsked(metadata, MAX_LEG_BYTES) : undefined;
    if (ask !== undefined) return this.serveLink(stream, from, ask.lead);
    const neighbour = this.isNeighbour(from);
    if (this.legs.mayOpen(from, neighbour) !== 'ok') {
      stream.destroy(new PnetError('OVERLOADED', `fan-out legs from ${from} over the limit`));
      return;
    }
    this.legs.opened(from);
    this.stats.legsServed++;
    let stop: (() => void) | undefined;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.legs.closed(from);
      stop?.();
    };
    stream.on('error', release);
    stream.on('close', release);
    // Result frames go up in one write per loop turn: a hub relays thousands in bursts, and each write costs a QUIC stream write.
    let batch: Buffer[] = [];
    const flush = (): void => {
      if (batch.length === 0) return;
      stream.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch));
      batch = [];
    };
    const out: LegOut = {
      write: (frame) => {
        if (batch.push(frame) === 1) setImmediate(flush);
      },
      end: () => {
        flush();
        stream.end();
        release();
      },
    };
    this.readLeg(stream, from)
      .then((bytes) => {
        if (released) return;
        stop = this.runLeg(bytes, from, neighbour, out);
        if (released) stop?.();
      })
      .catch((error: unknown) => stream.destroy(error instanceof Error ? error : undefined));
  }

  /** A v2 link from `from`: many legs as frames on this one stream (fanout-link.ts). */
  private serveLink(stream: Duplex, from: NodeId, lead: number): void {
    this.linksServed.set(from, (this.linksServed.get(from) ?? 0) + 1);
    const host = {
      legs: this.legs,
      stats: this.stats,
      legReadTimeoutMs: this.legReadTimeoutMs,
      maxLegBytes: MAX_LEG_BYTES,
      isNeighbour: (peer: NodeId) => this.isNeighbour(peer),
      runLeg: (bytes: Buffer, peer: NodeId, neighbour: boolean, out: LegOut) => this.runLeg(bytes, peer, neighbour, out),
    };
    new LinkServer(host, stream, from, () => {
      const left = (this.linksServed.get(from) ?? 1) - 1;
      if (left <= 0) this.linksServed.delete(from);
      else this.linksServed.set(from, left);
    }, lead);
  }

  /**
   * Runs one whole leg: answers here, forwards the rest, its frames go to `out`, which is ended
   * when nothing is outstanding. Returns how to stop it early (its sender gave up, the stream went).
   * Throws BAD_FRAME or VERSION for a leg it cannot read.
   */
  private runLeg(bytes: Buffer, from: NodeId, neighbour: boolean, out: LegOut): (() => void) | undefined {
    const leg = decodeLeg(bytes);
    const receivedAt = performance.now();
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(leg.envelope);
      this.checkFresh(envelope);
      this.checkSender(envelope, from, neighbour);
    } catch (error) {
      // A bad envelope fails every target of this leg with the reason, and goes no further.
      const failure = error as PnetError;
      for (let i = 0; i < leg.targets.length; i += KEY_BYTES) {
        out.write(encodeResult(undefined, EMPTY_ID, leg.targets.subarray(i, i + KEY_BYTES), STATUS_HOP_ERROR, encodeErrorBody(failure.code, failure.message)));
      }
      out.end();
      return undefined;
    }
    let targets = leg.targets;
    if ((leg.flags & LEG_EXPAND) !== 0 && (envelope.flags & FLAG_ALL) !== 0) {
      targets = this.host.allNodes();
      out.write(encodeExpect(targets));
    }
    const spread = new Spread(this, envelope, receivedAt + leg.budgetMs, leg.hopLimit, { result: (frame) => (out.write(frame.frame), true), idle: () => out.end() }, undefined, from);
    this.spreads.add(spread);
    const stop = (): void => {
      spread.end();
      this.spreads.delete(spread);
    };
    spread.add(targets, leg.tickets.length > 0 ? leg.tickets : undefined);
    if (!spread.busy) out.end();
    return stop;
  }

  /**
   * Reads a leg whole: within the read deadline, its bytes charged to its peer's share and the
   * node's budget before they are buffered (a cut leg is destroyed; the parent retries or reports).
   */
  private readLeg(stream: Duplex, from: NodeId): Promise<Buffer> {
    const legs = this.legs;
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let total = 0;
      const fail = (error: PnetError): void => {
        finish();
        stream.destroy(error);
        reject(error);
      };
      const read: LegRead = { peer: from, bytes: 0, cut: () => fail(new PnetError('OVERLOADED', 'fan-out leg cut: the node buffers too many leg bytes')) };
      const timer = setTimeout(() => {
        this.stats.legReadTimeouts++;
        fail(new PnetError('ERR_REQUEST_TIMEOUT', `fan-out leg from ${from} not read whole within ${this.legReadTimeoutMs} ms`));
      }, this.legReadTimeoutMs);
      timer.unref();
      const onData = (chunk: Buffer): void => {
        total += chunk.length;
        if (total > MAX_LEG_BYTES) return fail(new PnetError('BAD_FRAME', `fan-out leg over ${MAX_LEG_BYTES} bytes`));
        if (!legs.charge(read, chunk.length)) return fail(new PnetError('OVERLOADED', `fan-out legs from ${from} buffer over their share`));
        chunks.push(chunk);
      };
      const onEnd = (): void => {
        finish();
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
      };
      const onClose = (): void => {
        finish();
        reject(new PnetError('ERR_STREAM_RESET', 'fan-out leg closed before its end'));
      };
      function finish(): void {
        clearTimeout(timer);
        stream.off('data', onData);
        stream.off('end', onEnd);
        stream.off('error', onClose);
        stream.off('close', onClose);
        legs.done(read);
      }
      stream.on('data', onData);
      stream.on('end', onEnd);
      stream.on('error', onClose);
      stream.on('close', onClose);
    });
  }

  /** A leg from a peer that is not a routing neighbour carries only that peer's own fan-out (`via`). */
  private checkSender(envelope: Envelope, from: NodeId, neighbour: boolean): void {
    if (neighbour || envelope.origin === from) return;
    this.stats.legsRefusedNotNeighbour++;
    // UNREACHABLE: the parent retries along the routes of a moment later (a new link is a neighbour at one end first).
    throw new PnetError('UNREACHABLE', `fan-out leg from ${from}: not a routing neighbour of ${this.host.identity.nodeId}, and not its own fan-out`);
  }

  /** Rejects envelopes from too far in the past or future: a hop cannot replay an old command. Lifetimes count up to MAX_HONOURED_LIFETIME_MS. */
  private checkFresh(envelope: Envelope): void {
    const now = Date.now();
    if (envelope.issuedAt > now + this.maxSkewMs || now > this.expiryOf(envelope) - this.maxSkewMs) {
      throw new PnetError('ERR_STALE_REQUEST', `fan-out ${envelope.requestId.toString('hex')} issued at ${new Date(envelope.issuedAt).toISOString()} is outside its lifetime`);
    }
  }

  /** Until when a target may see this envelope again (wall clock): its capped lifetime plus the skew both ways. */
  private expiryOf(envelope: Envelope): number {
    return envelope.issuedAt + Math.min(envelope.ttlMs, MAX_HONOURED_LIFETIME_MS) + 2 * this.maxSkewMs;
  }

  // ---- target ---------------------------------------------------------------

  /** Answers `envelope` here: a signed result frame (at most one handler run per request id). */
  deliver(envelope: Envelope, ticket: Buffer | undefined, deadlineAt: number): Promise<Buffer> {
    const identity = this.host.identity;
    const self = keyBytesOf(identity.nodeId);
    const refuse = (code: PnetError['code'], message: string): Promise<Buffer> =>
      Promise.resolve(encodeResult(identity, envelope.requestId, self, STATUS_ERROR, encodeErrorBody(code, message)));
    if (envelopeIsTicketed(envelope.bytes) && (ticket === undefined || !verifyTicket(envelope, self, ticket))) {
      return refuse('UNAUTHORIZED', `${envelope.origin} did not address this fan-out to ${identity.nodeId}`);
    }
    const id = envelope.requestId.toString('hex');
    const running = this.answering.get(id);
    if (running !== undefined) return running;
    const seen = this.answered.lookup(envelope.origin, id, envelope.issuedAt, Date.now());
    if (seen?.kind === 'seen') return seen.value.frame ?? refuse('ERR_DUPLICATE_REQUEST', `fan-out ${id} was answered here already`);
    if (seen?.kind === 'floor') return refuse('ERR_DUPLICATE_REQUEST', `fan-out ${id} may have been answered here already (its origin's older ids were forgotten)`);
    const entry: Answered = { frame: undefined };
    // Remembered only once authorise admitted it: a refused request costs no memory.
    const admitted = (): void => {
      if (!this.answered.remember(envelope.origin, id, envelope.issuedAt, this.expiryOf(envelope), entry, Date.now())) {
        throw new PnetError('OVERLOADED', 'no room to remember this fan-out against replay');
      }
    };
    const frame = this.answer(envelope, deadlineAt, admitted);
    entry.frame = frame;
    this.answering.set(id, frame);
    const settled = (bytes: Buffer | undefined): void => {
      this.answering.delete(id);
      if (bytes === undefined || bytes.length > MAX_CACHED_REPLY) entry.frame = undefined;
    };
    frame.then(settled, () => settled(undefined));
    return frame;
  }

  /** Runs the request here (the node's request pipeline) and signs what became of it. */
  private async answer(envelope: Envelope, deadlineAt: number, admitted: () => void): Promise<Buffer> {
    const identity = this.host.identity;
    const info: ChannelRequestInfo = { channel: envelope.channel, remoteNodeId: envelope.origin, metadata: envelope.metadata };
    const outcome = await this.host.answerRequest(envelope.channel, Buffer.from(envelope.payload), info, { deadlineAt, maxReplyBytes: envelope.maxReplyBytes, admitted });
    const [status, body] = outcome.ok ? [STATUS_OK, outcome.reply] : [STATUS_ERROR, encodeErrorBody(outcome.error.code, outcome.error.message)];
    // Signed now (~30 µs): from another thread it came back after its leg's ACK had left alone (docs/FANOUT.md).
    return encodeResult(identity, envelope.requestId, keyBytesOf(identity.nodeId), status, body);
  }

  /** Ends every fan-out in progress (the node is closing). */
  close(): void {
    this.links.close();
    for (const spread of this.spreads) spread.end();
    this.spreads.clear();
    for (const end of this.originated) end();
  }
}
