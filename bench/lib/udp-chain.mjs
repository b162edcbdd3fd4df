// Figure 7's floor: the round trip of a 1 KiB UDP datagram through 0, 1 or 3 forwarding processes
// that do nothing but resend it (node:dgram, loopback). A relayed pnet round trip crosses the same
// processes, so this is what the machine charges per crossing before pnet does any work.
import dgram from 'node:dgram';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(import.meta.url);

if (process.env.UDP_CHAIN_ROLE) serve(process.env.UDP_CHAIN_ROLE);

/** A child: an echo, or a forwarder between two ports it is told. */
function serve(role) {
  const socket = dgram.createSocket('udp4');
  let prev = 0;
  let next = 0;
  socket.on('message', (message, from) => {
    if (role === 'echo') socket.send(message, from.port, from.address);
    else socket.send(message, from.port === prev ? next : prev, '127.0.0.1');
  });
  process.on('message', (m) => {
    if (m.stop) process.exit(0);
    prev = m.prev;
    next = m.next;
    process.send('wired');
  });
  socket.bind(0, '127.0.0.1', () => process.send(socket.address().port));
}

function spawn(role) {
  const child = fork(HERE, [], { env: { ...process.env, UDP_CHAIN_ROLE: role }, stdio: 'ignore', serialization: 'json' });
  return new Promise((resolve, reject) => {
    child.once('message', (port) => resolve({ child, port }));
    child.once('error', reject);
  });
}

/** Mean round trip in µs of `count` sequential 1 KiB datagrams through `hops` forwarders (after 200 warm-up ones). */
export async function udpChainRoundTripUs(hops, count = 5000) {
  const echo = await spawn('echo');
  const forwarders = [];
  const socket = dgram.createSocket('udp4');
  try {
    for (let i = 0; i < hops; i++) forwarders.push(await spawn('forward'));
    await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const chain = [socket.address().port, ...forwarders.map((f) => f.port), echo.port];
    for (const [i, f] of forwarders.entries()) {
      f.child.send({ prev: chain[i], next: chain[i + 2] });
      await new Promise((resolve) => f.child.once('message', resolve));
    }
    const body = Buffer.alloc(1024);
    const round = (n) =>
      new Promise((resolve, reject) => {
        let left = n;
        const timer = setTimeout(() => reject(new Error('udp chain: a datagram was lost')), 10_000);
        const onMessage = () => {
          if (--left === 0) {
            clearTimeout(timer);
            socket.off('message', onMessage);
            resolve();
          } else socket.send(body, chain[1], '127.0.0.1');
        };
        socket.on('message', onMessage);
        socket.send(body, chain[1], '127.0.0.1');
      });
    await round(200);
    const t0 = performance.now();
    await round(count);
    return ((performance.now() - t0) * 1000) / count;
  } finally {
    socket.close();
    for (const { child } of [echo, ...forwarders]) child.kill();
  }
}
