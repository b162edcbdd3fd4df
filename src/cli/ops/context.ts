/** What every ops handler is given, and the request checks they share. */
import { PnetError, parseNodeId } from '../../index.js';
import type { NodeId, PnetNode } from '../../index.js';
import type { OpsConfig } from '../config.js';

/** The event sink: pino's Logger fits; anything with these three methods does. */
export interface OpsLogger {
  info(fields: Record<string, unknown>, message?: string): void;
  warn(fields: Record<string, unknown>, message?: string): void;
  error(fields: Record<string, unknown>, message?: string): void;
}

/** The node serving the ops channels, its config and its log. */
export interface OpsContext {
  readonly node: PnetNode;
  readonly config: OpsConfig;
  readonly logger: OpsLogger | undefined;
}

/** One ops channel's handler: the JSON request in, the reply object out (a throw is a refusal). */
export type OpsHandler = (request: Buffer, from: NodeId) => unknown;

export function parseObject(request: Buffer): Record<string, unknown> {
  let body: unknown;
  try {
    body = request.length === 0 ? {} : JSON.parse(request.toString('utf8'));
  } catch {
    throw new PnetError('BAD_FRAME', 'ops request is not JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new PnetError('BAD_FRAME', 'ops request must be a JSON object');
  return body as Record<string, unknown>;
}

export function targetOf(value: unknown): NodeId {
  if (typeof value !== 'string') throw new PnetError('ERR_BAD_OPTION', 'request needs "target": a node id');
  return parseNodeId(value);
}

export function intField(body: Record<string, unknown>, key: string, fallback: number, min: number, max: number): number {
  const value = body[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new PnetError('ERR_BAD_OPTION', `"${key}" must be an integer in ${min}..${max}`);
  }
  return value;
}
