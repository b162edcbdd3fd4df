import type { NodeId } from '../identity/index.js';
import type { SocketAddress } from './types.js';

/** Saved sessions kept per transport; the oldest goes first. */
export const MAX_SAVED_SESSIONS = 1024;

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
/** A TLS session and the node whose verified certificate it was made with. */
export interface SavedSession {
  readonly nodeId: NodeId;
  readonly session: Uint8Array;
}

export class SessionStore {
  private readonly sessions = new Map<string, SavedSession>();

  constructor(private readonly capacity = MAX_SAVED_SESSIONS) {}

  get size(): number {
    return this.sessions.size;
  }

  /** The session saved for `address`; undefined when there is none or it is another node's than `expected`. */
  get(address: SocketAddress, expected: NodeId | undefined): SavedSession | undefined {
    const saved = this.sessions.get(keyOf(address));
    return saved === undefined || (expected !== undefined && expected !== saved.nodeId) ? undefined : saved;
  }

  save(address: SocketAddress, nodeId: NodeId, session: Uint8Array): void {
    const key = keyOf(address);
    this.sessions.delete(key);
    if (this.sessions.size >= this.capacity) this.sessions.delete(this.sessions.keys().next().value!);
    this.sessions.set(key, { nodeId, session });
  }

  clear(): void {
    this.sessions.clear();
  }
}

function keyOf(address: SocketAddress): string {
  return `${address.host}|${address.port}`;
}
