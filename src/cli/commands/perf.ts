/** `pnet perf NODE`: throughput both ways and round-trip percentiles from the daemon to NODE, like iperf3. */
import type { Command } from 'commander';
import { OPS_CHANNELS } from '../ops/wire.js';
import type { PerfDirection, PerfReply, PerfRequest } from '../ops/wire.js';
import { intArg, nodeIdArg, operatorCommand, output, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';

type PerfOptions = OperatorCliOptions & { bytes: number; count: number; transferTimeout: number };

export function addPerf(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'perf', 'measure from the node to NODE: round-trip percentiles, then throughput up and down (direct or relayed, on its route)')
    .argument('<nodeId>', 'the node to measure against')
    .option('--bytes <n>', 'bytes each way', intArg(1, 256 * 1024 * 1024), 8 * 1024 * 1024)
    .option('--count <n>', 'round trips timed', intArg(1, 1000), 50)
    .option('--transfer-timeout <ms>', 'deadline of each transfer', intArg(1, 600_000), 30_000)
    .action(async (node: string, options: PerfOptions) => {
      const target = await nodeIdArg(node, 'NODE');
      const request: PerfRequest = { target, bytes: options.bytes, count: options.count, timeoutMs: options.transferTimeout };
      const budget = options.timeout + 2 * options.transferTimeout + 5000;
      const reply = await withSession(ctx, options, (s) => s.call<PerfReply>(OPS_CHANNELS.perf, request, budget));
      if (options.json) return ctx.printJson(reply);
      const { formatNumber } = await output();
      const { rtt } = reply;
      ctx.print(`PERF ${reply.target} from ${reply.from}: ${reply.way} (${reply.transport}), ${reply.path.length - 1} hop(s)\n`);
      if (reply.path.length > 2) ctx.print(`path ${reply.path.join(' -> ')}\n`);
      const ms = (value: number): string => formatNumber(value);
      ctx.print(`rtt   ${rtt.samples} samples${rtt.lost > 0 ? ` (${rtt.lost} lost)` : ''}: min ${ms(rtt.minMs)}  p50 ${ms(rtt.p50Ms)}  p90 ${ms(rtt.p90Ms)}  p99 ${ms(rtt.p99Ms)}  max ${ms(rtt.maxMs)} ms\n`);
      ctx.print(`up    ${line(reply.up, formatNumber)}\n`);
      ctx.print(`down  ${line(reply.down, formatNumber)}\n`);
    });
}

function line(d: PerfDirection, formatNumber: (value: number) => string): string {
  return `${formatNumber(d.bytes / 1048576)} MiB in ${formatNumber(d.ms / 1000)} s = ${formatNumber(d.mbitPerS)} Mbit/s`;
}
