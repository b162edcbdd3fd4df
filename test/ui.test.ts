import t from 'tap';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createNode } from '../src/index.js';
import type { PnetNode } from '../src/index.js';
import { OperatorSession, serveOps, serveUi, validateOpsConfig } from '../src/cli/index.js';
import type { OpsService } from '../src/cli/index.js';

// `pnet ui` in headless Chromium (Debian's, driven by puppeteer-core; .ci/run installs it):
// the page shows the network, a node's details and path on click, an exec's progress as
// colours, and a killed node disappears. A screenshot goes to .tap/ui/.
const CHROMIUM = '/usr/bin/chromium';
t.setTimeout(120_000);

t.test('the live map in a browser', { skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM}` }, async (t) => {
  const { default: puppeteer } = await import('puppeteer-core');
  const names = ['hub-1', 'web-1', 'db-1'];
  const nodes: PnetNode[] = [];
  const services: OpsService[] = [];
  for (let i = 0; i < 3; i++) {
    const node = await createNode({ routing: { rttSampleMs: 60_000 } });
    nodes.push(node);
  }
  const [hub, web, db] = nodes as [PnetNode, PnetNode, PnetNode];
  await web.dial(hub.address);
  await db.dial(web.address);
  const deadline = Date.now() + 30_000;
  while (hub.routes().length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  await mkdir(t.testdirName, { recursive: true });
  const session = await OperatorSession.connect({ node: hub.address, keyFile: join(t.testdirName, 'operator.key'), connectTimeoutMs: 5000 });
  // The operator's key was just created: the nodes serve ops to it.
  for (let i = 0; i < 3; i++) {
    const ops = validateOpsConfig({ operators: [session.node.id], commands: { hello: { argv: ['echo', 'hi'] } } });
    services.push(serveOps(nodes[i]!, { ...ops, name: names[i]!, labels: { role: names[i]!.split('-')[0]! } }));
  }
  const ui = await serveUi(session, { listen: '127.0.0.1:0' });
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  t.teardown(async () => {
    await browser.close();
    await ui.close();
    await session.close();
    for (const service of services) await service.close();
    await Promise.all(nodes.map((node) => node.close({ timeoutMs: 100 })));
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 800 });
  await page.goto(ui.url);
  const ui$ = 'window.pnetUi';
  await page.waitForFunction(`${ui$} && ${ui$}.ready && ${ui$}.nodeCount() === 3 && ${ui$}.linkCount() === 2`, { timeout: 30_000 });
  t.pass('three nodes and two links on the map');

  const details = (await page.evaluate(`${ui$}.select(${JSON.stringify(db.id)})`)) as { routes: Array<{ nodeId: string }> };
  t.same(details.routes.map((r) => r.nodeId).sort(), [hub.id, web.id].sort(), "db's routes, asked through the daemon");
  t.equal(((await page.evaluate(`${ui$}.pathClasses()`)) as string[]).length, 5, 'the path hub -> web -> db is highlighted (3 nodes, 2 links)');
  t.match(await page.$eval('#details', (el) => el.textContent ?? ''), /routes/);
  t.match(await page.$eval('#stats', (el) => el.textContent ?? ''), /"handshakes"/, "db's counters (node.stats()) are shown");

  const statuses = (await page.evaluate(`${ui$}.exec('all', 'hello')`)) as Record<string, string>;
  t.same(Object.values(statuses), ['ok', 'ok', 'ok'], "every host's exec came back ok");
  t.equal(await page.$eval('#execStatus', (el) => el.textContent), '3/3 answered');

  await mkdir(join(process.cwd(), '.tap', 'ui'), { recursive: true });
  await page.screenshot({ path: join(process.cwd(), '.tap', 'ui', 'map.png') });

  await services[2]!.close();
  await db.close({ timeoutMs: 0 });
  await page.waitForFunction(`${ui$}.nodeCount() === 2 && ${ui$}.missing().includes(${JSON.stringify(db.id)})`, { timeout: 30_000 });
  t.pass('the killed node left the map and is listed as missing');
  t.match(await page.$eval('#missing', (el) => el.textContent ?? ''), /db-1 — last reachable/);
  await page.screenshot({ path: join(process.cwd(), '.tap', 'ui', 'map-after-kill.png') });
});
