import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// `npm pack` gives a tarball that installs into an empty project and imports with its types.
const root = new URL('..', import.meta.url).pathname;
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

t.test('the packed tarball installs, imports and type-checks in an empty project', async (t) => {
  const dir = t.testdir({
    'package.json': JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }),
    'tsconfig.json': JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
      include: ['use.ts'],
    }),
    'use.ts': [
      "import { createNode, PnetError, type NodeId, type PnetStream } from 'pnet';",
      'const node = await createNode();',
      'const id: NodeId = node.id;',
      "node.handle('echo', (stream: PnetStream) => { stream.pipe(stream); });",
      "const error: PnetError = new PnetError('ERR_NODE_CLOSED', 'x');",
      'console.log(id.length, error.code);',
      'await node.close();',
      '',
    ].join('\n'),
    'run.mjs': [
      "import { createNode } from 'pnet';",
      'const a = await createNode();',
      'const b = await createNode();',
      "b.handleRequest('upper', (req) => req.toString().toUpperCase());",
      'const id = await a.dial(b.address);',
      "const reply = await a.request(id, 'upper', 'packed');",
      'console.log(reply.toString());',
      'await Promise.all([a.close(), b.close()]);',
      '',
    ].join('\n'),
  });
  execFileSync(npm, ['pack', '--pack-destination', dir, '--silent'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const tarball = readdirSync(dir).find((name) => name.endsWith('.tgz'));
  t.ok(tarball, 'npm pack wrote a tarball');
  execFileSync(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, tarball!), `${join(root, 'node_modules', '@types', 'node')}`], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = execFileSync(process.execPath, ['run.mjs'], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  t.equal(output.trim(), 'PACKED');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const typecheck = execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' });
  t.equal(typecheck.trim(), '', 'the consumer type-checks against the shipped .d.ts');
  writeFileSync(join(dir, 'bad.ts'), "import { createNode } from 'pnet';\nconst n: number = await createNode();\n");
  t.throws(
    () => execFileSync(process.execPath, [tsc, '--noEmit', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', 'bad.ts'], { cwd: dir, stdio: 'pipe' }),
    'a type error against the shipped types is caught',
  );
});
