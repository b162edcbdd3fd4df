import { isIP } from 'node:net';
import { PnetError } from '../errors.js';
import type { SocketAddress } from './types.js';

/** Parses "127.0.0.1:4000", "[::1]:4000" or a { host, port } object. */
export function parseAddress(address: string | SocketAddress): SocketAddress {
  if (typeof address !== 'string') return checked(address.host, address.port, `${address.host}:${address.port}`);
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!match) throw new PnetError('ERR_BAD_ADDRESS', `bad address ${JSON.stringify(address)}: expected host:port or [ipv6]:port`);
  return checked(match[1]!, Number(match[2]), address);
}

function checked(host: string, port: number, text: string): SocketAddress {
  if (isIP(host) === 0) throw new PnetError('ERR_BAD_ADDRESS', `bad address ${JSON.stringify(text)}: host must be an IP address`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new PnetError('ERR_BAD_ADDRESS', `bad address ${JSON.stringify(text)}: port must be 0..65535`);
  return { host, port };
}

export function formatAddress(address: SocketAddress): string {
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
