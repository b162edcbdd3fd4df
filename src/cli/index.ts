/**
 * The `pnet` CLI and the ops service its daemon serves. This file is the folder's only door;
 * everything here is built on pnet's public API (src/index.ts) alone.
 */
export { runCli } from './program.js';
export { EXIT } from './commands/common.js';
export type { CliIO, ExitCode } from './commands/common.js';
export { parseTargets } from './commands/exec.js';
export { classify, summarise } from './exec-outcome.js';
export type { ExecOutcome, ExecSummary } from './exec-outcome.js';
export { serveOps, OPS_CHANNELS } from './ops.js';
export type { OpsService, OpsLogger, OpsOptions } from './ops.js';
export { Inventory, MAX_HOSTS, inventoryFileFor, loadInventory, saveInventory, parseSelector, matches } from './inventory.js';
export type { HostRecord, HostFacts, Selector } from './inventory.js';
export type {
  ErrorReply,
  InfoReply,
  PeerReply,
  RouteReply,
  TopologyReply,
  PingRequest,
  PingReply,
  PingTry,
  TraceRequest,
  TraceReply,
  TraceHop,
  ExecRequest,
  ExecReply,
  FactsReply,
  InventoryHost,
  InventoryReply,
  ForgetReply,
  PerfRequest,
  PerfReply,
  PerfDirection,
} from './ops/wire.js';
export { validateConfig, validateOpsConfig, validateCommands, loadConfig, commandFromFlag, DEFAULT_PORT } from './config.js';
export type { DaemonConfig, DaemonConfigFile, OpsConfig, CommandConfig, CommandSpec } from './config.js';
export { runCommand } from './exec.js';
export type { ExecSpec, ExecResult } from './exec.js';
export { OperatorSession, ConnectError, decodeReply, errorOf } from './client.js';
export type { OperatorOptions } from './client.js';
export { runDaemon, createLogger } from './daemon.js';
export { serveMetrics, createNodeMetrics, METRICS_PREFIX, DEFAULT_METRICS_ADDRESS } from './metrics.js';
export type { MetricsServer, NodeMetrics } from './metrics.js';
export type { LogLevel } from './daemon.js';
export { toDot, percentile } from './output.js';
export type { Out } from './output.js';
export { serveUi } from './ui-server.js';
export type { UiServer, UiOptions } from './ui-server.js';
