/** `pnet ping`: round trips from the node to another, over its route. */
import type { Command } from 'commander';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { PingReply, PingTry } from '../ops/wire.js';
import { EXIT, intArg, nodeIdArg, operatorCommand, output, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

type PingOptions = OperatorCliOptions & { count: number; interval: number; probeTimeout: number };

export function addPing(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'ping', 'measure round trips from the node to NODE (over its route; one stream, COUNT tries)')
    .argument('<nodeId>', 'the node to ping')
    .option('--count <n>', 'tries', intArg(1, 100), 3)
    .option('--interval <ms>', 'pause between tries', intArg(0, 10_000), 200)
    .option('--probe-timeout <ms>', 'wait for each answer (and for opening the stream)', intArg(1, 60_000), 2000)
    .action(async (node: string, options: PingOptions) => {
      const target = await nodeIdArg(node, 'NODE');
      // Opening the stream, then every try and pause, then slack for the reply itself.
      const budget = options.probeTimeout + options.count * (options.interval + options.probeTimeout) + options.timeout;
      const reply = await withSession(ctx, options, (s) =>
        s.call<PingReply>(OPS_CHANNELS.ping, { target, count: options.count, intervalMs: options.interval, timeoutMs: options.probeTimeout }, budget),
      );
      const times = reply.tries.flatMap((t) => (t.ms !== undefined ? [t.ms] : []));
      const summary = {
        sent: reply.tries.length,
        received: times.length,
        lossPct: reply.tries.length === 0 ? 100 : Math.round((1 - times.length / reply.tries.length) * 1000) / 10,
        ...(times.length > 0 ? { minMs: Math.min(...times), avgMs: times.reduce((a, b) => a + b, 0) / times.length, maxMs: Math.max(...times) } : {}),
      };
      if (options.json) ctx.printJson({ ...reply, summary });
      else {
        const { formatNumber } = await output();
        ctx.print(`PING ${reply.target} from ${reply.from}${reply.setupMs !== undefined ? ` (stream opened in ${formatNumber(reply.setupMs)} ms)` : ''}\n`);
        for (const t of reply.tries) ctx.print(tryLine(t, formatNumber) + '\n');
        ctx.print(
          `${summary.sent} sent, ${summary.received} received, ${summary.lossPct}% loss` +
            (times.length > 0 ? `, rtt min/avg/max = ${formatNumber(summary.minMs!)}/${formatNumber(summary.avgMs!)}/${formatNumber(summary.maxMs!)} ms` : '') +
            '\n',
        );
      }
      // Like ping(8): success when at least one answer came back.
      if (times.length === 0) ctx.setExit(EXIT.failed);
    });
}

function tryLine(t: PingTry, formatNumber: (value: number) => string): string {
  return t.ms !== undefined ? `seq=${t.seq} time=${formatNumber(t.ms)} ms` : `seq=${t.seq} failed: ${t.error?.code ?? 'error'} ${t.error?.message ?? ''}`.trimEnd();
}
