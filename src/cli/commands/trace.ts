/** `pnet trace`: the hop path from the node to another, with the round trip to each hop. */
import type { Command } from 'commander';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { TraceReply } from '../ops/wire.js';
import { EXIT, intArg, nodeIdArg, operatorCommand, output, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

export function addTrace(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'trace', 'show the hop path from the node to NODE with the round trip to each hop')
    .argument('<nodeId>', 'the node to trace')
    .option('--count <n>', 'tries per hop', intArg(1, 10), 1)
    .option('--probe-timeout <ms>', 'wait for each answer (and for opening each stream)', intArg(1, 60_000), 2000)
    .action(async (node: string, options: OperatorCliOptions & { count: number; probeTimeout: number }) => {
      const target = await nodeIdArg(node, 'NODE');
      // Hops are probed in parallel: one stream opening plus COUNT tries, then slack for the reply.
      const budget = (options.count + 1) * options.probeTimeout + options.timeout;
      const reply = await withSession(ctx, options, (s) => s.call<TraceReply>(OPS_CHANNELS.trace, { target, count: options.count, timeoutMs: options.probeTimeout }, budget));
      if (options.json) ctx.printJson(reply);
      else {
        const { table } = await output();
        ctx.print(`trace ${reply.target} from ${reply.from}: ${reply.hops.length - 1} hop(s)\n`);
        ctx.print(table(['hop', 'node id', 'cost', 'rtt ms'], reply.hops.map((h) => [h.hop, h.nodeId, h.cost, h.ms ?? (h.tries[0]?.error?.code ?? '-')])));
      }
      if (reply.hops.at(-1)?.ms === undefined) ctx.setExit(EXIT.failed);
    });
}
