#!/usr/bin/env node
// The `pnet` executable (package.json "bin"). The program alone, not the folder's door (./index.js):
// that would load the daemon, the ops service and pnet itself before a command asked for them.
import { runCli } from './program.js';

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
// Everything is closed by now; if a stray handle still holds the loop, do not hang the shell.
setTimeout(() => process.exit(code), 2000).unref();
