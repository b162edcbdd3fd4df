export { RelayService, RELAY_CHANNEL } from './relay.js';
export type { RelayHost, RelayOptions, RelayStats } from './relay.js';
export { TUNNEL_ALPN } from './tunnel.js';
