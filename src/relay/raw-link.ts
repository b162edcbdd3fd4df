/**
 * Relay v2's QUIC links without a second QUIC layer: a relayed datagram leaves as a UDP datagram of
 * its own, straight on the link's socket and address, behind a 9-byte prefix (a marker byte whose
 * fixed bit 0x40 is clear, so it is never QUIC, and the receiver's 8-byte link tag). The inner
 * packet is end-to-end QUIC already; the outer link's decryption, re-encryption and DATAGRAM
 * frames were most of a hop's cost (docs/RELAY.md, "Link packets").
 *
 * Each end of a link picks a random tag and tells its neighbour on the authenticated link (a
 * stream on RAW_TAG_CHANNEL); a link packet counts only when it carries the tag the receiver
 * gave that neighbour and comes from that neighbour's address. Until the neighbour's tag has
 * arrived (or where it never does: a node without the channel) datagrams ride the link's QUIC
 * DATAGRAM frames as before.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { NodeId } from '../identity/index.js';
import type { SocketAddress } from '../transport/index.js';
import type { DatagramLink } from './stream-link.js';

/** The reserved channel on which a node gives a neighbour its link tag. */
export const RAW_TAG_CHANNEL = 'pnet/relay-tag';
/** Byte 0 of a link packet: version 1 (0x40 clear: not QUIC; 0x80 clear: not a long header). */
export const LINK_PACKET_MARKER = 0x21;
export const LINK_TAG_BYTES = 8;
/** Marker + tag. */
export const LINK_PREFIX_BYTES = 1 + LINK_TAG_BYTES;
/** The tag message on RAW_TAG_CHANNEL: a version byte (1) and the tag. */
const TAG_MESSAGE_VERSION = 1;

/** What raw links need from the node: the QUIC link's socket and address. */
export interface RawLinkHost {
  /** Sends prefix + payload as one UDP datagram from the QUIC socket to `to`. */
  send(prefix: Uint8Array, payload: Uint8Array, to: SocketAddress): void;
  /** The UDP payload size the QUIC links send (their maxDatagramSize). */
  readonly maxDatagramSize: number;
}

/** A neighbour's QUIC connection as raw links see it. */
export interface RawLinkConnection {
  readonly remoteAddress: SocketAddress;
}

export interface RawLinkStats {
  /** Link packets sent and received (accepted). */
  sent: number;
  received: number;
  /** Link packets dropped: unknown tag (or a link gone), or from an address that is not the tag's neighbour. */
  badTag: number;
  wrongSource: number;
  /** Tag messages that did not parse (the stream is dropped). */
  badTagMessages: number;
}

/** Counters of a node without raw links (and of raw links before any packet). */
export function emptyRawLinkStats(): RawLinkStats {
  return { sent: 0, received: 0, badTag: 0, wrongSource: 0, badTagMessages: 0 };
}

interface Entry {
  readonly neighbour: NodeId;
  /** The neighbour's connection's address, which link packets go to and must come from (its QUIC socket's); the address, not the connection, so a closed connection is not held. */
  remote: SocketAddress;
  /** What the neighbour puts on link packets to us (a latin1 key into `byTag`). */
  readonly ownTag: Buffer;
  /** Marker + the neighbour's tag, once it has told us. */
  prefix: Buffer | undefined;
  link: RawLink | undefined;
}

class RawLink implements DatagramLink {
  constructor(
    private readonly links: RawLinks,
    private readonly entry: Entry,
    readonly maxDatagramPayload: number,
  ) {}

  sendDatagram(data: Uint8Array): boolean {
    return this.links.send(this.entry, data);
  }
}

/** What a tag message did: nothing to do, or we must tell the neighbour our tag again (it forgot ours). */
export type TagOutcome = 'bad' | 'taken' | 'resend';

export class RawLinks {
  readonly stats: RawLinkStats = emptyRawLinkStats();
  private readonly byNeighbour = new Map<NodeId, Entry>();
  private readonly byTag = new Map<string, Entry>();

  constructor(private readonly host: RawLinkHost) {}

  /**
   * A QUIC link to `neighbour` is up: the tag message to send on RAW_TAG_CHANNEL, or undefined when
   * the neighbour already has our tag (a second connection to a neighbour keeps the link's tags).
   */
  linkUp(neighbour: NodeId, connection: RawLinkConnection): Buffer | undefined {
    const known = this.byNeighbour.get(neighbour);
    if (known !== undefined) {
      known.remote = connection.remoteAddress;
      return undefined;
    }
    const ownTag = randomBytes(LINK_TAG_BYTES);
    const entry: Entry = { neighbour, remote: connection.remoteAddress, ownTag, prefix: undefined, link: undefined };
    this.byNeighbour.set(neighbour, entry);
    this.byTag.set(ownTag.toString('latin1'), entry);
    return this.tagMessage(neighbour);
  }

  /** The neighbour is gone (no connection left): its tags go. */
  linkDown(neighbour: NodeId): void {
    const entry = this.byNeighbour.get(neighbour);
    if (entry === undefined) return;
    this.byNeighbour.delete(neighbour);
    this.byTag.delete(entry.ownTag.toString('latin1'));
  }

  /** Our tag message for `neighbour`'s link (version, tag). */
  tagMessage(neighbour: NodeId): Buffer | undefined {
    const entry = this.byNeighbour.get(neighbour);
    return entry === undefined ? undefined : Buffer.concat([Buffer.of(TAG_MESSAGE_VERSION), entry.ownTag]);
  }

  /** A neighbour's tag message stream (RAW_TAG_CHANNEL): its 9 bytes, then `done` with what they did. */
  readTagStream(neighbour: NodeId, stream: Duplex, done: (outcome: TagOutcome) => void): void {
    const parts: Buffer[] = [];
    let length = 0;
    stream.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length <= 1 + LINK_TAG_BYTES) parts.push(chunk);
      else stream.destroy();
    });
    stream.on('error', () => undefined);
    stream.on('end', () => {
      stream.end();
      const outcome = this.takeTag(neighbour, Buffer.concat(parts));
      if (outcome === 'bad') this.stats.badTagMessages++;
      done(outcome);
    });
  }

  /**
   * The neighbour's tag: link packets to it may now be sent. 'resend' when it replaced one we had
   * (the neighbour started its side of the link afresh and has forgotten our tag).
   */
  takeTag(neighbour: NodeId, message: Uint8Array): TagOutcome {
    if (message.length !== 1 + LINK_TAG_BYTES || message[0] !== TAG_MESSAGE_VERSION) return 'bad';
    const entry = this.byNeighbour.get(neighbour);
    if (entry === undefined) return 'taken';
    const prefix = Buffer.concat([Buffer.of(LINK_PACKET_MARKER), message.subarray(1)]);
    const replaced = entry.prefix !== undefined && !entry.prefix.equals(prefix);
    entry.prefix = prefix;
    return replaced ? 'resend' : 'taken';
  }

  /** The raw link to `neighbour` (now over `connection`, its live QUIC connection), once the neighbour gave its tag. */
  link(neighbour: NodeId, connection: RawLinkConnection): DatagramLink | undefined {
    const entry = this.byNeighbour.get(neighbour);
    if (entry === undefined || entry.prefix === undefined) return undefined;
    entry.remote = connection.remoteAddress;
    entry.link ??= new RawLink(this, entry, this.host.maxDatagramSize - LINK_PREFIX_BYTES);
    return entry.link;
  }

  send(entry: Entry, data: Uint8Array): boolean {
    if (entry.prefix === undefined || this.byNeighbour.get(entry.neighbour) !== entry) return false;
    this.host.send(entry.prefix, data, entry.remote);
    this.stats.sent++;
    return true;
  }

  /** A UDP datagram that is not QUIC: the neighbour it came from and its relayed datagram, or undefined (dropped, counted). */
  receive(packet: Buffer, host: string, port: number): { from: NodeId; datagram: Buffer } | undefined {
    if (packet.length <= LINK_PREFIX_BYTES || packet[0] !== LINK_PACKET_MARKER) {
      this.stats.badTag++;
      return undefined;
    }
    const entry = this.byTag.get(packet.toString('latin1', 1, LINK_PREFIX_BYTES));
    if (entry === undefined) {
      this.stats.badTag++;
      return undefined;
    }
    const remote = entry.remote;
    if (remote.port !== port || remote.host !== host) {
      this.stats.wrongSource++;
      return undefined;
    }
    this.stats.received++;
    return { from: entry.neighbour, datagram: packet.subarray(LINK_PREFIX_BYTES) };
  }
}
