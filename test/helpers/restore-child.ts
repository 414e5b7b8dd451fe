/**
 * Restores the newest backup of a folder destination in a process of its own, for tests that kill,
 * stop or measure a restore. Arguments: the folder, the targets as JSON, then any of:
 * - `records`: restores the records kinds of test/helpers/chain.ts (registered here), not SQLite and files;
 * - `announce`: prints "started" once data flows, for a test to kill it mid-way;
 * - `stop-before-commit` (every target staged and checked) or `stop-after-commit` (after the first
 *   commit): stops itself (SIGSTOP) there, for a test to act at that exact point: run another
 *   restore, or SIGKILL it between two commits. The stop wraps the restorers here, in the test;
 *   backupkit has no such hook.
 * Its last line is `{"code":"ok"|<the error's code>,"peakGrowth":<bytes>}`: how far the peak
 * resident memory lies above the resident memory before the restore (a peak, not a sample, so the
 * figure does not depend on timing).
 */
import { readFileSync } from 'node:fs';
import { BackupError, Database, directory, registerSource, type Restorer, type RestoreSink } from '../../src/index.js';
import { filesRestorer } from '../../src/sources/files/index.js';
import { sqliteRestorer } from '../../src/sources/sqlite/index.js';
import { ALWAYS_FULL, RECORDS } from './chain.js';

const [from = '', targets = '{}', ...flags] = process.argv.slice(2);
const stop = flags.find((flag) => flag.startsWith('stop-'));

/**
 * The peak resident memory of this process image (Linux: VmHWM). Not resourceUsage().maxRSS, which
 * Linux carries over exec: it starts at the parent's resident size when the child was spawned.
 */
function peakResident(): number {
  const kib = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  if (kib === undefined) throw new Error('no VmHWM in /proc/self/status');
  return Number(kib) * 1024;
}

let committed = false;

function stopping(restorer: Restorer, last: boolean): Restorer {
  return {
    ...restorer,
    async begin(target, signal): Promise<RestoreSink> {
      const sink = await restorer.begin(target, signal);
      // Methods forwarded one by one: a sink may be a class instance, whose methods a spread drops.
      const wrapped: RestoreSink = {
        write: (entry) => sink.write(entry),
        abort: () => sink.abort(),
        async prepare() {
          await sink.prepare();
          if (stop === 'stop-before-commit' && last) process.kill(process.pid, 'SIGSTOP'); // the last restorer is prepared last
        },
        async commit() {
          const first = !committed;
          committed = true;
          await sink.commit();
          if (first && stop === 'stop-after-commit') process.kill(process.pid, 'SIGSTOP');
        },
      };
      if (sink.layer) wrapped.layer = (layer) => sink.layer!(layer);
      if (sink.staged) wrapped.staged = () => sink.staged!();
      return wrapped;
    },
  };
}

if (flags.includes('records')) for (const kind of [RECORDS, ALWAYS_FULL]) registerSource(kind);
const restorers = flags.includes('records') ? [RECORDS.restorer, ALWAYS_FULL.restorer] : [sqliteRestorer as Restorer, filesRestorer as Restorer];
const before = process.memoryUsage().rss;
let code = 'ok';
try {
  const restore = Database.restore({
    from: directory({ path: from }),
    targets: JSON.parse(targets) as Record<string, never>,
    restorers: restorers.map((restorer, index) => stopping(restorer, index === restorers.length - 1)),
  });
  let announced = false;
  restore.on('progress', (progress) => {
    if (flags.includes('announce') && !announced && progress.bytesDone > 0) {
      announced = true;
      process.stdout.write('started\n');
    }
  });
  await restore;
} catch (error) {
  code = error instanceof BackupError ? error.code : String(error);
}
process.stdout.write(`${JSON.stringify({ code, peakGrowth: peakResident() - before })}\n`);
