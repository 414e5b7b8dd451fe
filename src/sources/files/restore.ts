import { createHash, type Hash } from 'node:crypto';
import { createReadStream, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { appendFile, lstat, lutimes, mkdir, open, readdir, rename, rm, symlink, utimes, chmod } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BackupError, asBackupError } from '../../errors.js';
import type { ArchivedEntry, RestoreEntry, RestoreLayer, RestoreSink, Restorer, ScratchTarget } from '../../types.js';
import { SpaceBudget, fsyncPath, isNotFound, removeCreatedParents, stagingPath } from '../../util/fs.js';
import { ownerTag, removeAbandoned } from '../../util/leftovers.js';
import { boundedLines } from '../../util/lines.js';
import { LISTING_NAME, ListingError, MAX_LINE, comparePaths, holds, openListing, unsafeListedPath, type ListingLine } from './listing.js';
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
    const absoluteOf = (path: string) => (path === '' ? staging : join(staging, path));

    async function makeFolder(path: string): Promise<void> {
      if (path === '') return;
      const absolute = absoluteOf(path);
      await mkdir(absolute, { mode: 0o700 }).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return void (await mkdir(absolute, { recursive: true, mode: 0o700 }));
        if (error.code === 'EEXIST' && (await lstat(absolute)).isDirectory()) return; // created as a parent
        throw unsafeEntry(path, 'it collides with another entry', error);
      });
    }

    async function makeLink(path: string, target: string, mtime: Date): Promise<void> {
      const absolute = absoluteOf(path);
      await mkdir(dirname(absolute), { recursive: true, mode: 0o700 });
      await symlink(target, absolute).catch((error: NodeJS.ErrnoException) => {
        throw unsafeEntry(path, error.code === 'EEXIST' ? 'it collides with another entry' : `the link cannot be made: ${error.message}`, error);
      });
      await lutimes(absolute, mtime, mtime);
    }

    async function setFolder(absolute: string, mode: number, mtime: Date): Promise<void> {
      await chmod(absolute, mode);
      await utimes(absolute, mtime, mtime);
    }

    /**
     * Writes one item of the tree into the staging folder. For a file, returns the SHA-256 of its
     * contents when `digest` is asked for: the archive reader's own when it offers it, else
     * computed here.
     */
    async function place(entry: RestoreEntry, digest = false): Promise<string | undefined> {
      const absolute = absoluteOf(entry.path);
      const under = linkAbove(entry.path, linkPaths);
      if (under !== undefined) throw unsafeEntry(entry.path, `it lies beneath the symbolic link ${JSON.stringify(under)}`);
      const mode = entry.mode & modeBits;
      if (entry.type === 'directory') {
        await makeFolder(entry.path);
        folders.push({ absolute, mode, mtime: entry.mtime });
        return undefined;
      }
      if (entry.type === 'symlink') {
        linkPaths.add(entry.path);
        links.push({ path: entry.path, absolute, target: entry.linkTarget ?? '', mtime: entry.mtime });
        return undefined;
      }
      if (entry.path === '') throw unsafeEntry(entry.path, 'the root of a files source must be a folder');
      const create = () =>
        createFile(absolute).catch((error: NodeJS.ErrnoException) => {
          throw error.code === 'EEXIST' ? unsafeEntry(entry.path, 'it collides with another entry', error) : error;
        });
      const hash = digest && !entry.sha256 ? createHash('sha256') : undefined;
      const digested = () => (digest ? (hash?.digest('hex') ?? entry.sha256?.()) : undefined);
      await space.claim(entry.size, `File ${JSON.stringify(entry.path)}`);
      if (entry.size > SMALL_FILE) {
        const handle = await create();
        await handle.chmod(mode);
        await handle.utimes(entry.mtime, entry.mtime);
        // The stream closes the handle; the mtime is set again once the data is in.
        const body = hash ? hashing(entry.body, hash) : entry.body;
        await pipeline(body, handle.createWriteStream({ highWaterMark: WRITE_CHUNK }), { signal });
        await utimes(absolute, entry.mtime, entry.mtime);
        return digested();
      }
      // Copied into a buffer of its own, which can be handed to the writer thread without a copy.
      const data = new Uint8Array(new ArrayBuffer(entry.size));
      let length = 0;
      for await (const chunk of entry.body) {
        data.set(chunk, length);
        length += chunk.length;
      }
      hash?.update(data);
      const sha256 = digested();
      await writes.add({ absolute, path: entry.path, data, mode, mtimeMs: entry.mtime.getTime() });
      return sha256;
    }

    /**
     * Makes the folders and links of a chain's newest listing, and sets every folder's mode and
     * time once all it holds is in: in walk order, keeping only the folders open above the current
     * item, so memory follows the tree's depth, not its size.
     */
    async function buildListed(listed: AsyncIterable<ListingLine>): Promise<void> {
      const open: Array<{ path: string; mode: number; mtime: Date }> = [];
      const close = async () => {
        const folder = open.pop() as (typeof open)[number];
        await setFolder(absoluteOf(folder.path), folder.mode, folder.mtime);
      };
      let root = false;
      for await (const line of listed) {
        signal.throwIfAborted();
        while (open.length > 0 && !holds((open.at(-1) as (typeof open)[number]).path, line.path)) await close();
        const mtime = new Date(line.mtime * 1000);
        if (line.type === 'directory') {
          root ||= line.path === '';
          await makeFolder(line.path);
          open.push({ path: line.path, mode: line.mode & modeBits, mtime });
        } else if (line.type === 'symlink') {
          await makeLink(line.path, line.linkTarget ?? '', mtime);
        }
      }
      while (open.length > 0) await close();
      if (!root) await chmod(staging, 0o755);
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
          return void (await place(entry));
        }
        // A chain: the newest listing decides the tree; its folders and links are made from it.
        if (entry.meta) return layer?.depth === 0 && entry.path === LISTING_NAME ? chain.readListing(entry.body) : drain(entry.body);
        if (entry.type !== 'file') return drain(entry.body);
        if (layer?.depth === 0) {
          chain.expectSent(entry.path);
          return chain.sent(entry.path, (await place(entry, true)) as string);
        }
        // An older layer: only files whose contents the newest listing says it holds.
        const listed = await chain.find(entry.path);
        if (!listed) return drain(entry.body);
        const sha256 = await place({ ...entry, mode: listed.mode, mtime: new Date(listed.mtime * 1000) }, true);
        if (sha256 !== listed.sha256) {
          throw new BackupError('CORRUPT_ARCHIVE', `${JSON.stringify(entry.path)} in ${layer?.archive} is not the file the listing of ${chain.archive} names (SHA-256 differs)`);
        }
      },

      async prepare() {
        await chain?.finish();
        await writes.settle().finally(() => writes.close());
        if (chain) return buildListed(chain.shape());
        for (const link of links) await makeLink(link.path, link.target, link.mtime);
        for (const folder of folders.reverse()) await setFolder(folder.absolute, folder.mode, folder.mtime);
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

/** A file of the newest listing that an older layer holds: what restoring it needs. */
interface HeldFile {
  readonly path: string;
  readonly mode: number;
  readonly mtime: number;
  readonly sha256: string;
}

/**
 * The newest listing of an incremental chain, which decides the final tree. The backup restored
 * (layer 0) sends the files it holds, then the listing: those files are checked against it, and
 * the lines of the files older archives hold are sorted into one file per archive, in walk order.
 * An older layer is then merged with its own lines only, so a restore reads each listing line
 * once and each older archive's entries once, and memory stays bounded however large the tree.
 */
class ChainListing {
  /** Per older archive, the lines of the files it holds, and how many. */
  readonly #held = new Map<string, { file: LineFile; count: number }>();
  /** The files layer 0 sent, with their SHA-256, in the order it sent them. */
  readonly #sent: LineFile;
  /** The listing as read, for `verify`. */
  readonly #listing: LineFile;
  /** Its folders and links, to be made once every file is in. */
  readonly #shape: LineFile;
  #received = false;
  #sentPrevious: string | undefined;
  /** The older layer being read: its lines, the next one not yet matched, and how many were. */
  #layer: { archive: string; lines: AsyncGenerator<HeldFile> | undefined; current: HeldFile | undefined; restored: number } | undefined;
  readonly #read = new Set<string>();

  private constructor(
    /** The archive restored (layer 0), whose listing this is. */
    readonly archive: string,
    /** A private temporary folder holding the listing and the per-archive files. */
    private readonly folder: string,
  ) {
    this.#sent = new LineFile(join(folder, 'sent.ndjson'));
    this.#listing = new LineFile(join(folder, LISTING_NAME));
    this.#shape = new LineFile(join(folder, 'shape.ndjson'));
    // `verify` may follow the commit, or not: a sink that is dropped removes its copy then.
    forgotten.register(this, folder, this);
  }

  static async create(archive: string): Promise<ChainListing> {
    await removeAbandoned(tmpdir(), LISTING_PREFIX);
    const folder = join(tmpdir(), `${LISTING_PREFIX}${ownerTag()}`);
    await mkdir(folder, { mode: 0o700 });
    return new ChainListing(archive, folder);
  }

  /** Refuses a file of layer 0 that comes after the listing or out of walk order: it could not be checked against the listing. */
  expectSent(path: string): void {
    if (this.#received) throw new BackupError('CORRUPT_ARCHIVE', `${JSON.stringify(path)} follows the listing of a files source in ${this.archive}`);
    if (this.#sentPrevious !== undefined && comparePaths(this.#sentPrevious, path) >= 0) {
      throw new BackupError('CORRUPT_ARCHIVE', `${JSON.stringify(path)} in ${this.archive} is out of walk order`);
    }
    this.#sentPrevious = path;
  }

  /** Records a file layer 0 sent, checked against the listing when it comes. */
  async sent(path: string, sha256: string): Promise<void> {
    await this.#sent.append(JSON.stringify([path, sha256]));
  }

  async readListing(body: AsyncIterable<Uint8Array>): Promise<void> {
    if (this.#received) throw new BackupError('CORRUPT_ARCHIVE', `${this.archive} holds two listings of a files source`);
    this.#received = true;
    await this.#sent.flush();
    const sent = this.#sent.lines<[string, string]>();
    try {
      const { header, lines } = await openListing(body);
      if (header.archive !== this.archive) throw new ListingError(`it was made for ${header.archive}`);
      await this.#listing.append(JSON.stringify(header));
      let link: string | undefined;
      let heldPending = 0;
      let next = await sent.next();
      for await (const line of lines) {
        const unsafe = unsafeListedPath(line.path, line.type) ?? (link !== undefined && line.path.startsWith(`${link}/`) ? `it lies beneath the symbolic link ${JSON.stringify(link)}` : undefined);
        if (unsafe) throw new BackupError('UNSAFE_ARCHIVE', `The listing of a files source in ${this.archive} names ${JSON.stringify(line.path)}: ${unsafe}; nothing was restored`);
        if (line.type === 'symlink') link = line.path;
        if (line.type === 'file' && line.archive === this.archive) {
          if (next.done || next.value[0] !== line.path || next.value[1] !== line.sha256) throw this.#notSent(line.path, next.done ? undefined : next.value[0]);
          next = await sent.next();
        } else if (line.type === 'file') {
          const held = this.#heldBy(line.archive as string);
          held.count += 1;
          await held.file.append(JSON.stringify({ path: line.path, mode: line.mode, mtime: line.mtime, sha256: line.sha256 as string } satisfies HeldFile));
          // However many archives the listing names, what waits in memory stays bounded.
          if ((heldPending += line.path.length + 120) >= HELD_PENDING) {
            for (const { file } of this.#held.values()) await file.flush();
            heldPending = 0;
          }
        }
        const text = JSON.stringify(line);
        await this.#listing.append(text);
        if (line.type !== 'file') await this.#shape.append(text);
      }
      if (!next.done) throw this.#notSent(undefined, next.value[0]);
    } catch (error) {
      if (!(error instanceof ListingError)) throw error;
      throw new BackupError('CORRUPT_ARCHIVE', `The listing of a files source in ${this.archive} cannot be read: ${error.message}`, { cause: error });
    } finally {
      await sent.return(undefined);
    }
    await this.#listing.flush();
    await this.#shape.flush();
    for (const { file } of this.#held.values()) await file.flush();
  }

  #notSent(listed: string | undefined, sent: string | undefined): BackupError {
    const which = listed === undefined ? `it sent ${JSON.stringify(sent)}, which the listing does not name there` : `the listing names ${JSON.stringify(listed)} there${sent === undefined ? '' : `, not ${JSON.stringify(sent)}`}`;
    return new BackupError('CORRUPT_ARCHIVE', `The files ${this.archive} holds are not those its listing of a files source names: ${which} (or its SHA-256 differs)`);
  }

  #heldBy(archive: string): { file: LineFile; count: number } {
    let held = this.#held.get(archive);
    if (!held) {
      held = { file: new LineFile(join(this.folder, `held-${this.#held.size}.ndjson`)), count: 0 };
      this.#held.set(archive, held);
    }
    return held;
  }

  async startLayer(archive: string): Promise<void> {
    if (!this.#received) throw new BackupError('CORRUPT_ARCHIVE', `${this.archive} holds a files source as changes but no listing of it`);
    const lines = this.#held.get(archive)?.file.lines<HeldFile>();
    this.#layer = { archive, lines, current: await next(lines), restored: 0 };
    this.#read.add(archive);
  }

  /** Every file the listing says the layer holds was restored from it. */
  async endLayer(): Promise<void> {
    const layer = this.#layer;
    if (!layer) return;
    this.#layer = undefined;
    await layer.lines?.return(undefined);
    const expected = this.#held.get(layer.archive)?.count ?? 0;
    if (layer.restored !== expected) {
      throw new BackupError('RESTORE_FAILED', `The listing of a files source in ${this.archive} names ${expected} files held by ${layer.archive}, and ${layer.restored} were restored from it`);
    }
  }

  /** The listing's line of a file of the current layer, if the listing says that layer holds its contents; counts it. */
  async find(path: string): Promise<HeldFile | undefined> {
    const layer = this.#layer;
    if (!layer) return undefined;
    while (layer.current && comparePaths(layer.current.path, path) < 0) layer.current = await next(layer.lines);
    const line = layer.current;
    if (line?.path !== path) return undefined;
    layer.current = await next(layer.lines);
    layer.restored += 1;
    return line;
  }

  /** Every layer the listing names was read. */
  async finish(): Promise<void> {
    await this.endLayer();
    if (!this.#received) throw new BackupError('CORRUPT_ARCHIVE', `${this.archive} holds a files source as changes but no listing of it`);
    for (const [archive, { count }] of this.#held) {
      if (!this.#read.has(archive)) {
        throw new BackupError('RESTORE_FAILED', `The listing of a files source in ${this.archive} names ${count} files held by ${archive}, and 0 were restored from it`);
      }
    }
  }

  /** The listing's folders and links, in walk order. */
  shape(): AsyncGenerator<ListingLine> {
    return this.#shape.lines<ListingLine>();
  }

  /** The listing's lines, as read and checked. */
  async *lines(): AsyncGenerator<ListingLine> {
    const lines = this.#listing.lines<ListingLine>();
    await lines.next(); // the header
    yield* lines;
  }

  /** The final tree as the manifest would list it, for `verify`. */
  async *archived(): AsyncGenerator<ArchivedEntry> {
    for await (const line of this.lines()) {
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

  async dispose(): Promise<void> {
    forgotten.unregister(this);
    await this.#layer?.lines?.return(undefined);
    this.#layer = undefined;
    await rm(this.folder, { recursive: true, force: true });
  }
}

/**
 * Lines of JSON this restore wrote itself, appended in batches (no file stays open between them:
 * a chain may have many archives) and read back in order.
 */
class LineFile {
  #pending: string[] = [];
  #pendingBytes = 0;
  #written = false;

  constructor(private readonly path: string) {}

  async append(line: string): Promise<void> {
    this.#pending.push(line, '\n');
    this.#pendingBytes += line.length + 1;
    if (this.#pendingBytes >= LINE_FILE_BATCH) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#pendingBytes === 0 && this.#written) return;
    this.#written = true;
    const text = this.#pending.join('');
    this.#pending = [];
    this.#pendingBytes = 0;
    await appendFile(this.path, text, { mode: 0o600 });
  }

  /** Its lines, parsed; call after `flush`. */
  async *lines<T>(): AsyncGenerator<T> {
    for await (const line of boundedLines(createReadStream(this.path, { highWaterMark: WRITE_CHUNK }), MAX_LINE, () => new BackupError('RESTORE_FAILED', `A line of ${this.path} is too long`))) {
      yield JSON.parse(line) as T;
    }
  }
}

/** Bytes a {@link LineFile} gathers before writing. */
const LINE_FILE_BATCH = 64 * 1024;
/** About the bytes the per-archive files of a listing may gather in all before they are all written. */
const HELD_PENDING = 1024 * 1024;

const LISTING_PREFIX = 'backupkit-files-restore-';
/** Removes the listing of a sink dropped without `verify` or `abort`; one a killed process left goes at the next restore. */
const forgotten = new FinalizationRegistry<string>((folder) => rmSync(folder, { recursive: true, force: true }));

const EMPTY_SHA256 = createHash('sha256').digest('hex');

async function next<T>(lines: AsyncGenerator<T> | undefined): Promise<T | undefined> {
  if (!lines) return undefined;
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
