#!/usr/bin/env node
// The `pnet` executable (package.json "bin"). The program alone, not the folder's door (./index.js):
// that would load the daemon, the ops service and pnet itself before a command asked for them.
const args = process.argv.slice(2);
// `pnet node` may re-execute itself first (malloc on huge pages), before anything touches stdio.
if (args[0] === 'node') (await import('./huge-pages.js')).hugePagesAtStart(args.slice(1));
const { runCli } = await import('./program.js');

const code = await runCli(args);
process.exitCode = code;
// Everything is closed by now; if a stray handle still holds the loop, do not hang the shell.
setTimeout(() => process.exit(code), 2000).unref();
