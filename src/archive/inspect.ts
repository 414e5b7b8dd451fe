import { Readable } from 'node:stream';
import { BackupError } from '../errors.js';
import type { DecryptOptions } from './encryption.js';
import { HEADER_PATH, MANIFEST_PATH, manifestLines, parseHeader, readHeaderBytes, type ArchiveHeader, type ManifestEntry, type ManifestSummary } from './format.js';
import { openArchive } from './reader.js';


/**
 * Reads an archive's header and manifest without restoring or checking anything: what
 * `backupkit inspect` shows. Entries are passed to `onEntry` as the manifest lists them.
 */
export async function inspectArchive(
  input: Readable,
  description: string,
  decrypt: DecryptOptions | undefined,
  onEntry: (entry: ManifestEntry) => void,
  signal: AbortSignal,
): Promise<{ header: ArchiveHeader; summary: ManifestSummary }> {
  const reader = await openArchive(input, description, signal, () => {}, decrypt);
  try {
    let header: ArchiveHeader | undefined;
    for await (const { header: tarHeader, body } of reader.entries) {
      if (header === undefined) {
        if (tarHeader.name !== HEADER_PATH) throw new BackupError('CORRUPT_ARCHIVE', `${description} does not start with ${HEADER_PATH}; it is not a backupkit archive`);
        header = parseHeader(await readHeaderBytes(body));
      } else if (tarHeader.name === MANIFEST_PATH) {
        return { header, summary: await readManifest(body, onEntry) };
      } else {
        for await (const piece of body) void piece;
      }
    }
    throw new BackupError('CORRUPT_ARCHIVE', `${description} ends before its manifest: it is truncated`);
  } catch (error) {
    throw reader.explain(error);
  } finally {
    await reader.entries.return(undefined).catch(() => {});
  }
}

async function readManifest(body: AsyncIterable<Uint8Array>, onEntry: (entry: ManifestEntry) => void): Promise<ManifestSummary> {
  let summary: ManifestSummary | undefined;
  for await (const line of manifestLines(body)) {
    let parsed: ManifestSummary | ManifestEntry;
    try {
      parsed = JSON.parse(line) as ManifestSummary | ManifestEntry;
    } catch (cause) {
      throw new BackupError('CORRUPT_ARCHIVE', `${MANIFEST_PATH} is not valid NDJSON`, { cause });
    }
    if (parsed.type === 'summary') summary ??= parsed;
    else if (parsed.type === 'entry') onEntry(parsed);
  }
  if (!summary) throw new BackupError('CORRUPT_ARCHIVE', `${MANIFEST_PATH} has no summary line`);
  return summary;
}
