import { lstat, lutimes, mkdir, open, readdir, rename, rm, symlink, utimes, chmod, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BackupError, asBackupError } from '../../errors.js';
import type { RestoreEntry, RestoreSink, Restorer, ScratchTarget } from '../../types.js';
import { SpaceBudget, fsyncPath, isNotFound, removeCreatedParents, stagingPath } from '../../util/fs.js';
import { SMALL_FILE } from './walk.js';
import { verifyTree } from './verify.js';
import { WriteBehind, unsafeEntry } from './write-behind.js';

/**
 * Restore target of a files source.
 * @public
 */
export interface FilesTarget {
  /** Where the tree is restored; it must not exist or be an empty folder. */
  dir: string;
  /**
   * Restore the setuid, setgid and sticky bits as archived. Default `false`: they are masked off
   * (a file archived as `4777` is restored `0777`), so an archive cannot plant a setuid program.
   */
  specialModeBits?: boolean;
}

const WRITE_CHUNK = 256 * 1024;
/** Permission bits restored by default: setuid, setgid and sticky only when asked for. */
const PERMISSION_BITS = 0o777;
const ALL_MODE_BITS = 0o7777;

/** Restores a files source into a staging folder beside the target, renamed into place at commit. */
export const filesRestorer: Restorer<FilesTarget> = {
  kind: 'files',

  parseTarget(target, sourceName) {
    const { dir, specialModeBits = false } = (target ?? {}) as Partial<FilesTarget>;
    if (typeof dir !== 'string' || dir === '') {
      throw new BackupError('INVALID_OPTIONS', `The target of files source "${sourceName}" needs a \`dir\``);
    }
    if (typeof specialModeBits !== 'boolean') {
      throw new BackupError('INVALID_OPTIONS', `\`specialModeBits\` of files source "${sourceName}" must be true or false`);
    }
    return { dir: resolve(dir), specialModeBits };
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

  resume: ({ dir }, staged) => resumeTree(dir, staged),

  async scratch(space, sourceName): Promise<ScratchTarget> {
    const dir = join(space.dir, sourceName);
    return { target: { dir }, remove: () => rm(dir, { recursive: true, force: true }) };
  },

  stagingFolder: ({ dir }) => dirname(dir),

  async begin({ dir, specialModeBits }, signal): Promise<RestoreSink> {
    const modeBits = specialModeBits ? ALL_MODE_BITS : PERMISSION_BITS;
    const createdParent = await mkdir(dirname(dir), { recursive: true });
    const existed = (await lstat(dir).catch(() => undefined)) !== undefined;
    const staging = stagingPath(dir);
    await mkdir(staging, { mode: 0o700 });
    const placement = placeTree(staging, dir, existed, createdParent);
    // Folder modes and times are applied last (writing into a folder changes its mtime, and a
    // read-only folder could not be filled). Links are created last and never followed: no entry
    // may lie beneath a link, so nothing is ever written through one, and a link's target, inside
    // the tree or not, dangling or looping, is only data.
    const folders: Array<{ absolute: string; mode: number; mtime: Date }> = [];
    const links: Array<{ path: string; absolute: string; target: string; mtime: Date }> = [];
    const linkPaths = new Set<string>();
    const writes = new WriteBehind(signal);
    const space = new SpaceBudget(staging, () => writes.settle());

    return {
      async write(entry: RestoreEntry) {
        const absolute = entry.path === '' ? staging : join(staging, entry.path);
        const under = linkAbove(entry.path, linkPaths);
        if (under !== undefined) throw unsafeEntry(entry.path, `it lies beneath the symbolic link ${JSON.stringify(under)}`);
        const mode = entry.mode & modeBits;
        if (entry.type === 'directory') {
          if (entry.path !== '') {
            await mkdir(absolute, { mode: 0o700 }).catch(async (error: NodeJS.ErrnoException) => {
              if (error.code === 'ENOENT') return void (await mkdir(absolute, { recursive: true, mode: 0o700 }));
              if (error.code === 'EEXIST' && (await lstat(absolute)).isDirectory()) return; // created as a parent
              throw unsafeEntry(entry.path, 'it collides with another entry', error);
            });
          }
          folders.push({ absolute, mode, mtime: entry.mtime });
        } else if (entry.type === 'symlink') {
          linkPaths.add(entry.path);
          links.push({ path: entry.path, absolute, target: entry.linkTarget ?? '', mtime: entry.mtime });
        } else {
          if (entry.path === '') throw unsafeEntry(entry.path, 'the root of a files source must be a folder');
          const create = () =>
            createFile(absolute).catch((error: NodeJS.ErrnoException) => {
              throw error.code === 'EEXIST' ? unsafeEntry(entry.path, 'it collides with another entry', error) : error;
            });
          const finish = async (handle: FileHandle) => {
            await handle.chmod(mode);
            await handle.utimes(entry.mtime, entry.mtime);
          };
          await space.claim(entry.size, `File ${JSON.stringify(entry.path)}`);
          if (entry.size > SMALL_FILE) {
            const handle = await create();
            await finish(handle);
            // The stream closes the handle; the mtime is set again once the data is in.
            await pipeline(entry.body, handle.createWriteStream({ highWaterMark: WRITE_CHUNK }), { signal });
            await utimes(absolute, entry.mtime, entry.mtime);
            return;
          }
          // Copied into a buffer of its own, which can be handed to the writer thread without a copy.
          const data = new Uint8Array(new ArrayBuffer(entry.size));
          let length = 0;
          for await (const chunk of entry.body) {
            data.set(chunk, length);
            length += chunk.length;
          }
          await writes.add({ absolute, path: entry.path, data, mode, mtimeMs: entry.mtime.getTime() });
        }
      },

      async prepare() {
        await writes.settle().finally(() => writes.close());
        for (const link of links) {
          await mkdir(dirname(link.absolute), { recursive: true, mode: 0o700 });
          await symlink(link.target, link.absolute).catch((error: NodeJS.ErrnoException) => {
            throw unsafeEntry(link.path, error.code === 'EEXIST' ? 'it collides with another entry' : `the link cannot be made: ${error.message}`, error);
          });
          await lutimes(link.absolute, link.mtime, link.mtime);
        }
        for (const folder of folders.reverse()) {
          await chmod(folder.absolute, folder.mode);
          await utimes(folder.absolute, folder.mtime, folder.mtime);
        }
        if (!folders.some((folder) => folder.absolute === staging)) await chmod(staging, 0o755);
      },

      commit: placement.commit,

      async abort() {
        await writes.settle().catch(() => {}); // the restore failed already; let no write land after the removal
        await writes.close();
        await placement.abort();
      },

      staged: (): StagedTree => ({ staging, existed }),

      async verify(archived) {
        return [await verifyTree(dir, archived, modeBits, signal)];
      },
    };
  },
};

/** What the restore journal keeps of a prepared staging folder. */
interface StagedTree {
  staging: string;
  existed: boolean;
}

/**
 * Moves a prepared staging folder into place, or undoes that. The rename never replaces a folder
 * that holds anything: a concurrent restore that filled the target first wins, this one fails with
 * `TARGET_NOT_EMPTY`. The undo removes only what this restore made: its own tree (recognised by its
 * inode), and the parent folders it created while they are still empty.
 */
function placeTree(staging: string, dir: string, existed: boolean, createdParent: string | undefined): Pick<RestoreSink, 'commit' | 'abort'> {
  let placed: number | undefined;
  return {
    async commit() {
      const { ino } = await lstat(staging);
      // rename() replaces an empty folder atomically, and fails on one that is not empty.
      await rename(staging, dir).catch((cause: NodeJS.ErrnoException) => {
        if (cause.code !== 'ENOTEMPTY' && cause.code !== 'EEXIST' && cause.code !== 'ENOTDIR') throw cause;
        throw new BackupError('TARGET_NOT_EMPTY', `${dir} was filled by another process during this restore; it was left as it is`, { cause });
      });
      placed = ino;
      await fsyncPath(dirname(dir));
    },
    async abort() {
      if (placed === undefined) await rm(staging, { recursive: true, force: true });
      else if ((await lstat(dir).catch(() => undefined))?.ino === placed) {
        await rm(dir, { recursive: true, force: true });
        if (existed) await mkdir(dir);
      }
      await removeCreatedParents(dir, createdParent);
    },
  };
}

/** A staging folder left by a restore interrupted between two commits, to be moved into place now. */
export async function resumeTree(dir: string, staged: unknown): Promise<RestoreSink | undefined> {
  const { staging, existed } = (staged ?? {}) as Partial<StagedTree>;
  if (typeof staging !== 'string' || dirname(staging) !== dirname(dir) || typeof existed !== 'boolean') {
    throw new BackupError('RESTORE_FAILED', `The restore journal does not describe a staging folder beside ${dir}`);
  }
  if (!(await lstat(staging).catch(() => undefined))?.isDirectory()) return undefined;
  return {
    ...placeTree(staging, dir, existed, undefined),
    write: () => Promise.reject(new Error('A resumed restore receives no entries')),
    prepare: () => Promise.resolve(),
  };
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

/** The nearest link among `links` that `path` lies beneath (a link is not beneath itself). */
function linkAbove(path: string, links: ReadonlySet<string>): string | undefined {
  if (links.size === 0) return undefined;
  for (let end = path.indexOf('/'); end !== -1; end = path.indexOf('/', end + 1)) {
    const prefix = path.slice(0, end);
    if (links.has(prefix)) return prefix;
  }
  return undefined;
}
