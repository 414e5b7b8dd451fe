/**
 * Runs SQLite's long synchronous calls on their own thread and connection, so the host
 * application's event loop keeps serving while a gigabyte is copied or checked.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import Sqlite from 'better-sqlite3';
import { BackupError } from '../../errors.js';
import { serveWorkerJob } from '../../util/worker-channel.js';
import { PAGE_HASH_BYTES, pageSizeOf } from './pages.js';

export type SqliteJob =
  /** Copies `source` to `destination`. */
  | { op: 'snapshot'; source: string; destination: string; busyTimeoutMs: number }
  /**
   * Writes the hash of each page of `copy` to `pageHashes`, and hashes the whole copy (a full's
   * archive entry and an incremental's pages.json record it). A job of its own, so that a full's
   * archive reads the copy while its pages are hashed.
   */
  | { op: 'hash-pages'; copy: string; pageHashes: string }
  /** With `sha256`, the file must have that SHA-256 (hex) before its integrity is checked. */
  | { op: 'integrity-check'; path: string; sha256?: string }
  | { op: 'inspect'; path: string };

export interface SqliteJobResult {
  problems: string[];
  /** `inspect`: tables, rows, and foreign key violations (which a source may hold, and the backup keeps). */
  figures?: { tables: number; rows: number; foreignKeyViolations: number };
  /** `hash-pages`: the copy's page size, page count and SHA-256 (hex). */
  copy?: CopyFacts;
}

/** What an incremental needs to know of a snapshot copy besides its page hashes. */
export interface CopyFacts {
  pageSize: number;
  pageCount: number;
  sha256: string;
}

/** Bytes read at a time while hashing: a multiple of every page size (512 B to 64 KiB). */
const READ_BYTES = 1024 * 1024;

/** better-sqlite3 caps a step at 2^31-1 pages: every page of any real database, in one step. */
const ALL_PAGES = 0x7fffffff;

serveWorkerJob<SqliteJob, never, never, SqliteJobResult>(async (job) => {
  switch (job.op) {
    case 'snapshot':
      await snapshot(job.source, job.destination, job.busyTimeoutMs).catch((cause: unknown) => {
        // "Check that the source is readable" would send the user after permissions.
        const notSqlite = (cause as { code?: string }).code === 'SQLITE_NOTADB';
        throw new BackupError('SOURCE_FAILED', `Copying SQLite database ${job.source} failed: ${(cause as Error).message}`, {
          cause,
          ...(notSqlite ? { hint: `${job.source} is not a SQLite database: check that \`path\` names the database file itself.` } : {}),
        });
      });
      return { problems: [] };
    case 'hash-pages':
      return { problems: [], copy: hashPages(job.copy, job.pageHashes) };
    case 'integrity-check':
      if (job.sha256 !== undefined) {
        const actual = hashFile(job.path);
        if (actual !== job.sha256) {
          throw new BackupError('CORRUPT_ARCHIVE', `The database rebuilt from the chain's pages has SHA-256 ${actual}, not ${job.sha256} as its newest backup records`, {
            hint: 'A piece of the chain does not fit the others: restore an older backup, or the full the chain starts with.',
          });
        }
      }
      try {
        return check(job.path, false);
      } catch (cause) {
        throw new BackupError('CORRUPT_ARCHIVE', `The restored database cannot be opened: ${(cause as Error).message}`, { cause });
      }
    case 'inspect':
      try {
        return check(job.path, true);
      } catch (cause) {
        return { problems: [`the database cannot be read: ${(cause as Error).message}`] };
      }
  }
});

async function snapshot(source: string, destination: string, busyTimeoutMs: number): Promise<void> {
  const db = new Sqlite(source, { fileMustExist: true, timeout: busyTimeoutMs });
  try {
    // The online backup API, all pages in one step: one read transaction, so the copy is
    // consistent however fast others write. Copied stepwise, it restarts on every foreign write
    // and never ends under load. Pages are copied as they are: faster than VACUUM INTO, which
    // rebuilds every b-tree.
    await db.backup(destination, { progress: () => ALL_PAGES });
    db.pragma('wal_checkpoint(PASSIVE)');
  } finally {
    db.close();
  }
}

/**
 * Reads the copy once: the SHA-256 of each page, cut to PAGE_HASH_BYTES, into `pageHashes`, and
 * the SHA-256 of the whole file, which a full's archive takes instead of hashing the copy again on
 * the host's main thread. Synchronous reads: this thread has nothing else to do.
 */
function hashPages(copy: string, pageHashes: string): CopyFacts {
  const input = openSync(copy, 'r');
  const output = openSync(pageHashes, 'wx', 0o600);
  try {
    const size = fstatSync(input).size;
    const buffer = Buffer.allocUnsafe(READ_BYTES);
    const header = buffer.subarray(0, readSync(input, buffer, 0, 100, 0));
    const pageSize = pageSizeOf(header);
    if (pageSize === undefined || size % pageSize !== 0) {
      throw new BackupError('SOURCE_FAILED', `The copy of the database is not a whole number of SQLite pages (${size} bytes, header page size ${pageSize ?? 'unreadable'})`);
    }
    const whole = createHash('sha256');
    const hashes = Buffer.allocUnsafe((READ_BYTES / pageSize) * PAGE_HASH_BYTES);
    for (let offset = 0; offset < size; ) {
      const read = readSync(input, buffer, 0, Math.min(READ_BYTES, size - offset), offset);
      if (read === 0 || read % pageSize !== 0) throw new BackupError('SOURCE_FAILED', `The copy of the database changed while it was hashed`);
      whole.update(buffer.subarray(0, read));
      const pages = read / pageSize;
      for (let page = 0; page < pages; page++) {
        createHash('sha256')
          .update(buffer.subarray(page * pageSize, (page + 1) * pageSize))
          .digest()
          .copy(hashes, page * PAGE_HASH_BYTES, 0, PAGE_HASH_BYTES);
      }
      writeAll(output, hashes.subarray(0, pages * PAGE_HASH_BYTES));
      offset += read;
    }
    return { pageSize, pageCount: size / pageSize, sha256: whole.digest('hex') };
  } finally {
    closeSync(input);
    closeSync(output);
  }
}

function writeAll(fd: number, bytes: Buffer): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
}

/** The SHA-256 of a file, hex. */
function hashFile(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(READ_BYTES);
    for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) hash.update(buffer.subarray(0, read));
    return hash.digest('hex');
  } finally {
    closeSync(fd);
  }
}

/** PRAGMA integrity_check's problems; with `inspect`, also what the database holds. */
function check(path: string, inspect: boolean): SqliteJobResult {
  const db = new Sqlite(path, { fileMustExist: true, readonly: inspect });
  try {
    const checked = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
    const problems = checked.map((row) => row.integrity_check).filter((message) => message !== 'ok');
    if (!inspect) return { problems };
    const tables = db
      .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND sql NOT LIKE 'CREATE VIRTUAL%'")
      .pluck()
      .all() as string[];
    let rows = 0;
    for (const table of tables) rows += db.prepare(`SELECT count(*) FROM "${table.replaceAll('"', '""')}"`).pluck().get() as number;
    const foreignKeyViolations = (db.pragma('foreign_key_check') as unknown[]).length;
    return { problems, figures: { tables: tables.length, rows, foreignKeyViolations } };
  } finally {
    db.close();
  }
}
