/**
 * Retries of a destination's transient failures, from outside the adapter (restic's
 * `backend/retry`): only errors marked `transient` are retried, with exponential backoff and a
 * bounded number of attempts. A download that breaks midway resumes where it broke, with a ranged
 * read. Writes are never replayed: an upload's stream is consumed once, and `commit()` is not
 * idempotent (a retried commit that had in fact succeeded would fail with `ALREADY_EXISTS`).
 */
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackupError, abortError } from '../errors.js';
import type { Destination, ReadRange, StoredObject } from '../types.js';
import { checkRange } from './range.js';

/**
 * Options of {@link withRetry}.
 * @public
 */
export interface RetryOptions {
  /**
   * Attempts per call, the first one included; default 3. 1 turns retries off. A download gets
   * as many at each byte it breaks at: one that keeps moving between glitches goes on.
   */
  attempts?: number;
  /** Milliseconds before the first retry, doubled before each next one; default 500. */
  initialDelay?: number;
  /** The longest wait between two attempts, in milliseconds; default 10 000. */
  maxDelay?: number;
  /** Stops the waits between attempts: the call then rejects with `ABORTED`. */
  signal?: AbortSignal;
  /** Told of each transient failure before the call is tried again, for logging. */
  onRetry?: (info: RetryInfo) => void;
}

/**
 * A transient failure about to be retried: see {@link RetryOptions.onRetry}.
 * @public
 */
export interface RetryInfo {
  /** What was being done, such as `open 20261121-124500.tar.gz`. */
  readonly operation: string;
  /** The attempt that failed, from 1. */
  readonly attempt: number;
  /** Milliseconds until the next attempt. */
  readonly delayMs: number;
  /** The failure. */
  readonly error: BackupError;
}

/**
 * Wraps a destination so that calls failing with a transient `BackupError` (timeouts, dropped
 * connections, a server briefly failing) are made again: `open` (a download that breaks midway
 * resumes from the byte it reached), `list` (until it yields a first object), `remove`, `create`
 * (the call, not the upload), and the leftover sweeps. Upload streams and `commit()` are never
 * retried, nor is `lease`: a conditional write replayed blindly could fail against itself, so a
 * lease recognises its own retried writes instead. Any other error passes through at once.
 * @public
 */
export function withRetry(destination: Destination, options: RetryOptions = {}): Destination {
  const { attempts = 3, initialDelay = 500, maxDelay = 10_000, signal, onRetry } = options;
  if (!Number.isSafeInteger(attempts) || attempts < 1) throw new BackupError('INVALID_OPTIONS', `retry attempts must be a whole number from 1, not ${String(attempts)}`);
  for (const [option, value] of [['initialDelay', initialDelay], ['maxDelay', maxDelay]] as const) {
    if (!(Number.isFinite(value) && value >= 0)) throw new BackupError('INVALID_OPTIONS', `retry ${option} must be a number of milliseconds, not ${String(value)}`);
  }

  /** After a failed attempt: rethrows what is not worth retrying, else waits before the next one. */
  const backOff = async (operation: string, attempt: number, error: unknown): Promise<void> => {
    if (!(error instanceof BackupError) || !error.transient || attempt >= attempts) throw error;
    const delayMs = Math.min(maxDelay, initialDelay * 2 ** (attempt - 1));
    onRetry?.({ operation, attempt, delayMs, error });
    await sleep(delayMs, undefined, signal ? { signal } : {}).catch(() => {
      throw abortError(signal!);
    });
  };

  /** Runs `call` until it succeeds, fails for good, or runs out of attempts. */
  const retrying = async <T>(operation: string, call: (attempt: number) => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw abortError(signal);
      try {
        return await call(attempt);
      } catch (error) {
        await backOff(operation, attempt, error);
      }
    }
  };

  /**
   * Reads on from the byte a broken download reached, with a ranged read. Attempts count the
   * failures in a row at one position: a long download that keeps moving between glitches goes on.
   */
  async function* resumable(name: string, range: ReadRange | undefined, first: Readable): AsyncGenerator<Buffer> {
    const { start, end } = checkRange(range);
    let position = start;
    let body: Readable | undefined = first;
    let failedAt = -1;
    for (let attempt = 0; ; ) {
      try {
        body ??= await destination.open(name, { offset: position, ...(end === undefined ? {} : { length: end - position }) });
        for await (const chunk of body as AsyncIterable<Buffer>) {
          position += chunk.length;
          yield chunk;
        }
        return;
      } catch (error) {
        body = undefined;
        if (end !== undefined && position >= end) return;
        attempt = position > failedAt ? 1 : attempt + 1;
        failedAt = position;
        await backOff(`read ${name} from byte ${position}`, attempt, error);
      }
    }
  }

  return {
    ...destination,
    async create(name) {
      return retrying(`create ${name}`, () => destination.create(name));
    },
    async open(name, range) {
      const body = await retrying(`open ${name}`, () => destination.open(name, range));
      return Readable.from(resumable(name, range, body), { objectMode: false });
    },
    async *list(prefix): AsyncIterable<StoredObject> {
      // Only a listing that fails before its first object is started again: objects already
      // handed out cannot be taken back.
      const { iterator, first } = await retrying(`list ${prefix ?? ''}`.trimEnd(), async () => {
        const iterator = destination.list(prefix)[Symbol.asyncIterator]();
        return { iterator, first: await iterator.next() };
      });
      try {
        for (let next = first; !next.done; next = await iterator.next()) yield next.value;
      } finally {
        await iterator.return?.();
      }
    },
    async remove(name) {
      await retrying(`remove ${name}`, async (attempt) => {
        try {
          await destination.remove(name);
        } catch (error) {
          // A failed attempt that in fact removed the object leaves the next one nothing to remove.
          if (attempt > 1 && error instanceof BackupError && error.code === 'NOT_FOUND') return;
          throw error;
        }
      });
    },
    ...(destination.removeLeftovers && { removeLeftovers: () => retrying('remove leftovers', () => destination.removeLeftovers!()) }),
    ...(destination.listLeftovers && { listLeftovers: () => retrying('list leftovers', () => destination.listLeftovers!()) }),
  };
}
