/**
 * Archive format v2 and v3, specified in docs/FORMAT.md. Change that document with this file.
 */
import { BackupError } from '../errors.js';
import { boundedLines } from '../util/lines.js';
import { readLimited } from '../util/streams.js';
import type { BackupType, EntryType, SourceMode } from '../types.js';
import type { CompressionAlgorithm } from './compression.js';

export const FORMAT_NAME = 'backupkit';
/** The version of an archive that holds every source in full. */
export const FORMAT_VERSION = 2;
/**
 * From this version on, an incremental may hold a source as only its `changes`: older readers
 * refuse such an archive rather than restore part of a tree. The newest version this code reads.
 */
export const PARTIAL_SOURCES = 3;
/** From this version on, manifest lines carry every metadata a restore applies: mode, mtime, link target. */
export const METADATA_IN_MANIFEST = 2;
export const HEADER_PATH = 'header.json';
export const MANIFEST_PATH = 'manifest.ndjson';
export const SOURCES_DIR = 'sources';
/** Where a source's `meta` entries go: data about the source that is no part of its tree. */
export const META_DIR = 'meta';

/** The first entry of every archive. */
export interface ArchiveHeader {
  format: typeof FORMAT_NAME;
  formatVersion: number;
  backupkitVersion: string;
  name: string;
  createdAt: string;
  compression: { algorithm: CompressionAlgorithm; level: number };
  /** Present when encrypted: how, and to whom. Never a secret. */
  encryption?: { method: 'openpgp'; passphrase: boolean; recipients: string[] };
  /** Present when signed: the fingerprint of the signing key (see archive/signature.ts). */
  signature?: { method: 'openpgp'; fingerprint: string };
  /**
   * Per source; `mode` (incrementals only) says whether this archive holds the source `full` or
   * only what changed since `previous`.
   */
  sources: Array<{ name: string; kind: string; estimatedBytes: number; estimatedItems: number; mode?: SourceMode }>;
  /** Absent in archives made before incremental backups existed: those are fulls. */
  type?: BackupType;
  /** An incremental's full, the first backup of its chain. */
  base?: string;
  /** An incremental's predecessor in its chain: the full or the incremental right before it. */
  previous?: string;
}

export type { BackupType } from '../types.js';

/** The first line of the manifest. */
export interface ManifestSummary {
  type: 'summary';
  entries: number;
  sources: Array<{ name: string; kind: string; bytes: number; items: number }>;
  warnings: number;
}

/** One line per archive entry, in archive order, header first. */
export interface ManifestEntry {
  type: 'entry';
  path: string;
  entryType: EntryType;
  size: number;
  sha256: string;
  /** Permission bits as in the tar header (v2 on). */
  mode?: number;
  /** Modification time in whole seconds since the epoch, as in the tar header (v2 on). */
  mtime?: number;
  /** A symbolic link's target (v2 on, links only). */
  linkTarget?: string;
  /** Set when the file changed while it was read (cut, padded, or modified in place). */
  changed?: true;
}

/** tar-stream writes mtimes as 32-bit seconds: later times are clamped rather than wrapped into garbage. */
const MAX_TAR_SECONDS = 2 ** 31 - 1;
const MIN_TAR_SECONDS = -(2 ** 31);

/** The modification time a tar header can hold and gives back, to the second. */
export function tarSeconds(mtime: Date): number {
  const seconds = Math.trunc(mtime.getTime() / 1000);
  return Number.isFinite(seconds) ? Math.min(MAX_TAR_SECONDS, Math.max(MIN_TAR_SECONDS, seconds)) : 0;
}

export function sourcePrefix(sourceName: string): string {
  return `${SOURCES_DIR}/${sourceName}`;
}

/**
 * The longest manifest line a reader accepts. A line is one entry: its path and link target (each
 * at most PATH_MAX, 4 KiB, on Linux, six times that JSON-escaped) and a few numbers; a longer one
 * is not ours, and reading it whole would cost its size in memory.
 */
export const MAX_MANIFEST_LINE_BYTES = 1024 * 1024;

/** Splits a manifest (or a spool of manifest-like records) into lines, refusing an overlong one with `CORRUPT_ARCHIVE`. */
export function manifestLines(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  return boundedLines(body, MAX_MANIFEST_LINE_BYTES, () => new BackupError('CORRUPT_ARCHIVE', `${MANIFEST_PATH} has a line longer than ${MAX_MANIFEST_LINE_BYTES} bytes`));
}

/** The header is a few hundred bytes; anything huge is not ours. */
export const MAX_HEADER_BYTES = 1024 * 1024;

/** Reads the body of the header entry, refusing anything too large to be one. */
export function readHeaderBytes(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  return readLimited(body, MAX_HEADER_BYTES, () => new BackupError('CORRUPT_ARCHIVE', `${HEADER_PATH} is larger than ${MAX_HEADER_BYTES} bytes`));
}

export function parseHeader(bytes: Buffer): ArchiveHeader {
  let header: Partial<ArchiveHeader>;
  try {
    header = JSON.parse(bytes.toString('utf8')) as Partial<ArchiveHeader>;
  } catch (cause) {
    throw new BackupError('CORRUPT_ARCHIVE', `${HEADER_PATH} is not valid JSON`, { cause });
  }
  if (header.format !== FORMAT_NAME || typeof header.formatVersion !== 'number') {
    throw new BackupError('CORRUPT_ARCHIVE', `${HEADER_PATH} does not describe a backupkit archive`);
  }
  if (header.formatVersion > PARTIAL_SOURCES) {
    throw new BackupError(
      'UNSUPPORTED_FORMAT',
      `The archive has format version ${header.formatVersion}; this backupkit reads up to ${PARTIAL_SOURCES}`,
    );
  }
  if (!Array.isArray(header.sources) || typeof header.name !== 'string') {
    throw new BackupError('CORRUPT_ARCHIVE', `${HEADER_PATH} lacks its sources or name`);
  }
  for (const source of header.sources as unknown[]) {
    const { name, kind, mode } = (source ?? {}) as Record<string, unknown>;
    if (typeof name !== 'string' || typeof kind !== 'string') throw new BackupError('CORRUPT_ARCHIVE', `${HEADER_PATH} lists a source without a name or kind`);
    if (mode !== undefined && mode !== 'full' && mode !== 'changes') {
      throw new BackupError('CORRUPT_ARCHIVE', `${HEADER_PATH} holds source "${name}" in mode ${JSON.stringify(mode)}, neither "full" nor "changes"`);
    }
    if (mode === 'changes' && (header.formatVersion < PARTIAL_SOURCES || header.type !== 'incremental' || typeof header.previous !== 'string')) {
      throw new BackupError('CORRUPT_ARCHIVE', `${HEADER_PATH} holds source "${name}" as changes only, but is not a version ${PARTIAL_SOURCES} incremental naming its previous backup`);
    }
  }
  return header as ArchiveHeader;
}

/** How an archive holds a source: `full` unless its header says `changes` (older archives say nothing). */
export function sourceMode(header: ArchiveHeader, sourceName: string): SourceMode {
  return header.sources.find((s) => s.name === sourceName)?.mode ?? 'full';
}
