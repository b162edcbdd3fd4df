/**
 * The `pnet` command line: argument parsing (commander) and exit codes. Each command is defined in
 * its own file under commands/; the operator commands talk to a running daemon over pnet itself
 * (see client.ts).
 *
 * Exit codes: 0 ok, 1 a target or operation failed, 2 usage or config error, 3 could not reach the node.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import type { PnetError } from '../index.js';
import type { ConnectError } from './client.js';
import { EXIT, UsageError, library } from './commands/common.js';
import type { AddCommand, CliIO, CommandContext } from './commands/common.js';
import { addExec } from './commands/exec.js';
import { addForget, addHosts } from './commands/hosts.js';
import { addPerf } from './commands/perf.js';
import { addUi } from './commands/ui.js';
import { addId } from './commands/id.js';
import { addInfo } from './commands/info.js';
import { addKeygen } from './commands/keygen.js';
import { addNode } from './commands/node.js';
import { addPeers } from './commands/peers.js';
import { addPing } from './commands/ping.js';
import { addRoutes } from './commands/routes.js';
import { addTopology } from './commands/topology.js';
import { addTrace } from './commands/trace.js';
import { readVersion } from './version.js';

/** The commands, in the order `pnet --help` lists them. */
const COMMANDS: readonly AddCommand[] = [addKeygen, addId, addNode, addInfo, addPeers, addRoutes, addHosts, addForget, addPing, addTrace, addPerf, addTopology, addExec, addUi];

/** Codes that mean the command line or a local file is wrong, not the network. */
const USAGE_CODES = new Set<string>(['ERR_CONFIG', 'ERR_BAD_OPTION', 'ERR_BAD_ADDRESS', 'ERR_BAD_NODE_ID', 'ERR_KEY_FILE']);

/** Runs the CLI with `argv` (without node and script) and resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIO = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const json = argv.includes('--json');
  let exitCode: number = EXIT.ok;
  const program = buildProgram(io, (code) => (exitCode = code));
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return usageFailed(error, io, json);
    const coded = await codedError(error);
    const code = exitCodeOf(error, coded);
    const pnetCode = coded !== undefined ? coded.code : error instanceof UsageError ? 'ERR_BAD_OPTION' : undefined;
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`pnet: ${message}${pnetCode && !(error instanceof UsageError) ? ` [${pnetCode}]` : ''}\n`);
    if (json) io.stdout.write(JSON.stringify({ error: { code: pnetCode ?? 'ERR_CLI', message } }) + '\n');
    return code;
  }
}

/**
 * Commander's own errors (unknown command or option, missing or invalid argument): it already
 * wrote its message to stderr; with --json the same goes to stdout as `{"error"}`. Help and
 * --version end here too, with 0.
 */
function usageFailed(error: CommanderError, io: CliIO, json: boolean): number {
  if (error.exitCode === 0 || error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return EXIT.ok;
  const message = error.message.replace(/^error: /, '');
  if (json) io.stdout.write(JSON.stringify({ error: { code: 'ERR_BAD_OPTION', message } }) + '\n');
  return EXIT.usage;
}

/**
 * The error as a PnetError or ConnectError, if it is one. Checked by name first: only a command
 * that loaded the library (or the client) can have thrown one, so the imports below are then
 * already loaded, and a usage error never pays for them.
 */
async function codedError(error: unknown): Promise<PnetError | ConnectError | undefined> {
  if (!(error instanceof Error)) return undefined;
  if (error.name === 'ConnectError') {
    const { ConnectError } = await import('./client.js');
    return error instanceof ConnectError ? error : undefined;
  }
  if (!('code' in error) || typeof error.code !== 'string') return undefined;
  const { PnetError } = await library();
  return error instanceof PnetError ? error : undefined;
}

function exitCodeOf(error: unknown, coded: PnetError | ConnectError | undefined): number {
  if (coded?.name === 'ConnectError') return coded.code === 'ERR_BAD_ADDRESS' ? EXIT.usage : EXIT.unreachable;
  if (error instanceof UsageError || error instanceof InvalidArgumentError) return EXIT.usage;
  if (coded !== undefined && USAGE_CODES.has(coded.code)) return EXIT.usage;
  return EXIT.failed;
}

function buildProgram(io: CliIO, setExit: (code: number) => void): Command {
  const print = (text: string): void => void io.stdout.write(text);
  const note = (text: string): void => void io.stderr.write(text);
  const ctx: CommandContext = { io, print, printJson: (value) => print(JSON.stringify(value, null, 2) + '\n'), note, setExit };
  const program = new Command('pnet')
    .description('pnet: QUIC-first peer-to-peer networking. Run a node daemon, or command one as an operator.')
    .version(readVersion(), '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: print, writeErr: note })
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions();
  for (const add of COMMANDS) add(program, ctx);
  return program;
}
