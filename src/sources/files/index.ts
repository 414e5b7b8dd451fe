import { open, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BackupError, asBackupError } from '../../errors.js';
import type { Entry, Snapshot, SnapshotContext, Source } from '../../types.js';
import { isNotFound } from '../../util/fs.js';
import { estimateTree, walkTree } from './walk.js';
import type { WalkItem } from './walk.worker.js';

export { filesRestorer, type FilesTarget } from './restore.js';

const READ_CHUNK = 256 * 1024;

/**
 * Options of {@link files}.
 * @public
 */
export interface FilesSourceOptions {
  /** Unique name of this source in its Database. */
  name: string;
  /** The folder to back up, typically write-once blobs such as uploads. */
  dir: string;
}

/**
 * A folder tree: files, folders (empty ones too), symbolic links (stored, never followed),
 * permission bits and modification times. Captured after the databases: blobs are write-once, so a
 * blob newer than the database copy is harmless and a blob the database references is present.
 * @public
 */
export function files(options: FilesSourceOptions): Source {
  if (typeof options?.dir !== 'string' || options.dir === '') {
    throw new BackupError('INVALID_OPTIONS', `files(${JSON.stringify(options?.name)}) needs a \`dir\``);
  }
  const root = resolve(options.dir);
  return {
    kind: 'files',
    name: options.name,
    role: 'files',
    async open(context: SnapshotContext): Promise<Snapshot> {
      const info = await stat(root).catch((cause: unknown) => {
        throw asBackupError(cause, 'SOURCE_FAILED', `Reading folder ${root} failed`);
      });
      if (!info.isDirectory()) throw new BackupError('SOURCE_FAILED', `${root} is not a folder`);
      return {
        estimate: () => estimateTree(root, context.signal),
        async *entries() {
          for await (const item of walkTree(root, context.signal)) {
            const entry = toEntry(root, item, context);
            if (entry) yield entry;
          }
        },
        async close() {},
      };
    },
  };
}

function toEntry(root: string, item: WalkItem, context: SnapshotContext): Entry | undefined {
  if (item.kind === 'skipped') {
    context.warn({ code: 'SKIPPED', path: item.path, message: item.message });
    return undefined;
  }
  const common = { path: item.path, mode: item.mode, mtime: new Date(item.mtimeMs) };
  switch (item.kind) {
    case 'directory':
      return { ...common, type: 'directory', size: 0 };
    case 'symlink':
      return { ...common, type: 'symlink', size: 0, linkTarget: item.target };
    case 'file': {
      const { data, change } = item;
      const body = data
        ? () => replay(data, change, item.path, context)
        : () => streamFile(join(root, item.path), item.path, item.size, item.mtimeMs, context);
      return { ...common, type: 'file', size: item.size, body };
    }
  }
}

/** Hands over a file the walker read; a change is reported as the archive takes the entry. */
async function* replay(data: Uint8Array, change: string | undefined, path: string, context: SnapshotContext): AsyncGenerator<Uint8Array> {
  if (data.length > 0) yield data;
  if (change) context.warn({ code: 'FILE_CHANGED', path, message: change });
}

/** Streams a large file, then reports it if it changed while it was read. */
async function* streamFile(absolute: string, path: string, size: number, mtimeMs: number, context: SnapshotContext): AsyncGenerator<Uint8Array> {
  let handle;
  try {
    handle = await open(absolute, 'r');
  } catch (cause) {
    if (!isNotFound(cause)) throw asBackupError(cause, 'SOURCE_FAILED', `Opening ${absolute} failed`);
    context.warn({ code: 'FILE_CHANGED', path, message: `${path} was deleted before it could be read` });
    return;
  }
  try {
    for (;;) {
      const { bytesRead, buffer } = await handle.read(Buffer.allocUnsafe(READ_CHUNK), 0, READ_CHUNK, null);
      if (bytesRead === 0) break;
      yield buffer.subarray(0, bytesRead);
    }
    const after = await handle.stat();
    if (after.size !== size || after.mtimeMs !== mtimeMs) {
      context.warn({ code: 'FILE_CHANGED', path, message: `${path} changed while it was read` });
    }
  } finally {
    await handle.close();
  }
}
