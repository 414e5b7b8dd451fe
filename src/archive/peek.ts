import { BackupError, asBackupError } from '../errors.js';
import type { Destination } from '../types.js';
import { HEADER_PATH, MAX_HEADER_BYTES, parseHeader, readHeaderBytes, type ArchiveHeader } from './format.js';
import { openArchive } from './reader.js';

/**
 * The first read of an archive's start: a header is a few hundred bytes per source, so this holds
 * it with room to spare, while reading more would only fill buffers (the stages between the read
 * and the tar parser pull up to a megabyte ahead before the header is parsed and the read stopped).
 */
export const FIRST_HEADER_RANGE_BYTES = 64 * 1024;

/**
 * The second read, when the first cut the header: the largest header a reader accepts with its tar
 * header and padding, and room for the compression's framing (gzip and zstd add a few bytes per
 * 64 KiB of data they cannot shrink).
 */
export const HEADER_RANGE_BYTES = MAX_HEADER_BYTES + 64 * 1024;

/**
 * Reads an unencrypted archive's `header.json`, its first entry, with a ranged read of the
 * archive's first bytes, never the archive itself: {@link FIRST_HEADER_RANGE_BYTES}, and only if
 * the header does not end within them, {@link HEADER_RANGE_BYTES}. `size` is the archive's. Throws
 * `CORRUPT_ARCHIVE` for what is no backupkit archive, `INVALID_OPTIONS` for an encrypted one (the
 * header is inside the encryption), `DESTINATION_FAILED` or `NOT_FOUND` when the read fails.
 */
export async function readArchiveHeader(destination: Destination, name: string, size: number): Promise<ArchiveHeader> {
  try {
    return await readHeaderWithin(destination, name, FIRST_HEADER_RANGE_BYTES);
  } catch (error) {
    // A cut header looks like a damaged archive: only a longer read can tell them apart.
    if (!(error instanceof BackupError && error.code === 'CORRUPT_ARCHIVE') || size <= FIRST_HEADER_RANGE_BYTES) throw error;
    return readHeaderWithin(destination, name, HEADER_RANGE_BYTES);
  }
}

async function readHeaderWithin(destination: Destination, name: string, length: number): Promise<ArchiveHeader> {
  const description = `${name} on ${destination.description}`;
  const input = await destination.open(name, { offset: 0, length }).catch((cause: unknown) => {
    throw asBackupError(cause, 'DESTINATION_FAILED', `Reading the start of ${description} failed`);
  });
  const reader = await openArchive(input, description, new AbortController().signal, () => {}, undefined);
  try {
    const first = await reader.entries.next();
    if (first.done || first.value.header.name !== HEADER_PATH) {
      throw new BackupError('CORRUPT_ARCHIVE', `${description} does not start with ${HEADER_PATH}; it is not a backupkit archive`);
    }
    return parseHeader(await readHeaderBytes(first.value.body));
  } catch (error) {
    throw reader.explain(error);
  } finally {
    // Stops the read: the rest of the range is never downloaded.
    await reader.entries.return(undefined).catch(() => {});
  }
}
