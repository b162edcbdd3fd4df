/**
 * The node's options, checked before anything is bound, and the transports they bind: the only
 * node file that knows the QUIC and HTTP/2 classes (every other one sees the Transport interface).
 */
import { PnetError } from '../errors.js';
import type { Identity } from '../identity/index.js';
import { numberOption, sectionOption } from '../options.js';
import { H2Transport, QuicTransport } from '../transport/index.js';
import type { H2TransportOptions, QuicTransportOptions, SocketAddress, Transport } from '../transport/index.js';
import type { RouterOptions } from '../routing/index.js';
import type { NodeOptions } from './types.js';

type QuicSettings = Omit<QuicTransportOptions, 'identity' | 'host' | 'port'>;
type H2Settings = Omit<H2TransportOptions, 'identity' | 'host' | 'port'>;

/** Binding QUIC and HTTP/2 on one free port number: attempts when the TCP port of QUIC's number is taken. */
const BIND_ATTEMPTS = 5;
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
    rttSampleMs: numberOption(WHERE, 'routing.rttSampleMs', rttSampleMs, 1000, { min: 0, above: true, max: MAX_TIMER_MS }),
    neighbourHoldDownMs: numberOption(WHERE, 'routing.neighbourHoldDownMs', neighbourHoldDownMs, 200, { max: MAX_TIMER_MS }),
    router,
  };
}

/**
 * Binds QUIC, then HTTP/2 on the TCP port of the same number, and returns them QUIC first. With
 * port 0 the number comes from QUIC's socket; when that TCP port is taken both are bound again on
 * a new number, a few times.
 */
export async function bindTransports(identity: Identity, listen: SocketAddress, settings: NodeSettings): Promise<Transport[]> {
  const { host } = listen;
  const attempts = listen.port === 0 && settings.quic && settings.h2 ? BIND_ATTEMPTS : 1;
  for (let attempt = 1; ; attempt++) {
    const quic = settings.quic ? await QuicTransport.listen({ ...settings.quic, identity, host, port: listen.port }) : undefined;
    if (!settings.h2) return [quic!];
    try {
      const h2 = await H2Transport.listen({ ...settings.h2, identity, host, port: quic?.address.port ?? listen.port });
      return quic ? [quic, h2] : [h2];
    } catch (error) {
      await quic?.close();
      const cause = (error as { cause?: { code?: string } }).cause;
      if (attempt >= attempts || cause?.code !== 'EADDRINUSE') throw error;
    }
  }
}
