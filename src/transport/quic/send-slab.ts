/**
 * The endpoint's send slab: every datagram the endpoint sends is written into one large buffer
 * at a moving offset (no buffer per packet) and handed to the socket in runs of equal-sized
 * packets, which the native socket sends as one GSO super-datagram.
 */
import type { SocketAddress } from '../types.js';
import type { QuicMachine } from './machine.js';
import type { DatagramSocket } from './udp.js';

const SLAB_SIZE = 1024 * 1024;
/** A run goes to the socket once it holds this many bytes, so the first packets leave while quiche packs the rest. */
const RUN_BYTES = 60 * 1024;

export class SendSlab {
  /** Datagrams not sent to an address not yet validated: over its anti-amplification budget (RFC 9000 §8.1). */
  withheld = 0;
  private slab = Buffer.allocUnsafe(SLAB_SIZE);
  private slabOffset = 0;
  /** Relay v2's datagrams sent straight on the socket (`sendRelayed`): the run being gathered. */
  private relayRun: { slab: Buffer; start: number; end: number; size: number; host: string; port: number } | undefined;

  constructor(
    private readonly socket: DatagramSocket,
    private readonly maxDatagramSize: number,
  ) {}

  /** Writes one stateless packet into the send slab (no buffer per reply) and sends it. */
  sendStateless(write: (out: Buffer) => number, host: string, port: number): void {
    const max = this.maxDatagramSize;
    if (SLAB_SIZE - this.slabOffset < max) this.wrapSlab();
    const offset = this.slabOffset;
    const written = write(this.slab.subarray(offset, offset + max));
    this.slabOffset = offset + written;
    this.socket.send(this.slab, offset, written, written, port, host);
  }

  /**
   * Drains a machine's datagrams into the slab and hands the socket each run of equal-sized
   * packets (the last one may be shorter) in one call: the native socket sends a run as one GSO
   * super-datagram. Packets past `budget` bytes (an unvalidated address's 3×) are not sent; quiche
   * counts them lost. Returns the bytes sent.
   */
  sendRuns(machine: QuicMachine, remote: SocketAddress, budget = Infinity): number {
    const { port, host } = remote;
    let sent = 0;
    const max = this.maxDatagramSize;
    const socket = this.socket;
    let runStart = this.slabOffset;
    let runSize = 0;
    for (;;) {
      if (SLAB_SIZE - this.slabOffset < max || this.slabOffset - runStart >= RUN_BYTES) {
        if (this.slabOffset > runStart) socket.send(this.slab, runStart, this.slabOffset - runStart, runSize, port, host);
        if (SLAB_SIZE - this.slabOffset < max) this.wrapSlab();
        runStart = this.slabOffset;
      }
      const offset = this.slabOffset;
      const length = machine.pollTransmit(this.slab.subarray(offset, offset + max));
      if (length === null) break;
      if (sent + length > budget) {
        this.withheld++;
        continue;
      }
      sent += length;
      if (offset === runStart) {
        runSize = length;
      } else if (length > runSize) {
        // Larger than the run's packets: the run ends before it.
        socket.send(this.slab, runStart, offset - runStart, runSize, port, host);
        runStart = offset;
        runSize = length;
      }
      this.slabOffset = offset + length;
      if (length < runSize) {
        // A shorter packet ends the run.
        socket.send(this.slab, runStart, this.slabOffset - runStart, runSize, port, host);
        runStart = this.slabOffset;
      }
    }
    if (this.slabOffset > runStart) socket.send(this.slab, runStart, this.slabOffset - runStart, runSize, port, host);
    return sent;
  }

  /**
   * Sends `prefix` + `payload` as one UDP datagram to host:port, outside QUIC (relay v2's link
   * packets). Consecutive ones to the same peer gather into one run, sent as one GSO send once
   * this tick's work is done (a microtask), so a hop forwarding a received batch makes one call.
   */
  sendRelayed(prefix: Uint8Array, payload: Uint8Array, host: string, port: number): void {
    const length = prefix.length + payload.length;
    if (SLAB_SIZE - this.slabOffset < length) this.wrapSlab();
    let run = this.relayRun;
    const joins = run !== undefined && run.slab === this.slab && run.end === this.slabOffset && run.host === host && run.port === port && length <= run.size && run.end - run.start + length <= RUN_BYTES;
    if (run !== undefined && !joins) {
      this.flushRelayed();
      run = undefined;
    }
    const slab = this.slab;
    const offset = this.slabOffset;
    slab.set(prefix, offset);
    slab.set(payload, offset + prefix.length);
    this.slabOffset = offset + length;
    if (run === undefined) {
      this.relayRun = { slab, start: offset, end: offset + length, size: length, host, port };
      queueMicrotask(this.flushRelayed);
    } else {
      run.end += length;
      // A shorter datagram ends the run (GSO: only the last one may be shorter).
      if (length < run.size) this.flushRelayed();
    }
  }

  /**
   * The send slab is full: start again at its beginning when the socket copied everything it was
   * given (native), else take a fresh one (the 'node' socket may still hold views of the old one
   * while the kernel queue is full). Reuse spares a page fault per 4 KiB sent.
   */
  private wrapSlab(): void {
    this.flushRelayed();
    if (!this.socket.copiesOnSend) this.slab = Buffer.allocUnsafe(SLAB_SIZE);
    this.slabOffset = 0;
  }

  private readonly flushRelayed = (): void => {
    const run = this.relayRun;
    if (run === undefined) return;
    this.relayRun = undefined;
    this.socket.send(run.slab, run.start, run.end - run.start, run.size, run.port, run.host);
  };
}
