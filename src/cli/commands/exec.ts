/** `pnet exec`: run an allow-listed command on many nodes through fan-out (the work is in exec-run.ts, loaded on use). */
import type { Command } from 'commander';
import { intArg, operatorCommand } from './common.js';
import type { CommandContext } from './common.js';
import type { ExecOptions, TargetSpec } from './exec-run.js';

export type { TargetSpec };

export function addExec(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'exec', 'run an allow-listed command on many nodes through fan-out: `pnet exec --targets all -- NAME ARGS...`')
    .requiredOption('--targets <targets>', "'all' (every host the node has seen), KEY=VALUE[,KEY=VALUE] (labels, or name=), a comma-separated list of node ids, or @FILE (one id per line, # comments)")
    .option('--reachable-only', "with 'all' or labels: only the hosts in the map now (the others are listed as skipped, not failed)")
    .option('--command-timeout <ms>', "ask hosts to stop the command sooner than their configured limit", intArg(1, 86_400_000))
    .option('--deadline <ms>', 'per-target deadline for an answer (default: command timeout + 5 s, or 60 s)', intArg(1, 3_600_000))
    .option('--concurrency <n>', 'targets in flight at once (explicit target lists)', intArg(1, 1_000_000))
    .option('--output', 'print every host\'s stdout and stderr')
    .option('--no-progress', 'no progress bar or per-target lines')
    .argument('<command>', 'the allow-list name of the command')
    .argument('[args...]', 'arguments (only for commands the hosts allow arguments for)')
    .passThroughOptions()
    .action(async (command: string, args: string[], options: ExecOptions) => {
      const { runExec } = await import('./exec-run.js');
      await runExec(ctx, command, args, options);
    });
}

/** `all`, "KEY=VALUE,...", "ID,ID", or "@file" with one id per line ('#' starts a comment). */
export async function parseTargets(spec: string): Promise<TargetSpec> {
  return (await import('./exec-run.js')).parseTargets(spec);
}
