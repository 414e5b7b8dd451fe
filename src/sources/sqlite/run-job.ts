import type { BackupErrorCode } from '../../errors.js';
import { WorkerJob } from '../../util/worker-channel.js';
import type { SqliteJob, SqliteJobResult } from './run-job.worker.js';

/** What a job that could not finish fails as, when the worker itself gives no reason (a crash). */
const FAIL_CODES: Record<SqliteJob['op'], BackupErrorCode> = { snapshot: 'SOURCE_FAILED', 'hash-pages': 'SOURCE_FAILED', 'integrity-check': 'RESTORE_FAILED', inspect: 'RESTORE_FAILED' };

/**
 * Runs one job on a fresh worker thread; aborting the signal stops it, and the job rejects with
 * `ABORTED`. Either way it settles only once the thread has exited: a stopped copy's native step
 * writes on into its destination until it returns, and the caller removes that folder next.
 */
export function runSqliteJob(job: SqliteJob, signal?: AbortSignal): Promise<SqliteJobResult> {
  const worker = WorkerJob.start<never, never, SqliteJobResult, SqliteJob>(new URL('./run-job.worker.js', import.meta.url), {
    data: job,
    name: 'The SQLite worker',
    failCode: FAIL_CODES[job.op],
    ...(signal ? { signal } : {}),
  });
  return worker.result.finally(() => worker.exited);
}
