#!/usr/bin/env node
// The `pnet` executable (package.json "bin"). Everything lives behind ./index.js.
import { runCli } from './index.js';

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
// Everything is closed by now; if a stray handle still holds the loop, do not hang the shell.
setTimeout(() => process.exit(code), 2000).unref();
