// A closed UDP socket lets go of what its datagram handler holds (the transport, the node): the
// native addon keeps its onBatch callback as a GC root, so every closed node used to stay in
// memory with its buffers (~2.5 MiB each; the soak restarts nodes all the time: issue 15).
import t from 'tap';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { nativeUdpError, openDatagramSocket } from '../src/transport/quic/udp.js';
import type { UdpImplementation } from '../src/transport/quic/udp.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const kinds: UdpImplementation[] = nativeUdpError() === undefined ? ['native', 'node'] : ['node'];

/** Opens a socket whose handler holds an object, closes it; the object's WeakRef (the handler's scope ends here). */
async function openAndClose(udp: UdpImplementation): Promise<WeakRef<object>> {
  const owner = { payload: Buffer.alloc(1024) };
  const socket = await openDatagramSocket(udp, {
    host: '127.0.0.1',
    port: 0,
    bufferSize: 1 << 16,
    onDatagram: () => void owner.payload.length,
    onError: () => undefined,
  });
  await socket.close();
  return new WeakRef(owner);
}

for (const udp of kinds) {
  t.test(`${udp}: a closed socket's handler and what it holds are collected`, async (t) => {
    const held: Array<WeakRef<object>> = [];
    for (let i = 0; i < 5; i++) held.push(await openAndClose(udp));
    for (let round = 0; round < 5 && held.some((ref) => ref.deref() !== undefined); round++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      gc();
    }
    t.equal(held.filter((ref) => ref.deref() !== undefined).length, 0, 'nothing a closed socket handled for is still alive');
  });
}
