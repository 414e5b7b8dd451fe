import { Writable } from 'node:stream';
import { BackupError } from '../errors.js';
import type { Destination, Upload } from '../types.js';
import { waitFor } from '../util/streams.js';

/** One upload, with the destination it goes to. */
export interface UploadTarget {
  readonly destination: Destination;
  readonly upload: Upload;
}

/**
 * Writes every chunk to all uploads and accepts the next chunk once each has taken it: the archive
 * is produced once and flows at the pace of the slowest destination.
 */
export class FanOut extends Writable {
  #failure: BackupError | undefined;

  constructor(
    private readonly targets: readonly UploadTarget[],
    private readonly signal: AbortSignal,
    /** Awaited before the uploads are ended: an upload without deferred commit becomes visible when it ends. */
    private readonly beforeEnd?: () => Promise<void>,
  ) {
    super({ highWaterMark: 1024 * 1024 });
    // An upload can fail between two writes (a disk fills, a connection drops). The failure is
    // kept and reported by the next write, never emitted from here: after the archive is written
    // no one listens, and a roll-back aborting the upload may well make it fail.
    for (const target of targets) {
      target.upload.stream.on('error', (error) => {
        this.#failure ??= destinationFailed(target, error);
      });
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#each(async ({ upload: { stream } }) => {
      if (!stream.write(chunk)) await waitFor(stream, 'drain', { signal: this.signal });
    }).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    const end = async () => {
      await this.beforeEnd?.();
      await this.#each(async ({ upload: { stream } }) => {
        // 'finish', not finished(): a stream kept open for fsync emits no 'close' until commit.
        const flushed = waitFor(stream, 'finish', { signal: this.signal });
        stream.end();
        await flushed;
      });
    };
    end().then(() => callback(), callback);
  }

  async #each(action: (target: UploadTarget) => Promise<void>): Promise<void> {
    if (this.#failure) throw this.#failure;
    await Promise.all(
      this.targets.map(async (target) => {
        try {
          await action(target);
        } catch (error) {
          throw this.#failure ?? destinationFailed(target, error);
        }
      }),
    );
  }
}

function destinationFailed(target: UploadTarget, cause: unknown): BackupError {
  if (cause instanceof BackupError) return cause;
  const { description } = target.destination;
  return new BackupError('DESTINATION_FAILED', `Writing to ${description} failed: ${(cause as Error).message}`, { cause });
}
