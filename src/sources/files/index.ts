import { open, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BackupError, asBackupError } from '../../errors.js';
import type { Entry, Snapshot, SnapshotChanges, SnapshotContext, Source } from '../../types.js';
import { READ_NEVER_WAITING, isNotFound } from '../../util/fs.js';
import { LineSpool } from '../../util/line-spool.js';
import { boundedLines } from '../../util/lines.js';
import { ThreadGroup } from '../../util/worker-channel.js';
import { ArchivedHash, LISTING_NAME, ListingError, MAX_LINE, TREE_NAME, comparePaths, holds, listingHeader, openListing, type ListingHeader, type ListingLine } from './listing.js';
import { estimateTree, walkTree, type StreamedBody } from './walk.js';
import type { Stamp, WalkItem } from './walk.worker.js';

export { filesRestorer, type FilesTarget } from './restore.js';

const READ_CHUNK = 256 * 1024;
const NS_PER_SECOND = 1_000_000_000n;
const OWNER_WRITE = 0o200;

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
 * In an incremental, only new and changed files travel, with the folders and links that changed
 * and a listing of the whole tree (docs/FORMAT.md).
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
      return new FilesSnapshot(root, context, BigInt(Date.now()) * 1_000_000n);
    },
  };
}

/** What `changes()` found: the tree as walked then, to be sent from, and what it will send. */
interface Plan {
  /** One listing line per item, in walk order (files to send have no `sha256` nor `archive`), a {@link Skipped} or a {@link Send}. */
  readonly spool: LineSpool;
  readonly unchanged: boolean;
  readonly estimate: { bytes: number; items: number };
}

/** A line of the plan for an item the walker could not describe. */
interface Skipped {
  readonly skipped: string;
  readonly message: string;
}

/**
 * A line of the plan for a folder or link the incremental archives (its listing line comes too):
 * one that changed, or a folder whose contents the restore by hand disturbs (see `comparePrevious`).
 */
interface Send {
  readonly send: ListingLine;
}

/** What an entry's body saw while the archive read it, and the SHA-256 the archive stored it with. */
interface BodyRead {
  sha256?: string;
  changed: boolean;
}

class FilesSnapshot implements Snapshot {
  #plan: Plan | undefined;
  /** The listing of this backup, written while `entries()` is read: the state, and an incremental's meta entry. */
  #listing: LineSpool | undefined;
  /** Every spool made or being made: `close()` waits for those still being made and disposes them all. */
  readonly #spools = new Set<Promise<LineSpool>>();
  #closed = false;
  /** Its walkers: a walk the backup stopped waiting for (a cancel) still ends before `close()` does. */
  readonly #threads = new ThreadGroup();

  constructor(
    private readonly root: string,
    private readonly context: SnapshotContext,
    /** When the snapshot was opened: files modified since may have changed unseen by the next incremental's metadata check. */
    private readonly startedNs: bigint,
  ) {}

  async estimate(): Promise<{ bytes: number; items: number }> {
    return this.#plan?.estimate ?? (await estimateTree(this.root, this.context.signal, this.#threads));
  }

  async changes(): Promise<SnapshotChanges> {
    const { previous } = this.context;
    if (!previous) return { mode: 'full', unchanged: false };
    const spool = await this.#createSpool('files-plan');
    try {
      this.#plan = await comparePrevious(this.root, this.context, this.#threads, previous.read(), previous.archive, spool);
      return { mode: 'changes', unchanged: this.#plan.unchanged };
    } catch (error) {
      await spool.dispose();
      if (!(error instanceof ListingError)) throw error;
      this.context.warn({
        code: 'INCREMENTAL_BASE_REJECTED',
        message: `The state of files saved with ${previous.archive} cannot be read (${error.message}); this backup holds the folder in full`,
      });
      return { mode: 'full', unchanged: false };
    }
  }

  async *entries(): AsyncGenerator<Entry> {
    this.#listing = await this.#createSpool('files-listing');
    await this.#listing.append(listingHeader(this.context.archive, this.startedNs));
    if (this.#plan) yield* this.#changedEntries(this.#plan, this.#listing);
    else yield* this.#allEntries(this.#listing);
  }

  async *state(): AsyncGenerator<Uint8Array> {
    if (!this.#listing) throw new BackupError('SOURCE_FAILED', 'The state of a files source was asked for before its entries were read');
    yield* readSpool(this.#listing);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#threads.close();
    await Promise.allSettled([...this.#spools].map(async (creating) => (await creating).dispose()));
  }

  /**
   * A spool that `close()` disposes: one made while it runs (a cancel as `entries()` starts) or
   * asked for after it (a generator resumed) would otherwise be left in the temp folder.
   */
  async #createSpool(label: string): Promise<LineSpool> {
    if (this.#closed) throw new BackupError('ABORTED', 'The files snapshot was closed');
    const creating = LineSpool.create(label);
    this.#spools.add(creating);
    const spool = await creating;
    if (this.#closed) throw new BackupError('ABORTED', 'The files snapshot was closed'); // close() disposes it
    return spool;
  }

  /** A full backup: every item, as the walker reads them. */
  async *#allEntries(listing: LineSpool): AsyncGenerator<Entry> {
    for await (const item of walkTree(this.root, this.context.signal, this.#threads)) {
      if (item.kind === 'skipped') {
        this.context.warn({ code: 'SKIPPED', path: item.path, message: item.message });
        continue;
      }
      const line = lineOf(item);
      if (item.kind !== 'file') {
        yield toEntry(line);
        await listing.append(JSON.stringify(line));
        continue;
      }
      const { data, sha256, change, body: streamed } = item;
      const read: BodyRead = { changed: false };
      // The walker hashed what it read, on its thread, the whole file or piece by piece.
      let taken: Pick<Entry, 'body' | 'bodySha256'>;
      if (data && sha256 !== undefined) taken = { body: () => replay(data, change, item.path, this.context, read), bodySha256: () => sha256 };
      else if (streamed) taken = { body: () => receive(streamed, item.path, this.context, read), bodySha256: async () => (await streamed.end()).sha256 };
      else throw new BackupError('SOURCE_FAILED', `The walker neither read nor streamed ${item.path}`);
      yield { ...toEntry(line), ...taken, archived: (hash) => (read.sha256 = hash) };
      await listing.append(JSON.stringify(this.#sent(line, read)));
    }
  }

  /**
   * An incremental: the items `changes()` walked, with the bodies of new and changed files only,
   * the folders and links its plan says to send, then the listing and the list of paths.
   */
  async *#changedEntries(plan: Plan, listing: LineSpool): AsyncGenerator<Entry> {
    const tree = await this.#createSpool('files-tree');
    const planned = boundedLines(await plan.spool.read(), MAX_LINE, () => new BackupError('SOURCE_FAILED', 'A line of the plan of an incremental is too long'));
    for await (const raw of planned) {
      const planLine = JSON.parse(raw) as ListingLine | Skipped | Send;
      if ('skipped' in planLine) {
        this.context.warn({ code: 'SKIPPED', path: planLine.skipped, message: planLine.message });
        continue;
      }
      if ('send' in planLine) {
        yield toEntry(planLine.send);
        continue;
      }
      const line = planLine;
      if (line.path !== '') await tree.append(`${line.type === 'file' ? 'f' : line.type === 'directory' ? 'd' : 'l'} ${line.path}`, '\0');
      if (line.type !== 'file' || line.archive !== undefined) {
        await listing.append(raw);
      } else {
        const read: BodyRead = { changed: false };
        yield { ...toEntry(line), body: () => streamFile(join(this.root, line.path), line, this.context, read), archived: (sha256) => (read.sha256 = sha256) };
        await listing.append(JSON.stringify(this.#sent(line, read)));
      }
    }
    const mtime = new Date(Number(this.startedNs / 1_000_000n));
    for (const [path, spool] of [[LISTING_NAME, listing], [TREE_NAME, tree]] as const) {
      yield { path, type: 'file', mode: 0o644, mtime, size: spool.size, meta: true, body: () => readSpool(spool) };
    }
  }

  /** A file's listing line once the archive has stored its body. */
  #sent(line: ListingLine, read: BodyRead): ListingLine {
    if (read.sha256 === undefined) throw new BackupError('SOURCE_FAILED', `${line.path} was listed before the archive stored it`);
    return {
      ...line,
      sha256: read.sha256,
      archive: this.context.archive,
      ...(read.changed ? { dirty: true } : {}),
    };
  }
}

/**
 * Walks the tree without reading it and compares it with the previous listing, both in walk
 * order: a file whose size, mode, mtime, inode and ctime all match is unchanged, unless its mtime
 * lies so close to the previous walk's start that a write right after that walk could have left
 * them all as they were: then its contents decide. Writes the plan to `spool`.
 *
 * A link is sent when it is new or changed. A folder is sent, after what it holds, when it is new
 * or changed, when it is read-only, or when the restore by hand disturbs it: it holds a file or
 * link sent or a new item, or lost one (README: `rm` and `tar -x` change its time, `chmod u+w` its
 * mode). Only the folders above the current item are kept, so memory follows the tree's depth.
 */
async function comparePrevious(root: string, context: SnapshotContext, threads: ThreadGroup, state: AsyncIterable<Uint8Array>, archive: string, spool: LineSpool): Promise<Plan> {
  const { header, lines } = await openListing(state);
  if (header.archive !== archive) throw new ListingError(`it was made for ${header.archive}`);
  let previous = await next(lines);
  let unchanged = true;
  const estimate = { bytes: 0, items: 2 }; // the listing and the list of paths
  const open: Array<{ line: ListingLine; send: boolean; touched: boolean }> = [];
  const send = async (line: ListingLine) => {
    estimate.items += 1;
    await spool.append(JSON.stringify({ send: line } satisfies Send));
  };
  const touch = (path: string) => {
    const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    const folder = open.findLast((candidate) => candidate.line.path === parent);
    if (folder) folder.touched = true;
  };
  const closeUntil = async (path: string | undefined) => {
    while (open.length > 0 && (path === undefined || !holds((open.at(-1) as (typeof open)[number]).line.path, path))) {
      const folder = open.pop() as (typeof open)[number];
      if (folder.send || folder.touched) await send(folder.line);
    }
  };
  for await (const item of walkTree(root, context.signal, threads, 'stat')) {
    if (item.kind === 'skipped') {
      // Reported as entries() reads the plan: not at all if the previous listing turns out unreadable.
      await spool.append(JSON.stringify({ skipped: item.path, message: item.message }));
      continue;
    }
    while (previous && comparePaths(previous.path, item.path) < 0) {
      unchanged = false; // deleted
      touch(previous.path);
      previous = await next(lines);
    }
    await closeUntil(item.path);
    const before = previous?.path === item.path ? previous : undefined;
    if (before) previous = await next(lines);
    let line = lineOf(item);
    const same = before !== undefined && sameItem(before, line);
    if (!same) unchanged = false;
    if (line.type === 'file') {
      if (before && (await sameFile(root, header, before, line))) line = { ...line, sha256: before.sha256 as string, archive: before.archive as string };
      else {
        unchanged = false;
        touch(line.path);
        estimate.bytes += line.size;
        estimate.items += 1;
      }
    }
    await spool.append(JSON.stringify(line));
    if (line.type === 'directory') {
      if (before?.type !== 'directory') touch(line.path);
      open.push({ line, send: !same || (line.mode & OWNER_WRITE) === 0, touched: false });
    } else if (line.type === 'symlink' && !same) {
      touch(line.path);
      await send(line);
    }
  }
  while (previous) {
    // Read to its end: a damaged end rejects the base too.
    unchanged = false;
    touch(previous.path);
    previous = await next(lines);
  }
  await closeUntil(undefined);
  return { spool, unchanged, estimate };
}

async function* readSpool(spool: LineSpool): AsyncGenerator<Uint8Array> {
  yield* await spool.read();
}

async function next(lines: AsyncGenerator<ListingLine>): Promise<ListingLine | undefined> {
  const { done, value } = await lines.next();
  return done ? undefined : value;
}

function sameItem(before: ListingLine, now: ListingLine): boolean {
  return before.type === now.type && before.mode === now.mode && before.mtimeNs === now.mtimeNs && before.linkTarget === now.linkTarget && before.dirty === undefined;
}

async function sameFile(root: string, header: ListingHeader, before: ListingLine, now: ListingLine): Promise<boolean> {
  if (!sameItem(before, now) || before.size !== now.size || before.ino !== now.ino || before.ctimeNs !== now.ctimeNs) return false;
  const mtime = BigInt(now.mtimeNs);
  // Whole-second times come from a coarse filesystem (FAT keeps 2 s): widen the window to match.
  const margin = mtime % NS_PER_SECOND === 0n ? 2n * NS_PER_SECOND : 0n;
  const started = (BigInt(header.startedNs) / NS_PER_SECOND) * NS_PER_SECOND;
  if (mtime < started - margin) return true;
  return (await hashFile(join(root, now.path), now.size)) === before.sha256;
}

/** The SHA-256 of a file's contents, or `undefined` when it is gone or no longer `size` bytes long. */
async function hashFile(absolute: string, size: number): Promise<string | undefined> {
  const hash = new ArchivedHash(size);
  let length = 0;
  try {
    const handle = await open(absolute, READ_NEVER_WAITING); // closed by its stream
    for await (const chunk of handle.createReadStream({ highWaterMark: READ_CHUNK })) {
      hash.update(chunk as Buffer);
      length += (chunk as Buffer).length;
    }
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw asBackupError(error, 'SOURCE_FAILED', `Reading ${absolute} failed`);
  }
  return length === size ? hash.digest() : undefined;
}

function lineOf(item: Exclude<WalkItem, { kind: 'skipped' }>): ListingLine {
  const stamp: Omit<Stamp, 'mtimeMs'> = { mtimeNs: item.mtimeNs, ctimeNs: item.ctimeNs, ino: item.ino };
  const common = { path: item.path, mode: item.mode, mtime: Math.floor(item.mtimeMs / 1000) };
  switch (item.kind) {
    case 'directory':
      return { ...common, type: 'directory', size: 0, ...stamp };
    case 'symlink':
      return { ...common, type: 'symlink', size: 0, linkTarget: item.target, ...stamp };
    case 'file':
      return { ...common, type: 'file', size: item.size, ...stamp };
  }
}

function toEntry(line: ListingLine): Entry {
  const common = { path: line.path, type: line.type, mode: line.mode, mtime: new Date(line.mtime * 1000), size: line.size };
  return line.linkTarget === undefined ? common : { ...common, linkTarget: line.linkTarget };
}

/** Hands over a file the walker read; a change is reported as the archive takes the entry. */
async function* replay(data: Uint8Array, change: string | undefined, path: string, context: SnapshotContext, read: BodyRead): AsyncGenerator<Uint8Array> {
  if (data.length > 0) yield data;
  if (change) {
    read.changed = true;
    context.warn({ code: 'FILE_CHANGED', path, message: change });
  }
}

/** Hands over a file the walker streams; a change is reported once its last piece is taken. */
async function* receive(body: StreamedBody, path: string, context: SnapshotContext, read: BodyRead): AsyncGenerator<Uint8Array> {
  yield* body.pieces();
  const { change } = await body.end();
  if (change) {
    read.changed = true;
    context.warn({ code: 'FILE_CHANGED', path, message: change });
  }
}

/** Streams a file, then reports it if it changed while it was read (or since it was walked). */
async function* streamFile(absolute: string, line: ListingLine, context: SnapshotContext, read: BodyRead): AsyncGenerator<Uint8Array> {
  const { path } = line;
  let handle;
  try {
    handle = await open(absolute, READ_NEVER_WAITING);
  } catch (cause) {
    if (!isNotFound(cause)) throw asBackupError(cause, 'SOURCE_FAILED', `Opening ${absolute} failed`);
    read.changed = true;
    context.warn({ code: 'FILE_CHANGED', path, message: `${path} was deleted before it could be read` });
    return;
  }
  try {
    if (!(await handle.stat()).isFile()) {
      read.changed = true;
      context.warn({ code: 'FILE_CHANGED', path, message: `${path} was replaced by something other than a file before it could be read` });
      return;
    }
    for (;;) {
      const { bytesRead, buffer } = await handle.read(Buffer.allocUnsafe(READ_CHUNK), 0, READ_CHUNK, null);
      if (bytesRead === 0) break;
      yield buffer.subarray(0, bytesRead);
    }
    const after = await handle.stat({ bigint: true });
    if (after.size !== BigInt(line.size) || after.mtimeNs.toString() !== line.mtimeNs) {
      read.changed = true;
      context.warn({ code: 'FILE_CHANGED', path, message: `${path} changed while it was read` });
    }
  } finally {
    await handle.close();
  }
}
