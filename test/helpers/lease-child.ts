/**
 * A process of a "fleet" backing up one folder to a shared destination with a lease.
 * Usage: lease-child.js <mode> <destination as JSON: { path }, { endpoint, bucket } or { connectionString, container }> <ttl ms> <folder> [<marker folder>]
 *
 * - `race`: once told "go" on stdin, backs up until it has made one backup, trying again while
 *   another process holds the lease. While its backup runs (from opening its source to closing it,
 *   all inside the lease) it holds `<marker folder>/inside`, created exclusively: a second backup
 *   running at the same time finds it and reports `overlap`. Prints `{ name, held, overlap }`.
 * - `pause`: backs up with the lease taken, and stops itself (SIGSTOP) while reading its source,
 *   as a process paused by the OS, a debugger or a long GC would. Once continued it prints
 *   `{ name }` or `{ code }`.
 */
import { once } from 'node:events';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { azure, BackupError, Database, directory, files, s3, type Destination, type Source } from '../../src/index.js';
import { MOTO_CREDENTIALS } from './moto.js';

const [mode = '', spec = '{}', ttl = '', dir = '', markers = ''] = process.argv.slice(2);
const target = JSON.parse(spec) as { path?: string; endpoint?: string; bucket?: string; connectionString?: string; container?: string };
function destination(): Destination {
  if (target.path !== undefined) return directory({ path: target.path });
  if (target.container !== undefined) return azure({ container: target.container, connectionString: target.connectionString ?? '' });
  return s3({ bucket: target.bucket ?? '', endpoint: target.endpoint ?? '', forcePathStyle: true, credentials: MOTO_CREDENTIALS });
}
const to = destination();
const lease = { ttlMs: Number(ttl) };
const inner = files({ name: 'f', dir });

if (mode === 'race') {
  let overlap = false;
  const marker = join(markers, 'inside');
  const source: Source = {
    ...inner,
    async open(context) {
      const held = await open(marker, 'wx').catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
        overlap = true;
        return undefined;
      });
      await held?.close();
      const snapshot = await inner.open(context);
      return {
        ...snapshot,
        entries: () => snapshot.entries(),
        estimate: () => snapshot.estimate(),
        async close() {
          await snapshot.close();
          if (held) await unlink(marker);
        },
      };
    },
  };
  const database = new Database({ sources: [source] });
  process.stdout.write('ready\n');
  await once(process.stdin, 'data');
  let held = 0;
  for (;;) {
    try {
      const { name } = await database.startBackup({ to, lease }).done;
      process.stdout.write(`${JSON.stringify({ name, held, overlap })}\n`);
      break;
    } catch (error) {
      if (!(error instanceof BackupError && error.code === 'LEASE_HELD')) throw error;
      held += 1;
      await sleep(20);
    }
  }
} else if (mode === 'pause') {
  const source: Source = {
    ...inner,
    async open(context) {
      const snapshot = await inner.open(context);
      return {
        ...snapshot,
        entries: async function* () {
          process.kill(process.pid, 'SIGSTOP');
          yield* snapshot.entries();
        },
        estimate: () => snapshot.estimate(),
        close: () => snapshot.close(),
      };
    },
  };
  const outcome = await new Database({ sources: [source] })
    .startBackup({ to, lease })
    .done.then(({ name }) => ({ name }), (error: BackupError) => ({ code: error.code, message: error.message }));
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
} else {
  throw new Error(`unknown mode ${mode}`);
}
process.exit(0);
