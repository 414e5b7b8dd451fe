import { createHash } from 'node:crypto';
import type { BackupErrorCode } from '../errors.js';
import { WorkerJob } from './worker-channel.js';

/** A SHA-256 computed as bytes arrive. */
export interface Sha256 {
  update(chunk: Uint8Array): Promise<void>;
  /** The hex digest; the hash takes no more bytes after it. */
  digest(): Promise<string>;
}

/** Bytes from which an input is hashed on the worker thread: below, a round trip costs more than the hash. */
const OFF_THREAD_BYTES = 256 * 1024;
/** Chunks copied for the worker and not hashed yet: with chunks of up to 4 MiB, 16 MiB at most. */
const IN_FLIGHT = 4;

/**
 * SHA-256 on a worker thread, one input after another. Hashing costs about 16 ms per 4 MiB on a
 * slow core: on the main thread that stalled the host's event loop, and it kept a core that the
 * compressor and the host need busy with the backup's bookkeeping.
 */
export class Sha256Thread implements Sha256 {
  readonly #job: WorkerJob<Uint8Array | 'digest', string, void>;

  constructor(failCode: BackupErrorCode, signal?: AbortSignal) {
    this.#job = WorkerJob.start<Uint8Array | 'digest', string, void, undefined>(new URL('./sha256.worker.js', import.meta.url), {
      data: undefined,
      name: 'The SHA-256 worker',
      failCode,
      window: IN_FLIGHT,
      ...(signal ? { signal } : {}),
    });
  }

  /** Hashes a copy of `chunk`: the caller's buffer goes on down the stream. */
  update(chunk: Uint8Array): Promise<void> {
    const copy = new Uint8Array(chunk);
    return this.#job.send(copy, [copy.buffer]);
  }

  /** The digest of everything since the previous digest; the thread then starts a new input. */
  async digest(): Promise<string> {
    await this.#job.send('digest');
    const hex = await this.#job.receive();
    if (hex === undefined) throw new Error('The SHA-256 worker ended without a digest');
    return hex;
  }

  stop(): Promise<void> {
    return this.#job.stop();
  }
}

/**
 * Hashes inputs one at a time: the large ones on a worker thread, started when the first comes,
 * the small ones inline.
 */
export class Sha256Hasher {
  #thread: Sha256Thread | undefined;

  constructor(
    private readonly failCode: BackupErrorCode,
    private readonly signal?: AbortSignal,
  ) {}

  /** A hash for an input of `size` bytes; the previous one must be digested first. */
  start(size: number): Sha256 {
    if (size >= OFF_THREAD_BYTES) return (this.#thread ??= new Sha256Thread(this.failCode, this.signal));
    const hash = createHash('sha256');
    return {
      update: async (chunk) => void hash.update(chunk),
      digest: async () => hash.digest('hex'),
    };
  }

  async stop(): Promise<void> {
    await this.#thread?.stop();
  }
}
