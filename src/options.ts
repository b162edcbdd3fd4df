import { PnetError } from './errors.js';

/** What a numeric option may be: bounds (inclusive unless `above`), whole numbers only. */
export interface NumberRule {
  /** Smallest value allowed (default 0). */
  readonly min?: number;
  /** Largest value allowed (default Number.MAX_SAFE_INTEGER). */
  readonly max?: number;
  /** The value must be greater than `min`, not equal to it (durations and sizes that cannot be 0). */
  readonly above?: boolean;
  /** Whole numbers only. */
  readonly integer?: boolean;
}

/**
 * The one option checker of every layer: `undefined` takes `fallback`; anything else must be a
 * finite number within `rule`, else ERR_BAD_OPTION naming the option (`where` says whose it is,
 * e.g. "router option").
 */
export function numberOption(where: string, name: string, value: unknown, fallback: number, rule: NumberRule = {}): number {
  const v = value ?? fallback;
  const { min = 0, max = Number.MAX_SAFE_INTEGER, above = false, integer = false } = rule;
  const ok = typeof v === 'number' && Number.isFinite(v) && (above ? v > min : v >= min) && v <= max && (!integer || Number.isInteger(v));
  if (!ok) {
    const kind = integer ? 'an integer' : 'a number';
    const range = above ? `> ${min}` : max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
    throw new PnetError('ERR_BAD_OPTION', `${where ? `${where} ` : ''}${name} must be ${kind} ${range}, got ${String(value)}`);
  }
  return v as number;
}

/** `true`/`undefined` → `{}`, `false` → undefined, an object → itself; anything else is ERR_BAD_OPTION. */
export function sectionOption<T extends object>(name: string, value: boolean | T | undefined): T | undefined {
  if (value === undefined || value === true) return {} as T;
  if (value === false) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PnetError('ERR_BAD_OPTION', `${name} must be true, false or an options object, got ${JSON.stringify(value)}`);
  }
  return value;
}
