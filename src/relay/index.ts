export { RelayService, RELAY_CHANNEL } from './relay.js';
export type { RelayHost, RelayOptions, RelayStats } from './relay.js';
export { TUNNEL_ALPN } from './tunnel.js';
export { DatagramRelay } from './datagram-relay.js';
export { DATAGRAM_LINK_CHANNEL } from './stream-link.js';
export type { StreamLinkStats } from './stream-link.js';
export type { DatagramLink, DatagramRelayHost, DatagramRelayOptions, DatagramRelayStats } from './datagram-relay.js';
export type { EndpointOptions, EndpointStats, ForwarderOptions, ForwarderStats } from './v2/index.js';
