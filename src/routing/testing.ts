/**
 * Test and benchmark entry of the routing layer (package export "quicpeer/testing"): the
 * many-router simulation in virtual time and its deterministic key and graph helpers. Not part
 * of the production door (src/routing/index.ts): a real node has no use for them.
 */
export {
  RoutingSimulation,
  seededRandom,
  seededSigner,
  simulationSigner,
  randomConnectedGraph,
  type SimulationOptions,
  type SimLinkOptions,
  type SimulationCounters,
  type RouteCheck,
  type RouteMismatch,
  type PathCheck,
  type PathMismatch,
  type NodeTraffic,
} from './router/simulation.js';
