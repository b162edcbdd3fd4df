/**
 * `pnet ui`'s local web server: the page (ui-page.ts), cytoscape.js from the package, and a small
 * JSON API over the operator's session to the daemon (the map, a node's details through fan-out,
 * an exec's results as server-sent events). Loopback by default; every API call needs the
 * session's random token (printed in the URL), and the Host header must name this server, so
 * another web page or a DNS-rebinding name cannot drive it.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { PnetError, formatAddress, parseAddress, parseNodeId } from '../index.js';
import type { NodeId } from '../index.js';
import type { OperatorSession } from './client.js';
import { classify } from './exec-outcome.js';
import { matches, parseSelector } from './inventory.js';
import { isLoopback } from './metrics.js';
import { OPS_CHANNELS } from './ops/wire.js';
import type { InventoryReply, TopologyReply } from './ops/wire.js';
import { UI_PAGE } from './ui-page.js';

export interface UiServer {
  /** The page's URL, token included. */
  readonly url: string;
  close(): Promise<void>;
}

export interface UiOptions {
  /** "host:port" (default 127.0.0.1:7380). */
  readonly listen?: string;
  /** Lets the server listen on a non-loopback address. */
  readonly allowRemote?: boolean;
  /** Deadline of each call to the daemon. */
  readonly timeoutMs?: number;
}

export async function serveUi(session: OperatorSession, options: UiOptions = {}): Promise<UiServer> {
  const { host, port } = parseAddress(options.listen ?? '127.0.0.1:7380');
  if (!isLoopback(host) && options.allowRemote !== true) throw new PnetError('ERR_BAD_OPTION', `${host} is not a loopback address: the page commands your daemons; pass --allow-remote to serve it there`);
  const token = randomBytes(16).toString('hex');
  const timeoutMs = options.timeoutMs ?? 10_000;
  const cytoscape = await readFile(createRequire(import.meta.url).resolve('cytoscape/dist/cytoscape.min.js'));
  const api = new UiApi(session, timeoutMs);
  let hostHeader = '';
  const server = createServer((request, response) => {
    void route(request, response).catch((error: unknown) => sendJson(response, 500, { error: errorBody(error) }));
  });
  const route = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://ui');
    if (request.headers.host !== hostHeader) return sendJson(response, 421, { error: { code: 'UNAUTHORIZED', message: 'wrong Host header' } });
    if (url.pathname === '/') return send(response, 200, 'text/html; charset=utf-8', UI_PAGE);
    if (url.pathname === '/cytoscape.js') return send(response, 200, 'text/javascript', cytoscape);
    if (url.searchParams.get('token') !== token) return sendJson(response, 403, { error: { code: 'UNAUTHORIZED', message: 'missing or wrong token' } });
    if (url.pathname === '/api/map') return sendJson(response, 200, await api.map());
    if (url.pathname === '/api/node') return sendJson(response, 200, await api.node(parseNodeId(url.searchParams.get('id') ?? '')));
    if (url.pathname === '/api/exec') return api.exec(response, url.searchParams.get('targets') ?? 'all', url.searchParams.get('command') ?? '');
    return sendJson(response, 404, { error: { code: 'UNKNOWN_CHANNEL', message: `no ${url.pathname}` } });
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as { port: number };
  hostHeader = formatAddress({ host, port: bound.port });
  return {
    url: `http://${hostHeader}/?token=${token}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The daemon's answers, shaped for the page. */
class UiApi {
  constructor(
    private readonly session: OperatorSession,
    private readonly timeoutMs: number,
  ) {}

  /** The map (nodes and links the daemon knows) and the known hosts missing from it. */
  async map(): Promise<unknown> {
    const [topology, inventory] = await Promise.all([
      this.session.call<TopologyReply>(OPS_CHANNELS.topology, {}, this.timeoutMs),
      this.session.call<InventoryReply>(OPS_CHANNELS.inventory, {}, this.timeoutMs),
    ]);
    const known = new Map(inventory.hosts.map((host) => [host.nodeId, host]));
    const nodes = topology.nodes.map((id) => ({ id, name: known.get(id)?.name ?? null, labels: known.get(id)?.labels ?? {} }));
    const inMap = new Set(topology.nodes);
    return { self: topology.self, nodes, links: topology.links, missing: inventory.hosts.filter((host) => !inMap.has(host.nodeId)) };
  }

  /** A node's info, peers, routes and counters, asked through the daemon (fan-out with via, so any node of the map answers). */
  async node(id: NodeId): Promise<Record<string, unknown>> {
    const ask = async (channel: string): Promise<unknown> => {
      for await (const result of this.session.node.fanout([id], channel, '{}', { via: this.session.daemonId, deadlineMs: this.timeoutMs })) {
        if (!result.ok) return { error: { code: result.error.code, message: result.error.message } };
        return JSON.parse(result.data.toString('utf8')) as unknown;
      }
      return { error: { code: 'UNREACHABLE', message: 'no answer' } };
    };
    const [info, peers, routes, stats] = await Promise.all([ask(OPS_CHANNELS.info), ask(OPS_CHANNELS.peers), ask(OPS_CHANNELS.routes), ask(OPS_CHANNELS.stats)]);
    return { id, info, peers, routes, stats };
  }

  /** Runs an exec and streams each host's outcome as a server-sent event (start, result…, done). */
  async exec(response: ServerResponse, targets: string, command: string): Promise<void> {
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    const event = (name: string, data: unknown): void => void response.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
    try {
      const inventory = await this.session.call<InventoryReply>(OPS_CHANNELS.inventory, {}, this.timeoutMs);
      const selector = parseSelector(targets);
      const ids = targets === 'all' ? inventory.hosts.map((h) => h.nodeId) : selector ? inventory.hosts.filter((h) => matches(h, selector)).map((h) => h.nodeId) : targets.split(',').map((t) => parseNodeId(t.trim()));
      event('start', { targets: ids, command });
      for await (const result of this.session.node.fanout(ids, OPS_CHANNELS.exec, JSON.stringify({ command }), { via: this.session.daemonId, deadlineMs: 60_000 })) {
        const outcome = classify(result);
        event('result', { nodeId: outcome.nodeId, status: outcome.status, reason: outcome.reason });
      }
      event('done', {});
    } catch (error) {
      event('failed', errorBody(error));
    }
    response.end();
  }
}

function errorBody(error: unknown): { code: string; message: string } {
  return { code: error instanceof PnetError ? error.code : 'ERR_HANDLER_FAILED', message: error instanceof Error ? error.message : String(error) };
}

function send(response: ServerResponse, status: number, type: string, body: string | Buffer): void {
  response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  response.end(body);
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  send(response, status, 'application/json', JSON.stringify(body));
}
