/**
 * The addresses a node can be reached at: a wildcard listen address (0.0.0.0, ::) is shown as
 * the host's interface addresses with its port, never as itself (nobody can dial 0.0.0.0).
 */
import { networkInterfaces } from 'node:os';
import { formatAddress, parseAddress } from '../index.js';

/** `listen` ("host:port") as dialable addresses: itself, or for a wildcard host every interface address of its family (external ones first). */
export function reachableAddresses(listen: string, interfaces = networkInterfaces()): string[] {
  const { host, port } = parseAddress(listen);
  if (host !== '0.0.0.0' && host !== '::') return [listen];
  const found: Array<{ address: string; internal: boolean }> = [];
  for (const entries of Object.values(interfaces)) {
    for (const entry of entries ?? []) {
      if (host === '0.0.0.0' && entry.family !== 'IPv4') continue;
      if (entry.family === 'IPv6' && entry.address.toLowerCase().startsWith('fe80')) continue; // link-local needs a scope id
      found.push({ address: formatAddress({ host: entry.address, port }), internal: entry.internal });
    }
  }
  found.sort((a, b) => Number(a.internal) - Number(b.internal));
  return found.length > 0 ? found.map((entry) => entry.address) : [formatAddress({ host: host === '::' ? '::1' : '127.0.0.1', port })];
}
