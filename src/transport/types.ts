import type { Duplex } from 'node:stream';
import type { EventEmitter } from 'node:events';
import type { NodeId } from '../identity/index.js';
import type { PnetError } from '../errors.js';

export interface SocketAddress {
  readonly host: string;
  readonly port: number;
}

/** 'quic': QUIC over UDP (the default); 'h2': HTTP/2 over TLS on TCP (the fallback where UDP is blocked). */
export type TransportKind = 'quic' | 'h2';

/**
 * A bidirectional byte stream: a Node Duplex with half-close (`end()`) and
 * reset with an application code. Errors carry PnetError codes
 * (ERR_STREAM_RESET, ERR_CONNECTION_CLOSED, ERR_IDLE_TIMEOUT).
 */
export interface Stream extends Duplex {
  /** Transport stream id, unique within its connection. */
  readonly streamId: number;
  readonly connection: Connection;
  /** Abort both directions; the peer sees ERR_STREAM_RESET with `code`. */
  reset(code?: number): void;
  /** Why the transport ended this stream (peer reset, connection closed), if it did; set before 'error'/'close'. */
  readonly resetError: PnetError | undefined;
}

export interface ConnectionEvents {
  stream: [stream: Stream];
  close: [error: PnetError | undefined];
  /** QUIC only: a DATAGRAM frame (RFC 9221) from the peer. HTTP/2 connections never emit it. */
  datagram: [data: Buffer];
}

export interface CloseOptions {
  /** Application close code sent to the peer (default 0). */
  code?: number;
  reason?: string;
  /** Wait for open streams to finish before closing (default true). */
  graceful?: boolean;
  /** Upper bound on the graceful drain (default 5000 ms). */
  timeoutMs?: number;
}

export interface Connection extends EventEmitter<ConnectionEvents> {
  readonly transport: TransportKind;
  readonly direction: 'inbound' | 'outbound';
  readonly localNodeId: NodeId;
  /** Read from the peer's verified certificate, never from a frame. */
  readonly remoteNodeId: NodeId;
  readonly localAddress: SocketAddress;
  readonly remoteAddress: SocketAddress;
  /** The connection is over (closed by either side, or failed). */
  readonly closed: boolean;
  /** close() was called or the connection is over: it takes no new streams. */
  readonly closing: boolean;
  /** An id both ends agree on (the dialer's connection id), used to break ties between duplicates. */
  readonly connectionKey: string;
  /** Smoothed round-trip time in milliseconds, as measured by the transport (whole ms for QUIC, HTTP/2 PINGs for h2). */
  rttMs(): number;
  /** Open a bidirectional stream; waits while the peer's stream limit is reached. */
  openStream(options?: { timeoutMs?: number }): Promise<Stream>;
  close(options?: CloseOptions): Promise<void>;
  /** Number of streams currently open on this connection. */
  readonly streamCount: number;
  /** Streams ever opened on this connection, by either end (the node replaces a QUIC connection after `rotateAfterStreams`). */
  readonly streamsUsed: number;
  /** The TLS handshake resumed an earlier session (no certificate signatures; the certificate was still checked). */
  readonly resumed: boolean;
}

export interface DialOptions {
  /** Fail with ERR_PEER_ID_MISMATCH unless the peer's certificate is this node's. */
  expectedNodeId?: NodeId;
  /** Handshake deadline (default 5000 ms). */
  timeoutMs?: number;
  /**
   * Abandons the dial: a handshake still in progress is closed and the dial rejects with
   * ERR_CONNECTION_CLOSED (a node racing QUIC against HTTP/2 aborts the loser). A connection
   * that was already established is not touched.
   */
  signal?: AbortSignal;
}

export interface TransportEvents {
  connection: [connection: Connection];
  error: [error: Error];
}

export interface Transport extends EventEmitter<TransportEvents> {
  readonly kind: TransportKind;
  readonly address: SocketAddress;
  /** Connections this transport holds (kept or draining). */
  readonly connectionCount: number;
  /** A dial's handshake deadline when the dial gives none. */
  readonly handshakeTimeoutMs: number;
  dial(address: SocketAddress, options?: DialOptions): Promise<Connection>;
  /** Drains open streams (bounded by timeoutMs), closes every connection and the socket. */
  close(options?: { timeoutMs?: number }): Promise<void>;
}
