import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rmdir, statfs } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BackupError } from '../errors.js';

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

/**
 * Opens for reading without waiting: a FIFO put where a file was walked would otherwise block the
 * open until a writer comes, holding a thread for good (a backup that never ends, a worker that
 * cannot be terminated). The caller checks with fstat that it opened a regular file.
 */
export const READ_NEVER_WAITING = constants.O_RDONLY | constants.O_NONBLOCK;

export function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** Bytes in one file name on Linux, macOS and the BSDs (NAME_MAX). */
const NAME_MAX = 255;
/**
 * What a staging name adds to the target's name: `.` `.backupkit-` 12 hex digits, a suffix up to 8,
 * and room for SQLite's own `-journal` (or `-wal`) beside a staging database.
 */
const STAGING_OVERHEAD = 1 + 11 + 12 + 8 + 8;

/**
 * A hidden, unique name beside `target` for its staging copy, `.<name>.backupkit-<random><suffix>`,
 * with `<name>` cut (on a character boundary) so that the whole stays within NAME_MAX bytes.
 */
export function stagingPath(target: string, suffix = ''): string {
  let name = basename(target);
  while (Buffer.byteLength(name) > NAME_MAX - STAGING_OVERHEAD) name = [...name].slice(0, -1).join('');
  return join(dirname(target), `.${name}.backupkit-${randomBytes(6).toString('hex')}${suffix}`);
}

/**
 * Undoes `mkdir(dirname(target), { recursive: true })`, which returned `created`, the topmost
 * folder it made: removes each folder from the target's parent up to `created`, but only while it is
 * empty. A folder another process or the user put something into since is theirs now, and stays.
 */
export async function removeCreatedParents(target: string, created: string | undefined): Promise<void> {
  if (created === undefined) return;
  for (let folder = dirname(target); folder.length >= created.length; folder = dirname(folder)) {
    try {
      await rmdir(folder);
    } catch {
      return; // not empty (or gone already): it and its parents stay
    }
    if (folder === created) return;
  }
}

/**
 * Refuses to write `bytes` into `folder` when its file system has less room: a file the archive
 * announces as huge (a decompression bomb, or simply too big) fails before anything is written,
 * instead of filling the disk first.
 */
export async function ensureSpace(folder: string, bytes: number, what: string): Promise<void> {
  const free = await freeBytes(folder);
  if (bytes > free) throw noSpace(folder, bytes, free, what);
}

/**
 * The free space of one file system as a restore spends it: `claim` the size of each entry before
 * writing it, small ones included, so that an archive of many small files stops at the first one
 * that does not fit, with the same error as {@link ensureSpace}, instead of at `ENOSPC`. The file
 * system is asked again only when what is left of its last answer does not cover a claim (a
 * million small files cost a handful of `statfs` calls), after `settle` has waited for the writes
 * still in flight, which the answer would not count yet. Other writers are not seen between two
 * answers; `ENOSPC` still fails the restore then.
 */
export class SpaceBudget {
  #left = 0;
  #blockSize = 1;

  constructor(
    private readonly folder: string,
    private readonly settle: () => Promise<void> = () => Promise.resolve(),
  ) {}

  async claim(bytes: number, what: string): Promise<void> {
    if (this.#cost(bytes) > this.#left) {
      await this.settle();
      const { bavail, bsize } = await statfs(this.folder);
      this.#left = bavail * bsize;
      this.#blockSize = bsize;
    }
    const cost = this.#cost(bytes);
    if (cost > this.#left) throw noSpace(this.folder, cost, this.#left, what);
    this.#left -= cost;
  }

  /** What a file of `bytes` takes: whole blocks. */
  #cost(bytes: number): number {
    return Math.ceil(bytes / this.#blockSize) * this.#blockSize;
  }
}

async function freeBytes(folder: string): Promise<number> {
  const { bavail, bsize } = await statfs(folder);
  return bavail * bsize;
}

function noSpace(folder: string, bytes: number, free: number, what: string): BackupError {
  return new BackupError('RESTORE_FAILED', `${what} needs ${formatBytes(bytes)}; ${folder} has ${formatBytes(free)} free; nothing was restored`, {
    hint: `Free at least ${formatBytes(bytes - free)} on the file system of ${folder}, or restore to another one.`,
  });
}

function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}
