/** One connection's path over the endpoint's UDP socket, with the anti-amplification budget of an address not yet validated. */
import type { SocketAddress } from '../types.js';
import type { QuicConnection, DatagramPath } from './connection.js';
import type { WindowGrant } from './config.js';
import type { QuicMachine } from './machine.js';

/** RFC 9000 §8.1: a server sends at most 3× the bytes it received from an address it has not validated. */
const AMPLIFICATION_FACTOR = 3;

/** What a path needs from its endpoint. */
export interface UdpPathEndpoint {
  /** Drains the machine's datagrams to `remote`, at most `budget` bytes: the bytes sent. */
  sendRuns(machine: QuicMachine, remote: SocketAddress, budget?: number): number;
  /** The path's connection is gone: forget its ids. */
  unmap(path: UdpPath): void;
}

/** One connection's path over the endpoint's UDP socket: its peer address and the connection ids mapped to it. */
export class UdpPath implements DatagramPath {
  readonly keys: string[] = [];
  connection: QuicConnection | undefined;
  /** The windows this connection was made with, given back to the budget when it is gone. */
  windows: WindowGrant | undefined;
  /** Bytes received from the peer's address while it is not validated (the anti-amplification budget is 3× this). */
  received = 0;
  private sent = 0;
  constructor(
    private readonly endpoint: UdpPathEndpoint,
    readonly localAddress: SocketAddress,
    readonly remoteAddress: SocketAddress,
    /** We dialed it, a Retry token proved it, or the handshake completed. */
    public validated: boolean,
  ) {}

  transmit(machine: QuicMachine): void {
    // A completed handshake proves the client got our packets at that address (RFC 9000 §8.1).
    if (!this.validated && machine.established) this.validated = true;
    if (this.validated) {
      this.endpoint.sendRuns(machine, this.remoteAddress);
      return;
    }
    this.sent += this.endpoint.sendRuns(machine, this.remoteAddress, AMPLIFICATION_FACTOR * this.received - this.sent);
  }

  release(): void {
    this.endpoint.unmap(this);
  }
}
