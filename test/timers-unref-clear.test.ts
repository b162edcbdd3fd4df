// A cleared unref'd timer must not leave its timer list behind. Node drops a list emptied by
// clearTimeout only for a ref'd timer; an unref'd one's list stays until its duration ends. The
// router's timer (unref'd, re-armed at every routing message for its ~30-minute deadline, a new
// duration each time) left one list per message: ~80 a second per 25 nodes in the soak, the heap's
// growth (issue 15). Node's lists are read in a child with --expose-internals.
import t from 'tap';
import { execFile } from 'node:child_process';
import { childEnv } from './fixtures/child-env.js';

const fixture = new URL('./fixtures/timer-lists.mts', import.meta.url).pathname;

t.test('cleared unref timers leave no timer lists (helper and router)', async (t) => {
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, ['--expose-internals', '--import', 'tsx', fixture], { env: childEnv(), timeout: 60_000 }, (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out))),
  );
  const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, number | null>;
  t.ok(r.plainClearLeft! >= 290, `plain clearTimeout leaves one list per duration (${r.plainClearLeft}): the behaviour worked around`);
  t.ok(r.helperLeft! < 5, `clearUnrefTimer leaves none (${r.helperLeft})`);
  t.equal(r.helperHeld, 0, 'no timer holds the process after clearUnrefTimer');
  t.equal(r.firedHeld, 0, 'a fired timer cleared holds nothing');
  t.equal(r.routes, 1, 'the two nodes route to each other');
  t.ok(r.deadlineInMs !== null, `the router has a deadline (in ${r.deadlineInMs} ms)`);
  t.ok(r.routerLeft! < 15, `timer lists added by 150 router re-arms: ${r.routerLeft} (one per re-arm before the fix)`);
});
