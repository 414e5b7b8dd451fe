import type { WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { finished } from 'node:stream/promises';

/**
 * Flushes a file, or a folder's entries, to disk: a rename is only durable once its folder is
 * synced too.
 */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/**
 * Ends a spool file's stream before its folder is removed. destroy() would let a write still in
 * flight fail afterwards, as an unhandled error event.
 */
export async function closeSpool(stream: WriteStream | undefined): Promise<void> {
  if (!stream || stream.closed) return;
  stream.end();
  await finished(stream).catch(() => {});
}
