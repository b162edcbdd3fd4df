/**
 * `pnet node`: a long-running node that joins the network, serves the ops channels and logs one
 * JSON line per event. Bootstrap peers that are down at start (or later) are redialed with
 * backoff by the library (createNode's bootstrap), so daemons can start in any order.
 */
import { pino } from 'pino';
import type { Logger } from 'pino';
import { PnetError, createNode } from '../index.js';
import type { DaemonConfig } from './config.js';
import { serveOps } from './ops.js';
import { spawnHelper, spawnModeFrom } from './spawn-helper.js';
import { serveMetrics } from './metrics.js';
import type { MetricsServer } from './metrics.js';
import { readVersion } from './version.js';
import { reachableAddresses } from './addresses.js';
import { inventoryFileFor, loadInventory, saveInventory } from './inventory.js';
import type { Inventory } from './inventory.js';
import { logBootstrap } from './bootstrap.js';
import { hugePagesState } from './huge-pages.js';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/** One JSON line per event on fd 1, written synchronously so nothing is lost at exit. */
export function createLogger(level: LogLevel = 'info', fd = 1): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: fd, sync: true }));
}

/**
 * Runs the daemon until `stop` resolves (the CLI passes the first SIGINT/SIGTERM), then closes
 * the ops service and the node.
 */
export async function runDaemon(config: DaemonConfig, logger: Logger, stop: Promise<string>): Promise<void> {
  const node = await createNode({ listen: config.listen, keyFile: config.keyFile, bootstrap: config.bootstrap, ...(config.role === undefined ? {} : { routing: { role: config.role } }) });
  // createNode's own dials are reported just after it resolved: listen before any other await.
  logBootstrap(node, logger);
  const inventoryFile = inventoryFileFor(config.keyFile);
  const inventory = await loadInventory(inventoryFile);
  const saver = new InventorySaver(inventory, inventoryFile, logger);
  node.on('peer:up', (peer) => logger.info({ event: 'peer:up', nodeId: peer.nodeId, address: peer.address, direction: peer.direction }, 'peer up'));
  node.on('peer:down', ({ nodeId, error }) => logger.info({ event: 'peer:down', nodeId, ...(error ? { code: error.code, reason: error.message } : {}) }, 'peer down'));
  node.on('route', (change) =>
    logger.info({ event: 'route', nodeId: change.nodeId, nextHop: change.nextHop ?? null, previousNextHop: change.previousNextHop ?? null }, change.nextHop ? 'route' : 'unreachable'),
  );
  node.on('error', (error) => logger.warn({ event: 'error', code: error instanceof PnetError ? error.code : undefined, reason: error.message }, 'node error'));
  const ops = serveOps(node, config, logger, { inventory, inventoryChanged: () => saver.changed() });
  // The spawn helper is forked while this process is small and quiet, not in its first fan-out.
  if (Object.keys(config.commands).length > 0 && spawnModeFrom(process.env) === 'helper') spawnHelper.start();
  let metrics: MetricsServer | undefined;
  try {
    metrics = config.metrics === undefined ? undefined : await serveMetrics(() => node.stats(), config.metrics);
  } catch (error) {
    await ops.close();
    await node.close();
    throw error;
  }
  const hugePages = hugePagesState();
  logger.info(
    {
      event: 'started',
      nodeId: node.id,
      name: config.name ?? null,
      labels: config.labels ?? {},
      hosts: inventory.size,
      inventoryFile,
      address: reachableAddresses(node.address)[0],
      listen: node.address,
      version: readVersion(),
      keyFile: config.keyFile,
      operators: config.operators.length,
      commands: Object.keys(config.commands).sort(),
      allowShell: config.allowShell,
      metrics: metrics ? `http://${metrics.address}/metrics` : null,
      hugePages,
    },
    'started',
  );
  if (hugePages.reason.startsWith('execve')) logger.warn({ event: 'huge-pages', reason: hugePages.reason }, 'could not re-execute with malloc on huge pages');
  if (config.operators.length === 0) logger.warn({ event: 'config' }, 'no operators configured: every ops request will be refused');

  const signal = await stop;
  logger.info({ event: 'stopping', signal }, 'stopping');
  await metrics?.close();
  await ops.close();
  await saver.flush();
  await node.close();
  logger.info({ event: 'stopped' }, 'stopped');
}

/** Saves the inventory at most every few seconds while it changes, and once more at the end. */
class InventorySaver {
  private timer: NodeJS.Timeout | undefined;
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly inventory: Inventory,
    private readonly file: string,
    private readonly logger: Logger,
  ) {}

  changed(): void {
    if (this.timer !== undefined || !this.inventory.dirty) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.save();
    }, 2000);
    this.timer.unref();
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.save();
  }

  private save(): Promise<void> {
    this.saving = this.saving.then(() =>
      saveInventory(this.inventory, this.file).catch((error: Error) => this.logger.warn({ event: 'error', code: 'ERR_CONFIG', reason: `cannot save the inventory ${this.file}: ${error.message}` }, 'inventory not saved')),
    );
    return this.saving;
  }
}
