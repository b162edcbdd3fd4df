// The 'pnet-h2' system: pnet's second transport, H2Transport (HTTP/2 over
// TLS 1.3 on TCP, Node's http2), through the same Transport / Connection /
// Stream interface as the QUIC rows with params.api = 'transport' — the same
// code (bench/systems/pnet.mjs), another transport. createNode runs QUIC
// only, so every pnet-h2 cell is a transport-level cell.
import { pnetSystem } from './pnet.mjs';

const h2 = pnetSystem('h2');
export const server = h2.server;
export const client = h2.client;
