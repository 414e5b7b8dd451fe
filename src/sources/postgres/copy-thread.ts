import { Worker } from 'node:worker_threads';
import type pg from 'pg';
import { BackupError } from '../../errors.js';
import type { CopyWorkerData, FromCopyWorker, ToCopyWorker } from './copy-worker.js';
import type { TableDataSummary, TocTable } from './toc.js';

/** The main thread's handle on one COPY worker thread: one table at a time. */
export class CopyThread {
  private current: { onChunk: (chunk: Buffer, index: number) => Promise<void>; resolve: (s: TableDataSummary) => void; reject: (e: unknown) => void } | undefined;
  private broken: unknown;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (message: FromCopyWorker) => this.receive(message));
    worker.on('error', (error) => this.fail(error));
    worker.on('exit', () => this.fail(new Error('The COPY worker thread exited')));
  }

  /** Starts a thread whose connection sees exactly the exported snapshot. */
  static start(data: Omit<CopyWorkerData, 'config'> & { config: pg.ClientConfig }): Promise<CopyThread> {
    // Functions (a password callback, a custom stream) cannot cross to a thread.
    const config = Object.fromEntries(Object.entries(data.config).filter(([, value]) => typeof value !== 'function')) as pg.ClientConfig;
    // A small heap is plenty for a few chunks in flight, and keeps each thread's memory bounded.
    const worker = new Worker(new URL('./copy-worker.js', import.meta.url), {
      workerData: { ...data, config } satisfies CopyWorkerData,
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16 },
    });
    return new Promise((resolve, reject) => {
      const onMessage = (message: FromCopyWorker): void => {
        worker.off('error', reject);
        if (message.type === 'ready') return resolve(new CopyThread(worker));
        void worker.terminate();
        reject(new BackupError('SOURCE_FAILED', message.type === 'error' ? message.message : 'The COPY worker thread did not start'));
      };
      worker.once('message', onMessage);
      worker.once('error', reject);
    });
  }

  copy(table: TocTable, onChunk: (chunk: Buffer, index: number) => Promise<void>): Promise<TableDataSummary> {
    if (this.broken) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => {
      this.current = { onChunk, resolve, reject };
      this.send({ type: 'copy', table });
    });
  }

  async stop(): Promise<void> {
    this.broken ??= new BackupError('ABORTED', 'The COPY worker thread was stopped');
    await this.worker.terminate();
  }

  private receive(message: FromCopyWorker): void {
    const current = this.current;
    if (!current) return;
    switch (message.type) {
      case 'chunk':
        current.onChunk(Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength), message.index).then(
          () => this.send({ type: 'ack' }),
          (error: unknown) => this.fail(error),
        );
        return;
      case 'done':
        this.current = undefined;
        current.resolve(message.summary);
        return;
      case 'error':
        this.fail(Object.assign(new Error(message.message), message.code ? { code: message.code } : {}));
        return;
    }
  }

  private send(message: ToCopyWorker): void {
    this.worker.postMessage(message);
  }

  private fail(error: unknown): void {
    this.broken ??= error;
    const current = this.current;
    this.current = undefined;
    current?.reject(error);
  }
}
