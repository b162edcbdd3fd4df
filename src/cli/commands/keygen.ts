/** `pnet keygen`: create a node identity and print its node id. */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { defaultKeyFile, expandHome } from '../defaults.js';
import { UsageError, library } from './common.js';
import type { CommandContext, CommonOptions } from './common.js';

export function addKeygen(program: Command, { print, printJson, note }: CommandContext): void {
  program
    .command('keygen')
    .description("create a new identity (Ed25519 key, mode 0600) and print its node id; by default the operator's key, where the operator commands look for it")
    .option('--out <file>', 'where to write the key (a daemon creates its own keyFile when missing)', defaultKeyFile('operator.key'))
    .option('--force', 'replace an existing key file (its identity is lost)')
    .option('--json', 'machine-readable output')
    .action(async (options: CommonOptions & { out: string; force?: boolean }) => {
      const file = resolve(expandHome(options.out));
      const existing = await stat(file).catch(() => undefined);
      if (existing && !options.force) throw new UsageError(`${file} exists; pass --force to replace it (the identity it holds is lost)`);
      const { Identity, saveIdentity } = await library();
      const identity = await Identity.generate();
      await saveIdentity(identity, file);
      if (options.json) printJson({ nodeId: identity.nodeId, keyFile: file });
      else {
        print(identity.nodeId + '\n');
        note(`key written to ${file} (mode 0600)\n`);
      }
    });
}
