import { EventEmitter } from 'node:events';
import type { native } from '@matrixai/quic';
import { PnetError } from '../../errors.js';
import { verifyPeerCertificate } from '../../identity/index.js';
import type { NodeId } from '../../identity/index.js';
import type { CloseOptions, Connection, ConnectionEvents, SocketAddress } from '../types.js';
import { QuicStream } from './stream.js';
import { StreamInbox } from '../inbox.js';

type QuicheConnection = native.Connection;
type HostPort = native.Host;

const SHUTDOWN_READ = 0;
const SHUTDOWN_WRITE = 1;
/** TLS bad_certificate alert as a QUIC crypto error (0x100 + 42). */
const CRYPTO_BAD_CERTIFICATE = 0x100 + 42;
const EMPTY = Buffer.alloc(0);
const MAX_READ = 64 * 1024;
/** How long a finished stream is remembered for a graceful close to wait on its last bytes. */
const FINISHING_MEMORY_MS = 10_000;
/** Congestion window room a FIN-only write waits for: one full packet (see finCanLeave). */
const FIN_ROOM = 1350;
/** Below this many streams, probing each is cheaper than quiche's readable() iterator. */
const PROBE_LIMIT = 8;

/** What a connection needs from the endpoint: the socket, scheduling and the id map. */
export interface ConnectionHost {
  /**
   * Sends datagrams for this connection now (drains quiche's send queue). It calls
   * `connection.flushing()` first and adds each packet's length to `connection.sentSinceRecv`.
   */
  flush(connection: QuicConnection): void;
  /** Asks for `process()` soon (after the current batch of writes). */
  schedule(connection: QuicConnection): void;
  /** Drains sends now, or at the end of the current `process()` if one is running for it. */
  flushSoon(connection: QuicConnection): void;
  /** Drains sends after the application had a chance to write (next loop turn), or before the next datagram in. */
  flushLater(connection: QuicConnection): void;
  /** Drains sends once the current tick's nextTicks ran (before any I/O). */
  flushAfterTicks(connection: QuicConnection): void;
  /** An established outbound connection ends: keep its TLS session for the next dial there. */
  saveSession(connection: QuicConnection): void;
  /** The connection is gone: forget its ids. */
  forget(connection: QuicConnection): void;
  readonly localAddress: SocketAddress;
  readonly localNodeId: NodeId;
  /** Receive buffer shared by the endpoint's connections; chunks pushed to streams are slices of it. */
  readonly readPool: { buffer: Buffer; offset: number };
}

export const READ_POOL_SIZE = 256 * 1024;

export interface QuicConnectionOptions {
  expectedNodeId?: NodeId;
  handshakeTimeoutMs: number;
  streamOpenTimeoutMs: number;
}

type StreamWaiter = { resolve: () => void; reject: (error: PnetError) => void; timer: NodeJS.Timeout };

/**
 * Bookkeeping for one QUIC connection over a quiche connection: handshake and
 * peer verification, stream table, reads, pending writes, the one re-armed
 * timer, close. It never touches the socket: the host flushes datagrams.
 */
export class QuicConnection extends EventEmitter<ConnectionEvents> implements Connection {
  readonly transport = 'quic' as const;
  readonly direction: 'inbound' | 'outbound';
  readonly quiche: QuicheConnection;
  readonly remoteAddress: SocketAddress;
  /** The recvInfo passed to quiche, reused for every datagram from the peer. */
  readonly recvInfo: { from: HostPort; to: HostPort };
  /** Connection-id keys under which the endpoint maps this connection. */
  readonly keys: string[] = [];
  remoteNodeId!: NodeId;
  /** Set once quiche reports the handshake done and the certificate checked out. */
  established = false;
  closed = false;
  lastActivity = 0;

  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (error: PnetError) => void;

  private readonly host: ConnectionHost;
  private readonly options: QuicConnectionOptions;
  private readonly streams = new Map<number, QuicStream>();
  private readonly blocked = new Set<QuicStream>();
  private readonly streamWaiters: StreamWaiter[] = [];
  /** Streams fully ended on our side whose last bytes quiche may still be sending: id → when. */
  private readonly finishing = new Map<number, number>();
  private readonly skippedRemoteIds = new Set<number>();
  private readonly inbox: StreamInbox<QuicStream>;
  private nextLocalStreamId: number;
  private nextRemoteStreamId: number;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closingPromise: Promise<void> | undefined;
  private drained: (() => void) | undefined;
  private closeError: PnetError | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;

  constructor(
    host: ConnectionHost,
    quiche: QuicheConnection,
    direction: 'inbound' | 'outbound',
    remote: SocketAddress,
    options: QuicConnectionOptions,
  ) {
    super();
    this.host = host;
    this.quiche = quiche;
    this.direction = direction;
    this.remoteAddress = remote;
    this.options = options;
    this.recvInfo = { from: { host: remote.host, port: remote.port }, to: host.localAddress };
    // Client-initiated bidirectional ids are 0 mod 4, server-initiated 1 mod 4.
    this.nextLocalStreamId = direction === 'outbound' ? 0 : 1;
    this.nextRemoteStreamId = direction === 'outbound' ? 1 : 0;
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined);
    this.inbox = new StreamInbox<QuicStream>(this as EventEmitter);
    this.handshakeTimer = setTimeout(() => {
      this.handshakeTimer = undefined;
      if (!this.established) {
        this.abort(new PnetError('ERR_CONNECT_TIMEOUT', `QUIC handshake with ${remote.host}:${remote.port} did not complete within ${options.handshakeTimeoutMs} ms`));
      }
    }, options.handshakeTimeoutMs);
  }

  get localNodeId(): NodeId {
    return this.host.localNodeId;
  }

  get localAddress(): SocketAddress {
    return this.host.localAddress;
  }

  get connectionKey(): string {
    return Buffer.from(this.direction === 'outbound' ? this.quiche.sourceId() : this.quiche.destinationId()).toString('hex');
  }

  /** True from the moment close() is called (or the connection failed): no new streams. */
  get closing(): boolean {
    return this.closed || this.closingPromise !== undefined;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get resumed(): boolean {
    return this.quiche.isResumed();
  }

  rttMs(): number {
    // The binding reports quiche's smoothed RTT in whole milliseconds.
    return this.quiche.pathStats()[0]?.rtt ?? 0;
  }

  /** Feeds one datagram (decrypted in place by quiche). */
  receive(datagram: Buffer, now: number): void {
    try {
      this.quiche.recv(datagram, this.recvInfo);
      this.sentSinceRecv = 0;
      this.lastActivity = now;
    } catch {
      // A datagram quiche cannot use (garbage, duplicate, wrong keys) is dropped; the connection lives on.
    }
  }

  /**
   * Runs everything that may have become possible after datagrams arrived,
   * a timer fired or the application wrote: handshake completion, pending
   * writes, reads, new peer streams; then sends and re-arms the timer.
   */
  process(): void {
    if (this.closed) return;
    if (!this.established && this.quiche.isEstablished()) this.completeHandshake();
    if (this.established) {
      if (this.blocked.size > 0) this.retryBlocked();
      this.readStreams();
      if (this.streamWaiters.length > 0) this.wakeStreamWaiters();
      if (this.acked !== undefined && this.allAcked()) this.acked();
    }
    // Data goes out now, except when a peer stream just ended: then once this tick's nextTicks
    // ran, so that a stream the application ends in answer (a pipe: 'end' and end() come in
    // nextTicks) sends its FIN with its last data rather than alone. A FIN-only frame lost after
    // the data was acknowledged is never retransmitted by quiche 0.18 (docs/TRANSPORT.md), and
    // loopback drops datagrams when a burst overflows the socket buffer. (Deferring every flush
    // this way cost ~15% of throughput and round trips.)
    // Only an ACK is left otherwise: it waits a moment, so that a reply the application writes in
    // a later tick (a nextTick, a promise) carries it instead of a packet of its own.
    const finDelivered = this.finDelivered;
    this.finDelivered = false;
    if (this.wrote && finDelivered && this.established) {
      this.host.flushAfterTicks(this);
    } else if (this.wrote || !this.established) {
      this.host.flush(this);
    } else {
      this.host.flushLater(this);
    }
    if (this.quiche.isClosed() || this.quiche.isDraining()) this.terminate();
    else this.armTimer();
  }

  /** quiche was given something to send since the last flush. */
  wrote = false;
  /** Bytes of packets sent since quiche last read a datagram (the host adds them in flush). */
  sentSinceRecv = 0;
  /** Flushes so far: a stream whose data went to quiche after the last one still has it queued. */
  flushes = 0;
  /** A peer stream's end was handed to the application in this process(). */
  private finDelivered = false;

  /** The host starts draining quiche's packets. */
  flushing(): void {
    this.wrote = false;
    this.flushes++;
  }

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
      this.abort(new PnetError('ERR_PEER_ID_MISMATCH', `expected node ${expected} at ${this.remoteAddress.host}:${this.remoteAddress.port}, but ${peer} answered`));
      return;
    }
    this.remoteNodeId = peer;
    this.established = true;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.resolveReady();
  }

  // ---- streams ----------------------------------------------------------

  async openStream(options?: { timeoutMs?: number }): Promise<QuicStream> {
    for (;;) {
      if (this.closing) throw this.closedError();
      if (this.quiche.peerStreamsLeftBidi() > 0) {
        const id = this.nextLocalStreamId;
        try {
          // A zero-length send creates the stream in quiche, claiming its slot in the peer's limit.
          this.quiche.streamSend(id, EMPTY, false);
        } catch (error) {
          if (!String(error).includes('StreamLimit')) throw new PnetError('ERR_STREAM_LIMIT', `cannot open stream: ${String(error)}`);
          await this.waitForStreamCredit(options?.timeoutMs);
          continue;
        }
        this.nextLocalStreamId += 4;
        return this.track(id);
      }
      await this.waitForStreamCredit(options?.timeoutMs);
    }
  }

  private waitForStreamCredit(timeoutMs = this.options.streamOpenTimeoutMs): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: StreamWaiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const index = this.streamWaiters.indexOf(waiter);
          if (index >= 0) this.streamWaiters.splice(index, 1);
          reject(new PnetError('ERR_STREAM_LIMIT', `peer ${this.remoteNodeId} allows no more streams; none freed within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.streamWaiters.push(waiter);
    });
  }

  private wakeStreamWaiters(): void {
    let credit = this.quiche.peerStreamsLeftBidi();
    while (credit-- > 0 && this.streamWaiters.length > 0) {
      const waiter = this.streamWaiters.shift()!;
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
  }

  private track(id: number): QuicStream {
    const stream = new QuicStream(this, id);
    this.streams.set(id, stream);
    return stream;
  }

  private readStreams(): void {
    const quiche = this.quiche;
    if (this.streams.size <= PROBE_LIMIT) {
      for (const stream of this.streams.values()) {
        if (stream.wantRead && !stream.readEnded && quiche.streamReadable(stream.streamId)) this.readStream(stream);
      }
      // New peer streams arrive in id order almost always: probe the next expected id.
      while (quiche.streamReadable(this.nextRemoteStreamId)) {
        const stream = this.acceptRemote(this.nextRemoteStreamId);
        if (stream) this.readStream(stream);
      }
      if (!quiche.isReadable()) return;
    }
    // Many streams, or one that arrived out of order: ask quiche which are readable.
    for (const id of quiche.readable()) {
      let stream = this.streams.get(id);
      if (stream === undefined) {
        if (!this.isNewRemoteId(id)) continue;
        stream = this.acceptRemote(id);
        if (stream === undefined) continue;
      }
      if (stream.wantRead && !stream.readEnded) this.readStream(stream);
    }
  }

  private isNewRemoteId(id: number): boolean {
    if ((id & 3) !== (this.nextRemoteStreamId & 3)) return false;
    return id >= this.nextRemoteStreamId || this.skippedRemoteIds.has(id);
  }

  private acceptRemote(id: number): QuicStream | undefined {
    if (id >= this.nextRemoteStreamId) {
      for (let skipped = this.nextRemoteStreamId; skipped < id; skipped += 4) this.skippedRemoteIds.add(skipped);
      this.nextRemoteStreamId = id + 4;
    } else {
      this.skippedRemoteIds.delete(id);
    }
    const stream = this.track(id);
    this.inbox.deliver(stream);
    return stream.destroyed ? undefined : stream;
  }

  private readStream(stream: QuicStream): void {
    const quiche = this.quiche;
    const id = stream.streamId;
    const pool = this.host.readPool;
    for (;;) {
      if (READ_POOL_SIZE - pool.offset < 16 * 1024) {
        // Pushed chunks are views of the pool, so a full pool is replaced, never reused.
        pool.buffer = Buffer.allocUnsafe(READ_POOL_SIZE);
        pool.offset = 0;
      }
      const start = pool.offset;
      const view = pool.buffer.subarray(start, Math.min(READ_POOL_SIZE, start + MAX_READ));
      let result: [number, boolean] | null;
      try {
        result = quiche.streamRecv(id, view);
      } catch (error) {
        stream.readEnded = true;
        this.release(stream);
        stream.fail(streamError(error, this.remoteNodeId));
        return;
      }
      if (result === null) return;
      const [length, fin] = result;
      let more = true;
      if (length > 0) {
        pool.offset = start + length;
        more = stream.push(view.subarray(0, length));
      }
      if (fin) {
        stream.readEnded = true;
        this.finDelivered = true;
        stream.push(null);
        this.maybeRelease(stream);
        return;
      }
      if (!more) {
        stream.wantRead = false;
        return;
      }
    }
  }

  /** Called by a stream whose consumer drained its buffer. */
  streamWantsRead(stream: QuicStream): void {
    if (!stream.released) this.host.schedule(this);
  }

  streamWrite(stream: QuicStream, chunk: Buffer, fin: boolean, callback: (error?: Error | null) => void): void {
    if (fin && chunk.length === 0 && stream.writeEnded) {
      callback(); // the FIN already left with the last data (retryBlocked)
      return;
    }
    if (stream.released || this.closed) {
      callback(stream.resetError ?? this.closedError());
      return;
    }
    let written: number | null = null;
    try {
      if (chunk.length > 0 || !fin || this.finCanLeave(stream)) written = this.quiche.streamSend(stream.streamId, chunk, fin);
    } catch (error) {
      const failure = streamError(error, this.remoteNodeId);
      this.release(stream);
      stream.fail(failure);
      callback(failure);
      return;
    }
    this.wrote = true;
    // null: no room at all (and a fin on an empty chunk was not applied either).
    const taken = written ?? -1;
    if (taken > 0) stream.queuedAt = this.flushes;
    if (taken === chunk.length || (chunk.length === 0 && !fin)) {
      if (fin) this.endWrite(stream);
      callback();
    } else {
      // Flow control: keep the rest (and the fin) until quiche has room.
      stream.pendingChunk = taken <= 0 ? chunk : chunk.subarray(taken);
      stream.pendingFin = fin;
      stream.pendingWriteLength = chunk.length;
      stream.pendingCallback = callback;
      this.blocked.add(stream);
    }
    // A stream's end leaves at once: nothing is likely to join it.
    if (fin) this.host.flushSoon(this);
    else this.host.schedule(this);
  }

  private retryBlocked(): void {
    for (const stream of this.blocked) {
      const chunk = stream.pendingChunk!;
      // The rest of the last write, with end() already called: its FIN goes with these bytes rather
      // than alone after them (a FIN-only frame can be lost to quiche 0.18, see finCanLeave).
      const fin = stream.pendingFin || (stream.writableEnded && stream.writableLength === stream.pendingWriteLength);
      if (chunk.length === 0 && !this.finCanLeave(stream)) continue;
      let written: number | null;
      try {
        written = this.quiche.streamSend(stream.streamId, chunk, fin);
      } catch (error) {
        const failure = streamError(error, this.remoteNodeId);
        const callback = this.unblock(stream);
        this.release(stream);
        stream.fail(failure);
        callback?.(failure);
        continue;
      }
      const taken = written ?? -1;
      if (taken > 0 || (taken === 0 && fin)) this.wrote = true;
      if (taken > 0) stream.queuedAt = this.flushes;
      if (taken !== chunk.length) {
        if (taken > 0) stream.pendingChunk = chunk.subarray(taken);
        continue;
      }
      const callback = this.unblock(stream);
      if (fin) this.endWrite(stream);
      callback?.();
    }
  }

  /**
   * Whether a FIN alone can be handed to quiche now. quiche 0.18 collects a stream as soon as it
   * knows the final size and all data is acknowledged, so a FIN-only frame still queued (behind
   * the congestion window) when the last data's ACK arrives is never sent, and the peer's stream
   * never ends. Otherwise the FIN waits in `blocked` until ACKs make room.
   */
  private finCanLeave(stream: QuicStream): boolean {
    // Data of this stream written since the last flush is still queued: the FIN goes with it.
    if (stream.queuedAt === this.flushes) return true;
    try {
      // quiche's capacity is the congestion window left at its last recv() less the data written
      // since; the packets sent since then also used it: count them too, so that the estimate is
      // never above the window really left. A packet's worth of room lets the FIN leave at once,
      // in the next packet: urgency 0 puts it ahead of every other stream's data.
      if (this.quiche.streamCapacity(stream.streamId) - this.sentSinceRecv < FIN_ROOM) return false;
      this.quiche.streamPriority(stream.streamId, 0, false);
      return true;
    } catch {
      return true; // a stream quiche no longer sends on: streamSend reports why
    }
  }

  private unblock(stream: QuicStream): ((error?: Error | null) => void) | null {
    const callback = stream.pendingCallback;
    stream.pendingChunk = null;
    stream.pendingCallback = null;
    stream.pendingFin = false;
    this.blocked.delete(stream);
    return callback;
  }

  private endWrite(stream: QuicStream): void {
    stream.writeEnded = true;
    this.maybeRelease(stream);
  }

  /** Local reset or destroy: stop both directions, tell the peer. */
  streamAbort(stream: QuicStream, code: number): void {
    if (stream.released) return;
    const id = stream.streamId;
    if (!this.closed) {
      try {
        if (!stream.readEnded) this.quiche.streamShutdown(id, SHUTDOWN_READ, code);
      } catch {
        // already finished in quiche
      }
      try {
        if (!stream.writeEnded) this.quiche.streamShutdown(id, SHUTDOWN_WRITE, code);
      } catch {
        // already finished in quiche
      }
      this.wrote = true;
      this.host.schedule(this);
    }
    const callback = this.unblock(stream);
    this.release(stream);
    callback?.(new PnetError('ERR_STREAM_RESET', `stream ${id} was reset locally`));
  }

  private maybeRelease(stream: QuicStream): void {
    if (stream.readEnded && stream.writeEnded) {
      const now = performance.now();
      this.finishing.set(stream.streamId, now);
      // Data unacknowledged for that long means the connection is dead anyway: forget old entries unchecked.
      for (const [id, at] of this.finishing) {
        if (at > now - FINISHING_MEMORY_MS) break;
        this.finishing.delete(id);
      }
      this.release(stream);
    }
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

  private release(stream: QuicStream): void {
    if (stream.released && !this.streams.has(stream.streamId)) return;
    stream.released = true;
    this.streams.delete(stream.streamId);
    if (this.streams.size === 0 && this.drained) this.drained();
  }

  // ---- timer and close --------------------------------------------------

  /** Sets the one timer to quiche's next deadline (after every process() and deferred flush). */
  armTimer(): void {
    const timeout = this.quiche.timeout();
    if (timeout === null) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Infinity;
      return;
    }
    const at = performance.now() + timeout;
    // Re-arm only when quiche wants us earlier; a timer firing early just re-checks.
    if (this.timer && this.timerAt <= at + 1) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.onTimer, Math.max(0, timeout));
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.closed && this.quiche.isClosed()) {
      this.dispose();
      return;
    }
    const remaining = this.quiche.timeout();
    if (remaining !== null && remaining > 1) {
      this.armTimer();
      return;
    }
    this.quiche.onTimeout();
    this.wrote = true; // loss recovery and ACK timers want their packets out now
    this.process();
    if (this.closed) this.finishIfQuicheClosed();
  };

  /** Keep-alive: an ack-eliciting packet so the peer's idle timer resets. */
  keepAlive(): void {
    if (!this.established || this.closed) return;
    this.quiche.sendAckEliciting();
    this.wrote = true;
    this.host.schedule(this);
  }

  close(options: CloseOptions = {}): Promise<void> {
    this.closingPromise ??= this.runClose(options);
    return this.closingPromise;
  }

  private async runClose(options: CloseOptions): Promise<void> {
    const { code = 0, reason = '', graceful = true, timeoutMs = 5000 } = options;
    const deadline = performance.now() + timeoutMs;
    if (!this.closed && !this.established) {
      this.quiche.close(true, code, Buffer.from(reason));
      this.abort(new PnetError('ERR_CONNECTION_CLOSED', 'connection closed before the handshake completed'));
    }
    if (graceful && !this.closed) {
      await this.drainStreams(deadline);
      await this.waitForAcks(deadline);
    }
    if (!this.closed) {
      try {
        this.quiche.close(true, code, Buffer.from(reason));
      } catch {
        // already closing in quiche
      }
      this.closeError = undefined;
      this.host.flush(this);
      this.terminate();
    }
    // quiche drains (absorbing late packets) on its timer; nobody needs to wait for that.
  }

  private drainStreams(deadline: number): Promise<void> {
    if (this.streams.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, deadline - performance.now()));
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.drained = undefined;
        resolve();
      }
      this.drained = done;
    });
  }

  /** Waits until quiche has collected the streams we finished (their last bytes acknowledged). */
  private waitForAcks(deadline: number): Promise<void> {
    if (this.closed || this.allAcked()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.acked = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, deadline - performance.now()));
      this.acked = done;
    });
  }

  private acked: (() => void) | undefined;


  /** Fails the connection from our side (handshake failure, timeout). */
  private abort(error: PnetError): void {
    if (this.closed) return;
    this.closeError = error;
    try {
      if (!this.quiche.isClosed() && !this.quiche.isDraining()) this.quiche.close(false, 0, Buffer.from(error.code));
    } catch {
      // already closing
    }
    this.host.flush(this);
    this.terminate();
  }

  /** The connection is over for the application: fail streams and waiters, emit close. */
  private terminate(): void {
    if (!this.closed) {
      this.closed = true;
      if (this.direction === 'outbound' && this.established) this.host.saveSession(this);
      if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
      this.handshakeTimer = undefined;
      const error = this.closeError ?? this.remoteCloseError();
      this.closeError = error;
      if (!this.established) this.rejectReady(error ?? new PnetError('ERR_HANDSHAKE', 'connection closed during the handshake'));
      const streamFailure = this.streams.size + this.streamWaiters.length === 0 ? undefined : (error ?? new PnetError('ERR_CONNECTION_CLOSED', 'connection closed'));
      for (const stream of [...this.streams.values()]) {
        const callback = this.unblock(stream);
        this.release(stream);
        stream.fail(streamFailure!);
        callback?.(streamFailure);
      }
      for (const waiter of this.streamWaiters.splice(0)) {
        clearTimeout(waiter.timer);
        waiter.reject(streamFailure!);
      }
      if (this.drained) this.drained();
      if (this.acked) this.acked();
      this.emit('close', error);
    }
    this.finishIfQuicheClosed();
  }

  private finishIfQuicheClosed(): void {
    if (this.quiche.isClosed()) this.dispose();
    else this.armTimer();
  }

  /** Stops the timer and leaves the endpoint; called when quiche is done or the socket goes away. */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    this.host.forget(this);
  }

  /** Why quiche closed, as a PnetError; undefined for a clean application close. */
  private remoteCloseError(): PnetError | undefined {
    if (this.quiche.isTimedOut()) {
      return new PnetError('ERR_IDLE_TIMEOUT', `peer ${this.remoteNodeId ?? `${this.remoteAddress.host}:${this.remoteAddress.port}`} went silent (idle timeout)`);
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

  private closedError(): PnetError {
    return this.closeError ?? new PnetError('ERR_CONNECTION_CLOSED', 'connection is closed');
  }
}

function streamError(error: unknown, peer: NodeId): PnetError {
  const text = String(error instanceof Error ? error.message : error);
  const reset = /Stream(Reset|Stopped)\((\d+)\)/.exec(text);
  if (reset) {
    return new PnetError('ERR_STREAM_RESET', `stream ${reset[1] === 'Reset' ? 'reset' : 'stopped'} by peer ${peer} with code ${reset[2]}`, { resetCode: Number(reset[2]) });
  }
  return new PnetError('ERR_STREAM_RESET', `stream failed: ${text}`);
}
