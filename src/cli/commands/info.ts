/** `pnet info`: what the node is. */
import type { Command } from 'commander';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { InfoReply } from '../ops/wire.js';
import { operatorCommand, output, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

export function addInfo(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'info', 'show what the node is: id, address, version, peers, nodes it routes to, allowed commands').action(async (options: OperatorCliOptions) => {
    const info = await withSession(ctx, options, (s) => s.call<InfoReply>(OPS_CHANNELS.info, {}, options.timeout));
    if (options.json) return ctx.printJson(info);
    const { table } = await output();
    ctx.print(
      table(
        ['field', 'value'],
        [
          ['node id', info.nodeId],
          ['address', info.addresses.join(', ')],
          ['listen', info.listen],
          ['version', info.version],
          ['uptime s', Math.round(info.uptimeMs / 1000)],
          ['peers', info.peers],
          ['nodes', info.nodes],
          ['commands', info.commands.join(', ') || '(none)'],
          ['shell', info.allowShell ? 'allowed' : 'off'],
        ],
      ),
    );
  });
}
