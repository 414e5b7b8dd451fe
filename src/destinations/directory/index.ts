import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BackupError } from '../../errors.js';
import type { Destination, Lease, LeaseOptions, ReadRange, StoredObject, Upload } from '../../types.js';
import { fsyncPath } from '../../util/fs.js';
import { isAbandoned, ownerTag } from '../../util/leftovers.js';
import { checkObjectName } from '../object-name.js';
import { checkRange } from '../range.js';
import { takeDirectoryLease } from './lease.js';

/**
 * Options of {@link directory}.
 * @public
 */
export interface DirectoryOptions {
  /** The folder archives are written to; created if missing. */
  path: string;
}

/** `.<name>.<owner tag>.partial`: see util/leftovers.ts. */
const TEMPORARY = /^\.(.+)\.([^.]+)\.partial$/;

/**
 * A local (or mounted) folder. Each object is written to a hidden temporary name, fsynced, linked
 * to its real name (which fails rather than replace an object of that name) and the folder
 * fsynced, so a crash never leaves a partial archive under a real name and two writers never
 * overwrite each other. Objects are created owner-only (`0600`) whatever the umask. The folder's
 * file system must support hard links (every POSIX one does).
 *
 * The first `create()`, and `prune`, remove the temporaries of writers that died (see
 * {@link Destination.removeLeftovers}).
 *
 * Its leases (`startBackup({ lease })`) are hidden files `.<name>.<token>`, each taken with an
 * exclusive link and renewed by replacing it; several hosts may share the folder (NFS included),
 * if their clocks agree.
 * @public
 */
export function directory(options: DirectoryOptions): Destination {
  if (typeof options?.path !== 'string' || options.path === '') {
    throw new BackupError('INVALID_OPTIONS', 'directory() needs a `path`');
  }
  const root = resolve(options.path);
  const description = `directory ${root}`;
  const failed = (action: string, cause: unknown) =>
    new BackupError('DESTINATION_FAILED', `${description}: ${action} failed: ${(cause as Error).message}`, { cause });
  let swept: Promise<string[]> | undefined;

  /** Temporaries whose writer is gone; best effort, as nothing depends on it. */
  const listLeftovers = async (): Promise<string[]> => {
    const abandoned: string[] = [];
    for (const name of await readdir(root).catch(() => [])) {
      const tag = TEMPORARY.exec(name)?.[2];
      if (tag === undefined) continue;
      const info = await stat(join(root, name)).catch(() => undefined);
      if (info && isAbandoned(tag, info.mtime)) abandoned.push(name);
    }
    return abandoned;
  };

  const removeLeftovers = async (): Promise<string[]> => {
    const removed: string[] = [];
    for (const name of await listLeftovers()) {
      if (await unlink(join(root, name)).then(() => true, () => false)) removed.push(name);
    }
    return removed;
  };

  return {
    kind: 'directory',
    description,
    capabilities: { deferredCommit: true },

    async create(name: string): Promise<Upload> {
      checkObjectName(name);
      let handle: FileHandle;
      const temporary = join(root, `.${name}.${ownerTag()}.partial`);
      try {
        await mkdir(root, { recursive: true });
        await (swept ??= removeLeftovers());
        handle = await open(temporary, 'wx', 0o600);
      } catch (cause) {
        throw failed(`creating ${name}`, cause);
      }
      const stream = handle.createWriteStream({ autoClose: false, highWaterMark: 1024 * 1024 });
      let closed = false;
      const close = async () => {
        if (closed) return;
        closed = true;
        stream.destroy(); // releases its hold on the handle, which close() would otherwise wait for
        await handle.close();
      };
      return {
        stream,
        async commit() {
          try {
            await handle.sync();
            await close();
            await link(temporary, join(root, name)); // unlike rename, fails if the name is taken
          } catch (cause) {
            await unlink(temporary).catch(() => {});
            if ((cause as NodeJS.ErrnoException).code === 'EEXIST') {
              throw new BackupError('ALREADY_EXISTS', `${description} already holds ${name}; it was not replaced`, { cause });
            }
            throw failed(`committing ${name}`, cause);
          }
          await unlink(temporary).catch(() => {}); // a leftover at worst, removed by a later run
          try {
            await fsyncPath(root);
          } catch (cause) {
            await unlink(join(root, name)).catch(() => {});
            throw failed(`committing ${name}`, cause);
          }
        },
        async abort() {
          await close().catch(() => {});
          await unlink(temporary).catch(() => {});
        },
      };
    },

    async open(name: string, range?: ReadRange) {
      checkObjectName(name);
      const { start, end } = checkRange(range);
      const path = join(root, name);
      try {
        await stat(path);
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code === 'ENOENT') throw new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
        throw failed(`opening ${name}`, cause);
      }
      // createReadStream's `end` is inclusive.
      return createReadStream(path, { highWaterMark: 1024 * 1024, start, end: end === undefined ? Infinity : end - 1 });
    },

    async *list(prefix = ''): AsyncIterable<StoredObject> {
      let names: string[];
      try {
        names = await readdir(root);
      } catch (cause) {
        // A mistyped path must not read as "no backups": the folder itself is missing.
        if ((cause as NodeJS.ErrnoException).code === 'ENOENT') throw new BackupError('NOT_FOUND', `${description} does not exist`, { cause, hint: 'Check the path; a backup creates the folder.' });
        throw failed('listing', cause);
      }
      for (const name of names) {
        if (name.startsWith('.') || !name.startsWith(prefix)) continue;
        const info = await stat(join(root, name)).catch(() => undefined); // removed meanwhile
        if (info?.isFile()) yield { name, size: info.size, modifiedAt: info.mtime };
      }
    },

    async remove(name: string) {
      checkObjectName(name);
      try {
        await unlink(join(root, name));
        await fsyncPath(root);
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code === 'ENOENT') throw new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
        throw failed(`removing ${name}`, cause);
      }
    },

    removeLeftovers,
    listLeftovers,

    async lease(name: string, leaseOptions: LeaseOptions): Promise<Lease> {
      checkObjectName(name);
      return takeDirectoryLease(root, name, leaseOptions, failed);
    },
  };
}
