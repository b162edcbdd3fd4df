/** `pnet id`: the node id of an existing key file. */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { defaultKeyFile, expandHome } from '../defaults.js';
import { library } from './common.js';
import type { CommandContext, CommonOptions } from './common.js';

export function addId(program: Command, { print, printJson }: CommandContext): void {
  program
    .command('id')
    .description('print the node id of an existing key file')
    .option('--key <file>', 'key file', defaultKeyFile('operator.key'))
    .option('--json', 'machine-readable output')
    .action(async (options: CommonOptions & { key: string }) => {
      const file = resolve(expandHome(options.key));
      const { Identity, PnetError } = await library();
      let pem: string;
      try {
        pem = await readFile(file, 'utf8');
      } catch (error) {
        throw new PnetError('ERR_KEY_FILE', `cannot read key file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
      const identity = await Identity.fromPrivateKeyPem(pem);
      if (options.json) printJson({ nodeId: identity.nodeId, keyFile: file });
      else print(identity.nodeId + '\n');
    });
}
