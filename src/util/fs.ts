import { open } from 'node:fs/promises';

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
