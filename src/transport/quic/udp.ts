/**
 * The QUIC transport's UDP socket, behind one small interface with two implementations:
 * - 'native': pnet's addon (pnet_udp.node, Linux; a local build or a prebuild, see
 *   src/native-addons.ts): a run of datagrams leaves in one UDP GSO send and arrives in one
 *   recvmmsg/GRO batch;
 * - 'node': node:dgram, one system call and one callback per datagram (anywhere Node runs).
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { PnetError } from '../../errors.js';
import { loadNativeAddon } from '../../native-addons.js';
import type { SocketAddress } from '../types.js';

export type UdpImplementation = 'native' | 'node';

/** Called once per received datagram; the bytes are only valid during the call. */
export type DatagramHandler = (datagram: Buffer, host: string, port: number) => void;

export interface DatagramSocket {
  readonly implementation: UdpImplementation;
  readonly address: SocketAddress;
  /** True when send() is done with `bytes` when it returns (the native socket copies what it must queue). */
  readonly copiesOnSend: boolean;
  /**
   * Sends bytes[offset, offset+length): datagrams of `segmentSize` bytes, the last one possibly
   * shorter, all to one peer. The 'node' socket keeps views of `bytes` until they are sent:
   * callers must not overwrite them (pnet writes into a slab with a moving offset).
   */
  send(bytes: Buffer, offset: number, length: number, segmentSize: number, port: number, host: string): void;
  close(): Promise<void>;
}

export interface DatagramSocketOptions {
  host: string;
  port: number;
  bufferSize: number;
  onDatagram: DatagramHandler;
  onError: (error: Error) => void;
}

interface NativeUdpSocket {
  readonly buffer: Buffer;
  readonly meta: Int32Array;
  readonly hosts: string[];
  bind(host: string, port: number, bufferSize: number): number;
  send(bytes: Uint8Array, offset: number, length: number, segmentSize: number, port: number, host: string): number;
  close(): void;
  info(): { gso: boolean; gro: boolean; queuedBytes: number; droppedSends: number };
}

interface NativeUdpAddon {
  readonly abiVersion: number;
  readonly supported: boolean;
  readonly UdpSocket?: new (onBatch: (count: number) => void) => NativeUdpSocket;
}

const ABI_VERSION = 1;
let addon: NativeUdpAddon | null | undefined;
let loadError: Error | undefined;

function loadAddon(): NativeUdpAddon | null {
  if (addon !== undefined) return addon;
  try {
    const loaded = loadNativeAddon('pnet_udp') as NativeUdpAddon;
    if (loaded.abiVersion !== ABI_VERSION) throw new Error(`UDP addon ABI ${loaded.abiVersion}, expected ${ABI_VERSION}: rebuild it (npm run build:native)`);
    if (!loaded.supported || loaded.UdpSocket === undefined) throw new Error('UDP addon built without batching support (not Linux, or no libuv header at build time)');
    addon = loaded;
  } catch (error) {
    loadError = error instanceof Error ? error : new Error(String(error));
    addon = null;
  }
  return addon;
}

/** Why the native UDP socket is unavailable here, or undefined when it is available. */
export function nativeUdpError(): Error | undefined {
  loadAddon();
  return loadError;
}

/**
 * Which socket a transport gets: `wanted` ('auto' by default) or, for 'auto', $PNET_UDP when set;
 * otherwise the native one where it loads.
 */
export function chooseUdp(wanted: UdpImplementation | 'auto' = 'auto'): UdpImplementation {
  const choice = wanted === 'auto' ? process.env['PNET_UDP'] ?? 'auto' : wanted;
  if (choice === 'node') return 'node';
  if (choice === 'native') {
    if (loadAddon() === null) throw new PnetError('ERR_BAD_OPTION', `native UDP socket unavailable: ${loadError?.message ?? 'unknown'}`);
    return 'native';
  }
  if (choice !== 'auto') throw new PnetError('ERR_BAD_OPTION', `udp must be 'auto', 'native' or 'node', got ${JSON.stringify(choice)}`);
  return loadAddon() === null ? 'node' : 'native';
}

export async function openDatagramSocket(implementation: UdpImplementation, options: DatagramSocketOptions): Promise<DatagramSocket> {
  const family = isIP(options.host);
  if (family === 0) throw new PnetError('ERR_BAD_ADDRESS', `listen host must be an IP address, got ${JSON.stringify(options.host)}`);
  try {
    return implementation === 'native' ? openNative(options) : await openNode(options, family);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new PnetError('ERR_BAD_ADDRESS', `cannot bind UDP ${options.host}:${options.port}: ${message}`, { cause: error });
  }
}

function openNative(options: DatagramSocketOptions): DatagramSocket {
  const Socket = loadAddon()?.UdpSocket;
  if (Socket === undefined) throw new Error('native UDP socket unavailable');
  const { onError } = options;
  // The addon holds onBatch strongly (a persistent reference, a GC root): cleared at close, so a
  // closed socket's wrapper, buffers and the transport behind onDatagram can be collected.
  const live: { socket?: NativeUdpSocket; onDatagram?: DatagramHandler } = { onDatagram: options.onDatagram };
  const socket: NativeUdpSocket = new Socket((count) => {
    const { socket: current, onDatagram } = live;
    if (current === undefined || onDatagram === undefined) return;
    const { buffer, meta, hosts } = current;
    for (let i = 0; i < count; i++) {
      const start = meta[i * 4]!;
      const end = start + meta[i * 4 + 1]!;
      const segment = meta[i * 4 + 2]!;
      const port = meta[i * 4 + 3]!;
      const host = hosts[i]!;
      // A GRO batch: equal-sized datagrams from one sender, the last one possibly shorter.
      for (let at = start; at < end; at += segment) onDatagram(buffer.subarray(at, Math.min(at + segment, end)), host, port);
    }
  });
  live.socket = socket;
  const port = socket.bind(options.host, options.port, options.bufferSize);
  return {
    implementation: 'native',
    address: { host: options.host, port },
    copiesOnSend: true,
    send(bytes, offset, length, segmentSize, toPort, toHost) {
      const result = live.socket?.send(bytes, offset, length, segmentSize, toPort, toHost) ?? 0;
      // Like dgram's asynchronous send errors: reported, never thrown at the sender.
      if (result < 0) {
        const code = getSystemErrorName(result);
        onError(Object.assign(new Error(`send ${code} ${toHost}:${toPort}`), { code, errno: result, syscall: 'send' }));
      }
    },
    close() {
      live.socket?.close(); // a second call does nothing
      live.socket = undefined;
      live.onDatagram = undefined;
      return Promise.resolve();
    },
  };
}

function literalLookup(address: string, family: unknown, callback: (error: Error | null, address: string, family: number) => void): void {
  callback(null, address, isIP(address));
}

async function openNode(options: DatagramSocketOptions, family: number): Promise<DatagramSocket> {
  const socket = dgram.createSocket({
    type: family === 6 ? 'udp6' : 'udp4',
    recvBufferSize: options.bufferSize,
    sendBufferSize: options.bufferSize,
    // Peers are always IP literals: answering at once spares dgram a dns.lookup and a nextTick per datagram.
    lookup: literalLookup,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(options.port, options.host, () => {
      socket.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    socket.close();
    throw error;
  });
  const { onDatagram } = options;
  socket.on('message', (datagram, rinfo) => onDatagram(datagram, rinfo.address, rinfo.port));
  // Send errors (e.g. ICMP unreachable reported late) must not crash the node.
  socket.on('error', options.onError);
  let closed: Promise<void> | undefined;
  return {
    implementation: 'node',
    copiesOnSend: false,
    address: { host: options.host, port: socket.address().port },
    send(bytes, offset, length, segmentSize, port, host) {
      for (let at = offset, end = offset + length; at < end; at += segmentSize) {
        socket.send(bytes, at, Math.min(segmentSize, end - at), port, host);
      }
    },
    close() {
      closed ??= new Promise<void>((resolve) => socket.close(() => resolve()));
      return closed;
    },
  };
}
