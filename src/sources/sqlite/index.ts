import { createReadStream, createWriteStream, type Stats } from 'node:fs';
import { chmod, link, lstat, mkdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { BackupError, asBackupError } from '../../errors.js';
import type { ArchivedEntry, Entry, RestoreEntry, RestoreSink, Restorer, ScratchTarget, Snapshot, SnapshotChanges, SnapshotContext, Source, VerifyCheck } from '../../types.js';
import { ensureSpace, fsyncPath, removeCreatedParents, stagingPath } from '../../util/fs.js';
import { ownerTag, removeAbandoned } from '../../util/leftovers.js';
import { PAGES_JSON, comparePages, runName, stateHeader, type PageJournal, type PageRun } from './pages.js';
import { PageRebuild } from './rebuild.js';
import { runSqliteJob } from './run-job.js';
import type { CopyFacts } from './run-job.worker.js';

/** The one entry of a SQLite source: `tar -xzf` it and copy it into place by hand if you like. */
const SQLITE_ENTRY = 'database.sqlite';
/** The folder of a snapshot copy in `tempDir`: this prefix, then the owner tag of util/leftovers.ts. */
const SPOOL_PREFIX = 'backupkit-sqlite-';

/**
 * Options of {@link sqlite}.
 * @public
 */
export interface SqliteSourceOptions {
  /** Unique name of this source in its Database. */
  name: string;
  /** Path of the database file. */
  path: string;
  /**
   * Where the consistent copy is spooled while it is archived, in a folder
   * `backupkit-sqlite-<host>_<pid>_<random>`; default: the OS temp folder. Each backup first removes
   * the folders there of processes of this host that no longer run (a backup killed mid-way).
   */
  tempDir?: string;
  /** How long to wait for a writer's lock (rollback-journal databases); default 10 s. */
  busyTimeoutMs?: number;
}

/**
 * Restore target of a SQLite source.
 * @public
 */
export interface SqliteTarget {
  /** Where the database file is restored; it must not exist or be empty. */
  path: string;
}

/**
 * A SQLite database, copied hot and consistently: SQLite's online backup in a single step, that is
 * in one read transaction, on a worker thread, while the application keeps writing.
 * @public
 */
export function sqlite(options: SqliteSourceOptions): Source {
  if (typeof options?.path !== 'string' || options.path === '') {
    throw new BackupError('INVALID_OPTIONS', `sqlite(${JSON.stringify(options?.name)}) needs a \`path\``);
  }
  const path = resolve(options.path);
  const tempRoot = options.tempDir ?? tmpdir();
  const busyTimeoutMs = options.busyTimeoutMs ?? 10_000;
  return {
    kind: 'sqlite',
    name: options.name,
    role: 'database',
    async open(context: SnapshotContext): Promise<Snapshot> {
      // Named after this process, so that the next backup removes the copy of one killed meanwhile.
      await removeAbandoned(tempRoot, SPOOL_PREFIX);
      const spool = join(tempRoot, `${SPOOL_PREFIX}${ownerTag()}`);
      await mkdir(spool, { mode: 0o700 });
      const copy = join(spool, SQLITE_ENTRY);
      const pageHashes = join(spool, 'page-hashes');
      let mode: number;
      let info: Stats;
      try {
        mode = (await stat(path)).mode & 0o777;
        await runSqliteJob({ op: 'snapshot', source: path, destination: copy, busyTimeoutMs }, context.signal);
        info = await stat(copy);
      } catch (cause) {
        await rm(spool, { recursive: true, force: true });
        throw asBackupError(cause, 'SOURCE_FAILED', `Copying SQLite database ${path} failed`);
      }
      // The pages are hashed while a full's archive reads the copy: only the state needs them, and
      // the archive the SHA-256 of the whole copy. An incremental waits for them in changes().
      const stopHashing = new AbortController();
      const hashing = runSqliteJob({ op: 'hash-pages', copy, pageHashes }, AbortSignal.any([context.signal, stopHashing.signal])).then(
        ({ copy: facts }) => facts as CopyFacts,
        (cause: unknown) => {
          throw asBackupError(cause, 'SOURCE_FAILED', `Hashing the pages of the copy of SQLite database ${path} failed`);
        },
      );
      hashing.catch(() => {}); // awaited by changes() or state(), or stopped by close()
      /** Set by `changes()` when this archive holds only the pages changed since the previous backup. */
      let changed: { runs: PageRun[]; sha256: string; pageSize: number; pageCount: number } | undefined;
      return {
        async estimate() {
          if (!changed) return { bytes: info.size, items: 1 };
          return { bytes: changed.runs.reduce((sum, [, count]) => sum + count * changed!.pageSize, 0), items: changed.runs.length + 1 };
        },
        async changes(): Promise<SnapshotChanges> {
          const { previous } = context;
          if (!previous) return { mode: 'full', unchanged: false };
          const { pageSize, pageCount, sha256 } = await hashing;
          const compared = await comparePages(previous.read(), createReadStream(pageHashes), pageSize, pageCount);
          if ('rejected' in compared) {
            context.warn({
              code: 'INCREMENTAL_BASE_REJECTED',
              message: `SQLite database ${path} is held in full: the previous backup ${previous.archive} cannot be built on, ${compared.rejected}`,
            });
            return { mode: 'full', unchanged: false };
          }
          // A full holds about as many bytes then, and keeps pages.json small.
          if ('scattered' in compared) return { mode: 'full', unchanged: false };
          changed = { runs: compared.runs, sha256, pageSize, pageCount };
          return { mode: 'changes', unchanged: changed.runs.length === 0 };
        },
        async *entries(): AsyncGenerator<Entry> {
          if (!changed) {
            yield {
              path: SQLITE_ENTRY,
              type: 'file',
              mode, // restored as it was: a 0600 database stays private
              mtime: info.mtime,
              size: info.size,
              body: () => createReadStream(copy, { highWaterMark: 1024 * 1024 }),
              // Hashed on the worker that hashes the pages: the copy is ours and does not change.
              bodySha256: async () => (await hashing).sha256,
            };
            return;
          }
          const { runs, pageSize, pageCount } = changed;
          const journal: PageJournal = { format: 1, pageSize, pageCount, bytes: pageCount * pageSize, sha256: changed.sha256, runs };
          const json = Buffer.from(`${JSON.stringify(journal)}\n`);
          // Carries the database's mode, as `database.sqlite` does in a full.
          yield { path: PAGES_JSON, type: 'file', mode, mtime: info.mtime, size: json.length, body: async function* () { yield json; } };
          for (const [first, count] of runs) {
            const start = (first - 1) * pageSize;
            yield {
              path: runName(first),
              type: 'file',
              mode: 0o600,
              mtime: info.mtime,
              size: count * pageSize,
              body: () => createReadStream(copy, { start, end: start + count * pageSize - 1, highWaterMark: 1024 * 1024 }),
            };
          }
        },
        async *state() {
          const { pageSize, pageCount } = await hashing;
          yield stateHeader(pageSize, pageCount);
          yield* createReadStream(pageHashes) as AsyncIterable<Buffer>;
        },
        async close() {
          stopHashing.abort();
          await hashing.catch(() => {}); // settles once its thread has exited
          await rm(spool, { recursive: true, force: true });
        },
      };
    },
  };
}

/** Restores a SQLite source: to a temporary file beside the target, checked, then renamed. */
export const sqliteRestorer: Restorer<SqliteTarget> = {
  kind: 'sqlite',

  parseTarget(target, sourceName) {
    const path = (target as Partial<SqliteTarget> | undefined)?.path;
    if (typeof path !== 'string' || path === '') {
      throw new BackupError('INVALID_OPTIONS', `The target of SQLite source "${sourceName}" needs a \`path\``);
    }
    return { path: resolve(path) };
  },

  async check({ path }) {
    // A leftover -wal or -journal would be replayed into the restored file and corrupt it.
    for (const candidate of [path, `${path}-wal`, `${path}-journal`]) {
      const info = await lstat(candidate).catch((error: NodeJS.ErrnoException) => {
        // A name of 248 bytes or more leaves no room for a -journal beside it: none can exist.
        if (error.code === 'ENOENT' || error.code === 'ENAMETOOLONG') return undefined;
        throw asBackupError(error, 'RESTORE_FAILED', `Checking ${candidate} failed`);
      });
      if (info && !(info.isFile() && info.size === 0)) {
        throw new BackupError('TARGET_NOT_EMPTY', `${candidate} exists and is not an empty file; nothing was restored`);
      }
    }
  },

  async scratch(space, sourceName): Promise<ScratchTarget> {
    const path = join(space.dir, `${sourceName}.sqlite`);
    return { target: { path }, remove: async () => void (await Promise.all(['', '-wal', '-shm'].map((suffix) => rm(`${path}${suffix}`, { force: true })))) };
  },

  stagingFolder: ({ path }) => dirname(path),

  async begin({ path }, signal): Promise<RestoreSink> {
    const createdParent = await mkdir(dirname(path), { recursive: true });
    const staging = stagingPath(path, '.partial');
    const existedEmpty = (await lstat(path).catch(() => undefined)) !== undefined;
    const placement = placeFile(staging, path, existedEmpty, createdParent);
    let received = false;
    /** Set by the newest archive's `pages.json`: the database is rebuilt page by page from the chain. */
    let rebuild: PageRebuild | undefined;
    /** The database's permission bits, from the newest archive. */
    let fileMode = 0o600;

    return {
      async layer(layer) {
        if (layer.depth === 0) return;
        if (!rebuild) {
          throw new BackupError('CORRUPT_ARCHIVE', `${layer.archive} was handed to the SQLite restore of ${path} as an older layer, but the newest archive holds the database in full`);
        }
        rebuild.layer(layer);
      },
      async write(entry: RestoreEntry) {
        if (entry.path === '' && entry.type === 'directory') return;
        if (rebuild) return rebuild.write(entry, SQLITE_ENTRY);
        if (entry.path === PAGES_JSON && entry.type === 'file' && !received) {
          rebuild = await PageRebuild.create(staging, entry.body);
          fileMode = entry.mode;
          await ensureSpace(dirname(path), rebuild.target.bytes, `Database ${path}`);
          return;
        }
        if (entry.path !== SQLITE_ENTRY || entry.type !== 'file' || received) {
          throw new BackupError('CORRUPT_ARCHIVE', `Unexpected entry ${JSON.stringify(entry.path)} in a SQLite source`);
        }
        received = true;
        fileMode = entry.mode;
        await ensureSpace(dirname(path), entry.size, `Database ${path}`);
        await pipeline(entry.body, createWriteStream(staging, { flags: 'wx', mode: 0o600 }), { signal });
      },
      async prepare() {
        if (!received && !rebuild) throw new BackupError('CORRUPT_ARCHIVE', `The archive has no ${SQLITE_ENTRY} for ${path}`);
        await rebuild?.finish();
        // The source's permission bits, never setuid, setgid or sticky (older archives say 0644).
        await chmod(staging, fileMode & 0o777);
        // A rebuilt file must be, byte for byte, the copy the newest backup took.
        const sha256 = rebuild?.target.sha256;
        const { problems } = await runSqliteJob({ op: 'integrity-check', path: staging, ...(sha256 ? { sha256 } : {}) }, signal);
        if (problems.length > 0) {
          throw new BackupError('CORRUPT_ARCHIVE', `The restored database fails PRAGMA integrity_check: ${problems.slice(0, 5).join('; ')}`);
        }
        await fsyncPath(staging);
      },
      commit: placement.commit,
      async abort() {
        await rebuild?.close();
        await placement.abort();
      },
      staged: (): StagedFile => ({ staging, existedEmpty }),
      async verify(archived) {
        return verifyDatabase(path, archived, rebuild?.target.sha256, signal);
      },
    };
  },

  async resume({ path }, staged) {
    const { staging, existedEmpty } = (staged ?? {}) as Partial<StagedFile>;
    if (typeof staging !== 'string' || dirname(staging) !== dirname(path) || typeof existedEmpty !== 'boolean') {
      throw new BackupError('RESTORE_FAILED', `The restore journal does not describe a staging file beside ${path}`);
    }
    const [stagedInfo, targetInfo] = await Promise.all([lstat(staging).catch(() => undefined), lstat(path).catch(() => undefined)]);
    if (!stagedInfo) return undefined;
    if (targetInfo?.ino === stagedInfo.ino) {
      // Killed between link() and unlink(): committed, only the second name is left.
      await unlink(staging);
      return undefined;
    }
    return {
      ...placeFile(staging, path, existedEmpty, undefined),
      write: () => Promise.reject(new Error('A resumed restore receives no entries')),
      prepare: () => Promise.resolve(),
    };
  },
};

/** What the restore journal keeps of a prepared staging file. */
interface StagedFile {
  staging: string;
  existedEmpty: boolean;
}

/**
 * Moves a checked staging file into place, or undoes that. It never replaces a database another
 * process put there meanwhile: link() fails if the name exists (an empty file the user left, which
 * `check` allowed, is replaced with rename). The undo removes the target only if it is still this
 * restore's file (same inode), and the parent folders it created while they are still empty.
 */
function placeFile(staging: string, path: string, existedEmpty: boolean, createdParent: string | undefined): Pick<RestoreSink, 'commit' | 'abort'> {
  let placed: number | undefined;
  const taken = (cause: unknown) =>
    new BackupError('TARGET_NOT_EMPTY', `${path} was written by another process during this restore; it was left as it is`, { cause });
  return {
    async commit() {
      const { ino } = await lstat(staging);
      if (existedEmpty) {
        const now = await lstat(path).catch(() => undefined);
        if (now && !(now.isFile() && now.size === 0)) throw taken(undefined);
        await rename(staging, path);
      } else {
        await link(staging, path).catch(async (cause: NodeJS.ErrnoException) => {
          if (cause.code === 'EEXIST') throw taken(cause);
          if (cause.code !== 'EPERM' && cause.code !== 'ENOTSUP' && cause.code !== 'EOPNOTSUPP') throw cause;
          // A file system without hard links: rename, after a last look.
          if (await lstat(path).then(() => true, () => false)) throw taken(cause);
          await rename(staging, path);
        });
        await rm(staging, { force: true });
      }
      placed = ino;
      await fsyncPath(dirname(path));
    },
    async abort() {
      await rm(staging, { force: true });
      if (placed !== undefined && (await lstat(path).catch(() => undefined))?.ino === placed) {
        await unlink(path);
        if (existedEmpty) await writeFile(path, '');
      }
      await removeCreatedParents(path, createdParent);
    },
  };
}

/** The restored file must be the archived one, byte for byte, and sound to SQLite. */
async function verifyDatabase(path: string, archived: AsyncIterable<ArchivedEntry>, rebuilt: string | undefined, signal: AbortSignal): Promise<VerifyCheck[]> {
  // A chain lists every layer's entries, newest first: the newest database.sqlite is the target's,
  // unless the target was rebuilt from pages, whose pages.json says what it hashes to.
  let newestFile: string | undefined;
  for await (const entry of archived) if (entry.path === SQLITE_ENTRY) newestFile ??= entry.sha256;
  const expected = rebuilt ?? newestFile;
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024, signal })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  const fileCheck: VerifyCheck = {
    name: 'database file read back',
    figures: { bytes },
    problems: hash.digest('hex') === expected ? [] : [`${path} differs from the database the backup holds (SHA-256)`],
  };
  const inspected = await runSqliteJob({ op: 'inspect', path }, signal);
  return [fileCheck, { name: 'PRAGMA integrity_check', figures: inspected.figures ?? {}, problems: inspected.problems }];
}
