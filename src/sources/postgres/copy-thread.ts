import type pg from 'pg';
import { BackupError } from '../../errors.js';
import { WorkerJob } from '../../util/worker-channel.js';
import type { CopyRequest, CopyWorkerData, FromCopyWorker } from './copy-thread.worker.js';
import type { DataFigures, TocTable } from './toc.js';

/** The main thread's handle on one COPY worker thread: one table at a time. */
export class CopyThread {
  private constructor(private readonly job: WorkerJob<CopyRequest, FromCopyWorker, void>) {}

  /**
   * Starts a thread whose connection sees exactly the exported snapshot; `credits` chunks may be
   * in flight, unconsumed, at a time.
   */
  static start(data: Omit<CopyWorkerData, 'config'> & { config: pg.ClientConfig; credits: number }): CopyThread {
    // Functions (a password callback, a custom stream) cannot cross to a thread.
    const config = Object.fromEntries(Object.entries(data.config).filter(([, value]) => typeof value !== 'function')) as pg.ClientConfig;
    const { credits, ...job } = data;
    return new CopyThread(
      WorkerJob.start<CopyRequest, FromCopyWorker, void, CopyWorkerData>(new URL('./copy-thread.worker.js', import.meta.url), {
        data: { ...job, config },
        name: 'The COPY worker thread',
        failCode: 'SOURCE_FAILED',
        window: credits,
        // A small heap is plenty for a few chunks in flight, and keeps each thread's memory bounded.
        resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16 },
      }),
    );
  }

  /** Copies one table's rows, or one piece's of a split table; `onChunk` may wait, and the thread waits with it. */
  async copy(table: TocTable, piece: number | undefined, onChunk: (chunk: Buffer, index: number) => Promise<void>): Promise<DataFigures> {
    return await this.run({ table, piece, send: true }, onChunk);
  }

  /** Reads one table's (or piece's) rows and only hashes them: what an incremental compares with the previous backup. */
  async hash(table: TocTable, piece: number | undefined): Promise<DataFigures> {
    return await this.run({ table, piece, send: false }, async () => {});
  }

  private async run(request: CopyRequest, onChunk: (chunk: Buffer, index: number) => Promise<void>): Promise<DataFigures> {
    const { table } = request;
    await this.job.send(request);
    for (let message = await this.job.receive(); message !== undefined; message = await this.job.receive()) {
      if (message.type === 'done') return message.summary;
      await onChunk(Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength), message.index);
    }
    throw new BackupError('SOURCE_FAILED', `The COPY worker thread ended before ${table.qualifiedName} was copied`);
  }

  stop(): Promise<void> {
    return this.job.stop();
  }
}
