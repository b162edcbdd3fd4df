/** `pnet hosts` and `pnet forget`: the daemon's inventory of the hosts it has seen. */
import type { Command } from 'commander';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { ForgetReply, InventoryReply } from '../ops/wire.js';
import { nodeIdArg, operatorCommand, output, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

export function addHosts(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'hosts', 'list every host the node has seen (its inventory): reachable now or when last, name and labels').action(async (options: OperatorCliOptions) => {
    const reply = await withSession(ctx, options, (s) => s.call<InventoryReply>(OPS_CHANNELS.inventory, {}, options.timeout));
    if (options.json) return ctx.printJson(reply);
    const { table } = await output();
    const now = Date.now();
    ctx.print(
      table(
        ['node id', 'name', 'labels', 'reachable', 'last reachable'],
        reply.hosts.map((h) => [
          h.nodeId,
          h.name ?? '',
          Object.entries(h.labels).map(([k, v]) => `${k}=${v}`).join(',') || '',
          h.reachable ? 'yes' : 'NO',
          h.reachable ? 'now' : `${ago(now - Date.parse(h.lastReachable))} ago`,
        ]),
      ),
    );
  });
}

export function addForget(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'forget', "drop a host from the node's inventory (one still in the map is remembered again)")
    .argument('<nodeId>', 'the host to forget')
    .action(async (node: string, options: OperatorCliOptions) => {
      const nodeId = await nodeIdArg(node, 'NODE');
      const reply = await withSession(ctx, options, (s) => s.call<ForgetReply>(OPS_CHANNELS.forget, { nodeId }, options.timeout));
      if (options.json) return ctx.printJson(reply);
      ctx.print(`${reply.forgotten ? 'forgot' : 'did not know'} ${reply.nodeId}\n`);
      if (reply.reachable) ctx.note('it is in the network map now: it will be remembered again at the next sweep\n');
    });
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}
