/**
 * The operator side: a short-lived pnet node with the operator's key that dials the daemon and
 * asks it over the ops channels. It never becomes a routing neighbour (its hold-down outlives
 * it), so it adds nothing to the network map and is never a target of `all`.
 */
import { access } from 'node:fs/promises';
import { PnetError, createNode, loadOrCreateIdentity, parseAddress } from '../index.js';
import type { NodeId, PnetNode } from '../index.js';
import type { ErrorReply } from './ops/wire.js';

export interface OperatorOptions {
  /** The daemon's address, "host:port". */
  readonly node: string;
  /** Pin the daemon's node id (a different key fails with ERR_PEER_ID_MISMATCH). */
  readonly nodeId?: NodeId;
  /** The operator's key file (created with mode 0600 when missing). */
  readonly keyFile: string;
  /** QUIC handshake deadline. */
  readonly connectTimeoutMs: number;
  /** Told when the key file did not exist and was created. */
  readonly onKeyCreated?: (path: string, nodeId: NodeId) => void;
}

/** The daemon could not be reached (exit code 3). */
export class ConnectError extends Error {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ConnectError';
  }
}

/** Longest setTimeout: the CLI node's hold-down never ends while it lives. */
const NEVER_MS = 2_147_483_647;

export class OperatorSession {
  private constructor(
    readonly node: PnetNode,
    readonly daemonId: NodeId,
    /** The operator's key file (named when the daemon refuses it). */
    readonly keyFile: string,
  ) {}

  static async connect(options: OperatorOptions): Promise<OperatorSession> {
    let existed = true;
    await access(options.keyFile).catch(() => (existed = false));
    const identity = await loadOrCreateIdentity(options.keyFile);
    if (!existed) options.onKeyCreated?.(options.keyFile, identity.nodeId);
    const target = parseAddress(options.node); // ERR_BAD_ADDRESS is a usage error
    const node = await createNode({
      identity,
      listen: bindFor(target.host),
      quic: { handshakeTimeoutMs: options.connectTimeoutMs },
      routing: { neighbourHoldDownMs: NEVER_MS },
    });
    try {
      const daemonId = await node.dial(target, options.nodeId !== undefined ? { expectedNodeId: options.nodeId } : {});
      return new OperatorSession(node, daemonId, options.keyFile);
    } catch (error) {
      await node.close({ timeoutMs: 200 }).catch(() => undefined);
      const code = error instanceof PnetError ? error.code : 'ERR_HANDSHAKE';
      throw new ConnectError(`could not reach the node at ${options.node}: ${(error as Error).message}`, code, { cause: error });
    }
  }

  /** Sends one JSON request to the daemon's ops channel; a refusal comes back as a PnetError with its code. */
  async call<T>(channel: string, body: unknown, timeoutMs: number): Promise<T> {
    let reply: Buffer;
    try {
      reply = await this.node.request(this.daemonId, channel, JSON.stringify(body ?? {}), { timeoutMs });
    } catch (error) {
      if (error instanceof PnetError && error.code === 'UNAUTHORIZED') {
        throw new PnetError('UNAUTHORIZED', `node ${this.daemonId} refused ${channel}: operator ${this.node.id} (key ${this.keyFile}) is not in its "operators"`, { cause: error });
      }
      throw error;
    }
    return decodeReply<T>(reply);
  }

  close(): Promise<void> {
    return this.node.close({ timeoutMs: 500 });
  }
}

/** Parses an ops reply; `{ error }` becomes a thrown PnetError. */
export function decodeReply<T>(reply: Buffer): T {
  let body: unknown;
  try {
    body = JSON.parse(reply.toString('utf8'));
  } catch {
    throw new PnetError('BAD_FRAME', 'the node sent a reply that is not JSON');
  }
  const failure = errorOf(body);
  if (failure) throw failure;
  return body as T;
}

/** The PnetError inside an `{ error: { code, message } }` reply, if it is one. */
export function errorOf(body: unknown): PnetError | undefined {
  if (typeof body !== 'object' || body === null || !('error' in body)) return undefined;
  const { error } = body as ErrorReply;
  if (typeof error !== 'object' || error === null) return undefined;
  // Codes come from our own daemon; anything odd is reported as a handler failure.
  const code = typeof error.code === 'string' && /^[A-Z_]+$/.test(error.code) ? (error.code as PnetError['code']) : 'ERR_HANDLER_FAILED';
  return new PnetError(code, typeof error.message === 'string' ? error.message : 'the node refused');
}

/** Same family as the daemon, so a loopback daemon is reached from loopback and a remote one from any interface. */
function bindFor(host: string): string {
  if (host === '::1') return '[::1]:0';
  if (host.includes(':')) return '[::]:0';
  if (host.startsWith('127.')) return '127.0.0.1:0';
  return '0.0.0.0:0';
}
