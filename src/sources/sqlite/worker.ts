/**
 * Runs SQLite's long synchronous calls on their own thread and connection, so the host
 * application's event loop keeps serving while a gigabyte is copied or checked.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Sqlite from 'better-sqlite3';

export type SqliteJob =
  | { op: 'snapshot'; source: string; destination: string; busyTimeoutMs: number }
  | { op: 'integrity-check'; path: string };

export interface SqliteJobResult {
  problems: string[];
}

/** Errors are sent as data: SqliteError does not survive the trip between threads. */
export interface SqliteJobFailure {
  error: { message: string; code: string | undefined };
}

const job = workerData as SqliteJob;

try {
  parentPort?.postMessage(run(job));
} catch (error) {
  const { message, code } = error as { message: string; code?: string };
  parentPort?.postMessage({ error: { message, code } } satisfies SqliteJobFailure);
}

function run(job: SqliteJob): SqliteJobResult {
  if (job.op === 'snapshot') {
    const db = new Sqlite(job.source, { fileMustExist: true, timeout: job.busyTimeoutMs });
    try {
      // One statement, one read transaction: a consistent copy however fast others write. The
      // stepwise online backup API restarts on every foreign write and never ends under load.
      db.prepare('VACUUM INTO ?').run(job.destination);
      db.pragma('wal_checkpoint(PASSIVE)');
    } finally {
      db.close();
    }
    return { problems: [] };
  }
  const db = new Sqlite(job.path, { fileMustExist: true });
  try {
    const rows = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
    return { problems: rows.map((row) => row.integrity_check).filter((message) => message !== 'ok') };
  } finally {
    db.close();
  }
}
