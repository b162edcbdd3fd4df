/**
 * The ops service a daemon serves to its operators, on ordinary pnet request channels (no second
 * protocol): info, peers, routes, topology, ping, trace, exec, one handler per file in ops/.
 * Every channel but ops/echo admits only the configured operator node ids (the library REJECTs
 * anyone else with UNAUTHORIZED, and a fan-out reports UNAUTHORIZED for that target). Replies are
 * JSON; a refusal is `{ "error": { "code", "message" } }` so its code survives both direct
 * requests and fan-outs (ops/wire.ts holds the shapes).
 */
import { PnetError } from '../index.js';
import type { NodeId, PnetNode } from '../index.js';
import type { OpsConfig } from './config.js';
import type { OpsContext, OpsHandler, OpsLogger } from './ops/context.js';
import { echo } from './ops/echo.js';
import { execService } from './ops/exec.js';
import { infoHandler } from './ops/info.js';
import { peersHandler } from './ops/peers.js';
import { pingHandler } from './ops/ping.js';
import { routesHandler } from './ops/routes.js';
import { topologyHandler } from './ops/topology.js';
import { traceHandler } from './ops/trace.js';
import { OPS_CHANNELS } from './ops/wire.js';
import type { ErrorReply } from './ops/wire.js';
import { Inventory } from './inventory.js';
import { factsHandler, forgetHandler, inventoryHandler, trackInventory } from './ops/inventory.js';
import { perfHandler, serveSink } from './ops/perf.js';

export { OPS_CHANNELS } from './ops/wire.js';
export type { OpsLogger } from './ops/context.js';

export interface OpsOptions {
  /** The hosts remembered (the daemon loads it from its file); default: a new one in memory. */
  readonly inventory?: Inventory;
  /** Called after the inventory was updated (the daemon saves it). */
  readonly inventoryChanged?: () => void;
}

export interface OpsService {
  /** Commands running now. */
  readonly running: number;
  /** The hosts this node has seen. */
  readonly inventory: Inventory;
  /** Stops serving the ops channels and kills running commands' process groups. */
  close(): Promise<void>;
}

const MAX_REQUEST_BYTES = 64 * 1024;

/**
 * Serves the ops channels on `node` for `config.operators`. Use validateOpsConfig to build the
 * config from JSON-shaped input. Events go to `logger` (one call per event).
 */
export function serveOps(node: PnetNode, config: OpsConfig, logger?: OpsLogger, options: OpsOptions = {}): OpsService {
  const operators = new Set<string>(config.operators);
  const inventory = options.inventory ?? new Inventory();
  const tracker = trackInventory(node, inventory, options.inventoryChanged);
  const ctx: OpsContext = { node, config, logger };
  const authorise = ({ remoteNodeId, channel }: { remoteNodeId: NodeId; channel: string }): boolean => {
    if (operators.has(remoteNodeId)) return true;
    logger?.warn({ event: 'ops:denied', nodeId: remoteNodeId, channel }, 'operator not in config');
    return false;
  };
  const exec = execService(ctx);
  const handlers: Record<Exclude<keyof typeof OPS_CHANNELS, 'echo' | 'facts' | 'sink'>, OpsHandler> = {
    info: infoHandler(ctx),
    peers: peersHandler(ctx),
    routes: routesHandler(ctx),
    topology: topologyHandler(ctx),
    ping: pingHandler(ctx),
    trace: traceHandler(ctx),
    exec: exec.handler,
    inventory: inventoryHandler(ctx, inventory, tracker),
    forget: forgetHandler(ctx, inventory),
    perf: perfHandler(ctx),
    stats: () => node.stats(),
  };
  for (const [name, handler] of Object.entries(handlers) as Array<[keyof typeof handlers, OpsHandler]>) {
    node.handleRequest(OPS_CHANNELS[name], jsonReplies(OPS_CHANNELS[name], handler, logger), { authorise, maxRequestBytes: MAX_REQUEST_BYTES });
  }
  // Echo for ping/trace: the daemon probing this node is a member of the map, not an operator.
  const memberOrOperator = ({ remoteNodeId }: { remoteNodeId: NodeId }): boolean => operators.has(remoteNodeId) || node.path(remoteNodeId) !== undefined;
  node.handle(OPS_CHANNELS.echo, (stream) => echo(stream), { authorise: memberOrOperator });
  serveSink(node, memberOrOperator);
  // Facts (name, labels) for the inventories of the other daemons: members of the map ask, not operators.
  node.handleRequest(OPS_CHANNELS.facts, jsonReplies(OPS_CHANNELS.facts, factsHandler(ctx), logger), { authorise: memberOrOperator, maxRequestBytes: MAX_REQUEST_BYTES });

  return {
    get running() {
      return exec.running;
    },
    inventory,
    async close() {
      tracker.stop();
      for (const channel of Object.values(OPS_CHANNELS)) node.unhandle(channel);
      await exec.close();
    },
  };
}

/** A JSON request handler that never throws (a thrown error would only reset the stream): a throw becomes an ErrorReply. */
function jsonReplies(channel: string, handler: OpsHandler, logger: OpsLogger | undefined): (request: Buffer, info: { remoteNodeId: NodeId }) => Promise<string> {
  return async (request, info) => {
    try {
      return JSON.stringify(await handler(request, info.remoteNodeId));
    } catch (error) {
      const code = error instanceof PnetError ? error.code : 'ERR_HANDLER_FAILED';
      const message = error instanceof Error ? error.message : String(error);
      // Refused commands already have their own exec:refused line.
      if (code !== 'ERR_COMMAND_REFUSED') logger?.warn({ event: 'ops:error', channel, operator: info.remoteNodeId, code, message });
      return JSON.stringify({ error: { code, message } } satisfies ErrorReply);
    }
  };
}
