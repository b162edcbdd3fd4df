/**
 * The node's options, checked before anything is bound, and the transports they bind (every
 * other node file sees only the Transport interface).
 */
import { PnetError } from '../errors.js';
import type { Identity } from '../identity/index.js';
import { numberOption, sectionOption } from '../options.js';
import { listenTransports } from '../transport/index.js';
import type { H2TransportOptions, QuicTransportOptions, SocketAddress, Transport } from '../transport/index.js';
import type { RouterOptions } from '../routing/index.js';
import type { DatagramRelayOptions } from '../relay/index.js';
import type { NodeOptions } from './types.js';
import { ROTATE_AFTER_STREAMS } from '../transport/index.js';
import { MAX_STREAM_IDS_HELD } from './peers.js';

type QuicSettings = Omit<QuicTransportOptions, 'identity' | 'host' | 'port'>;
type H2Settings = Omit<H2TransportOptions, 'identity' | 'host' | 'port'>;

/** The longest delay a Node timer takes (larger ones fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;
const WHERE = 'node option';

/** Every node option with its default, checked (ERR_BAD_OPTION). */
export interface NodeSettings {
  readonly quic: QuicSettings | undefined;
  readonly h2: H2Settings | undefined;
  readonly fallbackDelayMs: number;
  readonly transportMemoryMs: number;
  readonly negotiationTimeoutMs: number;
  readonly rotateAfterStreams: number;
  readonly maxStreamIdsHeld: number;
  readonly rttSampleMs: number;
  readonly neighbourHoldDownMs: number;
  /** The router's own options (it checks them itself). */
  readonly router: Omit<RouterOptions, 'signer' | 'verify' | 'recordCache' | 'random' | 'pathComputer'>;
}

/** Checks the options before anything is bound. */
export function nodeSettings(options: NodeOptions): NodeSettings {
  const quic = sectionOption<QuicSettings>('quic', options.quic);
  const h2 = sectionOption<H2Settings>('h2', options.h2);
  if (quic === undefined && h2 === undefined) throw new PnetError('ERR_BAD_OPTION', 'quic and h2 cannot both be disabled');
  const { rttSampleMs, neighbourHoldDownMs, ...router } = options.routing ?? {};
  return {
    quic,
    h2,
    fallbackDelayMs: numberOption(WHERE, 'fallbackDelayMs', options.fallbackDelayMs, 300),
    transportMemoryMs: numberOption(WHERE, 'transportMemoryMs', options.transportMemoryMs, 10 * 60_000),
    negotiationTimeoutMs: numberOption(WHERE, 'negotiationTimeoutMs', options.negotiationTimeoutMs, 10_000, { max: MAX_TIMER_MS }),
    rotateAfterStreams: numberOption(WHERE, 'rotateAfterStreams', options.rotateAfterStreams, ROTATE_AFTER_STREAMS, { min: 1, integer: true }),
    maxStreamIdsHeld: numberOption(WHERE, 'maxStreamIdsHeld', options.maxStreamIdsHeld, MAX_STREAM_IDS_HELD, { min: 1, integer: true }),
    rttSampleMs: numberOption(WHERE, 'routing.rttSampleMs', rttSampleMs, 1000, { min: 0, above: true, max: MAX_TIMER_MS }),
    neighbourHoldDownMs: numberOption(WHERE, 'routing.neighbourHoldDownMs', neighbourHoldDownMs, 200, { max: MAX_TIMER_MS }),
    router,
  };
}

/** Binds the transports the settings ask for on one port number (the transport layer's listenTransports), QUIC first. */
export async function bindTransports(identity: Identity, listen: SocketAddress, settings: NodeSettings): Promise<Transport[]> {
  const { quic, h2 } = await listenTransports({
    identity,
    listen,
    ...(settings.quic ? { quic: settings.quic } : {}),
    ...(settings.h2 ? { h2: settings.h2 } : {}),
  });
  return [quic, h2].filter((transport) => transport !== undefined);
}

/** Relay v2's options from the node's: the relay section, and the QUIC limits for the relayed connections. */
export function datagramRelayOptions(options: NodeOptions): DatagramRelayOptions {
  const relay = options.relay ?? {};
  const quic = typeof options.quic === 'object' ? options.quic : {};
  const { maxDatagramSize: _size, socketBufferSize: _buffers, udp: _udp, ...limits } = quic;
  return {
    quic: limits,
    ...(options.rotateAfterStreams === undefined ? {} : { rotateAfterStreams: options.rotateAfterStreams }),
    // The stream relay's maxHops is v2's hop limit (a datagram's TTL byte holds at most 255).
    ...(typeof relay.maxHops === 'number' && relay.maxHops >= 1 ? { hopLimit: Math.min(255, Math.floor(relay.maxHops)) } : {}),
    ...(relay.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: relay.idleTimeoutMs }),
    ...(relay.forwarder === undefined ? {} : { forwarder: relay.forwarder }),
    ...(relay.endpoint === undefined ? {} : { endpoint: relay.endpoint }),
    ...(relay.onForward === undefined ? {} : { onForward: relay.onForward }),
  };
}
