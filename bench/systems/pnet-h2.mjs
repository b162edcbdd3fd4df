// The 'pnet-h2' system: pnet over its second transport, HTTP/2 over TLS 1.3
// on TCP (H2Transport, Node's http2): the same code as the 'pnet' system
// (bench/systems/pnet.mjs), with nodes made with `quic: false` and, for the
// transport-level cells, H2Transport in place of QuicTransport.
import { pnetSystem } from './pnet.mjs';

const h2 = pnetSystem('h2');
export const server = h2.server;
export const client = h2.client;
