/**
 * Runs SQLite's long synchronous calls on their own thread and connection, so the host
 * application's event loop keeps serving while a gigabyte is copied or checked.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Sqlite from 'better-sqlite3';

export type SqliteJob =
  | { op: 'snapshot'; source: string; destination: string; busyTimeoutMs: number }
  | { op: 'integrity-check'; path: string }
  | { op: 'inspect'; path: string };

export interface SqliteJobResult {
  problems: string[];
  /** `inspect`: tables, rows, and foreign key violations (which a source may hold, and the backup keeps). */
  figures?: { tables: number; rows: number; foreignKeyViolations: number };
}

/** Errors are sent as data: SqliteError does not survive the trip between threads. */
export interface SqliteJobFailure {
  error: { message: string; code: string | undefined };
}

/** better-sqlite3 caps a step at 2^31-1 pages: every page of any real database, in one step. */
const ALL_PAGES = 0x7fffffff;
const job = workerData as SqliteJob;

try {
  parentPort?.postMessage(await run(job));
} catch (error) {
  const { message, code } = error as { message: string; code?: string };
  parentPort?.postMessage({ error: { message, code } } satisfies SqliteJobFailure);
}

async function run(job: SqliteJob): Promise<SqliteJobResult> {
  if (job.op === 'snapshot') {
    const db = new Sqlite(job.source, { fileMustExist: true, timeout: job.busyTimeoutMs });
    try {
      // The online backup API, all pages in one step: one read transaction, so the copy is
      // consistent however fast others write. Copied stepwise, it restarts on every foreign write
      // and never ends under load. Pages are copied as they are: faster than VACUUM INTO, which
      // rebuilds every b-tree.
      await db.backup(job.destination, { progress: () => ALL_PAGES });
      db.pragma('wal_checkpoint(PASSIVE)');
    } finally {
      db.close();
    }
    return { problems: [] };
  }
  const db = new Sqlite(job.path, { fileMustExist: true, readonly: job.op === 'inspect' });
  try {
    const checked = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
    const problems = checked.map((row) => row.integrity_check).filter((message) => message !== 'ok');
    if (job.op === 'integrity-check') return { problems };
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
