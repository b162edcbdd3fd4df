import os from 'node:os';
import { readFileSync } from 'node:fs';

function readNumber(path) {
  try {
    return Number(readFileSync(path, 'utf8').trim());
  } catch {
    return undefined;
  }
}

/** What the figures were measured on. */
export function machineInfo() {
  const cpus = os.cpus();
  let quicVersion;
  try {
    quicVersion = JSON.parse(readFileSync(new URL('../../node_modules/@matrixai/quic/package.json', import.meta.url), 'utf8')).version;
  } catch {
    quicVersion = undefined;
  }
  return {
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    nodeVersion: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    totalMemMiB: Math.round(os.totalmem() / 1024 / 1024),
    loadAverage: os.loadavg().map((x) => Number(x.toFixed(2))),
    udpBufferMax: { rmem: readNumber('/proc/sys/net/core/rmem_max'), wmem: readNumber('/proc/sys/net/core/wmem_max') },
    matrixaiQuicVersion: quicVersion,
    openssl: process.versions.openssl,
    date: new Date().toISOString(),
  };
}
