import { Worker } from 'node:worker_threads';
import type { SqliteJob, SqliteJobResult } from './worker.js';

/** Runs one job on a fresh worker thread; aborting the signal terminates it. */
export function runSqliteJob(job: SqliteJob, signal?: AbortSignal): Promise<SqliteJobResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: job });
    let result: SqliteJobResult | undefined;
    const onAbort = () => void worker.terminate();
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (message: SqliteJobResult) => (result = message));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (result) resolve(result);
      else reject(signal?.aborted ? signal.reason : new Error(`The SQLite worker exited with code ${code}`));
    });
  });
}
