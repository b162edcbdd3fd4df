import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../src/cli/index.js';
import { collector } from './fixtures/cli-io.js';
import { deadPort } from './fixtures/ports.js';

t.setTimeout(60_000);


async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const stdout = collector();
  const stderr = collector();
  const started = performance.now();
  const code = await runCli(args, { stdout, stderr, env });
  return { code, stdout: stdout.text, stderr: stderr.text, ms: performance.now() - started };
}

t.test('a malformed --node-id or PNET_NODE_ID: a clear message, a JSON error with --json, exit 2', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-cli-errors-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const key = join(dir, 'operator.key');
  const flag = await run(['info', '--node-id', 'abc', '--key', key, '--json']);
  t.equal(flag.code, 2);
  t.match(flag.stderr, /--node-id.*invalid node id "abc"/);
  t.equal(JSON.parse(flag.stdout).error.code, 'ERR_BAD_NODE_ID');
  const env = await run(['info', '--key', key], { PNET_NODE_ID: 'abc' });
  t.equal(env.code, 2);
  t.match(env.stderr, /PNET_NODE_ID.*invalid node id "abc".*\[ERR_BAD_NODE_ID\]/);
  const argument = await run(['ping', 'abc', '--key', key, '--json']);
  t.equal(argument.code, 2);
  t.equal(JSON.parse(argument.stdout).error.code, 'ERR_BAD_NODE_ID');
});

t.test('--json: usage errors (unknown option, bad number, unknown command) are JSON on stdout too', async (t) => {
  for (const args of [
    ['info', '--bogus', '--json'],
    ['ping', 'x', '--count', 'many', '--json'],
    ['frobnicate', '--json'],
  ]) {
    const result = await run(args);
    t.equal(result.code, 2, args.join(' '));
    const body = JSON.parse(result.stdout) as { error: { code: string; message: string } };
    t.equal(body.error.code, 'ERR_BAD_OPTION');
    t.ok(body.error.message.length > 0, body.error.message);
  }
});

t.test('keygen, id and the operator commands use one default key file', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'pnet-home-'));
  const saved = process.env['HOME'];
  process.env['HOME'] = home;
  t.teardown(async () => {
    process.env['HOME'] = saved;
    await rm(home, { recursive: true, force: true });
  });
  const made = await run(['keygen', '--json']);
  t.equal(made.code, 0);
  const { nodeId, keyFile } = JSON.parse(made.stdout) as { nodeId: string; keyFile: string };
  t.equal(keyFile, join(home, '.pnet', 'operator.key'));
  const id = await run(['id']);
  t.equal(id.stdout.trim(), nodeId, '`pnet id` reads the key keygen wrote');
  const port = await deadPort();
  const info = await run(['info', '--node', `127.0.0.1:${port}`]);
  t.notMatch(info.stderr, /created operator key/, 'an operator command found it: no new key');
});

t.test('pnet info against a stopped daemon exits 3 at once (the port refuses), not after the 5 s handshake timeout', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-cli-errors-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const key = join(dir, 'operator.key');
  await run(['keygen', '--out', key]);
  const port = await deadPort();
  const result = await run(['info', '--node', `127.0.0.1:${port}`, '--key', key, '--json']);
  t.equal(result.code, 3);
  t.equal(JSON.parse(result.stdout).error.code, 'ERR_CONNECTION_REFUSED');
  t.ok(result.ms < 2500, `exited in ${Math.round(result.ms)} ms (in-process: without node's start-up)`);
});

t.test('a wildcard listen address is shown as the interface addresses, never 0.0.0.0', async (t) => {
  const { reachableAddresses } = await import('../src/cli/addresses.js');
  const interfaces = {
    lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true }],
    eth0: [
      { address: '10.0.0.5', family: 'IPv4', internal: false },
      { address: 'fe80::1', family: 'IPv6', internal: false },
      { address: '2001:db8::5', family: 'IPv6', internal: false },
    ],
  } as unknown as ReturnType<typeof import('node:os').networkInterfaces>;
  t.same(reachableAddresses('0.0.0.0:7300', interfaces), ['10.0.0.5:7300', '127.0.0.1:7300']);
  t.same(reachableAddresses('[::]:7300', interfaces), ['10.0.0.5:7300', '[2001:db8::5]:7300', '127.0.0.1:7300']);
  t.same(reachableAddresses('127.0.0.1:7300', interfaces), ['127.0.0.1:7300']);
});
