import { isIP } from 'node:net';
import { PnetError } from '../errors.js';
import type { SocketAddress } from './types.js';

/*
 * What both transports' connections and endpoints do the same way: dial guards, the keep-alive
 * sweep, stream-credit waiters, waits bounded by a deadline, closing every connection.
 */

/** Rejects a dial to something that is not an IP address and port, or (given `local`) of another address family. */
export function checkDialAddress(address: SocketAddress, local?: SocketAddress): void {
  const family = isIP(address.host);
  if (family === 0 || !Number.isInteger(address.port) || address.port <= 0 || address.port > 65535) {
    throw new PnetError('ERR_BAD_ADDRESS', `cannot dial ${address.host}:${address.port}: need an IP address and a port`);
  }
  if (local !== undefined && family !== isIP(local.host)) {
    throw new PnetError('ERR_BAD_ADDRESS', `cannot dial IPv${family} ${address.host} from a socket bound to ${local.host}`);
  }
}

/** ERR_CONNECTION_LIMIT when `count` connections already reach `max`. */
export function checkConnectionLimit(count: number, max: number): void {
  if (count >= max) throw new PnetError('ERR_CONNECTION_LIMIT', `connection limit (${max}) reached`);
}

/** Runs `sweep(now)` every half keep-alive interval (at least every 50 ms); returns the timer to clear. */
export function startKeepAliveSweep(keepAliveIntervalMs: number, sweep: (now: number) => void): NodeJS.Timeout {
  return setInterval(() => sweep(performance.now()), Math.max(50, Math.floor(keepAliveIntervalMs / 2)));
}

/** Closes every connection gracefully, bounded by `timeoutMs`. */
export async function closeConnections(connections: Iterable<{ close(options: { timeoutMs: number; reason: string }): Promise<void> }>, timeoutMs: number): Promise<void> {
  await Promise.all([...connections].map((connection) => connection.close({ timeoutMs, reason: 'node closing' })));
}

/** Waits until `register`'s callback runs (or `check()` holds already), bounded by the deadline (performance.now() units). */
export function untilDeadline(register: (done: () => void) => void, check: () => boolean, deadline: number): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, Math.max(0, deadline - performance.now()));
    function done(): void {
      clearTimeout(timer);
      resolve();
    }
    register(done);
  });
}

interface Waiter {
  wake: () => void;
  fail: (error: PnetError) => void;
}

/**
 * openStream callers waiting for the peer to allow another stream. Each wait is bounded by the
 * caller's deadline; a woken caller checks again (and may wait again until that deadline).
 */
export class CreditWaiters {
  private readonly waiters: Waiter[] = [];

  get size(): number {
    return this.waiters.length;
  }

  /** Waits for `wake`, or fails with ERR_STREAM_LIMIT at `deadline` (performance.now() units). */
  wait(deadline: number, timeoutMs: number, peer: string): Promise<void> {
    const remaining = deadline - performance.now();
    if (remaining <= 0) return Promise.reject(limitError(peer, timeoutMs));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(limitError(peer, timeoutMs));
      }, remaining);
      const waiter: Waiter = {
        wake: () => {
          clearTimeout(timer);
          resolve();
        },
        fail: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Wakes up to `count` waiters, oldest first. */
  wake(count = 1): void {
    while (count-- > 0 && this.waiters.length > 0) this.waiters.shift()!.wake();
  }

  /** Wakes every waiter: each checks again (and fails if the connection is closing). */
  wakeAll(): void {
    for (const waiter of this.waiters.splice(0)) waiter.wake();
  }

  failAll(error: PnetError): void {
    for (const waiter of this.waiters.splice(0)) waiter.fail(error);
  }
}

function limitError(peer: string, timeoutMs: number): PnetError {
  return new PnetError('ERR_STREAM_LIMIT', `peer ${peer} allows no more streams; none freed within ${timeoutMs} ms`);
}
