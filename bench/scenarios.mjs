// What is measured: the direct-stream figures 1-6, each run by several systems
// ("cells"), and the relay figure 7 (one process per node, bench/quic.mjs).
// Workloads differ by mode (full / quick) and, for @matrixai/quic's
// high-level classes (~50x slower), are scaled down; a scaled workload is
// labelled in the output and its ratio is only given for rate metrics.
import { KiB, MiB } from './lib/common.mjs';

/** Figure 4's workload for every system but matrixai-quic: three untimed bursts, then the timed one. */
const PARALLEL = { streams: 100, size: 64 * KiB, warmupRounds: 3 };
const PARALLEL_QUICK = { streams: 100, size: 64 * KiB, warmupRounds: 1 };

/**
 * Figure 5's workload for the fast systems (full, quick). The code that runs
 * once per connection reaches V8's optimising tier slowly: pnet's rate climbs
 * from ~600/s over the first 500 connections to a steady ~850-950/s after a
 * few thousand (flat ~650/s with --no-opt), so the full run warms up with
 * 2000 connections before it measures.
 */
const CONNECT = { count: 1000, warmup: 2000, size: KiB };
const CONNECT_QUICK = { count: 200, warmup: 300, size: KiB };

export const SYSTEMS = ['pnet', 'pnet-h2', 'matrixai-quic', 'node-tls', 'libp2p-quic', 'libp2p-tcp'];

/**
 * Figures. Each has metrics; the first metric is the headline. `better` says
 * which direction is good; `target` (pnet's goal) applies to the figure's
 * primary pnet cell.
 */
export const FIGURES = [
  {
    id: 'throughput',
    number: 1,
    title: 'One stream, bulk transfer one way',
    metrics: [
      { key: 'mibps', name: 'throughput', unit: 'MiB/s', better: 'higher', rate: true },
      { key: 'clientCpuS', name: 'client CPU', unit: 's', better: 'lower' },
      { key: 'serverCpuS', name: 'server CPU', unit: 's', better: 'lower' },
      { key: 'clientRssMiB', name: 'client peak RSS', unit: 'MiB', better: 'lower' },
      { key: 'serverRssMiB', name: 'server peak RSS', unit: 'MiB', better: 'lower' },
    ],
    target: { metric: 'mibps', op: '>=', value: 100 },
    // issue 4: on the same run, pnet ★ ÷ baseline (headline metric)
    baselineTargets: [
      { baseline: 'libp2p-quic', op: '>=', value: 2 },
      { baseline: 'matrixai-quic', op: '>=', value: 25 },
    ],
  },
  {
    id: 'echo',
    number: 2,
    title: 'One stream, 1 KiB echo, sequential round trips',
    metrics: [
      { key: 'rtps', name: 'round trips', unit: 'rt/s', better: 'higher', rate: true },
      { key: 'p50us', name: 'p50 latency', unit: 'µs', better: 'lower', rate: true },
      { key: 'p99us', name: 'p99 latency', unit: 'µs', better: 'lower', rate: true },
    ],
    target: { metric: 'rtps', op: '>=', value: 4500 },
    baselineTargets: [{ baseline: 'libp2p-tcp', op: '>=', value: 1 }],
  },
  {
    id: 'stream-per-request',
    number: 3,
    title: 'A new stream per 1 KiB request, sequential',
    metrics: [
      { key: 'opsps', name: 'requests', unit: 'ops/s', better: 'higher', rate: true },
      { key: 'p50us', name: 'p50 latency', unit: 'µs', better: 'lower', rate: true },
      { key: 'p99us', name: 'p99 latency', unit: 'µs', better: 'lower', rate: true },
    ],
    target: { metric: 'opsps', op: '>=', value: 3500 },
    baselineTargets: [{ baseline: 'libp2p-tcp', op: '>=', value: 1 }],
  },
  {
    id: 'parallel',
    number: 4,
    title: 'Parallel streams, 64 KiB echo each, one connection',
    metrics: [
      { key: 'totalMs', name: 'total time', unit: 'ms', better: 'lower' },
      { key: 'mibps', name: 'echoed bytes rate', unit: 'MiB/s', better: 'higher' },
    ],
    target: { metric: 'totalMs', op: '<=', value: 200 },
  },
  {
    id: 'connect',
    number: 5,
    title: 'Connect + verified handshake + one 1 KiB echo + close, sequential',
    metrics: [
      { key: 'connps', name: 'connections', unit: 'conn/s', better: 'higher', rate: true },
      { key: 'p50ms', name: 'p50 per connection', unit: 'ms', better: 'lower', rate: true },
      { key: 'p50ConnectMs', name: 'p50 connect+handshake', unit: 'ms', better: 'lower', rate: true },
      { key: 'p50EchoMs', name: 'p50 echo', unit: 'ms', better: 'lower', rate: true },
      { key: 'p50CloseMs', name: 'p50 close', unit: 'ms', better: 'lower', rate: true },
    ],
    target: { metric: 'connps', op: '>=', value: 700 },
  },
  {
    id: 'memory',
    number: 6,
    title: 'Memory: idle connections to one node',
    metrics: [
      { key: 'kibPerConn', name: 'server RSS per connection', unit: 'KiB', better: 'lower', rate: true },
      { key: 'serverRssDeltaMiB', name: 'server RSS growth', unit: 'MiB', better: 'lower' },
      { key: 'serverRssAfterMiB', name: 'server RSS with connections', unit: 'MiB', better: 'lower' },
      { key: 'connectionsHeld', name: 'connections held by the server', unit: 'conns', better: 'higher' },
    ],
  },
  {
    // Relay v2 with every node in its own process: measured by runRelayFigure in bench/quic.mjs
    // (not by cells), which writes its own rows and per-row targets (relayed / direct of the same
    // run); this entry selects it (--only=relay or 7) and names what it reports.
    id: 'relay',
    number: 7,
    title: 'Relay v2: every node in its own process (line n0-n1-n2-n3-n4, then a ring)',
    metrics: [
      { key: 'requestRate', name: 'sequential 1 KiB request() rate', unit: 'req/s', better: 'higher' },
      { key: 'setupMs', name: 'openStream setup', unit: 'ms', better: 'lower' },
      { key: 'mibps', name: 'bulk on one stream', unit: 'MiB/s', better: 'higher' },
      { key: 'cpuMsPerMiB', name: 'process CPU per MiB', unit: 'ms/MiB', better: 'lower' },
      { key: 'bytesPerFlow', name: 'hop memory per relayed flow', unit: 'B', better: 'lower' },
      { key: 'pauseMs', name: 'pause when the relay on the path is killed', unit: 'ms', better: 'lower' },
    ],
  },
];

/** Workload by mode: [full, quick]. */
const w = (full, quick) => ({ full, quick });

/**
 * Cells: one (figure, system, variant) measured `runs` times. `primary` marks
 * the pnet cell that targets and ratios refer to. `params` go to both child
 * processes. A cell whose workload differs from its figure's primary cell is
 * marked "scaled" in the output (see isScaled).
 */
export const CELLS = [
  // 1. bulk throughput
  { figure: 'throughput', system: 'pnet', variant: 'node API, 1350-byte datagrams', primary: true,
    params: w({ bytes: 64 * MiB, datagram: 1350 }, { bytes: 16 * MiB, datagram: 1350 }) },
  // quickSkip: informational rows left out of the quick (smoke) run; their code paths run in other rows
  { figure: 'throughput', system: 'pnet', variant: 'node API, 16 KiB datagrams (loopback only)', quickSkip: true,
    params: w({ bytes: 64 * MiB, datagram: 16383 }, { bytes: 16 * MiB, datagram: 16383 }) },
  // pnet's rows use its native UDP socket (GSO/GRO batches); these use node:dgram, its fallback
  { figure: 'throughput', system: 'pnet', variant: 'node API, 1350-byte datagrams, node:dgram socket', quickSkip: true,
    params: w({ bytes: 64 * MiB, datagram: 1350, udp: 'node' }, { bytes: 16 * MiB, datagram: 1350, udp: 'node' }) },
  { figure: 'throughput', system: 'matrixai-quic', variant: 'high-level classes, 1350-byte datagrams',
    params: w({ bytes: 8 * MiB, datagram: 1350 }, { bytes: 2 * MiB, datagram: 1350 }) },
  { figure: 'throughput', system: 'node-tls', variant: 'TLS 1.3 over TCP',
    params: w({ bytes: 64 * MiB }, { bytes: 16 * MiB }) },

  // 2. echo round trips on one stream
  { figure: 'echo', system: 'pnet', variant: 'node API (openStream)', primary: true,
    params: w({ count: 5000, warmup: 2000, size: KiB }, { count: 1500, warmup: 200, size: KiB }) },
  { figure: 'echo', system: 'pnet', variant: 'node API (openStream), node:dgram socket', quickSkip: true,
    params: w({ count: 5000, warmup: 2000, size: KiB, udp: 'node' }, { count: 1500, warmup: 200, size: KiB, udp: 'node' }) },
  { figure: 'echo', system: 'matrixai-quic', variant: 'high-level classes',
    params: w({ count: 500, warmup: 50, size: KiB }, { count: 200, warmup: 30, size: KiB }) },
  { figure: 'echo', system: 'node-tls', variant: 'TLS 1.3 over TCP',
    params: w({ count: 5000, warmup: 2000, size: KiB }, { count: 1500, warmup: 200, size: KiB }) },

  // 3. a new stream per request
  { figure: 'stream-per-request', system: 'pnet', variant: 'node API, request() (negotiated, optimistic)', primary: true,
    params: w({ count: 3000, warmup: 2000, size: KiB, api: 'request' }, { count: 1000, warmup: 200, size: KiB, api: 'request' }) },
  { figure: 'stream-per-request', system: 'pnet', variant: 'node API, openStream() awaiting ACCEPT', quickSkip: true,
    params: w({ count: 3000, warmup: 2000, size: KiB, api: 'openStream' }, { count: 1000, warmup: 200, size: KiB, api: 'openStream' }) },
  { figure: 'stream-per-request', system: 'pnet', variant: 'raw transport stream, no channel negotiation',
    params: w({ count: 3000, warmup: 2000, size: KiB, api: 'transport' }, { count: 1000, warmup: 200, size: KiB, api: 'transport' }) },
  { figure: 'stream-per-request', system: 'matrixai-quic', variant: 'high-level classes',
    params: w({ count: 300, warmup: 30, size: KiB }, { count: 100, warmup: 20, size: KiB }) },
  { figure: 'stream-per-request', system: 'node-tls', variant: 'HTTP/2 streams over TLS 1.3 (node:http2)',
    params: w({ count: 3000, warmup: 2000, size: KiB }, { count: 1000, warmup: 200, size: KiB }) },

  // 4. parallel streams
  { figure: 'parallel', system: 'pnet', variant: 'node API (openStream)', primary: true,
    params: w(PARALLEL, PARALLEL_QUICK) },
  { figure: 'parallel', system: 'pnet', variant: 'node API (openStream), node:dgram socket', quickSkip: true,
    params: w({ ...PARALLEL, udp: 'node' }, { ...PARALLEL_QUICK, udp: 'node' }) },
  { figure: 'parallel', system: 'matrixai-quic', variant: 'high-level classes',
    params: w({ streams: 100, size: 64 * KiB }, { streams: 25, size: 4 * KiB }) },
  { figure: 'parallel', system: 'node-tls', variant: 'HTTP/2 streams over TLS 1.3 (node:http2)',
    params: w(PARALLEL, PARALLEL_QUICK) },

  // 5. connection setup (warm-up: see CONNECT). After the first connection,
  // pnet and pnet-h2 dialers resume TLS sessions (the default); the
  // full-handshake rows turn that off, and node-tls has a row with each.
  { figure: 'connect', system: 'pnet', variant: 'one client node: dial() + request() + disconnect()', primary: true,
    params: w(CONNECT, CONNECT_QUICK) },
  { figure: 'connect', system: 'pnet', variant: 'the same, full handshakes (sessionResumption: false)',
    params: w({ ...CONNECT, resume: false }, { ...CONNECT_QUICK, resume: false }) },
  { figure: 'connect', system: 'pnet', variant: 'raw transport: dial() + one stream echo + close(), no node',
    params: w({ ...CONNECT, api: 'transport' }, { ...CONNECT_QUICK, api: 'transport' }) },
  { figure: 'connect', system: 'matrixai-quic', variant: 'high-level classes: createQUICClient + stream + destroy',
    params: w({ count: 50, warmup: 5, size: KiB }, { count: 20, warmup: 3, size: KiB }) },
  { figure: 'connect', system: 'node-tls', variant: 'tls.connect + write/read + end, full handshakes',
    params: w(CONNECT, CONNECT_QUICK) },
  { figure: 'connect', system: 'node-tls', variant: 'the same, resuming the last TLS session',
    params: w({ ...CONNECT, resume: true }, { ...CONNECT_QUICK, resume: true }) },

  // 6. memory of idle connections (dialers in one client process)
  { figure: 'memory', system: 'pnet', variant: 'QuicTransport dialers → one createNode node', primary: true,
    params: w({ conns: 1000, dialers: 'transport' }, { conns: 100, dialers: 'transport' }) },
  { figure: 'memory', system: 'node-tls', variant: 'tls.connect → one tls.Server',
    params: w({ conns: 1000 }, { conns: 100 }) },

  // pnet over HTTP/2 (pnet-h2): the same code and workloads as pnet's QUIC
  // rows, with nodes made with `quic: false` (pnet's QUIC rows use `h2: false`)
  { figure: 'throughput', system: 'pnet-h2', variant: 'node API',
    params: w({ bytes: 64 * MiB }, { bytes: 16 * MiB }) },
  { figure: 'echo', system: 'pnet-h2', variant: 'node API (openStream)',
    params: w({ count: 5000, warmup: 2000, size: KiB }, { count: 1500, warmup: 200, size: KiB }) },
  { figure: 'stream-per-request', system: 'pnet-h2', variant: 'node API, request() (negotiated, optimistic)',
    params: w({ count: 3000, warmup: 2000, size: KiB, api: 'request' }, { count: 1000, warmup: 200, size: KiB, api: 'request' }) },
  { figure: 'stream-per-request', system: 'pnet-h2', variant: 'raw transport stream, no channel negotiation',
    params: w({ count: 3000, warmup: 2000, size: KiB, api: 'transport' }, { count: 1000, warmup: 200, size: KiB, api: 'transport' }) },
  { figure: 'parallel', system: 'pnet-h2', variant: 'node API (openStream)',
    params: w(PARALLEL, PARALLEL_QUICK) },
  { figure: 'connect', system: 'pnet-h2', variant: 'one client node: dial() + request() + disconnect()',
    params: w(CONNECT, CONNECT_QUICK) },
  { figure: 'connect', system: 'pnet-h2', variant: 'the same, full handshakes (sessionResumption: false)',
    params: w({ ...CONNECT, resume: false }, { ...CONNECT_QUICK, resume: false }) },
  { figure: 'memory', system: 'pnet-h2', variant: 'H2Transport dialers → one createNode node',
    params: w({ conns: 1000, dialers: 'transport' }, { conns: 100, dialers: 'transport' }) },

  // js-libp2p (libp2p-quic, libp2p-tcp): figures 1-6
  ...['libp2p-quic', 'libp2p-tcp'].flatMap((system) => {
    const stack = system === 'libp2p-quic' ? '@chainsafe/libp2p-quic' : 'TCP + noise + yamux';
    return [
      { figure: 'throughput', system, variant: stack, params: w({ bytes: 64 * MiB }, { bytes: 16 * MiB }) },
      { figure: 'echo', system, variant: `${stack}, one stream`, params: w({ count: 5000, warmup: 2000, size: KiB }, { count: 1500, warmup: 200, size: KiB }) },
      // quick: as pnet for figure 3 (fewer requests made its rate depend on warm-up), fewer connections for figure 5 (js-libp2p does 50-100 conn/s here)
      { figure: 'stream-per-request', system, variant: `${stack}, newStream() per request`, params: w({ count: 3000, warmup: 2000, size: KiB }, { count: 1000, warmup: 200, size: KiB }) },
      { figure: 'parallel', system, variant: `${stack}, newStream()`, params: w(PARALLEL, PARALLEL_QUICK) },
      { figure: 'connect', system, variant: `one client node: dial() + newStream() + connection.close()`, params: w({ count: 300, warmup: 1000, size: KiB }, { count: 40, warmup: 5, size: KiB }) },
      { figure: 'memory', system, variant: 'one libp2p node per dialer → one node', params: w({ conns: 1000 }, { conns: 100 }) },
    ];
  }),
  // 7. relay v2: no cells (runRelayFigure in bench/quic.mjs runs one process per node)
];

const WORKLOAD_KEYS = ['bytes', 'count', 'streams', 'size', 'conns'];

/** Whether `params` describe a different amount of work than the primary cell's `primaryParams`. */
export function isScaled(params, primaryParams) {
  if (!primaryParams) return false;
  return WORKLOAD_KEYS.some((k) => params[k] !== primaryParams[k]);
}

/** The nominal workload of each figure (what the targets are defined on). */
export const NOMINAL = {
  throughput: { bytes: 64 * MiB },
  echo: { count: 5000, size: KiB },
  'stream-per-request': { size: KiB },
  parallel: { streams: 100, size: 64 * KiB },
  connect: { count: 1000, size: KiB },
  memory: { conns: 1000 },
};

export function describeWorkload(figure, p) {
  switch (figure) {
    case 'throughput':
      return `${p.bytes / MiB} MiB${p.datagram ? `, ${p.datagram}-B datagrams` : ''}`;
    case 'echo':
      return `${p.count} × ${p.size / KiB} KiB round trips`;
    case 'stream-per-request':
      return `${p.count} × ${p.size / KiB} KiB requests`;
    case 'parallel':
      return `${p.streams} × ${p.size / KiB} KiB`;
    case 'connect':
      return `${p.count} connections`;
    case 'memory':
      return `${p.conns} idle connections`;
    default:
      return JSON.stringify(p);
  }
}
