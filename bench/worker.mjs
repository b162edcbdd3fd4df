// One bench child process: the server or the client of one run of one cell.
// Driven by the parent over IPC:
//   parent -> {type:'init', role, system, figure, params, ...}   child -> {type:'ready', ...}
//   server: {type:'mark'} -> {type:'marked'};  {type:'report'} -> {type:'stats', cpuS, rssMiB}
//   client: {type:'go'} -> {type:'result', metrics, cpuS, rssMiB}
//   parent -> {type:'exit'}: close and exit.
//   parent -> {type:'preload', system}: import the system's module now (no reply), so that
//   the client process loads it while the server starts; 'init' waits for the same import.
// Failures are sent as {type:'error', message} and the child exits non-zero.
//   relay-node (pnet only, figure 7 with one node per process): {type:'init', role:'relay-node', params}
//   -> {type:'ready', address, nodeId}; then {type:'call', id, method, args} -> {type:'ret:<id>', value | failed}
// Memory figure: the server takes its RSS (after a GC) at 'mark' and again at 'report'.
const SYSTEM_MODULES = {
  pnet: './systems/pnet.mjs',
  'matrixai-quic': './systems/matrixai.mjs',
  'node-tls': './systems/tls.mjs',
  'pnet-h2': './systems/pnet-h2.mjs',
  'libp2p-quic': './systems/libp2p.mjs',
  'libp2p-tcp': './systems/libp2p.mjs',
};

let role;
let instance;
let cpuMark;
let figure;
let rssMark;

/** Resident set size in MiB after a full GC (the worker runs with --expose-gc). */
async function settledRssMiB() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return process.memoryUsage().rss / 1024 / 1024;
}

function send(message) {
  if (process.connected) process.send(message);
}

function fail(error) {
  send({ type: 'error', message: error?.stack ?? String(error) });
  setTimeout(() => process.exit(1), 50);
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
process.on('disconnect', () => process.exit(0));

const cpuSeconds = (since) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};
const peakRssMiB = () => process.resourceUsage().maxRSS / 1024;

/** The system's module; 'preload' starts the import while the other processes start up. */
let loading;
const loadSystem = (name) => (loading ??= import(SYSTEM_MODULES[name]));

process.on('message', async (message) => {
  try {
    switch (message.type) {
      case 'preload':
        await loadSystem(message.system);
        break;
      case 'init': {
        role = message.role;
        figure = message.figure;
        const system = await loadSystem(message.system);
        if (role === 'relay-node') {
          instance = await system.relayBenchNode(message);
          send({ type: 'ready', address: instance.address, nodeId: instance.nodeId });
        } else if (role === 'server') {
          instance = await system.server(message);
          send({ type: 'ready', address: instance.address, nodeId: instance.nodeId });
        } else {
          instance = await system.client(message);
          await instance.setup();
          send({ type: 'ready' });
        }
        break;
      }
      case 'mark':
        if (figure === 'memory') rssMark = await settledRssMiB();
        cpuMark = process.cpuUsage();
        send({ type: 'marked' });
        break;
      case 'call': {
        // a failed call is answered (the orchestrator decides), not fatal to the process
        Promise.resolve()
          .then(() => instance.call(message.method, message.args ?? []))
          .then(
            (value) => send({ type: `ret:${message.id}`, value }),
            (error) => send({ type: `ret:${message.id}`, failed: String(error?.stack ?? error) }),
          );
        break;
      }
      case 'diag': {
        let state;
        try {
          state = instance?.diag?.() ?? null;
        } catch (error) {
          state = String(error);
        }
        send({ type: 'diag', state });
        break;
      }
      case 'report': {
        const stats = { type: 'stats', cpuS: cpuSeconds(cpuMark), rssMiB: peakRssMiB() };
        if (figure === 'memory') {
          // let the last handshakes settle on this side before measuring
          await new Promise((resolve) => setTimeout(resolve, 300));
          stats.rssBeforeMiB = rssMark;
          stats.rssAfterMiB = await settledRssMiB();
          stats.connections = instance.connections?.();
        }
        send(stats);
        break;
      }
      case 'go': {
        const mark = process.cpuUsage();
        const metrics = await instance.run();
        send({ type: 'result', metrics, cpuS: cpuSeconds(mark), rssMiB: peakRssMiB() });
        break;
      }
      case 'exit': {
        const timer = setTimeout(() => process.exit(0), 2000);
        timer.unref();
        try {
          await instance?.close();
        } catch {
          // closing is best effort; the parent only needs the process gone
        }
        process.exit(0);
      }
    }
  } catch (error) {
    fail(error);
  }
});

send({ type: 'alive' });
