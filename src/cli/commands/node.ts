/** `pnet node`: run a node daemon with the ops service. */
import { resolve } from 'node:path';
import { Option } from 'commander';
import type { Command } from 'commander';
import type { DaemonConfigFile } from '../config.js';
import type { LogLevel } from '../daemon.js';
import { expandHome } from '../defaults.js';
import { collect, collectRaw, firstSignal } from './common.js';
import type { CommandContext } from './common.js';

interface NodeCliOptions {
  config?: string;
  listen?: string;
  key?: string;
  bootstrap?: string[];
  operator?: string[];
  allow?: string[];
  logLevel: LogLevel;
}

export function addNode(program: Command, { io }: CommandContext): void {
  program
    .command('node')
    .description('run a node daemon: join the network, serve the ops channels to the configured operators, log one JSON line per event')
    .option('-c, --config <file>', 'config file (JSON; see docs/CLI.md)')
    .option('--listen <address>', 'listen address host:port (overrides the config)')
    .option('--key <file>', 'key file (overrides the config; created when missing)')
    .option('--bootstrap <address>', 'a node to join through (repeatable, or comma-separated)', collect)
    .option('--operator <nodeId>', 'an operator node id allowed to command this node (repeatable)', collect)
    .option('--allow <command>', 'allow-list a command: NAME or "NAME=program arg ..." (repeatable; no shell, no extra args)', collectRaw)
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'))
    .option('--json', 'accepted for symmetry: the daemon always logs JSON lines')
    // Read by the executable before this parser runs (main.ts, huge-pages.ts): declared for --help and acceptance.
    .option('--huge-pages', 're-execute at start with glibc malloc on transparent huge pages (also PNET_HUGE_PAGES=1; docs/CLI.md)')
    .action(async (options: NodeCliOptions) => {
      const [{ commandFromFlag, loadConfig, validateConfig }, { createLogger, runDaemon }] = await Promise.all([import('../config.js'), import('../daemon.js')]);
      const base = options.config !== undefined ? await loadConfig(options.config) : validateConfig({}, 'flags');
      // Flags override (listen, key) or extend (bootstrap, operators, commands) the file; the result is validated as a whole.
      const merged: DaemonConfigFile = {
        listen: options.listen ?? base.listen,
        keyFile: options.key !== undefined ? resolve(expandHome(options.key)) : base.keyFile,
        bootstrap: [...base.bootstrap, ...(options.bootstrap ?? [])],
        operators: [...base.operators, ...(options.operator ?? [])],
        allowShell: base.allowShell,
        maxConcurrentExec: base.maxConcurrentExec,
        commands: { ...base.commands, ...Object.fromEntries((options.allow ?? []).map(commandFromFlag)) } as DaemonConfigFile['commands'],
        // Already checked against the file's metricsAllowRemote.
        ...(base.metrics !== undefined ? { metrics: base.metrics, metricsAllowRemote: true } : {}),
        ...(base.name !== undefined ? { name: base.name } : {}),
        ...(base.labels !== undefined ? { labels: { ...base.labels } } : {}),
        ...(base.role !== undefined ? { routing: { role: base.role } } : {}),
      };
      const config = validateConfig(merged, options.config ?? 'flags');
      const logger = createLogger(options.logLevel);
      const stop = (io.stopSignal ?? firstSignal)();
      await runDaemon(config, logger, stop);
    });
}
