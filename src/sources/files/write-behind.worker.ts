/**
 * Writes small restored files on a worker thread with plain synchronous calls, as tar does: on
 * the main thread each file cost five round trips to the libuv pool (open, write, chmod, utimes,
 * close), and their latency set the pace for trees of many small blobs.
 */
import { closeSync, fchmodSync, futimesSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { BackupError } from '../../errors.js';
import { serveWorkerJob } from '../../util/worker-channel.js';
import { unsafeEntry } from './write-behind.js';

export interface FileToWrite {
  /** Absolute path inside the staging folder; the main thread has checked it. */
  absolute: string;
  /** The archive path, for messages. */
  path: string;
  data: Uint8Array;
  mode: number;
  mtimeMs: number;
}

serveWorkerJob<undefined, never, FileToWrite[], void>(async (_data, channel) => {
  for await (const files of channel) {
    for (const file of files) {
      try {
        write(file);
      } catch (error) {
        const { code, message } = error as NodeJS.ErrnoException;
        throw code === 'EEXIST' ? unsafeEntry(file.path, 'it collides with another entry', error) : new BackupError('RESTORE_FAILED', `Writing ${file.path} failed: ${message}`, { cause: error });
      }
    }
  }
});

function write({ absolute, data, mode, mtimeMs }: FileToWrite): void {
  const fd = create(absolute);
  try {
    for (let offset = 0; offset < data.length; ) offset += writeSync(fd, data, offset, data.length - offset);
    fchmodSync(fd, mode & 0o7777);
    futimesSync(fd, mtimeMs / 1000, mtimeMs / 1000);
  } finally {
    closeSync(fd);
  }
}

/** Creates a file that must not exist yet (`wx`); archives made by hand may list it before its folder. */
function create(absolute: string): number {
  try {
    return openSync(absolute, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    mkdirSync(dirname(absolute), { recursive: true, mode: 0o700 });
    return openSync(absolute, 'wx', 0o600);
  }
}
