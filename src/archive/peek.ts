import { BackupError, asBackupError } from '../errors.js';
import type { Destination } from '../types.js';
import { HEADER_PATH, MAX_HEADER_BYTES, parseHeader, readHeaderBytes, type ArchiveHeader } from './format.js';
import { openArchive } from './reader.js';

/**
 * How much of an archive's start is asked for to find its header: the largest header a reader
 * accepts with its tar header and padding, and room for the compression's framing (gzip and zstd
 * add a few bytes per 64 KiB of data they cannot shrink). The read stops at the header's end.
 */
export const HEADER_RANGE_BYTES = MAX_HEADER_BYTES + 64 * 1024;

/**
 * Reads an unencrypted archive's `header.json`, its first entry, with one ranged read of the
 * archive's first bytes: never the archive itself. Throws `CORRUPT_ARCHIVE` for what is no
 * backupkit archive, `INVALID_OPTIONS` for an encrypted one (the header is inside the encryption),
 * `DESTINATION_FAILED` or `NOT_FOUND` when the read fails.
 */
export async function readArchiveHeader(destination: Destination, name: string): Promise<ArchiveHeader> {
  const description = `${name} on ${destination.description}`;
  const input = await destination.open(name, { offset: 0, length: HEADER_RANGE_BYTES }).catch((cause: unknown) => {
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
