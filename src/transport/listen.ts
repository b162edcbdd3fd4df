import { PnetError } from '../errors.js';
import type { Identity } from '../identity/index.js';
import type { SocketAddress } from './types.js';
import { QuicTransport } from './quic/transport.js';
import type { QuicTransportOptions } from './quic/transport.js';
import { H2Transport } from './h2/transport.js';
import type { H2TransportOptions } from './h2/transport.js';

/** Binds tried before giving up when the TCP port of QUIC's number is taken (port 0 only). */
export const LISTEN_ATTEMPTS = 8;

export interface ListenTransportsOptions {
  identity: Identity;
  /** Where to listen; port 0 lets QUIC's socket pick the number HTTP/2 then takes too. */
  listen: SocketAddress;
  /** QUIC settings, or undefined for no QUIC. */
  quic?: Omit<QuicTransportOptions, 'identity' | 'host' | 'port'>;
  /** HTTP/2 settings, or undefined for no HTTP/2. */
  h2?: Omit<H2TransportOptions, 'identity' | 'host' | 'port'>;
  /** Binds tried when the TCP port is taken (default LISTEN_ATTEMPTS; only with port 0 and both transports). */
  attempts?: number;
}

/**
 * Binds QUIC, then HTTP/2 on the TCP port of the same number. With port 0 the number comes from
 * QUIC's socket; when that TCP port is taken (EADDRINUSE) both are bound again on a new number,
 * up to `attempts` times.
 */
export async function listenTransports(options: ListenTransportsOptions): Promise<{ quic?: QuicTransport; h2?: H2Transport }> {
  const { identity, listen, quic: quicSettings, h2: h2Settings } = options;
  if (quicSettings === undefined && h2Settings === undefined) throw new PnetError('ERR_BAD_OPTION', 'listenTransports needs quic, h2 or both');
  const { host } = listen;
  const attempts = listen.port === 0 && quicSettings && h2Settings ? (options.attempts ?? LISTEN_ATTEMPTS) : 1;
  for (let attempt = 1; ; attempt++) {
    const quic = quicSettings ? await QuicTransport.listen({ ...quicSettings, identity, host, port: listen.port }) : undefined;
    if (!h2Settings) return { quic: quic! };
    try {
      // One admission for both: their inbound handshakes take the same CPU.
      const admission = quic === undefined ? {} : { admission: quic.admission };
      const h2 = await H2Transport.listen({ ...h2Settings, ...admission, identity, host, port: quic?.address.port ?? listen.port });
      return quic ? { quic, h2 } : { h2 };
    } catch (error) {
      await quic?.close();
      const cause = (error as { cause?: { code?: string } }).cause;
      if (attempt >= attempts || cause?.code !== 'EADDRINUSE') throw error;
    }
  }
}
