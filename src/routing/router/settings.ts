/**
 * The router's options, checked (ERR_BAD_OPTION naming the option) and with their defaults
 * (docs/ROUTING.md, Timers and the IO glue).
 */
import { PnetError } from '../../errors.js';
import { numberOption } from '../../options.js';
import { ENTRY_HEADER_BYTES, MAX_COST, MAX_LIFETIME_MS, MAX_LINKS, MAX_SEQUENCE, MESSAGE_HEADER_BYTES, maxRecordBytes } from './codec.js';
import type { RoleOption, RouterOptions } from './types.js';

/** Every numeric router option with its default; the names are the router's own. */
export interface RouterSettings {
  readonly role: RoleOption;
  readonly demoteMs: number;
  readonly lifetimeMs: number;
  readonly refreshMs: number;
  readonly refreshJitter: number;
  readonly publishDelayMs: number;
  readonly minPublishMs: number;
  readonly backoffMs: number;
  readonly minArrivalMs: number;
  readonly refreshFloodDelayMs: number;
  readonly floodPacingMs: number;
  readonly spfDelayMs: number;
  readonly spfMinMs: number;
  readonly maxLinks: number;
  readonly fragmentLinks: number;
  readonly maxFragments: number;
  readonly maxRecordBytes: number;
  readonly maxMessageBytes: number;
  readonly maxRecords: number;
  readonly maxTableBytes: number;
  readonly maxOriginBytes: number;
  readonly maxRecordLifetimeMs: number;
  readonly costUnit: number;
  readonly costBase: number;
  readonly smoothing: number;
  readonly hystMin: number;
  readonly hystRatio: number;
  readonly holdMs: number;
  readonly defaultRtt: number;
  readonly initialSequence: bigint;
}

/** A numeric router option (ERR_BAD_OPTION naming it when out of range). */
function option(name: string, value: number | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  return numberOption('router option', name, value, fallback, { min, max });
}

/** A numeric router option that must be greater than 0. */
function positive(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  return numberOption('router option', name, value, fallback, { min: 0, above: true, max });
}

/** Checks the options in a fixed order (the first bad one is the one reported). */
export function routerSettings(options: RouterOptions): RouterSettings {
  const signer = options?.signer;
  if (signer === undefined || typeof signer.sign !== 'function' || typeof signer.nodeId !== 'string') {
    throw new PnetError('ERR_BAD_OPTION', 'router option signer must have nodeId and sign()');
  }
  const role = options.role ?? 'router';
  if (role !== 'router' && role !== 'leaf' && role !== 'auto') {
    throw new PnetError('ERR_BAD_OPTION', `router option role must be 'router', 'leaf' or 'auto', got ${String(role)}`);
  }
  const demoteMs = option('autoDemoteMs', options.autoDemoteMs, 300_000, 0);
  const lifetimeMs = option('recordLifetimeMs', options.recordLifetimeMs, 3_600_000, 1, MAX_LIFETIME_MS);
  const refreshMs = option('refreshIntervalMs', options.refreshIntervalMs, Math.min(1_800_000, Math.floor(lifetimeMs / 2)) || 1, 1, lifetimeMs - 1);
  const refreshJitter = option('refreshJitter', options.refreshJitter, 0.1, 0, 0.9);
  const publishDelayMs = option('publishDelayMs', options.publishDelayMs, 50, 0);
  const minPublishMs = option('minPublishIntervalMs', options.minPublishIntervalMs, 5_000, 0);
  const backoffMs = Math.min(minPublishMs, option('publishBackoffMs', options.publishBackoffMs, 1_000, 0));
  const minArrivalMs = option('minArrivalIntervalMs', options.minArrivalIntervalMs, 1_000, 0);
  const refreshFloodDelayMs = option('refreshFloodDelayMs', options.refreshFloodDelayMs, 2_000, 0);
  const floodPacingMs = option('floodPacingMs', options.floodPacingMs, 10, 0);
  const spfDelayMs = option('spfDelayMs', options.spfDelayMs, 10, 0);
  const spfMinMs = option('spfMinIntervalMs', options.spfMinIntervalMs, 100, 0);
  const maxLinks = Math.floor(option('maxLinks', options.maxLinks, MAX_LINKS, 1, MAX_LINKS));
  const fragmentLinks = Math.floor(option('fragmentLinks', options.fragmentLinks, Math.min(64, maxLinks), 1, maxLinks));
  const maxFragments = Math.floor(option('maxFragments', options.maxFragments, 1024, 1, 0x10000));
  const recordBytes = maxRecordBytes(maxLinks);
  const minMessage = MESSAGE_HEADER_BYTES + ENTRY_HEADER_BYTES + recordBytes;
  const maxMessageBytes = option('maxMessageBytes', options.maxMessageBytes, Math.max(65_536, minMessage), minMessage, 0xffff_ffff);
  const maxRecords = option('maxRecords', options.maxRecords, 100_000, 1);
  // Room for one largest record at least; the defaults fit 100,000 origins of ~670 bytes and a hub of ~100,000 stub links.
  const maxTableBytes = option('maxTableBytes', options.maxTableBytes, 64 * 1024 * 1024, recordBytes);
  const maxOriginBytes = option('maxOriginBytes', options.maxOriginBytes, Math.min(4 * 1024 * 1024, maxTableBytes), recordBytes, maxTableBytes);
  const maxRecordLifetimeMs = option('maxRecordLifetimeMs', options.maxRecordLifetimeMs, 3_600_000, 1, MAX_LIFETIME_MS);
  const cost = options.cost ?? {};
  const costs = {
    costUnit: positive('cost.unitMs', cost.unitMs, 1),
    costBase: option('cost.base', cost.base, 1, 0, MAX_COST),
    smoothing: positive('cost.smoothing', cost.smoothing, 0.125, 1),
    hystMin: option('cost.hysteresisMin', cost.hysteresisMin, 2, 0),
    hystRatio: option('cost.hysteresisRatio', cost.hysteresisRatio, 0.5, 0),
    holdMs: option('cost.holdMs', cost.holdMs, 30_000, 0),
    defaultRtt: option('cost.defaultRttMs', cost.defaultRttMs, 100, 0),
  };
  const initialSequence = options.initialSequence ?? 1n;
  if (typeof initialSequence !== 'bigint' || initialSequence < 1n || initialSequence > MAX_SEQUENCE) {
    throw new PnetError('ERR_BAD_OPTION', `router option initialSequence must be a bigint in 1..2^64-1, got ${String(initialSequence)}`);
  }
  return {
    role,
    demoteMs,
    lifetimeMs,
    refreshMs,
    refreshJitter,
    publishDelayMs,
    minPublishMs,
    backoffMs,
    minArrivalMs,
    refreshFloodDelayMs,
    floodPacingMs,
    spfDelayMs,
    spfMinMs,
    maxLinks,
    fragmentLinks,
    maxFragments,
    maxRecordBytes: recordBytes,
    maxMessageBytes,
    maxRecords,
    maxTableBytes,
    maxOriginBytes,
    maxRecordLifetimeMs,
    ...costs,
    initialSequence,
  };
}
