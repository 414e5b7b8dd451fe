/**
 * What an incremental backup of a PostgreSQL source keeps between backups (the state) and what it
 * writes instead of an unchanged table's rows (a `.ref` entry). A table is unchanged when the
 * SHA-256 of its COPY text in this snapshot equals the one recorded by the previous backup:
 * decided by content, never by statistics counters, which are not transactional.
 */
import { createHash } from 'node:crypto';
import { BackupError } from '../../errors.js';
import type { PreviousState } from '../../types.js';
import { readLimited } from '../../util/streams.js';
import { cooperative } from '../../util/yield.js';
import { jsonPieces, type DataFigures, type Toc } from './toc.js';

/** The version of the state this backupkit writes and builds on. */
export const STATE_VERSION = 1;
/** A saved state larger than this is not one backupkit wrote. */
export const MAX_STATE_BYTES = 256 * 1024 * 1024;

/** One table's data as the chain holds it: its content and the archive entry that holds it. */
export interface TableState {
  /** The table's qualified, quoted name: its identity from one backup to the next. */
  readonly table: string;
  /** SHA-256 of its COPY text, all chunks in order. */
  readonly sha256: string;
  readonly bytes: number;
  readonly rows: number;
  readonly chunks: number;
  /** Of a table copied in pieces, each piece's figures in page order (`sha256` is then of their SHA-256s). */
  readonly pieces?: readonly DataFigures[];
  /** The archive whose `sources/<name>/<path>/` holds the chunks. */
  readonly archive: string;
  /** The folder of its chunks inside the source, `data/<entry>-<slug>`. */
  readonly path: string;
}

/** One large object's bytes as the chain holds them. */
export interface LargeObjectState {
  readonly oid: number;
  /** SHA-256 of its bytes. */
  readonly sha256: string;
  readonly bytes: number;
  /** The archive whose `sources/<name>/<path>` holds the bytes. */
  readonly archive: string;
  /** `blobs/<oid>`. */
  readonly path: string;
}

/** `Snapshot.state()` of a PostgreSQL source, as JSON. */
export interface PostgresState {
  readonly version: typeof STATE_VERSION;
  /** The database encoding: COPY text of another encoding is other bytes. */
  readonly encoding: string;
  /** SHA-256 of the schema, sequence values and large objects' metadata (schemaFingerprint). */
  readonly schema: string;
  readonly tables: readonly TableState[];
  readonly largeObjects: readonly LargeObjectState[];
}

/**
 * A `.ref` entry, written where unchanged data would have been: `blobs/<oid>.ref` for a large
 * object, whose bytes are `<path>` under `sources/<source>/` of `archive`; `data/<entry>-<slug>.ref`
 * for a table, whose chunks are `<path>/000001.copy`… there (a {@link TableRef}).
 */
export interface DataRef {
  readonly archive: string;
  readonly path: string;
  /** SHA-256 of the bytes referred to: a table's chunks, in order, as one. */
  readonly sha256: string;
  readonly bytes: number;
}

/** A table's `.ref`: also its row and chunk counts, and of a split table each piece's figures (chunks in `<path>/0001/`…). */
export interface TableRef extends DataRef {
  readonly rows: number;
  readonly chunks: number;
  readonly pieces?: readonly DataFigures[];
}

/**
 * SHA-256 of everything a backup holds besides table rows: every schema statement (sequence values
 * included), the tables' columns and the large objects. The catalog's size estimates are left out:
 * they move without any change.
 */
export async function schemaFingerprint(toc: Toc): Promise<string> {
  // Nor how tables are split, which follows their size on disk; nor the format version, which follows the split.
  const tables = toc.tables.map(({ estimatedBytes: _estimate, pieces: _pieces, ...table }) => table);
  // The hash of JSON.stringify's text, a piece at a time: thousands of entries in one go held the event loop.
  const hash = createHash('sha256');
  const yieldNow = cooperative();
  for (const piece of jsonPieces({ ...toc, formatVersion: 1, tables }, 0)) {
    hash.update(piece);
    await yieldNow();
  }
  return hash.digest('hex');
}

/** Reads the previous backup's state, or says in a few words why it cannot be built on. */
export async function readState(previous: PreviousState, encoding: string): Promise<PostgresState | string> {
  const tooLarge = new Error('too large');
  // A failure to read is the backup's failure; a state of another shape only makes this source a full.
  const data = await readLimited(previous.read(), MAX_STATE_BYTES, () => tooLarge).catch((error: unknown) => {
    if (error === tooLarge) return undefined;
    throw error;
  });
  if (data === undefined) return `its saved state is larger than ${MAX_STATE_BYTES / 1024 / 1024} MiB`;
  let state: Partial<PostgresState> | undefined;
  try {
    state = JSON.parse(data.toString()) as Partial<PostgresState>;
  } catch {
    return 'its saved state is not JSON';
  }
  if (state?.version !== STATE_VERSION) return `its saved state has version ${JSON.stringify(state?.version)}, this backupkit builds on version ${STATE_VERSION}`;
  const valid =
    typeof state.encoding === 'string' &&
    typeof state.schema === 'string' &&
    Array.isArray(state.tables) &&
    state.tables.every(isTableState) &&
    Array.isArray(state.largeObjects) &&
    state.largeObjects.every(isLargeObjectState);
  if (!valid) return 'its saved state lacks fields';
  // COPY text in another encoding is other bytes: every table would differ.
  if (state.encoding !== encoding) return `its database encoding was ${state.encoding}, this one's is ${encoding}`;
  return state as PostgresState;
}

function isTableState(value: unknown): value is TableState {
  const t = value as Partial<TableState> | null;
  return (
    typeof t?.table === 'string' &&
    typeof t.sha256 === 'string' &&
    typeof t.archive === 'string' &&
    typeof t.path === 'string' &&
    [t.bytes, t.rows, t.chunks].every((n) => Number.isSafeInteger(n) && (n as number) >= 0) &&
    (t.pieces === undefined || isPieceList(t.pieces))
  );
}

function isPieceList(value: unknown): value is DataFigures[] {
  return (
    Array.isArray(value) &&
    value.length > 1 &&
    value.every((piece: Partial<DataFigures> | null) => typeof piece?.sha256 === 'string' && /^[0-9a-f]{64}$/.test(piece.sha256) && [piece.bytes, piece.rows, piece.chunks].every((n) => Number.isSafeInteger(n) && (n as number) >= 0))
  );
}

function isLargeObjectState(value: unknown): value is LargeObjectState {
  const lo = value as Partial<LargeObjectState> | null;
  return typeof lo?.sha256 === 'string' && typeof lo.archive === 'string' && typeof lo.path === 'string' && [lo.oid, lo.bytes].every((n) => Number.isSafeInteger(n) && (n as number) >= 0);
}

/** A `.ref` entry's JSON: a table's with its rows and chunks, a large object's without. */
export function renderRef(held: TableState | LargeObjectState): string {
  const ref: DataRef | TableRef =
    'table' in held
      ? { archive: held.archive, path: held.path, sha256: held.sha256, bytes: held.bytes, rows: held.rows, chunks: held.chunks, ...(held.pieces ? { pieces: held.pieces } : {}) }
      : { archive: held.archive, path: held.path, sha256: held.sha256, bytes: held.bytes };
  return `${JSON.stringify(ref, null, 1)}\n`;
}

/** Reads a table's `.ref` entry, refusing anything but the shape renderRef writes. */
export function parseTableRef(data: Buffer, path: string): TableRef {
  const ref = parseJson(data, path) as Partial<TableRef> | null;
  if (!isDataRef(ref, /^data\/[^/]+$/)) throw notRef(path);
  const { rows, chunks, pieces } = ref as Partial<TableRef>;
  if (![rows, chunks].every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) throw notRef(path);
  if (pieces !== undefined && !isPieceList(pieces)) throw notRef(path);
  return ref as TableRef;
}

/** Reads a large object's `.ref` entry. */
export function parseLargeObjectRef(data: Buffer, path: string): DataRef {
  const ref = parseJson(data, path) as Partial<DataRef> | null;
  if (!isDataRef(ref, /^blobs\/\d+$/)) throw notRef(path);
  return ref;
}

function isDataRef(ref: Partial<DataRef> | null, path: RegExp): ref is DataRef {
  return (
    typeof ref?.archive === 'string' &&
    typeof ref.path === 'string' &&
    path.test(ref.path) &&
    typeof ref.sha256 === 'string' &&
    /^[0-9a-f]{64}$/.test(ref.sha256) &&
    Number.isSafeInteger(ref.bytes) &&
    ref.bytes! >= 0
  );
}

function parseJson(data: Buffer, path: string): unknown {
  try {
    return JSON.parse(data.toString());
  } catch (cause) {
    throw new BackupError('CORRUPT_ARCHIVE', `${path} of a PostgreSQL source is not JSON`, { cause });
  }
}

function notRef(path: string): BackupError {
  return new BackupError('CORRUPT_ARCHIVE', `${path} of a PostgreSQL source is not a reference to data of an earlier archive`);
}
