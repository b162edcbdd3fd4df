import * as native from '@matrixai/quic/native/index.js';
import type { Identity } from '../../identity/index.js';
import type { TransportLimits } from '../limits.js';

const quiche = native.quiche;

/** TLS ALPN of pnet over QUIC. */
export const ALPN = 'pnet/1';
/** QUIC DATAGRAM frames (RFC 9221) quiche queues each way before it drops the newest. */
export const DATAGRAM_QUEUE_LENGTH = 1024;

/** What the quiche configuration is made from: the transport's resolved limits and datagram size. */
export type QuicConfigOptions = Pick<TransportLimits, 'idleTimeoutMs' | 'connectionWindow' | 'streamWindow' | 'maxStreamsPerConnection'> & {
  maxDatagramSize: number;
};

/**
 * The production quiche configuration, for both roles (the QuicPair test harness builds its
 * machines with it too). Mutual TLS with Ed25519 certificates that pnet checks itself, pinned to
 * node ids; bidirectional streams only; migration off; DATAGRAM frames on.
 */
export function makeQuicConfig(identity: Identity, options: QuicConfigOptions): native.Config {
  const config = quiche.Config.withBoringSslCtx(
    true, // ask every peer for its certificate (mutual TLS) ...
    true, // ... but let the handshake finish: pnet verifies the certificate itself, pinned to node ids
    null,
    [Buffer.from(identity.keyPem)],
    [Buffer.from(identity.certPem)],
    'ed25519',
  );
  config.setApplicationProtos([ALPN]);
  config.setMaxIdleTimeout(options.idleTimeoutMs);
  config.setMaxRecvUdpPayloadSize(65527);
  config.setMaxSendUdpPayloadSize(options.maxDatagramSize);
  config.setInitialMaxData(options.connectionWindow);
  config.setInitialMaxStreamDataBidiLocal(options.streamWindow);
  config.setInitialMaxStreamDataBidiRemote(options.streamWindow);
  config.setInitialMaxStreamDataUni(0);
  config.setInitialMaxStreamsBidi(options.maxStreamsPerConnection);
  config.setInitialMaxStreamsUni(0);
  config.setMaxStreamWindow(Math.max(options.streamWindow, quiche.MAX_STREAM_WINDOW));
  config.setMaxConnectionWindow(Math.max(options.connectionWindow, quiche.MAX_CONNECTION_WINDOW));
  config.setDisableActiveMigration(true);
  config.enableDgram(true, DATAGRAM_QUEUE_LENGTH, DATAGRAM_QUEUE_LENGTH);
  config.enablePacing(false);
  config.grease(false);
  return config;
}
