import t from 'tap';
import { execFile } from 'node:child_process';
import { childEnv } from './fixtures/child-env.js';

// `npm run demo` is part of the product: run it (on a smaller network) and check what it prints.
t.test('the demo joins, converges, relays, fans out exec, prints DOT and exits 0', async (t) => {
  const demo = new URL('../src/demo.ts', import.meta.url).pathname;
  const output = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', demo], { env: childEnv({ PNET_DEMO_NODES: '12' }), timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`demo failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
  t.match(output, /12 nodes joined/);
  t.match(output, /routes converged .* all 11 others/);
  t.match(output, /stream opened through \d+ relays/);
  t.match(output, /exec "uname -sr" on all 12 nodes by fan-out/);
  t.match(output, /ok 12, failed 0, timed out 0/);
  t.match(output, /not an operator -> UNAUTHORIZED/);
  const dot = output.slice(output.indexOf('graph pnet {'));
  t.equal((dot.match(/ \[label="[a-z2-7]{8}"/g) ?? []).length, 12, 'the DOT map has every node');
  t.match(dot, /^\}$/m, 'and is closed');
});
