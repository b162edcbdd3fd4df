/**
 * The receiving end of a v2 fan-out link (fanout-link.ts): legs read as frames, each charged to
 * its peer's leg count and byte share with its own read deadline, run like v1 legs, and their
 * result frames written up together once per batch of drives (a microtask).
 */
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import type { NodeId } from '../identity/index.js';
import { encodeErrorBody } from './fanout-codec.js';
import type { LegAccounts, LegRead } from './fanout-limits.js';
import { LINK_BATCH_BYTES, LINK_CANCEL, LINK_END, LINK_FRAMES, LINK_HEADER_BYTES, LINK_LEG, LinkReader, linkFrame, writeLinkHeader } from './fanout-link-frames.js';
import type { FanoutStats } from './types.js';

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
  /** When its first byte came (the read deadline counts from there). */
  startedAt: number;
  stop: (() => void) | undefined;
  batch: Buffer[];
  ended: boolean;
  /** The error it ends with (refused, cut, unreadable), instead of a normal END. */
  error: PnetError | undefined;
}

/**
 * One v2 link served for a peer: legs are read as frames (each charged to the peer's leg count
 * and byte share, with its own read deadline), run like v1 legs, and their frames written up
 * together once per batch of drives.
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
    /** A version 3 link: the first `lead` bytes are one v1 leg with no frame header (leg id 0). */
    lead = 0,
  ) {
    this.reader = new LinkReader({
      begin: (type, id, length) => this.begin(type, id, length),
      chunk: (id, n) => this.charge(id, n),
      frame: (type, id, body) => this.frame(type, id, body),
      partial: (id) => this.readDeadline(id),
    });
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
    if (lead > 0) this.reader.expect(LINK_LEG, 0, lead);
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
    const leg: ServedLeg = { id, read: undefined, timer: undefined, startedAt: 0, stop: undefined, batch: [], ended: false, error: undefined };
    this.served.set(id, leg);
    const refused = this.host.legs.mayOpen(this.from, this.host.isNeighbour(this.from));
    if (refused !== 'ok') {
      this.fail(leg, new PnetError('OVERLOADED', refused === 'node' ? 'serving too many fan-out legs already' : `fan-out legs from ${this.from} over the limit`), false);
      return false;
    }
    this.host.legs.opened(this.from);
    this.host.stats.legsServed++;
    leg.read = { peer: this.from, bytes: 0, cut: () => this.cut(leg, new PnetError('OVERLOADED', 'fan-out leg cut: the node buffers too many leg bytes')) };
    leg.startedAt = performance.now();
    return true;
  }

  /**
   * A leg's frame spans chunks: its read deadline (from its first byte) is armed now. A leg that
   * comes in one chunk (the usual, small leg) never costs a timer.
   */
  private readDeadline(id: number): void {
    const leg = this.served.get(id);
    if (leg?.read === undefined || leg.timer !== undefined) return;
    leg.timer = setTimeout(() => {
      this.host.stats.legReadTimeouts++;
      this.cut(leg, new PnetError('ERR_REQUEST_TIMEOUT', `fan-out leg from ${this.from} not read whole within ${this.host.legReadTimeoutMs} ms`));
    }, Math.max(0, leg.startedAt + this.host.legReadTimeoutMs - performance.now()));
    leg.timer.unref();
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
    if (leg.timer !== undefined) clearTimeout(leg.timer);
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
    // After this batch of drives, not next turn: the answer then leaves a turn sooner, with its leg's ACK.
    queueMicrotask(() => this.flush());
  }

  /** One write per batch of drives for all the link's legs: a QUIC stream write costs the same for one result or many. */
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
