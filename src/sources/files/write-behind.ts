import { BackupError } from '../../errors.js';
import { WorkerJob } from '../../util/worker-channel.js';
import type { FileToWrite } from './write-behind.worker.js';

/** Small files go to the writer thread in batches; memory stays under ~BATCHES_IN_FLIGHT x BATCH_BYTES. */
const BATCH_FILES = 256;
const BATCH_BYTES = 4 * 1024 * 1024;
const BATCHES_IN_FLIGHT = 4;

/** The error of an archive entry that cannot be restored safely. */
export function unsafeEntry(path: string, why: string, cause?: unknown): BackupError {
  return new BackupError('UNSAFE_ARCHIVE', `Refusing archive entry ${JSON.stringify(path)}: ${why}`, { cause });
}

/**
 * Hands small files to a writer thread in batches and lets the archive reader run ahead of it,
 * within a bound: at most BATCHES_IN_FLIGHT batches of about BATCH_BYTES. The first failure is
 * reported by the next `add` or by `settle`.
 */
export class WriteBehind {
  #job: WorkerJob<FileToWrite[], never, void> | undefined;
  #batch: FileToWrite[] = [];
  #batchBytes = 0;

  constructor(private readonly signal: AbortSignal) {}

  async add(file: FileToWrite): Promise<void> {
    this.#batch.push(file);
    this.#batchBytes += file.data.length;
    if (this.#batch.length >= BATCH_FILES || this.#batchBytes >= BATCH_BYTES) await this.#send();
  }

  /** Waits for every write; throws the first failure. */
  async settle(): Promise<void> {
    if (this.#batch.length > 0) await this.#send();
    await this.#job?.drained();
  }

  async close(): Promise<void> {
    await this.#job?.stop();
    this.#job = undefined;
  }

  async #send(): Promise<void> {
    this.#job ??= WorkerJob.start<FileToWrite[], never, void, undefined>(new URL('./write-behind.worker.js', import.meta.url), {
      data: undefined,
      name: 'The file writer thread',
      failCode: 'RESTORE_FAILED',
      signal: this.signal,
      window: BATCHES_IN_FLIGHT,
    });
    const files = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    await this.#job.send(files, files.map((file) => file.data.buffer as ArrayBuffer));
  }
}
