import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar, { type Header } from 'tar-stream';
import { BackupError, abortError } from '../errors.js';
import { closed } from '../util/streams.js';
import { decompressorFor } from './compression.js';
import { DECRYPTED_HEAD_BYTES, decrypt, decryptionError, isOpenPgp, keyDoesNotFit, type DecryptOptions } from './encryption.js';

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
   * `DESTINATION_FAILED`; a key that does not fit is `WRONG_KEY`; damaged data is `CORRUPT_ARCHIVE`.
   */
  explain(error: unknown): unknown;
}

/** Bytes looked at to recognise encryption and compression: enough for a tar header's magic. */
const HEAD_BYTES = DECRYPTED_HEAD_BYTES;

/**
 * Opens an archive: recognises OpenPGP encryption and gzip or zstd compression by their first
 * bytes (not by the file name, so archives made by hand with gpg, gzip or tar open too), then
 * splits the tar stream into entries.
 */
export async function openArchive(
  input: Readable,
  description: string,
  signal: AbortSignal,
  onBytes: (bytes: number) => void,
  decryption: DecryptOptions | undefined,
): Promise<ArchiveReader> {
  let failure: BackupError | undefined;
  const fail = (error: BackupError) => {
    failure ??= error;
  };
  input.once('error', (cause) => fail(new BackupError('DESTINATION_FAILED', `Reading from ${description} failed: ${cause.message}`, { cause })));
  const extract = tar.extract();
  extract.once('error', (cause: Error) => fail(corrupt(cause)));
  const stages: NodeJS.ReadWriteStream[] = [];
  let stream: Readable;
  /** The decrypting stage: reading ends once its thread has exited. */
  let decrypting: Readable | undefined;
  const stopDecrypting = async () => {
    decrypting?.destroy();
    if (decrypting) await closed(decrypting);
  };
  try {
    let head: Buffer;
    const counted = input.pipe(countBytes(onBytes));
    input.once('error', (cause) => counted.destroy(cause));
    ({ head, stream } = await sniff(counted));
    const encrypted = isOpenPgp(head);
    if (encrypted) {
      stream = decrypting = await decrypt(stream, head, decryption);
      stream.once('error', (cause) => fail(decryptionError(cause)));
      ({ head, stream } = await sniff(stream));
    }
    const decompressor = decompressorFor(head);
    if (decompressor) {
      decompressor.once('error', (cause) => fail(corrupt(cause)));
      stages.push(decompressor);
    } else if (head.subarray(257, 262).toString('latin1') !== 'ustar') {
      // What a wrong key decrypts to, when it slips past the checks of the decryptor.
      if (encrypted) throw keyDoesNotFit(new Error('it does not decrypt to a tar file, compressed or not'));
      throw new BackupError('CORRUPT_ARCHIVE', `The archive is not a tar file, compressed or not, nor an OpenPGP message`);
    }
  } catch (error) {
    input.destroy();
    await stopDecrypting();
    throw failure ?? error;
  }
  const piped = pipeline([stream, ...stages, extract as unknown as NodeJS.WritableStream], { signal });
  piped.catch(() => {}); // awaited after the last entry; failures are classified by the listeners above

  async function* entries(): AsyncGenerator<TarEntry> {
    try {
      for await (const entry of extract) {
        const header = entry.header as Header;
        checkHeader(header);
        yield { header, body: entry as AsyncIterable<Uint8Array> };
      }
      await piped;
    } finally {
      if (!extract.destroyed) extract.destroy();
      input.destroy();
      await stopDecrypting();
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

/** Reads the first bytes of a stream and gives back a stream that still starts with them. */
async function sniff(input: Readable): Promise<{ head: Buffer; stream: Readable }> {
  const iterator = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;
  while (size < HEAD_BYTES) {
    const next = await iterator.next();
    if (next.done) break;
    chunks.push(next.value);
    size += next.value.length;
  }
  const head = Buffer.concat(chunks);
  if (head.length === 0) throw new BackupError('CORRUPT_ARCHIVE', 'The archive is empty');
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      await iterator.return?.();
    }
  }
  return { head, stream: Readable.from(replay(), { objectMode: false }) };
}

/**
 * Refuses a tar header that tar-stream accepts but that no tar writer produces. A body on anything
 * but a file is the dangerous one: tar-stream hands out a body stream for it that never ends.
 */
function checkHeader(header: Header): void {
  const name = JSON.stringify(header.name);
  if (header.type === null || header.type === undefined) throw new BackupError('CORRUPT_ARCHIVE', `Tar entry ${name} has an unknown type`);
  const size = header.size ?? 0;
  if (!Number.isSafeInteger(size) || size < 0) throw new BackupError('CORRUPT_ARCHIVE', `Tar entry ${name} has an invalid size`);
  if (size > 0 && header.type !== 'file' && header.type !== 'contiguous-file') {
    throw new BackupError('CORRUPT_ARCHIVE', `Tar entry ${name} is a ${header.type} with a body of ${size} bytes`);
  }
  if (!Number.isFinite(header.mtime?.getTime() ?? 0) || !Number.isInteger(header.mode ?? 0)) {
    throw new BackupError('CORRUPT_ARCHIVE', `Tar entry ${name} has an invalid mode or modification time`);
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
