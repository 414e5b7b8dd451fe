/**
 * Restores the newest backup of a folder destination of records sources (test/helpers/chain.ts)
 * into the targets given as JSON, and stops itself (SIGSTOP) right after the first commit, so that
 * a test can SIGKILL it between two commits. The stop is made by wrapping the restorers here, in
 * the test; backupkit has no such hook.
 */
import { Database, directory, registerSource, type Restorer, type RestoreSink } from '../../src/index.js';
import { ALWAYS_FULL, RECORDS } from './chain.js';

const [from = '', targets = '{}'] = process.argv.slice(2);
let committed = false;

function stopping(restorer: Restorer): Restorer {
  return {
    ...restorer,
    async begin(target, signal): Promise<RestoreSink> {
      const sink = await restorer.begin(target, signal);
      return {
        layer: (layer) => sink.layer!(layer),
        write: (entry) => sink.write(entry),
        prepare: () => sink.prepare(),
        staged: () => sink.staged!(),
        abort: () => sink.abort(),
        async commit() {
          await sink.commit();
          if (!committed) process.kill(process.pid, 'SIGSTOP');
          committed = true;
        },
      };
    },
  };
}

for (const kind of [RECORDS, ALWAYS_FULL]) registerSource(kind);
await Database.restore({ from: directory({ path: from }), targets: JSON.parse(targets) as Record<string, never>, restorers: [stopping(RECORDS.restorer), stopping(ALWAYS_FULL.restorer)] });
