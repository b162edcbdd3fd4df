/** `pnet peers`: the node's direct connections. */
import type { Command } from 'commander';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { PeerReply } from '../ops/wire.js';
import { operatorCommand, output, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

export function addPeers(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'peers', "list the node's direct connections (this CLI's own connection is left out)").action(async (options: OperatorCliOptions) => {
    const list = await withSession(ctx, options, (s) => s.call<PeerReply[]>(OPS_CHANNELS.peers, {}, options.timeout));
    if (options.json) return ctx.printJson(list);
    const { table } = await output();
    ctx.print(table(['node id', 'address', 'direction', 'rtt ms', 'streams'], list.map((p) => [p.nodeId, p.address, p.direction, p.rttMs, p.streams])));
  });
}
