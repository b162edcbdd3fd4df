// Issue 15 item 9: the HTTP/2 dial used to call removeAllListeners('close') (and 'error') on its
// TLS socket once the handshake finished, which also stripped Node's own TLS listeners and any
// other owner's. Now the handshake removes only its own: every 'close' listener that was on the
// socket before the dial settled is still there after, and the socket is still tracked until it closes.
import t from 'tap';
import tls from 'node:tls';
import { createNode } from '../src/index.js';
import type { PnetNode } from '../src/index.js';
import { nodeServices } from '../src/node/node.js';

t.test('a dialed HTTP/2 socket keeps the close listeners it had', async (t) => {
  const nodes: PnetNode[] = [await createNode({ quic: false }), await createNode({ quic: false })];
  t.teardown(() => Promise.all(nodes.map((n) => n.close({ timeoutMs: 200 }))).then(() => undefined));
  const [a, b] = nodes as [PnetNode, PnetNode];
  const sockets: tls.TLSSocket[] = [];
  const before = new Map<tls.TLSSocket, Function[]>();
  const connect = tls.connect;
  // Record each dialed socket with a listener of another owner, and Node's own, as they are at creation.
  (tls as { connect: typeof tls.connect }).connect = ((...args: Parameters<typeof tls.connect>) => {
    const socket = connect(...args);
    socket.once('close', function otherOwner() {});
    before.set(socket, socket.listeners('close'));
    sockets.push(socket);
    return socket;
  }) as typeof tls.connect;
  t.teardown(() => void ((tls as { connect: typeof tls.connect }).connect = connect));
  b.handleRequest('echo', (request) => request);
  await a.dial(b.address);
  t.equal((await a.request(b.id, 'echo', 'hi')).toString(), 'hi', 'the connection works');
  t.equal(sockets.length, 1, 'one TLS socket dialed');
  const socket = sockets[0]!;
  const after = socket.listeners('close');
  for (const listener of before.get(socket)!) t.ok(after.includes(listener), `close listener ${listener.name || '(anonymous)'} still attached`);
  const transport = nodeServices(a).transports[0]! as unknown as { sockets: Set<unknown> };
  t.ok(transport.sockets.has(socket), 'the transport tracks the socket');
  await a.disconnect(b.id);
  await new Promise((resolve) => (socket.destroyed ? resolve(undefined) : socket.once('close', resolve)));
  await new Promise((resolve) => setImmediate(resolve));
  t.notOk(transport.sockets.has(socket), 'and forgets it once closed');
});
