/** `pnet ui`: a live map of the network in the browser, served on loopback. */
import type { Command } from 'commander';
import { firstSignal, withSession } from './common.js';
import type { CommandContext, OperatorCliOptions } from './common.js';
import { operatorCommand } from './common.js';

type UiCliOptions = OperatorCliOptions & { listen: string; allowRemote?: boolean };

export function addUi(program: Command, ctx: CommandContext): void {
  operatorCommand(program, ctx, 'ui', 'serve a live map of the network (cytoscape.js) on a local web page until interrupted')
    .option('--listen <address>', 'where the page is served', '127.0.0.1:7380')
    .option('--allow-remote', 'serve on a non-loopback address (the page can run commands as you)')
    .action(async (options: UiCliOptions) => {
      const { serveUi } = await import('../ui-server.js');
      await withSession(ctx, options, async (session) => {
        const ui = await serveUi(session, { listen: options.listen, allowRemote: options.allowRemote === true, timeoutMs: options.timeout });
        if (options.json) ctx.printJson({ url: ui.url, daemon: session.daemonId });
        else ctx.print(`pnet ui: ${ui.url}\n(Ctrl-C to stop)\n`);
        await (ctx.io.stopSignal ?? firstSignal)();
        await ui.close();
      });
    });
}
