import { Worker } from 'node:worker_threads';
import type { SqliteJob, SqliteJobFailure, SqliteJobResult } from './worker.js';

/** An error from SQLite itself, with its code (`SQLITE_NOTADB`, `SQLITE_BUSY`, ...). */
class SqliteJobError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'SqliteError';
  }
}

/** Runs one job on a fresh worker thread; aborting the signal terminates it. */
export function runSqliteJob(job: SqliteJob, signal?: AbortSignal): Promise<SqliteJobResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: job });
    let reply: SqliteJobResult | SqliteJobFailure | undefined;
    const onAbort = () => void worker.terminate();
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (message: SqliteJobResult | SqliteJobFailure) => (reply = message));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (reply && 'error' in reply) reject(new SqliteJobError(reply.error.message, reply.error.code));
      else if (reply) resolve(reply);
      else reject(signal?.aborted ? signal.reason : new Error(`The SQLite worker exited with code ${code}`));
    });
  });
}
