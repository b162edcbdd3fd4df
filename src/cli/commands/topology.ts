/** `pnet topology`: the network map as the node knows it. */
import { Option } from 'commander';
import type { Command } from 'commander';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { TopologyReply } from '../ops/wire.js';
import { operatorCommand, output, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

export function addTopology(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'topology', 'print the network map as the node knows it (JSON, or Graphviz DOT)')
    .addOption(new Option('--format <format>', 'output format').choices(['json', 'dot']).default('json'))
    .action(async (options: OperatorCliOptions & { format: 'json' | 'dot' }) => {
      const topology = await withSession(ctx, options, (s) => s.call<TopologyReply>(OPS_CHANNELS.topology, {}, options.timeout));
      if (options.format === 'dot') ctx.print((await output()).toDot(topology));
      else ctx.printJson(topology);
    });
}
