import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { PnetError } from '../errors.js';
import { verifyPeerCertificate } from '../identity/index.js';
import type { Identity, NodeId } from '../identity/index.js';
import { secureContextFor } from '../transport/index.js';

/** ALPN inside a relayed stream: the two ends run TLS 1.3 with their node certificates. */
export const TUNNEL_ALPN = 'pnet-tunnel/1';

function baseOptions(identity: Identity): tls.TLSSocketOptions & tls.ConnectionOptions {
  return {
    secureContext: secureContextFor(identity), // key, certificate, TLS 1.3 only
    ALPNProtocols: [TUNNEL_ALPN],
    // Self-signed node certificates: pnet checks them itself and pins the node id.
    rejectUnauthorized: false,
    requestCert: true,
  };
}

function peerId(socket: tls.TLSSocket): NodeId {
  const certificate = socket.getPeerCertificate(false);
  return verifyPeerCertificate(certificate && certificate.raw ? [certificate.raw] : null);
}

/** The opening end: TLS client over `stream`, resolved once the far end proved it is `expected`; `signal` (the caller's deadline) aborts the handshake with its reason. */
export function tunnelClient(stream: Duplex, identity: Identity, expected: NodeId, signal?: AbortSignal): Promise<tls.TLSSocket> {
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    const socket = tls.connect({ ...baseOptions(identity), socket: stream as unknown as import('node:net').Socket });
    (socket as unknown as { allowHalfOpen: boolean }).allowHalfOpen = true;
    const aborted = (): void => fail(signal!.reason as Error);
    const fail = (error: Error): void => {
      signal?.removeEventListener('abort', aborted);
      socket.destroy();
      stream.destroy();
      reject(error instanceof PnetError ? error : new PnetError('ERR_HANDSHAKE', `tunnel to ${expected}: ${error.message}`, { cause: error }));
    };
    socket.once('error', fail);
    if (signal?.aborted) aborted();
    else signal?.addEventListener('abort', aborted, { once: true });
    socket.once('secureConnect', () => {
      socket.off('error', fail);
      signal?.removeEventListener('abort', aborted);
      let id: NodeId;
      try {
        id = peerId(socket);
      } catch (error) {
        fail(error as Error);
        return;
      }
      if (id !== expected) {
        fail(new PnetError('ERR_PEER_ID_MISMATCH', `relayed stream to ${expected} was answered by ${id}`));
        return;
      }
      releaseWith(socket, stream);
      resolve(socket);
    });
  });
}

/** The destination end: TLS server over `stream`; resolves with the socket and the verified origin. */
export function tunnelServer(stream: Duplex, identity: Identity, timeoutMs: number): Promise<{ socket: tls.TLSSocket; origin: NodeId }> {
  return new Promise((resolve, reject) => {
    const socket = new tls.TLSSocket(stream as unknown as import('node:net').Socket, {
      ...baseOptions(identity),
      isServer: true,
    });
    (socket as unknown as { allowHalfOpen: boolean }).allowHalfOpen = true;
    const timer = setTimeout(() => fail(new PnetError('ERR_HANDSHAKE', `tunnel handshake did not finish within ${timeoutMs} ms`)), timeoutMs);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      stream.destroy();
      reject(error instanceof PnetError ? error : new PnetError('ERR_HANDSHAKE', `tunnel: ${error.message}`, { cause: error }));
    };
    const closed = (): void => fail(new PnetError('ERR_HANDSHAKE', 'the relayed stream closed during the tunnel handshake'));
    socket.once('error', fail);
    stream.once('close', closed);
    socket.once('secure', () => {
      clearTimeout(timer);
      socket.off('error', fail);
      stream.off('close', closed);
      try {
        resolve({ socket, origin: peerId(socket) });
        releaseWith(socket, stream);
      } catch (error) {
        fail(error as Error);
      }
    });
  });
}

/** A relayed leg: a transport stream (reset with a code), or a plain Duplex in tests (destroyed). */
type Leg = Duplex & { reset?(code?: number): void };

/** The reset code a leg's error carries (a peer's RESET_STREAM / RST_STREAM), if any. */
export function resetCodeOf(error: unknown): number | undefined {
  return error instanceof PnetError && error.code === 'ERR_STREAM_RESET' ? error.resetCode : undefined;
}

/** Resets `leg` with `code` (the far end's error code, passed on), or destroys it when it cannot carry one. */
export function resetLeg(leg: Leg, code: number | undefined): void {
  if (code !== undefined && typeof leg.reset === 'function') leg.reset(code);
  else leg.destroy();
}

/**
 * The tunnel's TLS socket, with the stream reset of a direct stream: `reset(code)` resets the
 * relayed leg with `code` (the hops pass it on, docs/RELAY.md), and a leg reset by the far end
 * fails the socket with ERR_STREAM_RESET and the same `resetCode`, so request() reads
 * ERR_HANDLER_FAILED / ERR_REQUEST_TOO_LARGE as on a direct stream.
 */
function releaseWith(socket: tls.TLSSocket, stream: Leg): void {
  Object.defineProperty(socket, 'reset', {
    configurable: true,
    value: (code = 0): void => {
      resetLeg(stream, code);
      socket.destroy();
    },
  });
  stream.on('error', (error: unknown) => {
    const code = resetCodeOf(error);
    if (code === undefined || socket.destroyed) return;
    const reset = new PnetError('ERR_STREAM_RESET', `relayed stream reset by the far end with code ${code}`, { resetCode: code });
    // As a transport stream does: an error nobody listens for would crash the process, so it is kept on resetError instead.
    Object.defineProperty(socket, 'resetError', { configurable: true, value: reset });
    if (socket.listenerCount('error') > 0) socket.destroy(reset);
    else socket.destroy();
  });
  // When the TLS socket is gone, so is the relayed leg it ran on: ended after a clean finish, else reset.
  socket.once('close', (hadError: boolean) => {
    if (stream.destroyed) return;
    if (hadError || !socket.writableFinished) {
      stream.destroy();
    } else {
      if (!stream.writableEnded) stream.end();
      stream.resume();
    }
  });
}
