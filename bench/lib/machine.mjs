import os from 'node:os';
import { readFileSync } from 'node:fs';

function readNumber(path) {
  try {
    return Number(readFileSync(path, 'utf8').trim());
  } catch {
    return undefined;
  }
}

/** Installed version of a package (undefined when it is not installed). */
function versionOf(pkg) {
  try {
    return JSON.parse(readFileSync(new URL(`../../node_modules/${pkg}/package.json`, import.meta.url), 'utf8')).version;
  } catch {
    return undefined;
  }
}

/** The baseline packages whose versions go into the results. */
const BASELINE_PACKAGES = ['@matrixai/quic', 'libp2p', '@chainsafe/libp2p-quic', '@libp2p/tcp', '@chainsafe/libp2p-noise', '@chainsafe/libp2p-yamux'];

/** What the figures were measured on. */
export function machineInfo() {
  const cpus = os.cpus();
  const quicVersion = versionOf('@matrixai/quic');
  return {
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    nodeVersion: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    totalMemMiB: Math.round(os.totalmem() / 1024 / 1024),
    loadAverage: os.loadavg().map((x) => Number(x.toFixed(2))),
    udpBufferMax: { rmem: readNumber('/proc/sys/net/core/rmem_max'), wmem: readNumber('/proc/sys/net/core/wmem_max') },
    matrixaiQuicVersion: quicVersion,
    baselineVersions: Object.fromEntries(BASELINE_PACKAGES.map((p) => [p, versionOf(p) ?? null])),
    openssl: process.versions.openssl,
    date: new Date().toISOString(),
  };
}
