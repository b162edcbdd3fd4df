/**
 * The spawn helper's process (spawn-helper.ts forks it): runs the commands its parent sends with
 * runCommand and answers each with its result. Parent gone: its commands are stopped, then it exits.
 */
import { runCommand } from './exec.js';
import type { HelperReply, HelperRequest } from './spawn-helper.js';

const aborts = new Map<number, AbortController>();

process.on('message', (message: HelperRequest) => {
  if (message?.type === 'abort') return aborts.get(message.id)?.abort();
  if (message?.type !== 'run') return;
  const abort = new AbortController();
  aborts.set(message.id, abort);
  void runCommand(message.spec, abort.signal).then((result) => {
    aborts.delete(message.id);
    if (process.connected) process.send?.({ type: 'done', id: message.id, result } satisfies HelperReply);
    else if (aborts.size === 0) process.exit(0);
  });
});

process.on('disconnect', () => {
  // Each run ends within its kill grace once aborted; the last one's end exits (above).
  if (aborts.size === 0) process.exit(0);
  for (const abort of aborts.values()) abort.abort();
});
