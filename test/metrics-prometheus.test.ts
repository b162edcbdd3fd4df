import t from 'tap';
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNode } from '../src/index.js';
import { validateConfig } from '../src/cli/index.js';
import { DEFAULT_METRICS_ADDRESS, METRICS_PREFIX, SERIES, createNodeMetrics, serveMetrics } from '../src/cli/metrics.js';
import { childEnv } from './fixtures/child-env.js';

// The daemon's Prometheus endpoint: config, the exposition text, and a real Prometheus server scraping a daemon.

t.setTimeout(240_000);

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = new URL('../src/cli/main.ts', import.meta.url).pathname;
const PROMETHEUS = process.env['PROMETHEUS_BIN'] ?? '/usr/bin/prometheus';

const children = new Set<ChildProcess>();
t.teardown(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
});

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pnet-metrics-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** A loopback TCP port free a moment ago (Prometheus takes no port 0). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts a child (killed by pid when the test file ends) and keeps its output for failure messages. */
function start(command: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(command, args, { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('close', () => children.delete(child));
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  return { child, output: () => output };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const closed = new Promise((resolve) => child.once('close', resolve));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => child.pid !== undefined && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 10_000);
  await closed;
  clearTimeout(timer);
}

/** A `pnet node` daemon; resolves with its 'started' log line. */
async function daemon(t: Test, dir: string, name: string, config: Record<string, unknown>): Promise<Record<string, unknown>> {
  const file = join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify({ listen: '127.0.0.1:0', keyFile: join(dir, `${name}.key`), ...config }));
  const { child, output } = start(process.execPath, ['--import', 'tsx', MAIN, 'node', '--config', file]);
  t.teardown(() => stop(child));
  const line = await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`daemon ${name} exited ${child.exitCode}: ${output()}`);
      const started = output().split('\n').find((l) => l.includes('"event":"started"'));
      return started === undefined ? undefined : (JSON.parse(started) as Record<string, unknown>);
    },
    90_000,
    `daemon ${name} started`,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n${output()}`);
  });
  return line;
}

/** The PromQL of every panel of docs/grafana-dashboard.json. */
function dashboardExpressions(): string[] {
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'docs', 'grafana-dashboard.json'), 'utf8')) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
  return dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
}

t.test('the Grafana dashboard names only series the endpoint serves', async (t) => {
  const served = new Set([...SERIES.map((series) => METRICS_PREFIX + series.name), 'process_cpu_seconds_total', 'process_resident_memory_bytes']);
  const expressions = dashboardExpressions();
  t.ok(expressions.length >= 20, `${expressions.length} panel queries`);
  for (const expr of expressions) {
    for (const name of expr.match(/\b(quicpeer|process)_[a-z0-9_]+/g) ?? []) t.ok(served.has(name), `${name} (in ${expr}) is served`);
  }
});

// ---- config ------------------------------------------------------------------------

t.test('config: metrics off unless set, true is loopback 9464, non-loopback only when allowed', async (t) => {
  t.equal(validateConfig({}).metrics, undefined, 'off by default');
  t.equal(validateConfig({ metrics: false }).metrics, undefined);
  t.equal(validateConfig({ metrics: true }).metrics, DEFAULT_METRICS_ADDRESS);
  t.equal(DEFAULT_METRICS_ADDRESS, '127.0.0.1:9464');
  t.equal(validateConfig({ metrics: '[::1]:9100' }).metrics, '[::1]:9100');
  t.throws(() => validateConfig({ metrics: '0.0.0.0:9464' }), { code: 'ERR_CONFIG', message: /metrics: 0\.0\.0\.0:9464 is not a loopback address.*metricsAllowRemote/ });
  t.equal(validateConfig({ metrics: '0.0.0.0:9464', metricsAllowRemote: true }).metrics, '0.0.0.0:9464');
  t.throws(() => validateConfig({ metrics: 9464 }), { code: 'ERR_CONFIG', message: /metrics: must be true, false or an address/ });
  t.throws(() => validateConfig({ metrics: 'localhost:9464' }), { code: 'ERR_CONFIG', message: /metrics: .*IP address/ });
  t.throws(() => validateConfig({ metrics: true, metricsAllowRemote: 'yes' }), { code: 'ERR_CONFIG', message: /metricsAllowRemote: must be true or false/ });
});

// ---- exposition --------------------------------------------------------------------

t.test('series: Prometheus names, _total counters, no node ids, one snapshot per scrape', async (t) => {
  for (const series of SERIES) {
    const name = METRICS_PREFIX + series.name;
    t.match(name, /^quicpeer_[a-z0-9_]+$/, `${name} is snake case under the prefix`);
    t.equal(name.endsWith('_total'), series.type === 'counter', `${name}: _total exactly for counters`);
    t.notOk(/_(ms|milliseconds|kib|mib)(_|$)/.test(name), `${name}: base units`);
  }
  const node = await createNode();
  t.teardown(() => node.close());
  let snapshots = 0;
  const metrics = createNodeMetrics(() => (snapshots++, node.stats()));
  const text = await metrics.scrape();
  t.equal(snapshots, 1, 'one node.stats() per scrape');
  t.match(text, /# TYPE quicpeer_connections gauge\nquicpeer_connections\{transport="quic"\} 0\nquicpeer_connections\{transport="h2"\} 0/);
  t.match(text, /# TYPE quicpeer_routing_spf_runs_total counter\nquicpeer_routing_spf_runs_total \d+/);
  t.match(text, /quicpeer_quic_datagrams_dropped_total\{reason="unknownConnection"\} 0/);
  t.match(text, /quicpeer_channel_negotiations_total\{outcome="rejectedPeerLimit"\} 0/);
  t.match(text, /quicpeer_limits_tripped_total\{limit="relayPeerLimit"\} 0/);
  t.match(text, /process_cpu_seconds_total \d/);
  t.notOk(text.includes(node.id), 'no node id anywhere');
});

t.test('endpoint: GET /metrics on loopback, 404 elsewhere, ERR_CONFIG when the port is taken', async (t) => {
  const node = await createNode();
  t.teardown(() => node.close());
  const server = await serveMetrics(() => node.stats(), '127.0.0.1:0');
  t.teardown(() => server.close());
  t.match(server.address, /^127\.0\.0\.1:\d+$/);
  const response = await fetch(`http://${server.address}/metrics`);
  t.equal(response.status, 200);
  t.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  t.match(await response.text(), /quicpeer_peers 0/);
  t.equal((await fetch(`http://${server.address}/`)).status, 404);
  t.equal((await fetch(`http://${server.address}/metrics`, { method: 'POST' })).status, 405);
  await t.rejects(serveMetrics(() => node.stats(), server.address), { code: 'ERR_CONFIG', message: /metrics: cannot listen on .*EADDRINUSE/ });
});

// ---- a real Prometheus server ------------------------------------------------------

interface QueryResult {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(base: string, promql: string): Promise<QueryResult[]> {
  const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`, { signal: AbortSignal.timeout(5000) });
  const body = (await response.json()) as { status: string; data: { result: QueryResult[] } };
  if (body.status !== 'success') throw new Error(`query ${promql}: ${JSON.stringify(body)}`);
  return body.data.result;
}

t.test('a real Prometheus server scrapes a daemon and its series arrive', { skip: existsSync(PROMETHEUS) ? false : `no Prometheus at ${PROMETHEUS} (Debian: apt-get install prometheus; or set PROMETHEUS_BIN)` }, async (t) => {
  const dir = await tempDir(t);
  const peer = await daemon(t, dir, 'peer', {});
  const scraped = await daemon(t, dir, 'scraped', { bootstrap: [peer['address']], metrics: '127.0.0.1:0' });
  const target = /^http:\/\/([^/]+)\/metrics$/.exec(String(scraped['metrics']))?.[1];
  t.ok(target, `the daemon logs its endpoint: ${String(scraped['metrics'])}`);

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  await writeFile(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: quicpeer',
      '    scrape_timeout: 1s',
      '    static_configs:',
      `      - targets: ['${target}']`,
      '',
    ].join('\n'),
  );
  const prometheus = start(PROMETHEUS, [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ]);
  t.teardown(() => stop(prometheus.child));
  const fail = (error: Error): never => {
    throw new Error(`${error.message}\nprometheus output:\n${prometheus.output()}`);
  };
  await until(async () => ((await fetch(`${base}/-/ready`)).ok ? true : undefined), 60_000, 'Prometheus ready').catch(fail);

  const up = await until(async () => (await query(base, 'up{job="quicpeer"}')).find((r) => r.value[1] === '1'), 60_000, 'target up').catch(fail);
  t.ok(up, 'Prometheus scrapes the daemon (up == 1)');
  const connections = await until(
    async () => (await query(base, 'quicpeer_connections{transport="quic"}')).find((r) => Number(r.value[1]) >= 1),
    60_000,
    'connections gauge',
  ).catch(fail);
  t.equal(connections.metric['job'], 'quicpeer', 'the connections gauge arrived, labelled by transport only');
  t.same(Object.keys(connections.metric).sort(), ['__name__', 'instance', 'job', 'transport']);
  const established = await until(
    async () => (await query(base, 'sum(quicpeer_connections_established_total{direction="outbound"})')).find((r) => Number(r.value[1]) >= 1),
    30_000,
    'established counter',
  ).catch(fail);
  t.ok(Number(established.value[1]) >= 1, 'the outbound-connections counter arrived');
  const spf = await until(async () => (await query(base, 'quicpeer_routing_spf_runs_total')).find((r) => Number(r.value[1]) >= 1), 30_000, 'SPF counter').catch(fail);
  t.ok(Number(spf.value[1]) >= 1, 'the SPF counter arrived');
  const dropped = await query(base, 'count(quicpeer_quic_datagrams_dropped_total)');
  t.ok(Number(dropped[0]?.value[1]) >= 6, 'one drop series per reason');
  const metadata = (await (await fetch(`${base}/api/v1/metadata?metric=quicpeer_relay_bytes_total`)).json()) as { data: Record<string, Array<{ type: string }>> };
  t.equal(metadata.data['quicpeer_relay_bytes_total']?.[0]?.type, 'counter', 'Prometheus sees the counter type');

  // Every expression of the Grafana dashboard is valid PromQL over series the daemon serves.
  for (const expr of dashboardExpressions()) {
    const promql = expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*');
    const result = await query(base, promql).catch((error: Error) => error);
    t.notOk(result instanceof Error, `dashboard: ${expr}${result instanceof Error ? `: ${result.message}` : ''}`);
  }
});
