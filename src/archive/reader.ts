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

/** An archive being read: its entries, and what really went wrong when reading fails. */
export interface ArchiveReader {
  readonly entries: AsyncGenerator<TarEntry>;
  /**
   * A failure of the underlying streams surfaces wherever the data was being pulled, often inside a
   * restorer as a bare stream error. This names the root cause: the destination failing is
   * `DESTINATION_FAILED`; bad gzip or tar data is `CORRUPT_ARCHIVE`.
   */
  explain(error: unknown): unknown;
}

/** Decompresses and splits an archive into tar entries. */
export function readArchive(input: Readable, description: string, signal: AbortSignal, onBytes: (bytes: number) => void): ArchiveReader {
  const extract = tar.extract();
  let failure: BackupError | undefined;
  const fail = (error: BackupError) => {
    failure ??= error;
  };
  input.once('error', (cause) => fail(new BackupError('DESTINATION_FAILED', `Reading from ${description} failed: ${cause.message}`, { cause })));
  // 1 MiB output chunks: zlib's default 16 KiB made the main thread spend its time in callbacks.
  const gunzip = createGunzip({ chunkSize: 1024 * 1024 });
  gunzip.once('error', (cause) => fail(corrupt(cause)));
  extract.once('error', (cause: Error) => fail(corrupt(cause)));
  const piped = pipeline(input, countBytes(onBytes), gunzip, extract as unknown as NodeJS.WritableStream, { signal });
  piped.catch(() => {}); // awaited after the last entry; failures are classified by the listeners above

  async function* entries(): AsyncGenerator<TarEntry> {
    try {
      for await (const entry of extract) yield { header: entry.header, body: entry as AsyncIterable<Uint8Array> };
      await piped;
    } finally {
      if (!extract.destroyed) extract.destroy();
      input.destroy();
    }
  }

  return {
    entries: entries(),
    explain(error) {
      if (signal.aborted) return abortError(signal);
      return failure ?? error;
    },
  };
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
