/**
 * What the command definitions share: exit codes, where output goes, argument parsers, and the
 * operator commands' common options and short-lived session.
 *
 * Defining the commands loads no part of pnet: an action imports what it uses when it runs
 * (`library()`, `output()`, its own modules), so `pnet --help`, `--version` and a usage error
 * cost only commander, and every command pays for its own needs only (docs/CLI.md, start time).
 */
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { NodeId } from '../../index.js';
import type { OperatorSession } from '../client.js';
import { DEFAULT_PORT, defaultKeyFile, expandHome } from '../defaults.js';
import type { Out } from '../output.js';

/** pnet's public API, loaded on first use (importing it costs ~0.6 s: TLS certificates, the QUIC binding, every layer). */
export function library(): Promise<typeof import('../../index.js')> {
  return import('../../index.js');
}

/** The table and number formatting (cli-table3, cli-progress), loaded when a command prints. */
export function output(): Promise<typeof import('../output.js')> {
  return import('../output.js');
}

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Where the CLI reads and writes; process's own by default, collectors in tests. */
export interface CliIO {
  readonly stdout: Out;
  readonly stderr: Out;
  readonly env: NodeJS.ProcessEnv;
  /** Resolves with a signal name when the daemon should stop (default: first SIGINT/SIGTERM). */
  readonly stopSignal?: () => Promise<string>;
}

/** A usage error found after parsing (bad targets file, conflicting flags): exit 2. */
export class UsageError extends Error {}

/** What every command's action may use: output and the exit code of a run that did not throw. */
export interface CommandContext {
  readonly io: CliIO;
  print(text: string): void;
  printJson(value: unknown): void;
  /** To stderr: notes for the human, never data. */
  note(text: string): void;
  setExit(code: number): void;
}

/** Adds one command to the program. */
export type AddCommand = (program: Command, ctx: CommandContext) => void;

export interface CommonOptions {
  json?: boolean;
}

export interface OperatorCliOptions extends CommonOptions {
  node: string;
  nodeId?: string;
  key: string;
  connectTimeout: number;
  timeout: number;
}

export function intArg(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in ${min}..${max}`);
    return n;
  };
}

export const collect = (value: string, previous: string[] = []): string[] => [...previous, ...value.split(',').map((part) => part.trim()).filter((part) => part !== '')];
export const collectRaw = (value: string, previous: string[] = []): string[] => [...previous, value];

/** A node id from the command line; ERR_BAD_NODE_ID (exit 2, a JSON error with --json) names where it came from. */
export async function nodeIdArg(value: string, where = 'node id'): Promise<NodeId> {
  const { PnetError, parseNodeId } = await library();
  try {
    return parseNodeId(value);
  } catch (error) {
    throw new PnetError('ERR_BAD_NODE_ID', `${where}: ${(error as Error).message}`, { cause: error });
  }
}

/** A command that talks to a running daemon, with the options every such command takes. */
export function operatorCommand(program: Command, { io }: CommandContext, name: string, description: string): Command {
  return program
    .command(name)
    .description(description)
    .option('--node <address>', 'the daemon to ask (env PNET_NODE)', io.env['PNET_NODE'] || `127.0.0.1:${DEFAULT_PORT}`)
    .option('--node-id <id>', "pin the daemon's node id (env PNET_NODE_ID)", io.env['PNET_NODE_ID'] || undefined)
    .option('--key <file>', 'operator key file, created when missing (env PNET_KEY)', io.env['PNET_KEY'] || defaultKeyFile('operator.key'))
    .option('--connect-timeout <ms>', 'QUIC handshake deadline', intArg(1, 600_000), 5000)
    .option('--timeout <ms>', 'deadline for the answer', intArg(1, 3_600_000), 10_000)
    .option('--json', 'machine-readable output');
}

/** Connects as the operator, runs `fn`, always closes the short-lived node. */
export async function withSession<T>(ctx: CommandContext, options: OperatorCliOptions, fn: (session: OperatorSession) => Promise<T>): Promise<T> {
  const nodeId = options.nodeId !== undefined && options.nodeId !== '' ? await nodeIdArg(options.nodeId, '--node-id (or PNET_NODE_ID)') : undefined;
  const { OperatorSession } = await import('../client.js');
  const session: OperatorSession = await OperatorSession.connect({
    node: options.node,
    ...(nodeId !== undefined ? { nodeId } : {}),
    keyFile: resolve(expandHome(options.key)),
    connectTimeoutMs: options.connectTimeout,
    onKeyCreated: (path, id) => ctx.note(`created operator key ${path}; its node id (add it to the daemon's "operators"):\n${id}\n`),
  });
  try {
    return await fn(session);
  } finally {
    await session.close().catch(() => undefined);
  }
}

/** The first SIGINT or SIGTERM (a daemon or `pnet ui` runs until then). */
export function firstSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
