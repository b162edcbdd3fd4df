import type * as native from '@matrixai/quic/native/index.js';
import { PnetError } from '../../errors.js';
import { verifyPeerCertificate } from '../../identity/index.js';
import type { NodeId } from '../../identity/index.js';
import type { SocketAddress } from '../types.js';
import { classifyQuicheError } from './quiche-errors.js';
import { firstPacketLength } from './coalesced.js';

/*
 * QuicMachine: one QUIC connection as a sans-IO state machine over a quiche connection, in the
 * manner of quinn-proto. It owns the quiche connection, the stream table and the whole FIN
 * policy. It never reads a clock, arms a timer or touches a socket: time comes in as `now`
 * (milliseconds, the caller's clock) and datagrams come in and go out through the caller.
 *
 * Call order (the driver's loop; QuicConnection and test/fixtures/quic-pair.ts follow it):
 *   1. Feed inputs as they happen: `handleDatagram(datagram, now, transmitFirst)` (it calls
 *      `transmitFirst()` itself when anything is waiting to leave: sends before receives),
 *      stream operations (`openStream`, `streamWrite`, `streamEnding`, `streamWantsRead`,
 *      `streamReset`), `sendDatagram`, `keepAlive`, `close`, and `handleTimeout(now)` when the
 *      deadline from step 5 passes.
 *      After an input outside step 2-4, look at `transmitUrgency` (NOW: transmit at once) and
 *      `wantsService` (run steps 2-5 soon, batched with other connections).
 *   2. `service(now)`: handshake completion, parked writes, readable streams, stream credit,
 *      datagrams in, the graceful close. It queues events.
 *   3. `pollEvent()` until undefined, acting on each (`streamRead` on 'readable').
 *   4. `pollWake()`: how soon to transmit (NOW, AFTER_TICKS, NEXT_TURN); then, at that time,
 *      `pollTransmit(buffer)` until it returns null, sending each datagram on the path.
 *   5. `pollTimeout(now)`: the next deadline (absolute, caller's units) or null; after every
 *      transmit too, since sending arms quiche's loss detection.
 *   When `finished` is true, the connection is over and quiche is closed: forget it.
 *
 * The FIN policy (quiche 0.18 collects a stream as soon as it knows the final size and every byte
 * is acknowledged, so a FIN-only frame not yet sent then is lost for good; docs/TRANSPORT.md):
 *   - a FIN whose stream's data went to quiche since the last transmit is handed over with it
 *     (it rides on that data's last frame: the queuedAt rule);
 *   - any other FIN alone is handed over only when quiche has room for a full packet after the
 *     bytes sent since its last recv() (the room rule, `finCanLeave`), with urgency 0; otherwise
 *     it is parked until ACKs make room;
 *   - a parked write that is the last one before end() carries the FIN (`streamEnding`);
 *   - a parked FIN on a stream quiche has already collected fails the stream and releases it;
 *   - whatever waits to leave is transmitted before a datagram is fed (`handleDatagram`);
 *   - when service() hands the application a peer stream's end and the application wrote, the
 *     transmit waits until that tick's nextTicks ran (AFTER_TICKS), so a stream ended in answer
 *     sends its FIN with its last data.
 */

type QuicheConnection = native.Connection;

/** How soon the driver should drain `pollTransmit`. */
export const Transmit = {
  /** Nothing waits. */
  NONE: 0,
  /** Only ACKs: next loop turn (a reply written meanwhile carries them), or before the next datagram in. */
  NEXT_TURN: 1,
  /** Once this tick's nextTicks ran (a microtask). */
  AFTER_TICKS: 2,
  /** At once. */
  NOW: 3,
} as const;
export type Transmit = (typeof Transmit)[keyof typeof Transmit];

export type MachineEvent =
  | { readonly type: 'established'; readonly peer: NodeId }
  | { readonly type: 'streamOpened'; readonly id: number }
  | { readonly type: 'readable'; readonly id: number }
  | { readonly type: 'writeDone'; readonly id: number }
  /** Reset, stopped or cut by the connection's end; the stream is released; a parked write failed with it. */
  | { readonly type: 'streamFailed'; readonly id: number; readonly error: PnetError }
  /** Both directions ended: the machine forgot the stream. */
  | { readonly type: 'released'; readonly id: number }
  /** The peer allows this many more streams (after `wantStreamCredit`). */
  | { readonly type: 'streamCredit'; readonly count: number }
  | { readonly type: 'datagram'; readonly data: Buffer }
  /** The connection is over for the application (error: undefined for a clean close). */
  | { readonly type: 'closed'; readonly error: PnetError | undefined };

/** A receive buffer shared by the machines of one endpoint; chunks handed out are views of it. */
export interface ReadPool {
  buffer: Buffer;
  offset: number;
}
export const READ_POOL_SIZE = 256 * 1024;

export interface MachineOptions {
  direction: 'inbound' | 'outbound';
  /** quiche's path: the UDP addresses, or any stable pair for a path that is not UDP. */
  local: SocketAddress;
  remote: SocketAddress;
  expectedNodeId?: NodeId;
  handshakeTimeoutMs: number;
  /**
   * Once established, nothing received for this long means the peer is gone (ERR_IDLE_TIMEOUT).
   * quiche's idle timer also restarts on our own keep-alives, so alone it noticed a dead peer only
   * after up to the idle timeout plus the keep-alive interval.
   */
  silenceTimeoutMs?: number;
  readPool: ReadPool;
  /** The caller's clock at creation (starts the handshake deadline). */
  now: number;
}

export interface MachineCloseOptions {
  code?: number;
  reason?: string;
  graceful?: boolean;
  timeoutMs?: number;
}

/** Per-stream state, only the machine writes it. */
interface StreamState {
  readonly id: number;
  /** Bytes quiche did not take yet (flow control), the rest of one write. */
  pendingChunk: Buffer | null;
  pendingFin: boolean;
  /** end() was called and the parked write is the last one: its FIN goes with it. */
  finWithPending: boolean;
  /** The machine's transmit count when quiche last took data of this stream. */
  queuedAt: number;
  /** The consumer wants data. */
  wantRead: boolean;
  readEnded: boolean;
  writeEnded: boolean;
}

export type WriteResult = true | false | PnetError;

const SHUTDOWN_READ = 0;
const SHUTDOWN_WRITE = 1;
/** TLS bad_certificate alert as a QUIC crypto error (0x100 + 42). */
const CRYPTO_BAD_CERTIFICATE = 0x100 + 42;
const EMPTY = Buffer.alloc(0);
const MAX_READ = 64 * 1024;
/**
 * Streams quiche 0.18 kept without collecting them (read side shut here after the FIN left, the
 * peer's final size after that FIN's ACK) at which the connection is closed: each holds ~2–4 KiB
 * and one of the peer's stream credits until the connection ends (docs/LIMITS.md).
 */
export const ABANDONED_STREAM_LIMIT = 256;
/** New candidates between two checks of the abandoned streams (each check probes them all). */
const ABANDONED_SCAN_STEP = 32;
/** Where discardUnread copies the bytes it drops (shared: never handed out). */
let discardBuffer: Buffer | undefined;
/** How long a finished stream is remembered for a graceful close to wait on its last bytes. */
export const FINISHING_MEMORY_MS = 10_000;
/** Congestion window room a FIN-only write waits for: one full packet (see finCanLeave). */
const FIN_ROOM = 1350;
/** Below this many streams, probing each is cheaper than quiche's readable() iterator. */
const PROBE_LIMIT = 8;
/** A timer this late means the process was stalled (an event-loop block), not that the peer was silent. */
export const STALL_MS = 50;
/**
 * Packets a closing connection may write after quiche.close(). quiche 0.18 writes ACK-only
 * Handshake packets without end when an application close meets a pending Handshake PTO (a client
 * whose Finished went unacknowledged: it sends no PING while closing, so the probe is never spent);
 * the soak's worker spun in that loop until the kernel killed it at 23 GB. A CONNECTION_CLOSE needs one.
 */
export const CLOSING_PACKETS = 16;

export class QuicMachine {
  readonly quiche: QuicheConnection;
  readonly direction: 'inbound' | 'outbound';
  remoteNodeId: NodeId | undefined;
  established = false;
  /** Over for the application (closed by either side, or failed). */
  closed = false;
  /** Datagrams sendDatagram could not queue (not established, too large, queue full). */
  droppedDatagrams = 0;
  /** Unread bytes dropped when streams were reset locally (read so that quiche gives their window back). */
  discardedBytes = 0;
  /** Retries of parked writes skipped while quiche had no send capacity (each would have sent a DATA_BLOCKED). */
  blockedRetriesSkipped = 0;
  /** Closed because ABANDONED_STREAM_LIMIT streams were left in quiche uncollected. */
  abandonedClose = false;
  /** Closing, quiche wrote CLOSING_PACKETS and would write more: the rest were not sent (it ends at its idle timer). */
  closingSendsCut = false;
  /** Packets written since quiche.close() was called; -1 while not closing. */
  private closingPackets = -1;
  /** Datagrams quiche refused (undecryptable, duplicate, garbage): dropped, the connection lives on. */
  recvErrors = 0;
  /** When quiche last took a datagram (caller's clock): the keep-alive sweep reads it. */
  lastActivity: number;

  private readonly options: MachineOptions;
  private readonly recvInfo: { from: native.Host; to: native.Host };
  private readonly streams = new Map<number, StreamState>();
  private readonly blocked = new Set<StreamState>();
  /** Streams fully ended on our side whose last bytes quiche may still be sending: id → when. */
  private readonly finishing = new Map<number, number>();
  private readonly skippedRemoteIds = new Set<number>();
  /** Streams whose read side was shut after their FIN left: quiche may never collect them. */
  private readonly abandoned = new Set<number>();
  private nextAbandonedScan = ABANDONED_STREAM_LIMIT;
  private readonly events: MachineEvent[] = [];
  private eventHead = 0;
  private nextLocalStreamId: number;
  private nextRemoteStreamId: number;
  private now: number;
  private handshakeDeadline: number;
  private closeDeadline = Infinity;
  private closeRequest: MachineCloseOptions | undefined;
  private closeError: PnetError | undefined;
  private creditWanted = false;
  /** A stream was released while a graceful close waits: the next pollWake asks for a service. */
  private closeCheck = false;
  /** A consumer asked for data (a read wanted during a drive is not covered by its transmit). */
  private readWanted = false;
  /** service() found readable streams: once their events ran, ask quiche whether others are readable. */
  private recheckReadable = false;
  /** Time since the last datagram in that this process spent stalled (late timers): added to the silence deadline. */
  private stalledMs = 0;
  private lastFailure: PnetError | undefined;
  private datagramsIn = false;

  /** quiche was given something to send since the last transmit. */
  private wrote = false;
  /** Bytes of packets sent since quiche last read a datagram. */
  private sentSinceRecv = 0;
  /** Transmits so far: a stream whose data went to quiche after the last one still has it queued. */
  private transmits = 0;
  private transmitting = false;
  /** A peer stream's end was handed to the application since the last service(). */
  private finDelivered = false;
  private urgency: Transmit = Transmit.NONE;
  /** An input since the last service() needs one. */
  wantsService = false;

  constructor(quiche: QuicheConnection, options: MachineOptions) {
    this.quiche = quiche;
    this.options = options;
    this.direction = options.direction;
    this.now = options.now;
    this.lastActivity = options.now;
    this.handshakeDeadline = options.now + options.handshakeTimeoutMs;
    this.recvInfo = { from: { host: options.remote.host, port: options.remote.port }, to: { host: options.local.host, port: options.local.port } };
    // Client-initiated bidirectional ids are 0 mod 4, server-initiated 1 mod 4.
    this.nextLocalStreamId = options.direction === 'outbound' ? 0 : 1;
    this.nextRemoteStreamId = options.direction === 'outbound' ? 1 : 0;
  }

  /** Streams ever opened on this connection, by either end (as far as this end has seen the peer's). */
  get streamsUsed(): number {
    return (this.nextLocalStreamId >> 2) + (this.nextRemoteStreamId >> 2);
  }

  /** Whether stream `id` is still tracked (not finished, failed or reset). */
  hasStream(id: number): boolean {
    return this.streams.has(id);
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** close() was called or the connection is over. */
  get closing(): boolean {
    return this.closed || this.closeRequest !== undefined;
  }

  /** The connection is over and quiche is closed (its draining period done): forget it. */
  get finished(): boolean {
    return this.closed && this.quiche.isClosed();
  }

  get transmitUrgency(): Transmit {
    return this.urgency;
  }

  /** Largest DATAGRAM payload the peer takes now (0 before the handshake or when it takes none). */
  get maxDatagramPayload(): number {
    if (!this.established || this.closed) return 0;
    return this.quiche.dgramMaxWritableLen() ?? 0;
  }

  // ---- inputs -------------------------------------------------------------

  /** Feeds one datagram (decrypted in place by quiche); `transmitFirst` drains pending sends before. */
  handleDatagram(datagram: Buffer, now: number, transmitFirst: () => void): void {
    // Sends before receives: quiche 0.18 collects a stream whose data is all acknowledged as soon
    // as it has a fin offset, so an ACK read before a pending FIN left would make it drop that FIN.
    if (this.wrote || this.urgency !== Transmit.NONE) transmitFirst();
    this.now = now;
    // Once established, a long-header packet is a late handshake packet: feed the packets coalesced
    // behind it one by one, or quiche drops them with it when it cannot decrypt it (coalesced.ts).
    if (this.established && (datagram[0]! & 0x80) !== 0) this.receiveCoalesced(datagram, now);
    else this.receivePacket(datagram, now);
    this.wantsService = true;
  }

  private receiveCoalesced(datagram: Buffer, now: number): void {
    let rest = datagram;
    while (rest.length > 0) {
      const end = firstPacketLength(rest);
      this.receivePacket(rest.subarray(0, end), now);
      rest = rest.subarray(end);
    }
  }

  private receivePacket(packet: Buffer, now: number): void {
    try {
      this.quiche.recv(packet, this.recvInfo);
      this.sentSinceRecv = 0;
      this.datagramsIn = true;
      this.lastActivity = now;
      this.stalledMs = 0;
    } catch {
      // A datagram quiche cannot use (garbage, duplicate, wrong keys) is dropped; the connection lives on.
      this.recvErrors++;
    }
  }

  /** The deadline from pollTimeout passed (early calls are harmless). */
  /** `lateMs`: how late the caller's timer fired; a stall of this process is not the peer's silence. */
  handleTimeout(now: number, lateMs = 0): void {
    this.now = now;
    if (lateMs > STALL_MS) this.stalledMs += lateMs;
    if (!this.closed && !this.established && now >= this.handshakeDeadline) {
      const { host, port } = this.options.remote;
      this.abort(new PnetError('ERR_CONNECT_TIMEOUT', `QUIC handshake with ${host}:${port} did not complete within ${this.options.handshakeTimeoutMs} ms`));
      return;
    }
    if (!this.closed && this.closeRequest !== undefined && now >= this.closeDeadline) {
      this.finishClose();
      return;
    }
    if (!this.closed && this.established && now >= this.silenceDeadline) {
      this.abort(new PnetError('ERR_IDLE_TIMEOUT', `peer ${this.remoteNodeId} went silent (nothing received for ${this.options.silenceTimeoutMs} ms)`));
      return;
    }
    const remaining = this.quiche.timeout();
    if (remaining === null || remaining > 1) return;
    this.quiche.onTimeout();
    this.wrote = true; // loss recovery and ACK timers want their packets out now
    this.wantsService = true;
  }

  /** Keep-alive: an ack-eliciting packet so the peer's idle timer resets. */
  keepAlive(): void {
    if (!this.established || this.closed) return;
    this.quiche.sendAckEliciting();
    this.wrote = true;
    this.wantsService = true;
  }

  /** A new local stream's id, or null when the peer allows no more now (ask `wantStreamCredit`). */
  openStream(): number | PnetError | null {
    if (this.closing) return this.closedError();
    if (this.quiche.peerStreamsLeftBidi() <= 0) return null;
    const id = this.nextLocalStreamId;
    try {
      // A zero-length send creates the stream in quiche, claiming its slot in the peer's limit.
      this.quiche.streamSend(id, EMPTY, false);
    } catch (error) {
      const failure = classifyQuicheError(error);
      if (failure.kind === 'StreamLimit') return null;
      return new PnetError('ERR_STREAM_LIMIT', `cannot open stream: ${String(error)}`);
    }
    this.nextLocalStreamId += 4;
    this.track(id);
    return id;
  }

  /** Someone waits for stream credit: the next service() reports it with a 'streamCredit' event. */
  wantStreamCredit(): void {
    this.creditWanted = true;
  }

  /** The consumer of stream `id` drained its buffer. */
  streamWantsRead(id: number): void {
    const stream = this.streams.get(id);
    if (stream === undefined || stream.wantRead) return;
    stream.wantRead = true;
    this.wantsService = true;
    this.readWanted = true;
  }

  /**
   * Writes `chunk` (and the end when `fin`): true when quiche took it all (call the write callback
   * now), false when the rest is parked (a 'writeDone' or 'streamFailed' event follows), or the
   * error that failed the stream.
   */
  streamWrite(id: number, chunk: Buffer, fin: boolean): WriteResult {
    const stream = this.streams.get(id);
    if (stream === undefined || this.closed) return this.closed ? this.closedError() : new PnetError('ERR_STREAM_RESET', `stream ${id} is no longer open`);
    if (fin && chunk.length === 0 && stream.writeEnded) return true; // the FIN already left with the last data
    let written: number | null = null;
    try {
      // While other writes are parked, one more into no capacity would only queue another DATA_BLOCKED.
      const room = chunk.length === 0 || this.blocked.size === 0 || this.hasSendRoom(stream);
      if (room && (chunk.length > 0 || !fin || this.finCanLeave(stream))) {
        written = this.quiche.streamSend(id, chunk, fin);
        if (written === null && this.collected(stream)) return this.failStream(stream, this.goneError(stream));
      }
    } catch (error) {
      return this.failStream(stream, this.streamError(error));
    }
    if (!this.streams.has(id)) return this.lastFailure ?? this.closedError(); // finCanLeave found the stream gone
    this.wrote = true;
    // A stream's end leaves at once: nothing is likely to join it.
    if (fin) this.raise(Transmit.NOW);
    else this.wantsService = true;
    // null: no room at all (and a fin on an empty chunk was not applied either).
    const taken = written ?? -1;
    if (taken > 0) stream.queuedAt = this.transmits;
    if (taken === chunk.length || (chunk.length === 0 && !fin)) {
      if (fin) this.endWrite(stream);
      return true;
    }
    // Flow control: keep the rest (and the fin) until quiche has room.
    stream.pendingChunk = taken <= 0 ? chunk : chunk.subarray(taken);
    stream.pendingFin = fin;
    this.blocked.add(stream);
    return false;
  }

  /** end() was called while the parked write of `id` is the last one: that write carries the FIN. */
  streamEnding(id: number): void {
    const stream = this.streams.get(id);
    if (stream !== undefined && stream.pendingChunk !== null) stream.finWithPending = true;
  }

  /** Local reset or destroy: stop both directions, tell the peer (code); the stream is forgotten (the driver fails a parked write). */
  streamReset(id: number, code: number): void {
    const stream = this.streams.get(id);
    if (stream === undefined) return;
    if (!this.closed) {
      try {
        if (!stream.readEnded) {
          this.discardUnread(id);
          this.quiche.streamShutdown(id, SHUTDOWN_READ, code);
          if (stream.writeEnded) this.noteAbandoned(id);
        }
      } catch {
        // already finished in quiche
      }
      try {
        if (!stream.writeEnded) this.quiche.streamShutdown(id, SHUTDOWN_WRITE, code);
      } catch {
        // already finished in quiche
      }
      this.wrote = true;
      this.wantsService = true;
    }
    this.unblock(stream);
    this.streams.delete(id);
    this.noteRelease();
  }

  /**
   * Reads and drops what quiche holds unread for stream `id` before its read side is shut: quiche
   * 0.18 never gives the connection window back for bytes a read shutdown clears, so held streams
   * refused with unread bytes used it up for good (16 MiB and the peer could send nothing more).
   * At most the stream's window (bounded); a reset or finished stream ends the loop.
   */
  private discardUnread(id: number): void {
    if (!this.quiche.streamReadable(id)) return;
    const scratch = discardBuffer ??= Buffer.allocUnsafe(MAX_READ);
    for (;;) {
      let result: [number, boolean] | null;
      try {
        result = this.quiche.streamRecv(id, scratch);
      } catch {
        return; // reset by the peer (quiche cleared it) or already collected
      }
      if (result === null) return;
      this.discardedBytes += result[0];
      if (result[1]) return;
    }
  }

  /**
   * A stream's read side was shut after its FIN left. When the peer's final size (its RESET_STREAM,
   * quiche's answer to our STOP_SENDING) comes after that FIN's ACK, quiche 0.18 never collects the
   * stream: an opener that ignores REJECTs leaves one per stream. Checked in batches (amortised);
   * at ABANDONED_STREAM_LIMIT left over, the connection is closed gracefully.
   */
  private noteAbandoned(id: number): void {
    this.abandoned.add(id);
    if (this.abandoned.size < this.nextAbandonedScan || this.closing) return;
    let stuck = 0;
    for (const held of this.abandoned) {
      try {
        this.quiche.streamCapacity(held);
      } catch (error) {
        if (classifyQuicheError(error).kind === 'InvalidStreamState') {
          this.abandoned.delete(held); // collected
          continue;
        }
      }
      if (this.quiche.streamFinished(held)) stuck++; // final size known, still kept: never collected now
    }
    this.nextAbandonedScan = Math.max(ABANDONED_STREAM_LIMIT, this.abandoned.size + ABANDONED_SCAN_STEP);
    if (stuck < ABANDONED_STREAM_LIMIT) return;
    this.abandonedClose = true;
    this.close({ reason: 'streams left open' }, this.now);
  }

  /** Queues a QUIC DATAGRAM (RFC 9221); false (and counted) when it cannot be queued. */
  sendDatagram(data: Uint8Array): boolean {
    if (!this.established || this.closed) {
      this.droppedDatagrams++;
      return false;
    }
    try {
      if (this.quiche.dgramSend(data) === null) {
        this.droppedDatagrams++;
        return false;
      }
    } catch {
      this.droppedDatagrams++; // too large for the path, or the peer takes no datagrams
      return false;
    }
    this.wrote = true;
    this.wantsService = true;
    return true;
  }

  /** Closes the connection; graceful: first waits (until timeoutMs) for streams to finish and their last bytes to be acknowledged. */
  close(options: MachineCloseOptions, now: number): void {
    this.now = now;
    if (this.closeRequest !== undefined || this.closed) return;
    this.closeRequest = options;
    const { graceful = true, timeoutMs = 5000 } = options;
    if (!this.established) {
      this.quicheClose(options);
      this.abort(new PnetError('ERR_CONNECTION_CLOSED', 'connection closed before the handshake completed'));
      return;
    }
    if (!graceful) {
      this.finishClose();
      return;
    }
    this.closeDeadline = now + timeoutMs;
    this.wantsService = true;
  }

  // ---- service --------------------------------------------------------------

  /** Runs what inputs made possible; queues events (call order, step 2). */
  service(now: number): void {
    this.now = now;
    this.wantsService = false;
    this.readWanted = false;
    if (this.closed) return;
    if (!this.established && this.quiche.isEstablished()) this.completeHandshake();
    if (this.established && !this.closed) {
      if (this.blocked.size > 0) this.retryBlocked();
      this.findReadable();
      if (this.creditWanted) this.reportCredit();
      if (this.datagramsIn) this.receiveDatagrams();
      if (this.closeRequest !== undefined && this.streams.size === 0 && this.allAcked()) this.finishClose();
    }
    if (!this.closed && (this.quiche.isClosed() || this.quiche.isDraining())) this.terminate();
  }

  /** Next event, or undefined (call order, step 3). */
  pollEvent(): MachineEvent | undefined {
    if (this.eventHead >= this.events.length && this.recheckReadable) {
      // The probed streams were read while the events were handled: only now does isReadable() tell of others.
      this.recheckReadable = false;
      if (!this.closed && this.quiche.isReadable()) this.listReadable(false);
    }
    if (this.eventHead >= this.events.length) {
      if (this.eventHead > 0) {
        this.events.length = 0;
        this.eventHead = 0;
      }
      return undefined;
    }
    return this.events[this.eventHead++];
  }

  /**
   * How soon to transmit after a service() and its events (call order, step 4). Data goes out now,
   * except when a peer stream just ended and the application wrote: then once this tick's
   * nextTicks ran, so that a stream the application ends in answer (a pipe: 'end' and end() come
   * in nextTicks) sends its FIN with its last data rather than alone. Only ACKs otherwise: the
   * next loop turn, so that a reply written in a later tick carries them.
   */
  pollWake(): Transmit {
    const finDelivered = this.finDelivered;
    this.finDelivered = false;
    // Writes made while the events were handled leave with this transmit; a consumer that asked
    // for data meanwhile, or a graceful close that may now be done, needs one more service().
    this.wantsService = this.closeCheck || this.readWanted;
    this.closeCheck = false;
    let wake: Transmit;
    if (this.wrote && finDelivered && this.established) wake = Transmit.AFTER_TICKS;
    else if (this.wrote || !this.established) wake = Transmit.NOW;
    else wake = Transmit.NEXT_TURN;
    this.urgency = wake;
    return wake;
  }

  /** Writes the next datagram to send into `buffer`: its length, or null when none is left. */
  pollTransmit(buffer: Buffer): number | null {
    if (!this.transmitting) {
      this.transmitting = true;
      this.wrote = false;
      this.transmits++;
    }
    let sent: [number, native.SendInfo] | null;
    try {
      sent = this.quiche.send(buffer);
    } catch {
      sent = null;
    }
    if (sent === null) {
      this.transmitting = false;
      this.urgency = Transmit.NONE;
      return null;
    }
    if (this.closingPackets >= 0 && ++this.closingPackets > CLOSING_PACKETS) {
      this.closingSendsCut = true;
      this.transmitting = false;
      this.urgency = Transmit.NONE;
      return null;
    }
    this.sentSinceRecv += sent[0];
    return sent[0];
  }

  /** The next deadline in the caller's units, or null (call order, step 5). */
  pollTimeout(now: number): number | null {
    if (this.finished) return null;
    const relative = this.quiche.timeout();
    let at = relative === null ? Infinity : now + relative;
    if (!this.closed) {
      if (!this.established && this.handshakeDeadline < at) at = this.handshakeDeadline;
      if (this.closeDeadline < at) at = this.closeDeadline;
      if (this.established && this.silenceDeadline < at) at = this.silenceDeadline;
    }
    return at === Infinity ? null : at;
  }

  // ---- reading ---------------------------------------------------------------

  /**
   * Reads what quiche holds for stream `id` into the shared pool and hands each chunk to `push`
   * (false: the consumer is full, stop until `streamWantsRead`); null for the end.
   */
  streamRead(id: number, push: (chunk: Buffer | null) => boolean): void {
    const stream = this.streams.get(id);
    if (stream === undefined || stream.readEnded || !stream.wantRead) return;
    const pool = this.options.readPool;
    for (;;) {
      if (READ_POOL_SIZE - pool.offset < 16 * 1024) {
        // Chunks handed out are views of the pool, so a full pool is replaced, never reused.
        pool.buffer = Buffer.allocUnsafe(READ_POOL_SIZE);
        pool.offset = 0;
      }
      const start = pool.offset;
      const view = pool.buffer.subarray(start, Math.min(READ_POOL_SIZE, start + MAX_READ));
      let result: [number, boolean] | null;
      try {
        result = this.quiche.streamRecv(id, view);
      } catch (error) {
        stream.readEnded = true;
        this.failStream(stream, this.streamError(error));
        return;
      }
      if (result === null) return;
      const [length, fin] = result;
      let more = true;
      if (length > 0) {
        pool.offset = start + length;
        more = push(view.subarray(0, length));
      }
      if (fin) {
        stream.readEnded = true;
        this.finDelivered = true;
        push(null);
        this.maybeRelease(stream);
        return;
      }
      if (!more) {
        stream.wantRead = false;
        return;
      }
    }
  }

  private findReadable(): void {
    const quiche = this.quiche;
    if (this.streams.size <= PROBE_LIMIT) {
      let found = false;
      for (const stream of this.streams.values()) {
        if (stream.wantRead && !stream.readEnded && quiche.streamReadable(stream.id)) {
          this.push({ type: 'readable', id: stream.id });
          found = true;
        }
      }
      // New peer streams arrive in id order almost always: probe the next expected id.
      while (quiche.streamReadable(this.nextRemoteStreamId)) {
        this.acceptRemote(this.nextRemoteStreamId);
        found = true;
      }
      // Streams found are read during the events, so whether quiche holds more is asked after them.
      if (found) this.recheckReadable = true;
      else if (quiche.isReadable()) this.listReadable(true);
      return;
    }
    this.listReadable(false);
  }

  /** Many streams, or one that arrived out of order: ask quiche which are readable (probed: known streams were probed already). */
  private listReadable(probed: boolean): void {
    for (const id of this.quiche.readable()) {
      const stream = this.streams.get(id);
      if (stream === undefined) {
        if (this.isNewRemoteId(id)) this.acceptRemote(id);
      } else if (!probed && stream.wantRead && !stream.readEnded) {
        this.push({ type: 'readable', id });
      }
    }
  }

  private isNewRemoteId(id: number): boolean {
    if ((id & 3) !== (this.nextRemoteStreamId & 3)) return false;
    return id >= this.nextRemoteStreamId || this.skippedRemoteIds.has(id);
  }

  private acceptRemote(id: number): void {
    if (id >= this.nextRemoteStreamId) {
      for (let skipped = this.nextRemoteStreamId; skipped < id; skipped += 4) this.skippedRemoteIds.add(skipped);
      this.nextRemoteStreamId = id + 4;
    } else {
      this.skippedRemoteIds.delete(id);
    }
    this.track(id);
    this.push({ type: 'streamOpened', id });
    this.push({ type: 'readable', id });
  }

  private track(id: number): void {
    this.streams.set(id, {
      id,
      pendingChunk: null,
      pendingFin: false,
      finWithPending: false,
      queuedAt: -1,
      wantRead: true,
      readEnded: false,
      writeEnded: false,
    });
  }

  // ---- writing and the FIN policy --------------------------------------------

  private retryBlocked(): void {
    for (const stream of this.blocked) {
      const chunk = stream.pendingChunk!;
      // The rest of the last write, with end() already called: its FIN goes with these bytes rather
      // than alone after them (a FIN-only frame can be lost to quiche 0.18, see finCanLeave).
      const fin = stream.pendingFin || stream.finWithPending;
      if (chunk.length === 0 && !this.finCanLeave(stream)) continue;
      if (chunk.length > 0 && !this.hasSendRoom(stream)) continue;
      if (!this.streams.has(stream.id)) continue; // finCanLeave found the stream gone
      let written: number | null;
      try {
        written = this.quiche.streamSend(stream.id, chunk, fin);
      } catch (error) {
        this.failStream(stream, this.streamError(error));
        continue;
      }
      if (written === null && this.collected(stream)) {
        this.failStream(stream, this.goneError(stream));
        continue;
      }
      const taken = written ?? -1;
      if (taken > 0 || (taken === 0 && fin)) this.wrote = true;
      if (taken > 0) stream.queuedAt = this.transmits;
      if (taken !== chunk.length) {
        if (taken > 0) stream.pendingChunk = chunk.subarray(taken);
        continue;
      }
      this.unblock(stream);
      if (fin) this.endWrite(stream);
      this.push({ type: 'writeDone', id: stream.id });
    }
  }

  /**
   * Whether a FIN alone can be handed to quiche now. quiche 0.18 collects a stream as soon as it
   * knows the final size and all data is acknowledged, so a FIN-only frame still queued (behind
   * the congestion window) when the last data's ACK arrives is never sent, and the peer's stream
   * never ends. Otherwise the FIN waits in `blocked` until ACKs make room. A stream quiche no
   * longer has (collected after the peer stopped or reset it) is failed and released here.
   */
  private finCanLeave(stream: StreamState): boolean {
    // Data of this stream written since the last transmit is still queued: the FIN goes with it.
    if (stream.queuedAt === this.transmits) return true;
    let capacity: number;
    try {
      capacity = this.quiche.streamCapacity(stream.id);
    } catch (error) {
      if (classifyQuicheError(error).kind !== 'InvalidStreamState') return true; // streamSend reports why (stopped, reset)
      // Collected (the peer stopped it and quiche finished it): the FIN can never leave.
      this.failStream(stream, this.goneError(stream));
      return false;
    }
    // quiche's capacity is the congestion window left at its last recv() less the data written
    // since; the packets sent since then also used it: count them too, so that the estimate is
    // never above the window really left. A packet's worth of room lets the FIN leave at once,
    // in the next packet: urgency 0 puts it ahead of every other stream's data.
    if (capacity - this.sentSinceRecv < FIN_ROOM) return false;
    this.quiche.streamPriority(stream.id, 0, false);
    return true;
  }

  /**
   * Whether quiche would take any of a parked write now. A streamSend beyond the connection's
   * credit makes quiche 0.18 queue a DATA_BLOCKED, which the peer acknowledges, whose ACK brings
   * the next service and retry: retried blindly, a blocked connection ping-pongs at loop speed
   * (~2,400 packets/s each way measured) for as long as the block lasts.
   */
  private hasSendRoom(stream: StreamState): boolean {
    let capacity: number;
    try {
      capacity = this.quiche.streamCapacity(stream.id);
    } catch {
      return true; // stopped or collected: streamSend reports which
    }
    if (capacity > 0) return true;
    this.blockedRetriesSkipped++;
    return false;
  }

  /**
   * Whether quiche has collected the stream: streamSend then answers Done (null) for ever, as if
   * there were no room, so a write parked on it would be retried for ever (the relay "leak at hops").
   */
  private collected(stream: StreamState): boolean {
    try {
      this.quiche.streamCapacity(stream.id);
      return false;
    } catch (error) {
      return classifyQuicheError(error).kind === 'InvalidStreamState';
    }
  }

  private goneError(stream: StreamState): PnetError {
    return new PnetError('ERR_STREAM_RESET', `stream ${stream.id} was stopped by peer ${this.remoteNodeId}: quiche finished it before this write`);
  }

  private unblock(stream: StreamState): void {
    stream.pendingChunk = null;
    stream.pendingFin = false;
    stream.finWithPending = false;
    this.blocked.delete(stream);
  }

  private endWrite(stream: StreamState): void {
    stream.writeEnded = true;
    this.maybeRelease(stream);
  }

  /** Releases the stream and reports `error` (a parked write fails with it); returns it. */
  private failStream(stream: StreamState, error: PnetError): PnetError {
    this.unblock(stream);
    this.lastFailure = error;
    if (this.streams.delete(stream.id)) {
      this.push({ type: 'streamFailed', id: stream.id, error });
      this.noteRelease();
    }
    return error;
  }

  private noteRelease(): void {
    if (this.closeRequest !== undefined && this.streams.size === 0) this.closeCheck = true;
  }

  private maybeRelease(stream: StreamState): void {
    if (!stream.readEnded || !stream.writeEnded) return;
    const now = this.now;
    this.finishing.set(stream.id, now);
    // Data unacknowledged for that long means the connection is dead anyway: forget old entries unchecked.
    for (const [id, at] of this.finishing) {
      if (at > now - FINISHING_MEMORY_MS) break;
      this.finishing.delete(id);
    }
    this.streams.delete(stream.id);
    this.push({ type: 'released', id: stream.id });
    this.noteRelease();
  }

  /** Forgets finished streams quiche has collected (all their data acknowledged); true when none is left. */
  private allAcked(): boolean {
    for (const id of this.finishing.keys()) {
      try {
        this.quiche.streamCapacity(id);
      } catch {
        this.finishing.delete(id); // collected
      }
    }
    return this.finishing.size === 0;
  }

  private reportCredit(): void {
    const count = this.quiche.peerStreamsLeftBidi();
    if (count <= 0) return;
    this.creditWanted = false;
    this.push({ type: 'streamCredit', count });
  }

  private receiveDatagrams(): void {
    this.datagramsIn = false;
    for (;;) {
      const data = this.quiche.dgramRecvVec();
      if (data === null) return;
      this.push({ type: 'datagram', data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) });
    }
  }

  // ---- handshake and close ----------------------------------------------------

  private completeHandshake(): void {
    let peer: NodeId;
    try {
      peer = verifyPeerCertificate(this.quiche.peerCertChain());
    } catch (error) {
      const failure = error instanceof PnetError ? error : new PnetError('ERR_PEER_CERTIFICATE', String(error));
      this.quiche.close(false, CRYPTO_BAD_CERTIFICATE, Buffer.from('bad certificate'));
      this.abort(failure);
      return;
    }
    const expected = this.options.expectedNodeId;
    if (expected !== undefined && peer !== expected) {
      this.quiche.close(false, CRYPTO_BAD_CERTIFICATE, Buffer.from('unexpected node id'));
      const { host, port } = this.options.remote;
      this.abort(new PnetError('ERR_PEER_ID_MISMATCH', `expected node ${expected} at ${host}:${port}, but ${peer} answered`));
      return;
    }
    this.remoteNodeId = peer;
    this.established = true;
    this.push({ type: 'established', peer });
  }

  private quicheClose(options: MachineCloseOptions): void {
    if (this.closingPackets < 0) this.closingPackets = 0;
    try {
      this.quiche.close(true, options.code ?? 0, Buffer.from(options.reason ?? ''));
    } catch {
      // already closing in quiche
    }
  }

  private finishClose(): void {
    if (this.closed) return;
    this.quicheClose(this.closeRequest ?? {});
    this.closeError = undefined;
    this.wrote = true;
    this.raise(Transmit.NOW);
    this.terminate();
  }

  /** Fails the connection from our side (handshake failure, timeout). */
  private get silenceDeadline(): number {
    const silence = this.options.silenceTimeoutMs;
    return silence === undefined ? Infinity : this.lastActivity + silence + this.stalledMs;
  }

  private abort(error: PnetError): void {
    if (this.closed) return;
    this.closeError = error;
    if (this.closingPackets < 0) this.closingPackets = 0;
    try {
      if (!this.quiche.isClosed() && !this.quiche.isDraining()) this.quiche.close(false, 0, Buffer.from(error.code));
    } catch {
      // already closing
    }
    this.wrote = true;
    this.raise(Transmit.NOW);
    this.terminate();
  }

  /** The connection is over for the application: fail streams, report close. */
  private terminate(): void {
    if (this.closed) return;
    this.closed = true;
    const error = this.closeError ?? this.remoteCloseError();
    this.closeError = error;
    const streamFailure = error ?? new PnetError('ERR_CONNECTION_CLOSED', 'connection closed');
    for (const stream of [...this.streams.values()]) this.failStream(stream, streamFailure);
    this.push({ type: 'closed', error });
  }

  /** Why quiche closed, as a PnetError; undefined for a clean application close. */
  private remoteCloseError(): PnetError | undefined {
    const { host, port } = this.options.remote;
    if (this.quiche.isTimedOut()) {
      return new PnetError('ERR_IDLE_TIMEOUT', `peer ${this.remoteNodeId ?? `${host}:${port}`} went silent (idle timeout)`);
    }
    const peer = this.quiche.peerError();
    const local = this.quiche.localError();
    const failure = peer ?? local;
    if (failure === null) return undefined;
    const reason = Buffer.from(failure.reason).toString('utf8');
    if (failure.isApp && failure.errorCode === 0) return undefined;
    if (!this.established) {
      return new PnetError('ERR_HANDSHAKE', `QUIC handshake failed: ${peer ? 'peer' : 'local'} error 0x${failure.errorCode.toString(16)}${reason ? ` (${reason})` : ''}`);
    }
    return new PnetError('ERR_CONNECTION_CLOSED', `connection closed by ${peer ? 'peer' : 'us'} with ${failure.isApp ? 'application' : 'transport'} code ${failure.errorCode}${reason ? ` (${reason})` : ''}`);
  }

  /** The error for operations on a closed or closing connection. */
  closedError(): PnetError {
    return this.closeError ?? new PnetError('ERR_CONNECTION_CLOSED', 'connection is closed');
  }

  private streamError(error: unknown): PnetError {
    const failure = classifyQuicheError(error);
    if (failure.kind === 'StreamReset' || failure.kind === 'StreamStopped') {
      const how = failure.kind === 'StreamReset' ? 'reset' : 'stopped';
      return new PnetError('ERR_STREAM_RESET', `stream ${how} by peer ${this.remoteNodeId} with code ${failure.code}`, { resetCode: failure.code });
    }
    return new PnetError('ERR_STREAM_RESET', `stream failed: ${failure.kind === 'Other' ? failure.text : failure.kind}`);
  }

  private raise(urgency: Transmit): void {
    if (urgency > this.urgency) this.urgency = urgency;
  }

  private push(event: MachineEvent): void {
    this.events.push(event);
  }
}
