/**
 * Writes small restored files on a worker thread with plain synchronous calls, as tar does: on
 * the main thread each file cost five round trips to the libuv pool (open, write, chmod, utimes,
 * close), and their latency set the pace for trees of many small blobs.
 */
import { closeSync, fchmodSync, futimesSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { parentPort } from 'node:worker_threads';

export interface FileToWrite {
  /** Absolute path inside the staging folder; the main thread has checked it. */
  absolute: string;
  /** The archive path, for messages. */
  path: string;
  data: Uint8Array;
  mode: number;
  mtimeMs: number;
}

export type WriterRequest = { id: number; files: FileToWrite[] };
export type WriterReply = { id: number; error?: { message: string; code: string | undefined; path: string } };

parentPort?.on('message', ({ id, files }: WriterRequest) => {
  let current = '';
  try {
    for (const file of files) {
      current = file.path;
      write(file);
    }
    parentPort?.postMessage({ id } satisfies WriterReply);
  } catch (error) {
    const { message, code } = error as NodeJS.ErrnoException;
    parentPort?.postMessage({ id, error: { message, code, path: current } } satisfies WriterReply);
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
