import type { NodeId } from '../identity/index.js';
import type { SocketAddress } from './types.js';

/** Saved sessions kept per transport; the oldest goes first. */
export const MAX_SAVED_SESSIONS = 1024;

/** A TLS session and the node whose verified certificate it was made with. */
export interface SavedSession {
  readonly nodeId: NodeId;
  readonly session: Uint8Array;
}

/**
 * TLS 1.3 sessions (tickets) a dialer saved from its connections, one per
 * address, for the next dial there to resume: an abbreviated handshake with
 * no certificate signatures, still with a fresh key exchange. The peer's
 * certificate comes back from the session and is checked again like any
 * other (docs/TRANSPORT.md, "Session resumption").
 *
 * The newest session per address is kept (servers send fresh tickets; TLS
 * 1.3 tickets may be used again until the server's lifetime for them ends,
 * after which the server asks for a full handshake). A session is only
 * offered to the node it came from: a dial that expects another node id gets
 * a full handshake.
 */
export class SessionStore {
  private readonly sessions = new Map<string, SavedSession>();
  private closed = false;

  /** `enabled`: the transport's `sessionResumption` option (default true). */
  constructor(private readonly enabled = true) {}

  /** Whether sessions are saved and offered: resumption is on and the transport is open. */
  get active(): boolean {
    return this.enabled && !this.closed;
  }

  /** The session saved for `address`; undefined when there is none or it is another node's than `expected`. */
  get(address: SocketAddress, expected: NodeId | undefined): SavedSession | undefined {
    if (!this.active) return undefined;
    const saved = this.sessions.get(keyOf(address));
    return saved === undefined || (expected !== undefined && expected !== saved.nodeId) ? undefined : saved;
  }

  save(address: SocketAddress, nodeId: NodeId, session: Uint8Array): void {
    if (!this.active) return;
    const key = keyOf(address);
    this.sessions.delete(key);
    if (this.sessions.size >= MAX_SAVED_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    this.sessions.set(key, { nodeId, session });
  }

  /** The transport is closing: forget every session and save no more. */
  close(): void {
    this.closed = true;
    this.sessions.clear();
  }
}

function keyOf(address: SocketAddress): string {
  return `${address.host}|${address.port}`;
}
