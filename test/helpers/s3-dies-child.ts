/**
 * Backs up a folder to a directory and an S3 bucket. After 8 MiB read, it holds the source, prints
 * "started" and waits for a line on stdin (the parent kills the server meanwhile), then lets the
 * backup go on. Once it settles, it collects garbage, so that a FileHandle left open shows as
 * Node's "Closing file descriptor ... on garbage collection" warning on stderr, and prints the
 * outcome, with the files of the source and the destination folder still open, as one JSON line.
 */
import { once } from 'node:events';
import { readdir, readlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BackupError, Database, directory, files, s3, type Source } from '../../src/index.js';
import { MOTO_CREDENTIALS } from './moto.js';

const [dir = '', to = '', endpoint = '', bucket = ''] = process.argv.slice(2);
const collect = (globalThis as { gc?: () => void }).gc;
if (!collect) throw new Error('run with --expose-gc');

const HOLD_AT = 8 * 1024 * 1024;
let read = 0;
let held = false;
const folder = files({ name: 'f', dir });
const holding: Source = {
  ...folder,
  async open(context) {
    const snapshot = await folder.open(context);
    return {
      estimate: () => snapshot.estimate(),
      close: () => snapshot.close(),
      async *entries() {
        for await (const entry of snapshot.entries()) {
          const body = entry.body;
          if (!body) {
            yield entry;
            continue;
          }
          yield {
            ...entry,
            body: async function* () {
              for await (const chunk of body()) {
                read += chunk.length;
                if (read >= HOLD_AT && !held) {
                  held = true;
                  process.stdout.write('started\n');
                  await once(process.stdin, 'data');
                  process.stdin.pause();
                }
                yield chunk;
              }
            },
          };
        }
      },
    };
  },
};

/** In a function of its own, so that nothing of the backup stays reachable once it settled. */
async function backUp(): Promise<{ code: string; message?: string }> {
  const bucketDestination = s3({ bucket, endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS, partSize: 5 * 1024 * 1024, maxAttempts: 2 });
  const op = new Database({ sources: [holding] }).startBackup({ to: [directory({ path: to }), bucketDestination] });
  return op.done.then(
    () => ({ code: 'OK' }),
    (error: unknown) => ({ code: error instanceof BackupError ? error.code : String(error), message: (error as Error).message }),
  );
}

const outcome = await backUp();
// What the process still holds open of the source and the folder destination, read from the
// kernel: unlike the warning below, it does not depend on when, or whether, garbage is collected.
const descriptors = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
const openFiles = descriptors.filter((path) => path.startsWith(resolve(dir)) || path.startsWith(resolve(to)));
// A FileHandle is closed, with the warning, when collected; a collection may need a few rounds and
// the warning comes on a later tick.
for (let round = 0; round < 5; round++) {
  collect();
  await new Promise((resolve) => setTimeout(resolve, 20));
}
process.stdout.write(`${JSON.stringify({ ...outcome, openFiles })}\n`);
