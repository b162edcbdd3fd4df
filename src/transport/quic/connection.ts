import { EventEmitter } from 'node:events';
import { PnetError } from '../../errors.js';
import type { NodeId } from '../../identity/index.js';
import type { CloseOptions, Connection, ConnectionEvents, SocketAddress } from '../types.js';
import { StreamInbox } from '../inbox.js';
import { CreditWaiters } from '../shared.js';
import { QuicStream } from './stream.js';
import type { QuicStreamHost } from './stream.js';
import { QuicMachine, STALL_MS, Transmit } from './machine.js';
import type { MachineEvent } from './machine.js';
import type { Drivable, Scheduler } from './scheduler.js';

/**
 * Streams after which a QUIC connection should be replaced (a node's `rotateAfterStreams` default):
 * quiche keeps the id of every stream it finished until its connection closes (~10-20 bytes each).
 */
export const ROTATE_AFTER_STREAMS = 65_536;

/**
 * What carries a connection's datagrams: the UDP endpoint today (UdpPath in transport.ts), a
 * relayed path through neighbours tomorrow. The driver sends through it; whatever receives for
 * the path calls `connection.receive(datagram)`.
 */
export interface DatagramPath {
  /** quiche's view of the path's ends (UDP addresses, or any stable pair for a path that is not UDP). */
  readonly localAddress: SocketAddress;
  readonly remoteAddress: SocketAddress;
  /** Drains `machine.pollTransmit` until it returns null and carries every datagram to the peer. */
  transmit(machine: QuicMachine): void;
  /** The connection is over: stop delivering to it (forget its connection ids, free a relay slot). */
  release(): void;
}

/** What a connection needs from the endpoint that made it. */
export interface QuicEndpoint {
  readonly localNodeId: NodeId;
  readonly scheduler: Scheduler;
  /** An established outbound connection ends: keep its TLS session for the next dial there. */
  saveSession(connection: QuicConnection): void;
  /** The connection is gone. */
  forget(connection: QuicConnection): void;
}

export interface QuicConnectionInit {
  machine: QuicMachine;
  path: DatagramPath;
  endpoint: QuicEndpoint;
  streamOpenTimeoutMs: number;
}

/**
 * The driver of one QuicMachine: the Connection the node sees. It feeds the machine datagrams,
 * stream operations and timeouts, acts on its events (Duplex streams, ready, close), transmits
 * when the machine asks (through the Scheduler's batches) and keeps the one re-armed timer. The
 * only clock and timers of a QUIC connection are here.
 */
export class QuicConnection extends EventEmitter<ConnectionEvents> implements Connection, QuicStreamHost, Drivable {
  readonly transport = 'quic' as const;
  readonly direction: 'inbound' | 'outbound';
  readonly machine: QuicMachine;
  readonly path: DatagramPath;
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (error: PnetError) => void;

  private readonly endpoint: QuicEndpoint;
  private readonly scheduler: Scheduler;
  private readonly streamOpenTimeoutMs: number;
  private readonly streams = new Map<number, QuicStream>();
  private readonly waiters = new CreditWaiters();
  private readonly inbox: StreamInbox<QuicStream>;
  private readonly closeWaiters: Array<() => void> = [];
  private processing = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closingPromise: Promise<void> | undefined;
  private disposed = false;

  constructor(init: QuicConnectionInit) {
    super();
    this.machine = init.machine;
    this.path = init.path;
    this.endpoint = init.endpoint;
    this.scheduler = init.endpoint.scheduler;
    this.streamOpenTimeoutMs = init.streamOpenTimeoutMs;
    this.direction = init.machine.direction;
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined);
    this.inbox = new StreamInbox<QuicStream>(this as EventEmitter);
  }

  get remoteNodeId(): NodeId {
    return this.machine.remoteNodeId!;
  }

  get localNodeId(): NodeId {
    return this.endpoint.localNodeId;
  }

  get localAddress(): SocketAddress {
    return this.path.localAddress;
  }

  get remoteAddress(): SocketAddress {
    return this.path.remoteAddress;
  }

  get established(): boolean {
    return this.machine.established;
  }

  get closed(): boolean {
    return this.machine.closed;
  }

  /** True from the moment close() is called (or the connection failed): no new streams. */
  get closing(): boolean {
    return this.machine.closing;
  }

  get connectionKey(): string {
    const quiche = this.machine.quiche;
    return Buffer.from(this.direction === 'outbound' ? quiche.sourceId() : quiche.destinationId()).toString('hex');
  }

  get streamCount(): number {
    return this.machine.streamCount;
  }

  get streamsUsed(): number {
    return this.machine.streamsUsed;
  }

  get resumed(): boolean {
    return this.machine.quiche.isResumed();
  }

  /** When quiche last took a datagram from the peer (performance.now()). */
  get lastActivity(): number {
    return this.machine.lastActivity;
  }

  /** Largest QUIC DATAGRAM payload the peer takes now (0 before the handshake). */
  get maxDatagramPayload(): number {
    return this.machine.maxDatagramPayload;
  }

  rttMs(): number {
    // The binding reports quiche's smoothed RTT in whole milliseconds.
    return this.machine.quiche.pathStats()[0]?.rtt ?? 0;
  }

  // ---- inputs ------------------------------------------------------------

  /** A datagram for this connection arrived on its path. */
  receive(datagram: Buffer, now = performance.now()): void {
    this.machine.handleDatagram(datagram, now, this.transmitNow);
    this.scheduler.schedule(this);
  }

  /** Sends a QUIC DATAGRAM (RFC 9221, unreliable): false when it cannot be queued now. */
  sendDatagram(data: Uint8Array): boolean {
    const queued = this.machine.sendDatagram(data);
    if (queued) this.react();
    return queued;
  }

  /** Keep-alive: an ack-eliciting packet so the peer's idle timer resets. */
  keepAlive(): void {
    this.machine.keepAlive();
    this.react();
  }

  async openStream(options?: { timeoutMs?: number }): Promise<QuicStream> {
    const timeoutMs = options?.timeoutMs ?? this.streamOpenTimeoutMs;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const id = this.machine.openStream();
      if (typeof id === 'number') {
        const stream = new QuicStream(this, id);
        this.streams.set(id, stream);
        return stream;
      }
      if (id !== null) throw id;
      this.machine.wantStreamCredit();
      await this.waiters.wait(deadline, timeoutMs, String(this.machine.remoteNodeId));
    }
  }

  close(options: CloseOptions = {}): Promise<void> {
    this.closingPromise ??= new Promise<void>((resolve) => {
      if (this.machine.closed) {
        resolve();
        return;
      }
      this.closeWaiters.push(resolve);
      this.machine.close(options, performance.now());
      this.react();
      this.armTimer();
    });
    return this.closingPromise;
  }

  // ---- stream operations (called by QuicStream) ---------------------------

  streamWrite(stream: QuicStream, chunk: Buffer, fin: boolean, callback: (error?: Error | null) => void): void {
    const result = this.machine.streamWrite(stream.streamId, chunk, fin);
    if (result === true) {
      callback();
    } else if (result === false) {
      stream.park(callback, chunk.length);
      // The last write before end() waits for flow control: its FIN goes with it.
      if (!fin && stream.writableEnded && stream.writableLength === chunk.length) this.machine.streamEnding(stream.streamId);
    } else {
      const error = stream.resetError ?? result;
      this.streams.delete(stream.streamId);
      stream.fail(error);
      callback(error);
    }
    this.react();
  }

  streamEnding(stream: QuicStream): void {
    this.machine.streamEnding(stream.streamId);
  }

  streamWantsRead(stream: QuicStream): void {
    const machine = this.machine;
    machine.streamWantsRead(stream.streamId);
    if (machine.wantsService && !this.processing) this.scheduler.schedule(this);
  }

  streamReset(stream: QuicStream, code: number): void {
    this.machine.streamReset(stream.streamId, code);
    this.streams.delete(stream.streamId);
    stream.detach();
    stream.unpark(new PnetError('ERR_STREAM_RESET', `stream ${stream.streamId} was reset locally`));
    this.react();
  }

  // ---- driving -------------------------------------------------------------

  /** service(), events, transmit as the machine asks, timer (machine.ts, call order). */
  drive(): void {
    if (this.disposed) return;
    const machine = this.machine;
    this.processing = true;
    machine.service(performance.now());
    this.handleEvents();
    this.processing = false;
    const wake = machine.pollWake();
    if (wake === Transmit.NOW) this.transmit();
    else if (wake === Transmit.AFTER_TICKS) this.scheduler.transmitAfterTicks(this);
    else this.scheduler.transmitNextTurn(this);
    if (machine.wantsService) this.scheduler.schedule(this);
    this.settle();
  }

  /** Drains the machine's datagrams onto the path now. */
  transmit(): void {
    if (this.disposed) return;
    this.scheduler.transmitted(this);
    this.path.transmit(this.machine);
    this.armTimer();
  }

  private readonly transmitNow = (): void => this.transmit();

  /** After an input outside drive(): events it raised, a transmit it wants now, a service it wants soon. */
  private react(): void {
    if (this.processing || this.disposed) return;
    const machine = this.machine;
    this.processing = true;
    this.handleEvents();
    this.processing = false;
    if (machine.transmitUrgency === Transmit.NOW) this.transmit();
    if (machine.wantsService) this.scheduler.schedule(this);
    else if (machine.closed) this.settle();
  }

  private handleEvents(): void {
    const machine = this.machine;
    for (let event = machine.pollEvent(); event !== undefined; event = machine.pollEvent()) this.handle(event);
  }

  private handle(event: MachineEvent): void {
    switch (event.type) {
      case 'readable': {
        const stream = this.streams.get(event.id);
        if (stream !== undefined) this.machine.streamRead(event.id, stream.deliver);
        return;
      }
      case 'writeDone':
        this.streams.get(event.id)?.unpark();
        return;
      case 'released':
        this.streams.get(event.id)?.detach();
        this.streams.delete(event.id);
        return;
      case 'streamOpened': {
        const stream = new QuicStream(this, event.id);
        this.streams.set(event.id, stream);
        this.inbox.deliver(stream);
        return;
      }
      case 'streamFailed': {
        const stream = this.streams.get(event.id);
        this.streams.delete(event.id);
        if (stream !== undefined) {
          stream.fail(event.error);
          stream.unpark(event.error);
        }
        return;
      }
      case 'streamCredit':
        this.waiters.wake(event.count);
        if (this.waiters.size > 0) this.machine.wantStreamCredit();
        return;
      case 'datagram':
        this.emit('datagram', event.data);
        return;
      case 'established':
        this.resolveReady();
        return;
      case 'closed':
        this.onClosed(event.error);
    }
  }

  private onClosed(error: PnetError | undefined): void {
    const machine = this.machine;
    if (this.direction === 'outbound' && machine.established) this.endpoint.saveSession(this);
    if (!machine.established) this.rejectReady(error ?? new PnetError('ERR_HANDSHAKE', 'connection closed during the handshake'));
    this.waiters.failAll(error ?? new PnetError('ERR_CONNECTION_CLOSED', 'connection closed'));
    for (const resolve of this.closeWaiters.splice(0)) resolve();
    this.emit('close', error);
  }

  /** After a drive: forget a finished connection, else re-arm the timer. */
  private settle(): void {
    if (this.machine.finished) this.dispose();
    else this.armTimer();
  }

  /** Sets the one timer to the machine's next deadline; re-armed only when it wants us earlier. */
  armTimer(): void {
    if (this.disposed) return;
    const now = performance.now();
    const at = this.machine.pollTimeout(now);
    if (at === null) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Infinity;
      return;
    }
    // A timer firing early just re-checks.
    if (this.timer && this.timerAt <= at + 1) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.onTimer, Math.max(0, at - now));
  }

  private readonly onTimer = (): void => {
    const now = performance.now();
    const late = now - this.timerAt;
    this.timer = undefined;
    this.timerAt = Infinity;
    // On time and nothing due any more (a loss timer an ACK made moot, the usual case): re-arm only.
    if (late <= STALL_MS && !this.disposed) {
      const at = this.machine.pollTimeout(now);
      if (at !== null && at > now + 1) {
        this.timerAt = at;
        this.timer = setTimeout(this.onTimer, at - now);
        return;
      }
    }
    // Decided after this turn's I/O: after an event-loop stall the datagrams waiting in the socket
    // are fed first, so an idle or loss timer does not fire on a peer that did answer.
    setImmediate(this.onTimeout, late);
  };

  private readonly onTimeout = (late: number): void => {
    if (this.disposed) return;
    const machine = this.machine;
    machine.handleTimeout(performance.now(), late);
    if (machine.wantsService) {
      this.drive();
      return;
    }
    this.react();
    this.settle();
  };

  /** Stops the timer and leaves the endpoint and the path; when quiche is done or the endpoint goes away. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    this.scheduler.forget(this);
    this.path.release();
    this.endpoint.forget(this);
  }
}
