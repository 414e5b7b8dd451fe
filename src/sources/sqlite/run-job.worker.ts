/**
 * Runs SQLite's long synchronous calls on their own thread and connection, so the host
 * application's event loop keeps serving while a gigabyte is copied or checked.
 */
import Sqlite from 'better-sqlite3';
import { BackupError } from '../../errors.js';
import { serveWorkerJob } from '../../util/worker-channel.js';

export type SqliteJob =
  | { op: 'snapshot'; source: string; destination: string; busyTimeoutMs: number }
  | { op: 'integrity-check'; path: string }
  | { op: 'inspect'; path: string };

export interface SqliteJobResult {
  problems: string[];
  /** `inspect`: tables, rows, and foreign key violations (which a source may hold, and the backup keeps). */
  figures?: { tables: number; rows: number; foreignKeyViolations: number };
}

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
    case 'integrity-check':
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
