/**
 * Relay v2 over links without QUIC DATAGRAM frames (HTTP/2 over TLS): each datagram behind a
 * 2-byte length on one long-lived stream per link (v2/link-framing.ts). Either end opens the
 * stream when it first has a datagram for the link; a neighbour's stream is read whoever opened
 * it, and an end sends on the first stream it had. Writes above MAX_BUFFERED are dropped and
 * counted, never queued without bound (QUIC above reads the drop as loss).
 */
import type { Duplex } from 'node:stream';
import type { NodeId } from '../identity/index.js';
import { DatagramStreamReader, frameDatagram, MAX_RELAYED_BYTES } from './v2/index.js';

/** A neighbour's link as relay v2 uses it: a QUIC connection's DATAGRAM frames, or an HTTP/2 link's datagram stream. */
export interface DatagramLink {
  /** Largest datagram the link takes now (0: none). */
  readonly maxDatagramPayload: number;
  /** True for an HTTP/2 link's datagram stream. */
  readonly viaStream?: boolean;
  sendDatagram(data: Uint8Array): boolean;
}

/** The reserved channel of a link's datagram stream. */
export const DATAGRAM_LINK_CHANNEL = 'pnet/relay-datagrams';
/** Bytes a link stream may hold unsent (its write buffer, or the queue while it opens) before datagrams are dropped. */
export const MAX_BUFFERED = 256 * 1024;
/** After a link stream could not be opened (a neighbour without the channel), the link takes no datagrams for this long. */
export const REFUSED_MS = 60_000;

export interface StreamLinkHost {
  /** Opens the link stream to neighbour `nodeId` on DATAGRAM_LINK_CHANNEL (optimistic: usable at once). */
  open(nodeId: NodeId): Promise<Duplex>;
  /** A datagram that came on neighbour `from`'s link stream (a view, valid during the call). */
  receive(from: NodeId, datagram: Buffer): void;
  /** Neighbour `nodeId` refused (or could not take) the link stream: the link takes no datagrams for REFUSED_MS. */
  refused?(nodeId: NodeId): void;
}

export interface StreamLinkStats {
  /** Link streams opened or accepted. */
  streams: number;
  /** Datagrams written to link streams. */
  sent: number;
  /** Datagrams read from link streams. */
  received: number;
  /** Datagrams dropped: the stream held MAX_BUFFERED unsent, or it could not be opened. */
  dropped: number;
  /** Link streams ended for a bad length prefix (BAD_FRAME). */
  badFrames: number;
}

/** One neighbour's link: the stream this end sends on, and every stream it reads. */
class StreamLink implements DatagramLink {
  readonly viaStream = true;
  /** Until when the link takes no datagrams (its stream could not be opened): hops report RELAY_REFUSED meanwhile. */
  refusedUntil = 0;
  sending: Duplex | undefined;
  /** Framed datagrams waiting for the stream to open (at most MAX_BUFFERED bytes). */
  queue: Buffer[] | undefined;
  queued = 0;
  readonly streams = new Set<Duplex>();

  constructor(
    private readonly owner: StreamLinks,
    readonly nodeId: NodeId,
  ) {}

  get maxDatagramPayload(): number {
    return this.sending === undefined && performance.now() < this.refusedUntil ? 0 : MAX_RELAYED_BYTES;
  }

  sendDatagram(data: Uint8Array): boolean {
    const stats = this.owner.stats;
    if (this.maxDatagramPayload === 0) {
      stats.dropped++;
      return false;
    }
    const framed = frameDatagram(data);
    if (this.sending !== undefined) {
      if (this.sending.writableLength > MAX_BUFFERED) {
        stats.dropped++;
        return false;
      }
      this.sending.write(framed);
      stats.sent++;
      return true;
    }
    if (this.queued + framed.length > MAX_BUFFERED) {
      stats.dropped++;
      return false;
    }
    if (this.queue === undefined) {
      this.queue = [];
      this.owner.openFor(this);
    }
    this.queue.push(framed);
    this.queued += framed.length;
    return true;
  }

  /** The stream to send on is `stream`: what waited goes now. */
  useForSending(stream: Duplex): void {
    this.sending = stream;
    for (const framed of this.queue ?? []) {
      stream.write(framed);
      this.owner.stats.sent++;
    }
    this.queue = undefined;
    this.queued = 0;
  }
}

export class StreamLinks {
  readonly stats: StreamLinkStats = { streams: 0, sent: 0, received: 0, dropped: 0, badFrames: 0 };
  private readonly links = new Map<NodeId, StreamLink>();
  private closed = false;

  constructor(private readonly host: StreamLinkHost) {}

  /** The datagram link to a neighbour whose connection has no DATAGRAM frames. */
  link(nodeId: NodeId): DatagramLink {
    let link = this.links.get(nodeId);
    if (link === undefined) {
      link = new StreamLink(this, nodeId);
      this.links.set(nodeId, link);
    }
    return link;
  }

  /** A neighbour opened its link stream: read it, and send on it if this end has none yet. */
  accept(nodeId: NodeId, stream: Duplex): void {
    if (this.closed) {
      stream.destroy();
      return;
    }
    const link = this.link(nodeId) as StreamLink;
    this.attach(link, stream);
    if (link.sending === undefined) link.useForSending(stream);
  }

  /** Called by a link with datagrams and no stream: opens one (the datagrams wait in its queue). */
  openFor(link: StreamLink): void {
    this.host.open(link.nodeId).then(
      (stream) => {
        if (this.closed || this.links.get(link.nodeId) !== link) {
          stream.destroy();
          return;
        }
        this.attach(link, stream, true);
        if (link.sending === undefined) link.useForSending(stream);
      },
      () => {
        // the neighbour is gone or lacks the channel: what waited is lost (QUIC resends); no new try for REFUSED_MS
        link.refusedUntil = performance.now() + REFUSED_MS;
        this.stats.dropped += link.queue?.length ?? 0;
        link.queue = undefined;
        link.queued = 0;
        this.host.refused?.(link.nodeId);
      },
    );
  }

  private attach(link: StreamLink, stream: Duplex, opened = false): void {
    this.stats.streams++;
    link.streams.add(stream);
    const reader = new DatagramStreamReader();
    const deliver = (datagram: Buffer): void => {
      this.stats.received++;
      this.host.receive(link.nodeId, datagram);
    };
    stream.on('data', (chunk: Buffer) => {
      if (reader.push(chunk, deliver) === undefined) return;
      this.stats.badFrames++;
      stream.destroy();
    });
    stream.on('error', (error: { code?: string }) => {
      // our OPEN was rejected (an older neighbour, or one with relay v2 off): no new try for REFUSED_MS
      if (opened && (error.code === 'UNKNOWN_CHANNEL' || error.code === 'UNAUTHORIZED')) {
        link.refusedUntil = performance.now() + REFUSED_MS;
        this.host.refused?.(link.nodeId);
      }
    });
    stream.once('close', () => {
      link.streams.delete(stream);
      if (link.sending === stream) link.sending = undefined;
    });
  }

  /** The neighbour went away: its link and streams go (a link lives as long as its neighbour: at most one per neighbour). */
  neighbourDown(nodeId: NodeId): void {
    const link = this.links.get(nodeId);
    if (link === undefined) return;
    this.links.delete(nodeId);
    for (const stream of link.streams) stream.destroy();
  }

  close(): void {
    this.closed = true;
    for (const nodeId of [...this.links.keys()]) this.neighbourDown(nodeId);
  }
}
