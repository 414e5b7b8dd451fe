/**
 * Restores the newest backup of a folder destination into the targets given as JSON, and prints
 * `{"ok":true}` or `{"code":...}`. With `stop-before-commit` (once staged and checked, before the commit phase) or
 * `stop-after-commit` (after the first commit) it stops itself (SIGSTOP), so that a test can act at that exact point: run another
 * restore, or SIGKILL it between two commits. The stop is made by wrapping the restorers here, in
 * the test; backupkit has no such hook.
 */
import { BackupError, Database, directory, type Restorer, type RestoreSink } from '../../src/index.js';
import { filesRestorer } from '../../src/sources/files/index.js';
import { sqliteRestorer } from '../../src/sources/sqlite/index.js';

const [from = '', targets = '{}', stop = ''] = process.argv.slice(2);
let stopped = false;

function stopping(restorer: Restorer): Restorer {
  return {
    ...restorer,
    async begin(target, signal): Promise<RestoreSink> {
      const sink = await restorer.begin(target, signal);
      return {
        ...sink,
        async prepare() {
          await sink.prepare();
          if (stop === 'stop-before-commit' && restorer.kind === 'files') process.kill(process.pid, 'SIGSTOP'); // prepared last
        },
        async commit() {
          const first = !stopped;
          stopped = true;
          await sink.commit();
          if (first && stop === 'stop-after-commit') process.kill(process.pid, 'SIGSTOP');
        },
      };
    },
  };
}

try {
  await Database.restore({
    from: directory({ path: from }),
    targets: JSON.parse(targets) as Record<string, never>,
    restorers: [stopping(sqliteRestorer as Restorer), stopping(filesRestorer as Restorer)],
  });
  process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
} catch (error) {
  process.stdout.write(`${JSON.stringify({ code: error instanceof BackupError ? error.code : String(error) })}\n`);
}
