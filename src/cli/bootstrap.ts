/**
 * The daemon's bootstrap log. The redials themselves are the library's (src/node/bootstrap.ts:
 * createNode keeps its bootstrap peers connected on a jittered backoff); the daemon logs each
 * attempt from the node's 'bootstrap' events.
 */
import { PnetError } from '../index.js';
import type { BootstrapEvent, PnetNode } from '../index.js';

export interface BootstrapLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** One log line per bootstrap dial: `bootstrap:connected` or `bootstrap:failed` (with the wait before the next). */
export function logBootstrap(node: PnetNode, logger: BootstrapLogger): void {
  node.on('bootstrap', (event: BootstrapEvent) => {
    const { address, attempt } = event;
    if (event.ok) logger.info({ event: 'bootstrap:connected', address, nodeId: event.nodeId, attempt }, 'bootstrap peer connected');
    else logger.warn({ event: 'bootstrap:failed', address, attempt, code: errorCode(event.error), reason: event.error.message, retryMs: event.retryMs }, 'bootstrap dial failed');
  });
}

/** The code of a dial error, for the log. */
export function errorCode(error: unknown): string | undefined {
  return error instanceof PnetError ? error.code : undefined;
}
