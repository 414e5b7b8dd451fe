import type pg from 'pg';
import { BackupError } from '../../errors.js';
import { WorkerJob, lend } from '../../util/worker-channel.js';
import type { CopyUnit } from './copy-out.js';
import type { CopyRequest, CopyWorkerData, FromCopyWorker } from './copy-thread.worker.js';
import type { DataFigures } from './toc.js';

/** The main thread's handle on one COPY worker thread: one request (a table, a piece, or a batch of small tables) at a time. */
export class CopyThread {
  private constructor(
    private readonly job: WorkerJob<CopyRequest, FromCopyWorker, void>,
    private readonly chunkBytes: number,
  ) {}

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
      data.chunkBytes,
    );
  }

  /**
   * Copies units one after the other: `onChunk` gets each one's chunks in order, with their
   * SHA-256, `onDone` its figures; both may wait, and the thread waits with them.
   */
  async copy(
    units: readonly CopyUnit[],
    onChunk: (unit: number, chunk: Buffer, index: number, sha256: string) => Promise<void>,
    onDone: (unit: number, figures: DataFigures) => Promise<void>,
  ): Promise<void> {
    await this.run({ units, send: true }, onChunk, onDone);
  }

  /** Reads units' rows and only hashes them: what an incremental compares with the previous backup. */
  async hash(units: readonly CopyUnit[], onDone: (unit: number, figures: DataFigures) => Promise<void>): Promise<void> {
    await this.run({ units, send: false }, async () => {}, onDone);
  }

  private async run(
    request: CopyRequest,
    onChunk: (unit: number, chunk: Buffer, index: number, sha256: string) => Promise<void>,
    onDone: (unit: number, figures: DataFigures) => Promise<void>,
  ): Promise<void> {
    await this.job.send(request);
    for (let message = await this.job.receive(); message !== undefined; message = await this.job.receive()) {
      // A unit's chunks come before its summary, in the same message or an earlier one.
      for (const { unit, index, data, sha256 } of message.chunks) {
        const chunk = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        // A full chunk goes back to the thread to be filled again once the archive has copied it.
        if (data.byteOffset === 0 && data.buffer.byteLength === this.chunkBytes) lend(chunk, () => this.job.giveBack(data.buffer as ArrayBuffer));
        await onChunk(unit, chunk, index, sha256);
      }
      for (const { unit, summary } of message.done) await onDone(unit, summary);
      if (message.last) return;
    }
    throw new BackupError('SOURCE_FAILED', `The COPY worker thread ended before ${request.units[0]?.table.qualifiedName ?? 'its tables'} was copied`);
  }

  stop(): Promise<void> {
    return this.job.stop();
  }
}
