import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar, { type Header } from 'tar-stream';
import { BackupError, abortError } from '../errors.js';

/** One raw tar entry; its `name` is unchecked: pass it through the path guard before use. */
export interface TarEntry {
  readonly header: Header;
  readonly body: AsyncIterable<Uint8Array>;
}

/**
 * Decompresses and splits an archive into tar entries. Failures are classified: the destination's
 * stream failing is `DESTINATION_FAILED`; bad gzip or tar data is `CORRUPT_ARCHIVE`.
 */
export async function* readTarEntries(
  input: Readable,
  description: string,
  signal: AbortSignal,
  onBytes: (bytes: number) => void,
): AsyncGenerator<TarEntry> {
  const extract = tar.extract();
  let failure: BackupError | undefined;
  const fail = (error: BackupError) => {
    failure ??= error;
  };
  input.once('error', (cause) => fail(new BackupError('DESTINATION_FAILED', `Reading from ${description} failed: ${cause.message}`, { cause })));
  const gunzip = createGunzip();
  gunzip.once('error', (cause) => fail(corrupt(cause)));
  const piped = pipeline(input, countBytes(onBytes), gunzip, extract as unknown as NodeJS.WritableStream, { signal });
  piped.catch(() => {}); // awaited below; its error is classified by the listeners above
  try {
    for await (const entry of extract) {
      yield { header: entry.header, body: entry as AsyncIterable<Uint8Array> };
    }
    await piped;
  } catch (error) {
    if (signal.aborted) throw abortError(signal);
    throw failure ?? (error instanceof BackupError ? error : corrupt(error));
  } finally {
    if (!extract.destroyed) extract.destroy();
    input.destroy();
  }
}

function corrupt(cause: unknown): BackupError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new BackupError('CORRUPT_ARCHIVE', `The archive is damaged or truncated: ${detail}`, { cause });
}

function countBytes(onBytes: (bytes: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      onBytes(chunk.length);
      callback(null, chunk);
    },
  });
}
