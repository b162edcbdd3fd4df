/** `pnet routes`: the node's routing table. */
import type { Command } from 'commander';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { RouteReply } from '../ops/wire.js';
import { operatorCommand, output, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

export function addRoutes(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'routes', "show the node's routing table: every node it reaches, through which neighbour, at what cost").action(async (options: OperatorCliOptions) => {
    const routes = await withSession(ctx, options, (s) => s.call<RouteReply[]>(OPS_CHANNELS.routes, {}, options.timeout));
    if (options.json) return ctx.printJson(routes);
    const { table } = await output();
    ctx.print(table(['node id', 'next hop', 'hops', 'cost'], routes.map((r) => [r.nodeId, r.nextHop, r.hops, r.cost])));
  });
}
