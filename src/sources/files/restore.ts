import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { lstat, lutimes, mkdir, open, readdir, rename, rm, symlink, utimes, chmod } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BackupError, asBackupError } from '../../errors.js';
import type { ArchivedEntry, RestoreEntry, RestoreLayer, RestoreSink, Restorer, ScratchTarget } from '../../types.js';
import { SpaceBudget, fsyncPath, isNotFound, removeCreatedParents, stagingPath } from '../../util/fs.js';
import { ownerTag, removeAbandoned } from '../../util/leftovers.js';
import { LISTING_NAME, ListingError, comparePaths, openListing, type ListingLine } from './listing.js';
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

    /** Writes one item of the final tree into the staging folder; a file's contents are checked against `sha256` when given. */
    async function place(entry: RestoreEntry, sha256?: string): Promise<void> {
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
        const hash = sha256 === undefined ? undefined : createHash('sha256');
        const check = () => {
          if (hash && hash.digest('hex') !== sha256) {
            throw new BackupError('CORRUPT_ARCHIVE', `${JSON.stringify(entry.path)} in ${layer?.archive} is not the file the listing of ${chain?.archive} names (SHA-256 differs)`);
          }
        };
        await space.claim(entry.size, `File ${JSON.stringify(entry.path)}`);
        if (entry.size > SMALL_FILE) {
          const handle = await create();
          await handle.chmod(mode);
          await handle.utimes(entry.mtime, entry.mtime);
          // The stream closes the handle; the mtime is set again once the data is in.
          const body = hash ? hashing(entry.body, hash) : entry.body;
          await pipeline(body, handle.createWriteStream({ highWaterMark: WRITE_CHUNK }), { signal });
          check();
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
        hash?.update(data);
        check();
        await writes.add({ absolute, path: entry.path, data, mode, mtimeMs: entry.mtime.getTime() });
      }
    }

    // An incremental chain, newest layer first (see ChainListing).
    let layer: RestoreLayer | undefined;
    let chain: ChainListing | undefined;

    return {
      async layer(next: RestoreLayer) {
        await chain?.endLayer();
        layer = next;
        if (next.depth === 0) {
          if (next.mode === 'changes') chain = await ChainListing.create(next.archive);
        } else if (!chain) {
          throw new BackupError('RESTORE_FAILED', `${next.archive} was given as an older layer of a files source restored from an archive that holds it in full`);
        } else {
          await chain.startLayer(next.archive);
        }
      },

      async write(entry: RestoreEntry) {
        if (!chain) {
          if (entry.meta) return drain(entry.body);
          return place(entry);
        }
        if (layer?.depth === 0) {
          if (entry.meta) return entry.path === LISTING_NAME ? chain.readListing(entry.body) : drain(entry.body);
          if (entry.type === 'file') chain.count(chain.archive);
          return place(entry);
        }
        // An older layer: only files whose contents the newest listing says it holds.
        const listed = entry.meta || entry.type !== 'file' ? undefined : await chain.find(entry.path);
        if (!listed) return drain(entry.body);
        await place({ ...entry, mode: listed.mode, mtime: new Date(listed.mtime * 1000) }, listed.sha256);
      },

      async prepare() {
        await chain?.finish();
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
        await chain?.dispose();
        await placement.abort();
      },

      staged: (): StagedTree => ({ staging, existed }),

      // A chain's tree is the newest listing's, not the last archive's entries.
      async verify(archived) {
        if (!chain) return [await verifyTree(dir, archived, modeBits, signal)];
        try {
          return [await verifyTree(dir, chain.archived(), modeBits, signal)];
        } finally {
          await chain.dispose();
        }
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

/**
 * The newest listing of an incremental chain, which decides the final tree. The backup restored
 * (layer 0) sends every folder and link and the files it holds, then the listing; an older layer
 * may only add the files that the listing says it holds, each checked against the listing's
 * SHA-256. Layers and listing are both in walk order, so each older layer is merged with a pass
 * over the listing, spooled to a temporary file: memory stays bounded however large the tree.
 */
class ChainListing {
  /** Files the listing attributes to each archive, and files restored from each. */
  readonly #expected = new Map<string, number>();
  readonly #written = new Map<string, number>();
  #received = false;
  #layer: string | undefined;
  #cursor: AsyncGenerator<ListingLine> | undefined;
  #current: ListingLine | undefined;

  private constructor(
    /** The archive restored (layer 0), whose listing this is. */
    readonly archive: string,
    /** A private temporary folder holding the listing, `listing.ndjson`. */
    private readonly folder: string,
  ) {
    // `verify` may follow the commit, or not: a sink that is dropped removes its copy then.
    forgotten.register(this, folder, this);
  }

  static async create(archive: string): Promise<ChainListing> {
    await removeAbandoned(tmpdir(), LISTING_PREFIX);
    const folder = join(tmpdir(), `${LISTING_PREFIX}${ownerTag()}`);
    await mkdir(folder, { mode: 0o700 });
    return new ChainListing(archive, folder);
  }

  get #path(): string {
    return join(this.folder, LISTING_NAME);
  }

  count(archive: string): void {
    this.#written.set(archive, (this.#written.get(archive) ?? 0) + 1);
  }

  async readListing(body: AsyncIterable<Uint8Array>): Promise<void> {
    if (this.#received) throw new BackupError('CORRUPT_ARCHIVE', `${this.archive} holds two listings of a files source`);
    try {
      const { header, lines } = await openListing(body);
      if (header.archive !== this.archive) throw new ListingError(`it was made for ${header.archive}`);
      const counted = async function* (this: ChainListing): AsyncGenerator<string> {
        yield `${JSON.stringify(header)}\n`;
        for await (const line of lines) {
          if (line.type === 'file') this.#expected.set(line.archive as string, (this.#expected.get(line.archive as string) ?? 0) + 1);
          yield `${JSON.stringify(line)}\n`;
        }
      };
      await pipeline(counted.call(this), createWriteStream(this.#path, { flags: 'wx', mode: 0o600, highWaterMark: WRITE_CHUNK }));
    } catch (error) {
      if (!(error instanceof ListingError)) throw error;
      throw new BackupError('CORRUPT_ARCHIVE', `The listing of a files source in ${this.archive} cannot be read: ${error.message}`, { cause: error });
    }
    this.#received = true;
  }

  async startLayer(archive: string): Promise<void> {
    if (!this.#received) throw new BackupError('CORRUPT_ARCHIVE', `${this.archive} holds a files source as changes but no listing of it`);
    this.#layer = archive;
    this.#cursor = (await openListing(this.#read())).lines;
    this.#current = await next(this.#cursor);
  }

  async endLayer(): Promise<void> {
    await this.#cursor?.return(undefined);
    this.#cursor = undefined;
  }

  /** The listing's line of a file of the current layer, if the listing says that layer holds its contents; counts it. */
  async find(path: string): Promise<ListingLine | undefined> {
    while (this.#cursor && this.#current && comparePaths(this.#current.path, path) < 0) this.#current = await next(this.#cursor);
    const line = this.#current;
    if (line?.path !== path || line.type !== 'file' || line.archive === undefined || line.archive !== this.#layer) return undefined;
    this.#current = this.#cursor && (await next(this.#cursor));
    this.count(line.archive);
    return line;
  }

  /** Every file the listing names was restored, once, from the archive it names. */
  async finish(): Promise<void> {
    await this.endLayer();
    if (!this.#received) throw new BackupError('CORRUPT_ARCHIVE', `${this.archive} holds a files source as changes but no listing of it`);
    for (const [archive, expected] of this.#expected) {
      const written = this.#written.get(archive) ?? 0;
      if (written !== expected) {
        throw new BackupError('RESTORE_FAILED', `The listing of a files source in ${this.archive} names ${expected} files held by ${archive}, and ${written} were restored from it`);
      }
    }
    for (const [archive, written] of this.#written) {
      if (!this.#expected.has(archive)) throw new BackupError('RESTORE_FAILED', `${written} files were restored from ${archive}, which the listing of ${this.archive} does not name`);
    }
  }

  /** The final tree as the manifest would list it, for `verify`. */
  async *archived(): AsyncGenerator<ArchivedEntry> {
    for await (const line of (await openListing(this.#read())).lines) {
      yield {
        path: line.path,
        type: line.type,
        size: line.size,
        sha256: line.sha256 ?? EMPTY_SHA256,
        mode: line.mode,
        mtime: new Date(line.mtime * 1000),
        ...(line.linkTarget === undefined ? {} : { linkTarget: line.linkTarget }),
      };
    }
  }

  #read(): AsyncIterable<Uint8Array> {
    return createReadStream(this.#path, { highWaterMark: WRITE_CHUNK });
  }

  async dispose(): Promise<void> {
    forgotten.unregister(this);
    await this.endLayer();
    await rm(this.folder, { recursive: true, force: true });
  }
}

const LISTING_PREFIX = 'backupkit-files-restore-';
/** Removes the listing of a sink dropped without `verify` or `abort`; one a killed process left goes at the next restore. */
const forgotten = new FinalizationRegistry<string>((folder) => rmSync(folder, { recursive: true, force: true }));

const EMPTY_SHA256 = createHash('sha256').digest('hex');

async function next(lines: AsyncGenerator<ListingLine>): Promise<ListingLine | undefined> {
  const { done, value } = await lines.next();
  return done ? undefined : value;
}

/** Reads a body that is not restored to its end, as the archive reader requires. */
async function drain(body: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const chunk of body) void chunk;
}

async function* hashing(body: AsyncIterable<Uint8Array>, hash: Hash): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    hash.update(chunk);
    yield chunk;
  }
}
