// One bench child process: the server or the client of one run of one cell.
// Driven by the parent over IPC:
//   parent -> {type:'init', role, system, figure, params, ...}   child -> {type:'ready', ...}
//   server: {type:'mark'} -> {type:'marked'};  {type:'report'} -> {type:'stats', cpuS, rssMiB}
//   client: {type:'go'} -> {type:'result', metrics, cpuS, rssMiB}
//   parent -> {type:'exit'}: close and exit.
// Failures are sent as {type:'error', message} and the child exits non-zero.
const SYSTEM_MODULES = {
  pnet: './systems/pnet.mjs',
  'matrixai-quic': './systems/matrixai.mjs',
  'node-tls': './systems/tls.mjs',
};

let role;
let instance;
let cpuMark;

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

process.on('message', async (message) => {
  try {
    switch (message.type) {
      case 'init': {
        role = message.role;
        const system = await import(SYSTEM_MODULES[message.system]);
        if (role === 'server') {
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
        cpuMark = process.cpuUsage();
        send({ type: 'marked' });
        break;
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
      case 'report':
        send({ type: 'stats', cpuS: cpuSeconds(cpuMark), rssMiB: peakRssMiB() });
        break;
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
