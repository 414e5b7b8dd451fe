import { randomBytes } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

/**
 * Temporary names that say who made them, so that a later run can remove what a killed one left
 * behind without touching what a live one still writes: `<host>_<pid>_<random>`.
 */

/** A writer on another host cannot be asked whether it lives: its temporaries go after this long untouched. */
export const ABANDONED_AFTER_MS = 24 * 3_600_000;

const HOST = hostname().replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63) || 'host';
const OWNER = /([A-Za-z0-9-]+)_(\d+)_[0-9a-f]+$/;

/** A fresh owner tag for one temporary of this process. */
export function ownerTag(): string {
  return `${HOST}_${process.pid}_${randomBytes(6).toString('hex')}`;
}

/**
 * Whether the temporary whose name ends with `tag` was left by a writer that is gone: a process of
 * this host that no longer runs, or a writer elsewhere that has not touched it for
 * {@link ABANDONED_AFTER_MS}. A tag that does not parse is not ours and is never abandoned.
 */
export function isAbandoned(tag: string, modifiedAt: Date, now = Date.now()): boolean {
  const match = OWNER.exec(tag);
  if (!match) return false;
  const [, host, pid] = match;
  if (host !== HOST) return now - modifiedAt.getTime() > ABANDONED_AFTER_MS;
  return !isRunning(Number(pid));
}

/**
 * Removes the temporaries `<prefix><tag>` in `folder` (files or whole folders) whose writer is
 * gone, and returns their names; best effort, as nothing depends on it. Others' names, and a live
 * writer's, are left alone.
 */
export async function removeAbandoned(folder: string, prefix: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(folder).catch(() => [])) {
    if (!name.startsWith(prefix)) continue;
    const path = join(folder, name);
    const info = await stat(path).catch(() => undefined);
    if (!info || !isAbandoned(name.slice(prefix.length), info.mtime)) continue;
    if (await rm(path, { recursive: true, force: true }).then(() => true, () => false)) removed.push(name);
  }
  return removed;
}

function isRunning(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}
