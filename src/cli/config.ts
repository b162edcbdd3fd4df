/**
 * The daemon's config: where it listens, its key, whom it joins, which operators may command it
 * and which commands they may run. Validated up front with every problem listed, so a typo is
 * an exit-2 message at start and never a surprise at the first exec.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { PnetError, parseAddress, parseNodeId } from '../index.js';
import type { NodeId } from '../index.js';
import { DEFAULT_PORT, defaultKeyFile, expandHome } from './defaults.js';
import { DEFAULT_METRICS_ADDRESS, isLoopback } from './metrics.js';

export { DEFAULT_PORT, defaultKeyFile, expandHome };
const DEFAULT_LISTEN = `0.0.0.0:${DEFAULT_PORT}`;
const DEFAULT_TIMEOUT_MS = 30_000;
export const MAX_TIMEOUT_MS = 24 * 3600 * 1000;
const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024;
/** Per stream; the JSON reply (both streams, escaped) must stay under fan-out's 16 MiB reply cap. */
const MAX_OUTPUT_BYTES = 1024 * 1024;
const DEFAULT_MAX_CONCURRENT_EXEC = 8;
const COMMAND_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** One allow-listed command as written in the config file. */
export interface CommandConfig {
  /** Program and fixed arguments, run directly (no shell). */
  argv?: string[];
  /** A /bin/sh -c script instead of argv; refused unless the config sets allowShell. */
  script?: string;
  /** Operators may append arguments (as argv entries, or $1.. of a script). Default false. */
  allowArgs?: boolean;
  timeoutMs?: number;
  maxOutputBytes?: number;
  /** Working directory (relative paths are from the config file's directory). */
  cwd?: string;
}

/** A command after validation: exactly one of argv / script, every limit set. */
export type CommandSpec = {
  readonly allowArgs: boolean;
  readonly timeoutMs: number;
  readonly maxOutputBytes: number;
  readonly cwd?: string;
} & ({ readonly argv: readonly string[]; readonly script?: undefined } | { readonly script: string; readonly argv?: undefined });

/** What the ops service needs (a subset of the daemon config; the demo passes it directly). */
export interface OpsConfig {
  /** Node ids allowed to use the ops channels. */
  readonly operators: readonly NodeId[];
  readonly commands: Readonly<Record<string, CommandSpec>>;
  readonly allowShell: boolean;
  /** Commands running at once on this host; more are refused with OVERLOADED. */
  readonly maxConcurrentExec: number;
  /** This host's name (`--targets name=...`). */
  readonly name?: string;
  /** This host's labels (`--targets role=web`). */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface DaemonConfig extends OpsConfig {
  readonly listen: string;
  readonly keyFile: string;
  readonly bootstrap: readonly string[];
  /** Where the Prometheus endpoint listens ("host:port"); undefined: no endpoint. */
  readonly metrics?: string;
  /** The routing role (createNode's routing.role); undefined: the library's default. */
  readonly role?: RoutingRole;
}

export type RoutingRole = 'router' | 'leaf' | 'auto';
const ROLES: readonly RoutingRole[] = ['router', 'leaf', 'auto'];
const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The config file's JSON shape (every field optional; defaults in docs/CLI.md). */
export interface DaemonConfigFile {
  listen?: string;
  keyFile?: string;
  bootstrap?: string[];
  operators?: string[];
  allowShell?: boolean;
  maxConcurrentExec?: number;
  commands?: Record<string, CommandConfig>;
  /** Prometheus endpoint: true (127.0.0.1:9464), "host:port", or false/absent (off). */
  metrics?: boolean | string;
  /** Lets `metrics` listen on a non-loopback address (default false). */
  metricsAllowRemote?: boolean;
  name?: string;
  labels?: Record<string, string>;
  routing?: { role?: RoutingRole };
}

const TOP_KEYS = new Set(['listen', 'keyFile', 'bootstrap', 'operators', 'allowShell', 'maxConcurrentExec', 'commands', 'metrics', 'metricsAllowRemote', 'name', 'labels', 'routing']);
const COMMAND_KEYS = new Set(['argv', 'script', 'allowArgs', 'timeoutMs', 'maxOutputBytes', 'cwd']);

/** Accumulates problems so one run reports all of them. */
class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
  throwIfAny(source: string): void {
    if (this.list.length === 0) return;
    throw new PnetError('ERR_CONFIG', `invalid config ${source}:\n  - ${this.list.join('\n  - ')}`);
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function unknownKeys(problems: Problems, path: string, value: Record<string, unknown>, allowed: Set<string>): void {
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) {
      const hint = key === 'shell' ? ' (use "script" for a shell command, with allowShell: true)' : '';
      problems.add(path === '' ? key : `${path}.${key}`, `unknown key${hint}; known: ${[...allowed].join(', ')}`);
    }
  }
}

function integer(problems: Problems, path: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    problems.add(path, `must be an integer in ${min}..${max}, got ${JSON.stringify(value)}`);
    return fallback;
  }
  return value;
}

function address(problems: Problems, path: string, value: unknown): string | undefined {
  if (typeof value !== 'string') {
    problems.add(path, `must be an address "host:port", got ${JSON.stringify(value)}`);
    return undefined;
  }
  try {
    parseAddress(value);
    return value;
  } catch (error) {
    problems.add(path, (error as Error).message);
    return undefined;
  }
}

function stringList(problems: Problems, path: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    problems.add(path, 'must be an array');
    return [];
  }
  return value as string[];
}

/** The metrics endpoint's address: off unless set, loopback unless metricsAllowRemote says otherwise. */
function metricsAddress(problems: Problems, value: unknown, allowRemote: unknown): string | undefined {
  if (allowRemote !== undefined && typeof allowRemote !== 'boolean') problems.add('metricsAllowRemote', 'must be true or false');
  if (value === undefined || value === false) return undefined;
  if (value === true) return DEFAULT_METRICS_ADDRESS;
  if (typeof value !== 'string') {
    problems.add('metrics', `must be true, false or an address "host:port", got ${JSON.stringify(value)}`);
    return undefined;
  }
  const parsed = address(problems, 'metrics', value);
  if (parsed === undefined) return undefined;
  if (!isLoopback(parseAddress(parsed).host) && allowRemote !== true) {
    problems.add('metrics', `${parsed} is not a loopback address: metrics tell anyone who can reach them about this node; set "metricsAllowRemote": true to serve them there`);
    return undefined;
  }
  return parsed;
}

/** Validates the commands map; `baseDir` resolves relative cwd paths. */
export function validateCommands(raw: unknown, allowShell: boolean, baseDir = process.cwd(), problems = new Problems(), path = 'commands'): Record<string, CommandSpec> {
  const commands: Record<string, CommandSpec> = Object.create(null) as Record<string, CommandSpec>;
  if (raw === undefined) return commands;
  if (!isObject(raw)) {
    problems.add(path, 'must be an object { name: { argv: [...] } }');
    return commands;
  }
  for (const [name, entry] of Object.entries(raw)) {
    const at = `${path}.${name}`;
    if (!COMMAND_NAME.test(name)) problems.add(at, 'a command name is 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)');
    if (!isObject(entry)) {
      problems.add(at, 'must be an object with "argv" (or "script")');
      continue;
    }
    unknownKeys(problems, at, entry, COMMAND_KEYS);
    const limits = {
      allowArgs: false,
      timeoutMs: integer(problems, `${at}.timeoutMs`, entry['timeoutMs'], DEFAULT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS),
      maxOutputBytes: integer(problems, `${at}.maxOutputBytes`, entry['maxOutputBytes'], DEFAULT_MAX_OUTPUT_BYTES, 0, MAX_OUTPUT_BYTES),
      ...(typeof entry['cwd'] === 'string' ? { cwd: resolve(baseDir, entry['cwd']) } : {}),
    };
    if (entry['allowArgs'] !== undefined) {
      if (typeof entry['allowArgs'] !== 'boolean') problems.add(`${at}.allowArgs`, 'must be true or false');
      else limits.allowArgs = entry['allowArgs'];
    }
    if (entry['cwd'] !== undefined && (typeof entry['cwd'] !== 'string' || entry['cwd'] === '')) problems.add(`${at}.cwd`, 'must be a directory path');
    const argv = entry['argv'];
    const script = entry['script'];
    if (argv !== undefined && script !== undefined) {
      problems.add(at, 'has both "argv" and "script"; give one');
    } else if (script !== undefined) {
      if (typeof script !== 'string' || script.trim() === '') problems.add(`${at}.script`, 'must be a non-empty string');
      else if (!allowShell) problems.add(`${at}.script`, 'shell scripts are off: set "allowShell": true at the top of the config to allow them');
      else commands[name] = { ...limits, script };
    } else if (argv !== undefined) {
      if (!Array.isArray(argv) || argv.length === 0 || !argv.every((part) => typeof part === 'string' && part !== '' && !part.includes('\0'))) {
        problems.add(`${at}.argv`, 'must be a non-empty array of non-empty strings (program first)');
      } else {
        commands[name] = { ...limits, argv: [...(argv as string[])] };
      }
    } else {
      problems.add(at, 'needs "argv": ["program", "arg", ...]');
    }
  }
  return commands;
}

/** Normalises the parts the ops service uses (for library users such as the demo). */
export function validateOpsConfig(raw: { operators?: readonly string[]; commands?: Record<string, CommandConfig>; allowShell?: boolean; maxConcurrentExec?: number }, source = 'ops config'): OpsConfig {
  const problems = new Problems();
  const allowShell = raw.allowShell ?? false;
  if (typeof allowShell !== 'boolean') problems.add('allowShell', 'must be true or false');
  const operators = operatorsOf(problems, raw.operators);
  const commands = validateCommands(raw.commands, allowShell === true, process.cwd(), problems);
  const maxConcurrentExec = integer(problems, 'maxConcurrentExec', raw.maxConcurrentExec, DEFAULT_MAX_CONCURRENT_EXEC, 1, 10_000);
  problems.throwIfAny(source);
  return { operators, commands, allowShell: allowShell === true, maxConcurrentExec };
}

function operatorsOf(problems: Problems, raw: unknown): NodeId[] {
  const out: NodeId[] = [];
  stringList(problems, 'operators', raw).forEach((value, i) => {
    try {
      if (typeof value !== 'string') throw new Error(`must be a node id string, got ${JSON.stringify(value)}`);
      out.push(parseNodeId(value));
    } catch (error) {
      problems.add(`operators[${i}]`, (error as Error).message);
    }
  });
  return out;
}

/**
 * Validates a parsed config file. `source` names it in messages; `baseDir` (the file's
 * directory) resolves a relative keyFile and cwd.
 * @throws PnetError ERR_CONFIG listing every problem
 */
export function validateConfig(raw: unknown, source = 'config', baseDir = process.cwd()): DaemonConfig {
  const problems = new Problems();
  if (!isObject(raw)) {
    problems.add('(top)', 'must be a JSON object');
    problems.throwIfAny(source);
  }
  const config = raw as Record<string, unknown>;
  unknownKeys(problems, '', config, TOP_KEYS);
  const listen = config['listen'] === undefined ? DEFAULT_LISTEN : (address(problems, 'listen', config['listen']) ?? DEFAULT_LISTEN);
  let keyFile = defaultKeyFile('node.key');
  if (config['keyFile'] !== undefined) {
    if (typeof config['keyFile'] !== 'string' || config['keyFile'] === '') problems.add('keyFile', 'must be a file path');
    else keyFile = resolve(baseDir, expandHome(config['keyFile']));
  }
  const bootstrap: string[] = [];
  stringList(problems, 'bootstrap', config['bootstrap']).forEach((value, i) => {
    const parsed = address(problems, `bootstrap[${i}]`, value);
    if (parsed !== undefined) bootstrap.push(parsed);
  });
  const operators = operatorsOf(problems, config['operators']);
  let allowShell = false;
  if (config['allowShell'] !== undefined) {
    if (typeof config['allowShell'] !== 'boolean') problems.add('allowShell', 'must be true or false');
    else allowShell = config['allowShell'];
  }
  const maxConcurrentExec = integer(problems, 'maxConcurrentExec', config['maxConcurrentExec'], DEFAULT_MAX_CONCURRENT_EXEC, 1, 10_000);
  const commands = validateCommands(config['commands'], allowShell, baseDir, problems);
  const metrics = metricsAddress(problems, config['metrics'], config['metricsAllowRemote']);
  const facts = factsOf(problems, config['name'], config['labels']);
  const role = roleOf(problems, config['routing']);
  problems.throwIfAny(source);
  return { listen, keyFile, bootstrap, operators, allowShell, maxConcurrentExec, commands, ...facts, ...(metrics !== undefined ? { metrics } : {}), ...(role !== undefined ? { role } : {}) };
}

/** `name` and `labels`: what `--targets name=...` and `--targets KEY=VALUE` select on. */
function factsOf(problems: Problems, name: unknown, labels: unknown): { name?: string; labels: Record<string, string> } {
  const out: { name?: string; labels: Record<string, string> } = { labels: {} };
  if (name !== undefined) {
    if (typeof name !== 'string' || name === '' || name.length > 255) problems.add('name', 'must be a non-empty string (at most 255 characters)');
    else out.name = name;
  }
  if (labels === undefined) return out;
  if (!isObject(labels)) {
    problems.add('labels', 'must be an object of strings: { "role": "web" }');
    return out;
  }
  for (const [key, value] of Object.entries(labels)) {
    if (!LABEL_KEY.test(key) || key === 'name') problems.add(`labels.${key}`, 'a label key is 1-64 of A-Z a-z 0-9 . _ - and not "name"');
    else if (typeof value !== 'string' || value.length > 255 || value.includes(',') || value.includes('=')) problems.add(`labels.${key}`, 'must be a string of at most 255 characters without "," or "="');
    else out.labels[key] = value;
  }
  return out;
}

/** `routing: { role }`: passed to createNode({ routing: { role } }). */
function roleOf(problems: Problems, routing: unknown): RoutingRole | undefined {
  if (routing === undefined) return undefined;
  if (!isObject(routing)) {
    problems.add('routing', 'must be an object: { "role": "router" }');
    return undefined;
  }
  unknownKeys(problems, 'routing', routing, new Set(['role']));
  const role = routing['role'];
  if (role === undefined) return undefined;
  if (typeof role !== 'string' || !ROLES.includes(role as RoutingRole)) {
    problems.add('routing.role', `must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`);
    return undefined;
  }
  return role as RoutingRole;
}

/** Reads and validates a config file (JSON). */
export async function loadConfig(path: string): Promise<DaemonConfig> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new PnetError('ERR_CONFIG', `cannot read config ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new PnetError('ERR_CONFIG', `config ${file} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  return validateConfig(raw, file, dirname(file));
}

/** `--allow NAME` or `--allow "NAME=program arg ..."` (split on spaces; no quoting, no shell). */
export function commandFromFlag(flag: string): [string, CommandConfig] {
  const eq = flag.indexOf('=');
  const name = (eq < 0 ? flag : flag.slice(0, eq)).trim();
  const argv = (eq < 0 ? name : flag.slice(eq + 1)).split(/\s+/).filter((part) => part !== '');
  return [name, { argv }];
}
