/**
 * The daemon's Prometheus endpoint: node.stats() as prom-client series under `quicpeer_`
 * (docs/METRICS.md), read by collect callbacks when Prometheus scrapes (no timers, no sampling).
 * Labels only for small fixed sets (transport, direction, reason, outcome, limit); never node ids.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { once } from 'node:events';
import { Counter, Gauge, Registry } from 'prom-client';
import { NEGOTIATION_OUTCOMES, PnetError, formatAddress, parseAddress } from '../index.js';
import type { NodeStats } from '../index.js';
import { spawnQueue } from './spawn-queue.js';
import { spawnHelper } from './spawn-helper.js';
import type { SpawnHelperStats } from './spawn-helper.js';
import type { SpawnQueueStats } from './spawn-queue.js';

/** Every series name starts with this. */
export const METRICS_PREFIX = 'quicpeer_';
/** Where `"metrics": true` serves (9464: the port OpenTelemetry's Prometheus exporter uses). */
export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9464';

type Labels = Record<string, string>;
/** One series: its value(s) read from a snapshot (a node's stats, or the process's spawn queue). */
interface Series<S = NodeStats> {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly labels?: readonly string[];
  read(stats: S): number | ReadonlyArray<readonly [Labels, number]>;
}

const byKey = (label: string, values: object): Array<[Labels, number]> =>
  Object.entries(values as Record<string, number>).map(([key, value]): [Labels, number] => [{ [label]: key }, value]);

const TRANSPORT_SERIES: readonly Series[] = [
  { name: 'connections', type: 'gauge', labels: ['transport'], help: 'Connections the transport holds now (kept or draining).', read: (s) => byKey('transport', s.connections) },
  { name: 'peers', type: 'gauge', help: 'Peers with a kept connection.', read: (s) => s.peers },
  { name: 'streams', type: 'gauge', help: 'Streams open now on the kept connections.', read: (s) => s.streams },
  { name: 'connections_rotated_total', type: 'counter', help: 'Fresh connections dialed to replace one that carried rotateAfterStreams streams.', read: (s) => s.rotation.rotated },
  { name: 'connections_replaced_total', type: 'counter', help: 'Connections replaced by a fresh one to the same peer (either end), left to drain.', read: (s) => s.rotation.replaced },
  {
    name: 'handshakes_started_total',
    type: 'counter',
    labels: ['transport'],
    help: 'Outbound handshakes started.',
    read: (s) => [[{ transport: 'quic' }, s.handshakes.started.quic], [{ transport: 'h2' }, s.handshakes.started.h2]],
  },
  { name: 'handshakes_pending', type: 'gauge', help: 'Inbound QUIC handshakes in progress.', read: (s) => s.handshakes.pending },
  { name: 'dial_fallbacks_total', type: 'counter', help: 'Dials that raced QUIC against HTTP/2 and HTTP/2 won.', read: (s) => s.handshakes.started.fallbacks },
  { name: 'dials_remembered_total', type: 'counter', help: 'Dials that went straight to HTTP/2 for a remembered address.', read: (s) => s.handshakes.started.remembered },
  { name: 'dials_refused_total', type: 'counter', help: 'Dials failed fast: TCP refused and no QUIC answer within the grace.', read: (s) => s.handshakes.started.refused },
  { name: 'dial_quic_retries_total', type: 'counter', help: 'Background QUIC tries for links on HTTP/2.', read: (s) => s.handshakes.started.quicRetries },
  { name: 'dial_quic_recovered_total', type: 'counter', help: 'Links that moved from HTTP/2 back to QUIC.', read: (s) => s.handshakes.started.quicRecovered },
  { name: 'dials_remembered_evicted_total', type: 'counter', help: 'HTTP/2-only addresses forgotten because the memory was full.', read: (s) => s.handshakes.started.rememberedEvicted },
  {
    name: 'connections_established_total',
    type: 'counter',
    labels: ['transport', 'direction'],
    help: 'Connections established (handshake completed), by transport and direction.',
    read: (s) => Object.entries(s.handshakes.completed).flatMap(([transport, counts]) => byKey('direction', counts).map(([labels, value]): [Labels, number] => [{ transport, ...labels }, value])),
  },
  { name: 'quic_datagrams_dropped_total', type: 'counter', labels: ['reason'], help: 'Datagrams the QUIC endpoint dropped, by reason.', read: (s) => byKey('reason', s.datagramsDropped ?? {}) },
];

/** Forwarder counters that are not a drop reason (the rest of ForwarderStats is one counter per reason). */
const FORWARDER_TOTALS = new Set(['received', 'receivedBytes', 'delivered', 'forwarded', 'forwardedBytes', 'forwardedBack', 'waysBackRefused', 'errorsSent', 'errorsSuppressed']);
const ENDPOINT_DROPS = ['malformed', 'unknownFlow', 'flowLimit', 'staleError', 'pendingHopLimit'] as const;

const DATAGRAM_RELAY_SERIES: readonly Series[] = [
  { name: 'datagram_relay_connections', type: 'gauge', help: 'Relay v2: end-to-end relayed connections up at this node.', read: (s) => s.datagramRelay?.connections ?? 0 },
  { name: 'datagram_relay_received_datagrams_total', type: 'counter', help: 'Relay v2: relayed datagrams received from neighbours.', read: (s) => s.datagramRelay?.forwarder.received ?? 0 },
  { name: 'datagram_relay_received_bytes_total', type: 'counter', help: 'Relay v2: bytes of relayed datagrams received from neighbours.', read: (s) => s.datagramRelay?.forwarder.receivedBytes ?? 0 },
  { name: 'datagram_relay_delivered_datagrams_total', type: 'counter', help: 'Relay v2: relayed datagrams addressed to this node.', read: (s) => s.datagramRelay?.forwarder.delivered ?? 0 },
  { name: 'datagram_relay_forwarded_datagrams_total', type: 'counter', help: 'Relay v2: datagrams forwarded for others.', read: (s) => s.datagramRelay?.forwarder.forwarded ?? 0 },
  { name: 'datagram_relay_forwarded_bytes_total', type: 'counter', help: 'Relay v2: bytes forwarded for others.', read: (s) => s.datagramRelay?.forwarder.forwardedBytes ?? 0 },
  { name: 'datagram_relay_forwarded_back_datagrams_total', type: 'counter', help: 'Relay v2: datagrams forwarded with no route, the way the destination\'s own datagrams came.', read: (s) => s.datagramRelay?.forwarder.forwardedBack ?? 0 },
  { name: 'datagram_relay_ways_back_refused_total', type: 'counter', help: 'Relay v2: ways back not learnt, their neighbour held its share.', read: (s) => s.datagramRelay?.forwarder.waysBackRefused ?? 0 },
  {
    name: 'datagram_relay_dropped_total',
    type: 'counter',
    labels: ['reason'],
    help: 'Relay v2: datagrams the forwarder dropped, by reason.',
    read: (s) => byKey('reason', Object.fromEntries(Object.entries(s.datagramRelay?.forwarder ?? {}).filter(([key]) => !FORWARDER_TOTALS.has(key)))),
  },
  { name: 'datagram_relay_errors_sent_total', type: 'counter', help: 'Relay v2: error reports sent back towards a source.', read: (s) => s.datagramRelay?.forwarder.errorsSent ?? 0 },
  { name: 'datagram_relay_errors_suppressed_total', type: 'counter', help: 'Relay v2: error reports not sent, over their budget.', read: (s) => s.datagramRelay?.forwarder.errorsSuppressed ?? 0 },
  { name: 'datagram_relay_endpoint_sent_bytes_total', type: 'counter', help: 'Relay v2: bytes this node sent on its own relayed flows.', read: (s) => s.datagramRelay?.endpoint.sentBytes ?? 0 },
  { name: 'datagram_relay_endpoint_received_bytes_total', type: 'counter', help: 'Relay v2: bytes this node received on its own relayed flows.', read: (s) => s.datagramRelay?.endpoint.receivedBytes ?? 0 },
  { name: 'datagram_relay_link_packets_sent_total', type: 'counter', help: 'Relay v2: link packets sent (relayed datagrams on QUIC links, outside their QUIC).', read: (s) => s.datagramRelay?.rawLinks.sent ?? 0 },
  { name: 'datagram_relay_link_packets_received_total', type: 'counter', help: 'Relay v2: link packets received and taken.', read: (s) => s.datagramRelay?.rawLinks.received ?? 0 },
  {
    name: 'datagram_relay_link_packets_dropped_total',
    type: 'counter',
    labels: ['reason'],
    help: 'Relay v2: link packets dropped: a tag this node did not give (bad_tag), or from another address than its neighbour (wrong_source).',
    read: (s) => [
      [{ reason: 'bad_tag' }, s.datagramRelay?.rawLinks.badTag ?? 0],
      [{ reason: 'wrong_source' }, s.datagramRelay?.rawLinks.wrongSource ?? 0],
    ],
  },
  {
    name: 'datagram_relay_endpoint_dropped_total',
    type: 'counter',
    labels: ['reason'],
    help: 'Relay v2: datagrams the endpoint dropped, by reason.',
    read: (s) => ENDPOINT_DROPS.map((reason): [Labels, number] => [{ reason }, s.datagramRelay?.endpoint[reason] ?? 0]),
  },
];

const RELAY_AND_FANOUT_SERIES: readonly Series[] = [
  { name: 'relay_flows', type: 'gauge', help: 'Streams this node relays for others now.', read: (s) => s.relay.active },
  { name: 'relay_flows_total', type: 'counter', help: 'Streams this node relayed for others.', read: (s) => s.relay.flows },
  { name: 'relay_bytes_total', type: 'counter', help: 'Bytes this node forwarded for others, both directions.', read: (s) => s.relay.bytes },
  ...DATAGRAM_RELAY_SERIES,
  { name: 'fanout_legs_served_total', type: 'counter', help: 'Fan-out legs received from neighbours.', read: (s) => s.fanout.legsServed },
  { name: 'fanout_legs_sent_total', type: 'counter', help: 'Fan-out legs sent to next hops.', read: (s) => s.fanout.legsSent },
  { name: 'fanout_retries_total', type: 'counter', help: 'Fan-out targets sent again after their leg failed.', read: (s) => s.fanout.retried },
  { name: 'fanout_forged_results_total', type: 'counter', help: 'Fan-out results whose signature did not verify, dropped.', read: (s) => s.fanout.forged },
];

const ROUTING_SERIES: readonly Series[] = [
  { name: 'routing_messages_received_total', type: 'counter', help: 'Link-state messages received.', read: (s) => s.routing.messagesReceived },
  { name: 'routing_messages_sent_total', type: 'counter', help: 'Link-state messages sent.', read: (s) => s.routing.messagesSent },
  { name: 'routing_records_received_total', type: 'counter', help: 'Link-state records received.', read: (s) => s.routing.recordsReceived },
  { name: 'routing_records_accepted_total', type: 'counter', help: 'New record versions stored and flooded.', read: (s) => s.routing.recordsAccepted },
  { name: 'routing_records_duplicate_total', type: 'counter', help: 'Copies of a record version already held.', read: (s) => s.routing.duplicates },
  { name: 'routing_records_dropped_total', type: 'counter', labels: ['reason'], help: 'Records (or messages) dropped, by reason.', read: (s) => byKey('reason', s.routing.dropped) },
  { name: 'routing_records_ignored_total', type: 'counter', help: 'Records a leaf was sent and did not keep, or leaf records from a non-neighbour.', read: (s) => s.routing.ignored },
  { name: 'routing_records_expired_total', type: 'counter', help: 'Records removed because they were not refreshed in time.', read: (s) => s.routing.expiredRecords },
  { name: 'routing_records_sent_total', type: 'counter', help: 'Link-state records sent.', read: (s) => s.routing.recordsSent },
  { name: 'routing_records_published_total', type: 'counter', help: 'Own records (fragments) signed.', read: (s) => s.routing.published },
  {
    name: 'routing_rate_limited_total',
    type: 'counter',
    labels: ['kind'],
    help: 'Records held back by a rate limit: own publications (publish) or arrivals (arrival).',
    read: (s) => [[{ kind: 'publish' }, s.routing.publishRateLimited], [{ kind: 'arrival' }, s.routing.arrivalRateLimited]],
  },
  { name: 'routing_records_superseded_total', type: 'counter', help: 'Rate-limited arrivals replaced by a newer version while waiting.', read: (s) => s.routing.arrivalSuperseded },
  { name: 'routing_sequence_recovered_total', type: 'counter', help: 'Own record met with a higher sequence number and jumped above.', read: (s) => s.routing.sequenceRecovered },
  { name: 'routing_spf_runs_total', type: 'counter', help: 'Shortest-path computations.', read: (s) => s.routing.spfRuns },
  { name: 'routing_records_origin_full_total', type: 'counter', help: "Records dropped because their origin's fragments would pass maxOriginBytes.", read: (s) => s.routing.originFull },
  { name: 'routing_origins_evicted_total', type: 'counter', help: 'Origins removed from a full map for records a lighter neighbour brought.', read: (s) => s.routing.evicted },
];


const CHANNEL_SERIES: readonly Series[] = [
  { name: 'channel_negotiations_pending', type: 'gauge', help: 'Channel negotiations in progress now.', read: (s) => s.negotiations.pending },
  { name: 'channel_negotiation_peers_pending', type: 'gauge', help: 'Distinct peers with a channel negotiation in progress now.', read: (s) => s.negotiations.pendingPeers },
  { name: 'channel_negotiations_admitted_total', type: 'counter', help: 'Channel negotiations admitted into the pending scope.', read: (s) => s.negotiations.admitted },
  {
    name: 'channel_negotiations_total',
    type: 'counter',
    labels: ['outcome'],
    help: 'Channel negotiations this node answered, by outcome.',
    read: (s) => NEGOTIATION_OUTCOMES.map((outcome): [Labels, number] => [{ outcome }, s.negotiations[outcome]]),
  },
  { name: 'limits_tripped_total', type: 'counter', labels: ['limit'], help: 'Times a limit refused or cut something, by limit (docs/LIMITS.md).', read: (s) => byKey('limit', s.limits) },
];

/** The process's ops/exec spawn queue (spawn-queue.ts): shared by every node of the process, so not in node.stats(). */
const EXEC_QUEUE_SERIES: ReadonlyArray<Series<SpawnQueueStats>> = [
  { name: 'exec_running', type: 'gauge', help: 'ops/exec commands running now in this process.', read: (q) => q.running },
  { name: 'exec_queued', type: 'gauge', help: 'ops/exec commands waiting for a turn in this process.', read: (q) => q.queued },
  { name: 'exec_started_total', type: 'counter', help: 'ops/exec commands started.', read: (q) => q.started },
  { name: 'exec_waited_total', type: 'counter', help: 'ops/exec commands that waited for a turn in the spawn queue.', read: (q) => q.waited },
  { name: 'exec_queue_full_total', type: 'counter', help: 'ops/exec requests refused (OVERLOADED): the spawn queue was full.', read: (q) => q.refusedQueueFull },
];

const SPAWN_HELPER_SERIES: ReadonlyArray<Series<SpawnHelperStats>> = [
  { name: 'exec_helper_starts_total', type: 'counter', help: "Spawn helper processes started (ops/exec's forks happen in it).", read: (h) => h.helperStarts },
  { name: 'exec_helper_lost_total', type: 'counter', help: 'ops/exec commands reported not finished because the spawn helper died.', read: (h) => h.helperLost },
];

/** Every quicpeer_ series (docs/METRICS.md lists them with their meaning). */
export const SERIES: readonly Series[] = [...TRANSPORT_SERIES, ...RELAY_AND_FANOUT_SERIES, ...ROUTING_SERIES, ...CHANNEL_SERIES];

/** A registry over a stats source, and the scrape that reads one snapshot for all its series. */
export interface NodeMetrics {
  readonly registry: Registry;
  /** The exposition text of one scrape (one node.stats() call). */
  scrape(): Promise<string>;
}

/** Registers every series; each reads the snapshot its scrape took (or takes one when used alone). */
export function createNodeMetrics(stats: () => NodeStats): NodeMetrics {
  const registry = new Registry();
  let current: NodeStats | undefined;
  const snapshot = (): NodeStats => current ?? stats();
  for (const series of SERIES) register(registry, series, snapshot);
  registerProcess(registry);
  for (const series of EXEC_QUEUE_SERIES) register(registry, series, () => spawnQueue.stats());
  for (const series of SPAWN_HELPER_SERIES) register(registry, series, () => spawnHelper.stats());
  return {
    registry,
    async scrape(): Promise<string> {
      current = stats();
      try {
        return await registry.metrics();
      } finally {
        current = undefined;
      }
    },
  };
}

function register<S>(registry: Registry, series: Series<S>, snapshot: () => S): void {
  const values = (): ReadonlyArray<readonly [Labels, number]> => {
    const value = series.read(snapshot());
    return typeof value === 'number' ? [[{}, value]] : value;
  };
  const config = { name: METRICS_PREFIX + series.name, help: series.help, labelNames: series.labels ?? [], registers: [registry] };
  if (series.type === 'gauge') {
    new Gauge({
      ...config,
      collect(this: Gauge) {
        for (const [labels, value] of values()) this.set(labels, value);
      },
    });
    return;
  }
  new Counter({
    ...config,
    collect(this: Counter) {
      // The node keeps the monotonic count; the counter mirrors it.
      this.reset();
      for (const [labels, value] of values()) this.inc(labels, value);
    },
  });
}

/** The few standard process series, read at scrape time (prom-client's defaults start a delay monitor). */
function registerProcess(registry: Registry): void {
  new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registers: [registry],
    collect(this: Counter) {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  new Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes.',
    registers: [registry],
    collect(this: Gauge) {
      this.set(process.memoryUsage.rss());
    },
  });
  const started = Date.now() / 1000 - process.uptime();
  new Gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since unix epoch in seconds.',
    registers: [registry],
    collect(this: Gauge) {
      this.set(Math.round(started));
    },
  });
}

/** True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback). */
export function isLoopback(host: string): boolean {
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host;
  return v4.startsWith('127.') || host === '::1';
}

/** The running endpoint. */
export interface MetricsServer {
  /** "host:port" it listens on (the bound port when 0 was asked). */
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Serves GET /metrics on `address` ("host:port"). Everything else is 404 (or 405 for other
 * methods on /metrics).
 * @throws PnetError ERR_CONFIG when it cannot listen there
 */
export async function serveMetrics(stats: () => NodeStats, address: string): Promise<MetricsServer> {
  const target = parseAddress(address);
  const metrics = createNodeMetrics(stats);
  const server = createServer((request, response) => void answer(metrics, request, response));
  // A scrape is a short request; a client holding a socket open gets cut.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.listen(target.port, target.host);
  try {
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => Promise.reject(error as Error))]);
  } catch (error) {
    throw new PnetError('ERR_CONFIG', `metrics: cannot listen on ${address}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
  }
  const bound = server.address();
  const port = typeof bound === 'object' && bound !== null ? bound.port : target.port;
  return { address: formatAddress({ host: target.host, port }), close: () => closeServer(server) };
}

async function answer(metrics: NodeMetrics, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const path = (request.url ?? '/').split('?')[0];
  if (path !== '/metrics') {
    response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
    return;
  }
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    return;
  }
  try {
    const body = await metrics.scrape();
    response.writeHead(200, { 'content-type': metrics.registry.contentType });
    response.end(request.method === 'HEAD' ? undefined : body);
  } catch (error) {
    response.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(error as Error).message}\n`);
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
