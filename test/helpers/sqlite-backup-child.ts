/**
 * Backs up a SQLite database to a folder destination and prints `{"ok":true}`. With `stop`, it
 * stops itself (SIGSTOP) once the snapshot copy is made and archiving is about to begin, so that a
 * test can SIGKILL it at that exact point. The stop is made by wrapping the source here, in the
 * test; backupkit has no such hook.
 */
import { Database, directory, sqlite, type Source } from '../../src/index.js';

const [db = '', to = '', stop = ''] = process.argv.slice(2);
const source = sqlite({ name: 'db', path: db });
const stopping: Source = {
  ...source,
  async open(context) {
    const snapshot = await source.open(context);
    return {
      ...snapshot,
      async *entries() {
        if (stop === 'stop') process.kill(process.pid, 'SIGSTOP');
        yield* snapshot.entries();
      },
    };
  },
};
await new Database({ sources: [stopping] }).startBackup({ to: directory({ path: to }) }).done;
process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
