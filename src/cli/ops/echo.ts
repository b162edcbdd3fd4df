/** ops/echo: the target end of ping and trace. */
import type { PnetStream } from '../../index.js';

const ECHO_MAX_BYTES = 64 * 1024;
const ECHO_LIFETIME_MS = 120_000;

/** Echoes what it gets, bounded in bytes and lifetime. */
export function echo(stream: PnetStream): void {
  let total = 0;
  const timer = setTimeout(() => stream.destroy(), ECHO_LIFETIME_MS);
  timer.unref();
  stream.on('data', (chunk: Buffer) => {
    total += chunk.length;
    if (total > ECHO_MAX_BYTES) stream.reset(1);
    else stream.write(chunk);
  });
  stream.on('end', () => stream.end());
  stream.on('error', () => undefined);
  stream.on('close', () => clearTimeout(timer));
}

