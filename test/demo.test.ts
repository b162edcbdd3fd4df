import t from 'tap';
import { execFile } from 'node:child_process';

// `npm run demo` is part of the product: run it (on a smaller network) and check what it prints.
t.test('the demo joins, converges, relays and exits 0', async (t) => {
  const demo = new URL('../src/demo.ts', import.meta.url).pathname;
  const output = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', demo], { env: { ...process.env, PNET_DEMO_NODES: '10' }, timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`demo failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
  t.match(output, /10 nodes joined/);
  t.match(output, /routes converged .* all 9 others/);
  t.match(output, /stream opened through \d+ relays/);
  t.match(output, /request without the operator role -> UNAUTHORIZED/);
  t.match(output, /got 9 authenticated answers/);
});
