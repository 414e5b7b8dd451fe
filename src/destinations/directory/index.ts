import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BackupError } from '../../errors.js';
import type { Destination, StoredObject, Upload } from '../../types.js';
import { fsyncPath } from '../../util/fs.js';
import { checkObjectName } from '../object-name.js';

/**
 * Options of {@link directory}.
 * @public
 */
export interface DirectoryOptions {
  /** The folder archives are written to; created if missing. */
  path: string;
}

/**
 * A local (or mounted) folder. Each object is written to a hidden temporary name, fsynced, renamed
 * into place and the folder fsynced, so a crash never leaves a partial archive under a real name.
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

  return {
    kind: 'directory',
    description,
    capabilities: { atomicCommit: true, deferredCommit: true },

    async create(name: string): Promise<Upload> {
      checkObjectName(name);
      let handle: FileHandle;
      const temporary = join(root, `.${name}.${randomBytes(6).toString('hex')}.partial`);
      try {
        await mkdir(root, { recursive: true });
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
            await handle.chmod(0o644);
            await handle.sync();
            await close();
            await rename(temporary, join(root, name));
            await fsyncPath(root);
          } catch (cause) {
            await unlink(temporary).catch(() => {});
            throw failed(`committing ${name}`, cause);
          }
        },
        async abort() {
          await close().catch(() => {});
          await unlink(temporary).catch(() => {});
        },
      };
    },

    async open(name: string) {
      checkObjectName(name);
      const path = join(root, name);
      try {
        await stat(path);
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code === 'ENOENT') throw new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
        throw failed(`opening ${name}`, cause);
      }
      return createReadStream(path, { highWaterMark: 1024 * 1024 });
    },

    async *list(prefix = ''): AsyncIterable<StoredObject> {
      let names: string[];
      try {
        names = await readdir(root);
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return;
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
  };
}
