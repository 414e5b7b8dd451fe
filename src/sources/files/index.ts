import type { Stats } from 'node:fs';
import { chmod, lstat, lutimes, mkdir, mkdtemp, open, readdir, readlink, rename, rm, stat, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BackupError, asBackupError } from '../../errors.js';
import type { Entry, RestoreEntry, RestoreSink, Restorer, Snapshot, SnapshotContext, Source } from '../../types.js';
import { fsyncPath, isNotFound } from '../../util/fs.js';

const READ_CHUNK = 256 * 1024;
/** Files up to this size are read whole, ahead of the archive, and written behind it on restore. */
const SMALL_FILE = 1024 * 1024;
/** Entries read ahead of the archive writer. */
const READ_AHEAD = 32;
/** Concurrent lstat calls while listing one folder. */
const STAT_BATCH = 64;
/** Small files being written at once on restore, and the bytes they may hold. */
const WRITE_BEHIND_FILES = 16;
const WRITE_BEHIND_BYTES = 32 * 1024 * 1024;
/** Symbolic links followed while checking one link, as Linux's own limit. */
const MAX_LINK_HOPS = 40;

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
 * Restore target of a files source.
 * @public
 */
export interface FilesTarget {
  /** Where the tree is restored; it must not exist or be an empty folder. */
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
        async estimate() {
          let bytes = 0;
          let items = 0;
          for await (const { stats } of walk(root)) {
            items += 1;
            if (stats.isFile()) bytes += stats.size;
          }
          return { bytes, items };
        },
        async *entries() {
          // Small files are read a few dozen entries ahead, concurrently: per-file latency, not
          // bandwidth, is what limits a tree of many small blobs. Memory stays under
          // READ_AHEAD x SMALL_FILE.
          const window: Array<Promise<Entry | undefined>> = [];
          for await (const { path, stats } of walk(root)) {
            const next = toEntry(root, path, stats, context);
            next.catch(() => {}); // awaited in order below; do not report it unhandled meanwhile
            window.push(next);
            if (window.length >= READ_AHEAD) {
              const entry = await window.shift();
              if (entry) yield entry;
            }
          }
          for (const next of window) {
            const entry = await next;
            if (entry) yield entry;
          }
        },
        async close() {},
      };
    },
  };
}

/** Every item below `root`, the root first, each folder before its contents, names sorted. */
async function* walk(root: string, path = '', known?: Stats): AsyncGenerator<{ path: string; stats: Stats }> {
  const absolute = path === '' ? root : join(root, path);
  const stats = known ?? (await lstat(absolute).catch((cause: unknown) => {
    throw asBackupError(cause, 'SOURCE_FAILED', `Reading ${absolute} failed`);
  }));
  yield { path, stats };
  if (!stats.isDirectory()) return;
  let names: string[];
  try {
    names = await readdir(absolute);
  } catch (cause) {
    if (isNotFound(cause)) return; // deleted while we walked
    throw asBackupError(cause, 'SOURCE_FAILED', `Listing ${absolute} failed`);
  }
  names.sort();
  for (let start = 0; start < names.length; start += STAT_BATCH) {
    const batch = names.slice(start, start + STAT_BATCH);
    const infos = await Promise.all(
      batch.map((name) =>
        lstat(join(absolute, name)).catch((cause: unknown) => {
          if (isNotFound(cause)) return undefined; // deleted while we walked
          throw asBackupError(cause, 'SOURCE_FAILED', `Reading ${join(absolute, name)} failed`);
        }),
      ),
    );
    for (const [index, info] of infos.entries()) {
      if (info) yield* walk(root, path === '' ? (batch[index] as string) : `${path}/${batch[index] as string}`, info);
    }
  }
}

async function toEntry(root: string, path: string, stats: Stats, context: SnapshotContext): Promise<Entry | undefined> {
  const common = { path, mode: stats.mode & 0o7777, mtime: stats.mtime };
  if (stats.isDirectory()) return { ...common, type: 'directory', size: 0 };
  if (stats.isSymbolicLink()) {
    const linkTarget = await readlink(join(root, path)).catch((cause: unknown) => {
      throw asBackupError(cause, 'SOURCE_FAILED', `Reading link ${path} failed`);
    });
    return { ...common, type: 'symlink', size: 0, linkTarget };
  }
  if (!stats.isFile()) {
    context.warn({ code: 'SKIPPED', path, message: `${path} is not a regular file, folder or link; skipped` });
    return undefined;
  }
  const absolute = join(root, path);
  if (stats.size <= SMALL_FILE) {
    const read = await readWhole(absolute, path, stats);
    return { ...common, type: 'file', size: stats.size, body: () => replay(read, path, context) };
  }
  return { ...common, type: 'file', size: stats.size, body: () => readFile(absolute, path, stats, context) };
}

type ReadOutcome = { bytes: Buffer; change?: string };

/** Reads a small file in one go, noting whether it changed meanwhile. */
async function readWhole(absolute: string, path: string, before: Stats): Promise<ReadOutcome> {
  let handle;
  try {
    handle = await open(absolute, 'r');
  } catch (cause) {
    if (isNotFound(cause)) return { bytes: Buffer.alloc(0), change: `${path} was deleted before it could be read` };
    throw asBackupError(cause, 'SOURCE_FAILED', `Opening ${absolute} failed`);
  }
  try {
    const bytes = await handle.readFile();
    const after = await handle.stat();
    return after.size !== before.size || after.mtimeMs !== before.mtimeMs ? { bytes, change: `${path} changed while it was read` } : { bytes };
  } finally {
    await handle.close();
  }
}

/** Hands over a file read ahead; a change is reported when the archive takes the entry. */
async function* replay(read: ReadOutcome, path: string, context: SnapshotContext): AsyncGenerator<Uint8Array> {
  if (read.bytes.length > 0) yield read.bytes;
  if (read.change) context.warn({ code: 'FILE_CHANGED', path, message: read.change });
}

/** Streams a large file, then reports it if it changed while it was read. */
async function* readFile(absolute: string, path: string, before: Stats, context: SnapshotContext): AsyncGenerator<Uint8Array> {
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
    if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) {
      context.warn({ code: 'FILE_CHANGED', path, message: `${path} changed while it was read` });
    }
  } finally {
    await handle.close();
  }
}

/** Restores a files source into a staging folder beside the target, renamed into place at commit. */
export const filesRestorer: Restorer<FilesTarget> = {
  kind: 'files',

  parseTarget(target, sourceName) {
    const dir = (target as Partial<FilesTarget> | undefined)?.dir;
    if (typeof dir !== 'string' || dir === '') {
      throw new BackupError('INVALID_OPTIONS', `The target of files source "${sourceName}" needs a \`dir\``);
    }
    return { dir: resolve(dir) };
  },

  async check({ dir }) {
    const info = await lstat(dir).catch((error: unknown) => {
      if (isNotFound(error)) return undefined;
      throw asBackupError(error, 'RESTORE_FAILED', `Checking ${dir} failed`);
    });
    if (!info) return;
    if (!info.isDirectory()) throw new BackupError('TARGET_NOT_EMPTY', `${dir} exists and is not a folder; nothing was restored`);
    if ((await readdir(dir)).length > 0) throw new BackupError('TARGET_NOT_EMPTY', `${dir} is not empty; nothing was restored`);
  },

  async begin({ dir }, signal): Promise<RestoreSink> {
    const parent = dirname(dir);
    const createdParent = await mkdir(parent, { recursive: true });
    const existed = (await lstat(dir).catch(() => undefined)) !== undefined;
    const staging = await mkdtemp(join(parent, `.${basename(dir)}.backupkit-`));
    // Folder modes and times are applied last (writing into a folder changes its mtime, and a
    // read-only folder could not be filled); links are created last so no write can pass through one.
    const folders: Array<{ absolute: string; mode: number; mtime: Date }> = [];
    const links: Array<{ path: string; absolute: string; target: string; mtime: Date }> = [];
    const writes = new WriteBehind();
    let committed = false;

    const unsafe = (path: string, why: string, cause?: unknown) =>
      new BackupError('UNSAFE_ARCHIVE', `Refusing archive entry ${JSON.stringify(path)}: ${why}`, { cause });

    return {
      async write(entry: RestoreEntry) {
        const absolute = entry.path === '' ? staging : join(staging, entry.path);
        if (entry.type === 'directory') {
          if (entry.path !== '') {
            await mkdir(absolute, { mode: 0o700 }).catch(async (error: NodeJS.ErrnoException) => {
              if (error.code === 'ENOENT') return void (await mkdir(absolute, { recursive: true, mode: 0o700 }));
              if (error.code === 'EEXIST' && (await lstat(absolute)).isDirectory()) return; // created as a parent
              throw unsafe(entry.path, 'it collides with another entry', error);
            });
          }
          folders.push({ absolute, mode: entry.mode, mtime: entry.mtime });
        } else if (entry.type === 'symlink') {
          links.push({ path: entry.path, absolute, target: entry.linkTarget ?? '', mtime: entry.mtime });
        } else {
          if (entry.path === '') throw unsafe(entry.path, 'the root of a files source must be a folder');
          const create = () =>
            createFile(absolute).catch((error: NodeJS.ErrnoException) => {
              throw error.code === 'EEXIST' ? unsafe(entry.path, 'it collides with another entry', error) : error;
            });
          const finish = async (handle: FileHandle) => {
            await handle.chmod(entry.mode & 0o7777);
            await handle.utimes(entry.mtime, entry.mtime);
          };
          if (entry.size > SMALL_FILE) {
            const handle = await create();
            await finish(handle);
            // The stream closes the handle; the mtime is set again once the data is in.
            await pipeline(entry.body, handle.createWriteStream({ highWaterMark: READ_CHUNK }), { signal });
            await utimes(absolute, entry.mtime, entry.mtime);
            return;
          }
          const chunks: Uint8Array[] = [];
          for await (const chunk of entry.body) chunks.push(chunk);
          await writes.add(entry.size, async () => {
            const handle = await create();
            try {
              await handle.writeFile(Buffer.concat(chunks));
              await finish(handle);
            } finally {
              await handle.close();
            }
          });
        }
      },

      async prepare() {
        await writes.settle();
        for (const link of links) {
          await mkdir(dirname(link.absolute), { recursive: true, mode: 0o700 });
          await symlink(link.target, link.absolute).catch((error: unknown) => {
            throw unsafe(link.path, 'it collides with another entry', error);
          });
        }
        for (const link of links) {
          if (!(await resolvesInside(staging, link.path))) throw unsafe(link.path, `its target ${JSON.stringify(link.target)} resolves outside the restored tree`);
          await lutimes(link.absolute, link.mtime, link.mtime);
        }
        for (const folder of folders.reverse()) {
          await chmod(folder.absolute, folder.mode & 0o7777);
          await utimes(folder.absolute, folder.mtime, folder.mtime);
        }
        if (!folders.some((folder) => folder.absolute === staging)) await chmod(staging, 0o755);
      },

      async commit() {
        // rename() replaces an empty folder atomically, so an existing empty target needs no removal.
        await rename(staging, dir);
        committed = true;
        await fsyncPath(parent);
      },

      async abort() {
        await writes.settle().catch(() => {}); // the restore failed already; let no write land after the removal
        await rm(committed ? dir : staging, { recursive: true, force: true });
        if (committed && existed) await mkdir(dir);
        if (createdParent) await rm(createdParent, { recursive: true, force: true });
      },
    };
  },
};

/**
 * Writes small files behind the archive reader, several at once within a memory budget: one file
 * costs several round trips to the thread pool, and doing them one after another leaves the disk
 * idle. The first failure is reported by the next `add` or by `settle`.
 */
class WriteBehind {
  readonly #pending = new Set<Promise<void>>();
  #bytes = 0;
  #failure: unknown;

  async add(bytes: number, write: () => Promise<void>): Promise<void> {
    while (this.#pending.size >= WRITE_BEHIND_FILES || (this.#pending.size > 0 && this.#bytes + bytes > WRITE_BEHIND_BYTES)) {
      await Promise.race(this.#pending);
    }
    this.#throwIfFailed();
    this.#bytes += bytes;
    const pending: Promise<void> = write()
      .catch((error: unknown) => {
        this.#failure ??= error;
      })
      .finally(() => {
        this.#bytes -= bytes;
        this.#pending.delete(pending);
      });
    this.#pending.add(pending);
  }

  async settle(): Promise<void> {
    await Promise.all(this.#pending);
    this.#throwIfFailed();
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }
}

/** Creates a file that must not exist yet; archives made by hand may list it before its folder. */
async function createFile(absolute: string) {
  try {
    return await open(absolute, 'wx', 0o600);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    await mkdir(dirname(absolute), { recursive: true, mode: 0o700 });
    return await open(absolute, 'wx', 0o600);
  }
}

/**
 * Follows `path` inside `root` component by component, as the kernel would, through every link
 * the archive created, and says whether it stays inside `root`. Works for dangling links too.
 */
async function resolvesInside(root: string, path: string): Promise<boolean> {
  let pending = path.split('/');
  const current: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (current.length === 0) return false;
      current.pop();
      continue;
    }
    const candidate = join(root, ...current, part);
    const info = await lstat(candidate).catch(() => undefined);
    if (info?.isSymbolicLink()) {
      if (++hops > MAX_LINK_HOPS) return false;
      const target = await readlink(candidate);
      if (isAbsolute(target)) return false;
      pending = [...target.split('/'), ...pending];
      continue;
    }
    current.push(part);
  }
  return true;
}
