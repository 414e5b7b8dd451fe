/**
 * What an incremental backup of a PostgreSQL source keeps between backups (the state) and what it
 * writes instead of an unchanged table's rows (a `.ref` entry). A table is unchanged when the
 * SHA-256 of its COPY text in this snapshot equals the one recorded by the previous backup:
 * decided by content, never by statistics counters, which are not transactional.
 */
import { createHash } from 'node:crypto';
import { BackupError } from '../../errors.js';
import type { Toc } from './toc.js';

/** The version of the state this backupkit writes and builds on. */
export const STATE_VERSION = 1;
/** A state or a ref larger than this is not one backupkit wrote. */
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
  /** The archive whose `sources/<name>/<path>/` holds the chunks. */
  readonly archive: string;
  /** The folder of its chunks inside the source, `data/<entry>-<slug>`. */
  readonly path: string;
}

/** `Snapshot.state()` of a PostgreSQL source, as JSON. */
export interface PostgresState {
  readonly version: typeof STATE_VERSION;
  /** The database encoding: COPY text of another encoding is other bytes. */
  readonly encoding: string;
  /** SHA-256 of the schema, sequence values and large objects (schemaFingerprint). */
  readonly schema: string;
  readonly tables: readonly TableState[];
}

/**
 * A `.ref` entry (`data/<entry>-<slug>.ref`), written where an unchanged table's chunk folder would
 * have been: its chunks are `<path>/000001.copy`… under `sources/<source>/` of `archive`.
 */
export interface TableRef {
  readonly archive: string;
  readonly path: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly rows: number;
  readonly chunks: number;
}

/**
 * SHA-256 of everything a backup holds besides table rows: every schema statement (sequence values
 * included), the tables' columns and the large objects. The catalog's size estimates are left out:
 * they move without any change.
 */
export function schemaFingerprint(toc: Toc): string {
  const tables = toc.tables.map(({ estimatedBytes: _estimate, ...table }) => table);
  return createHash('sha256').update(JSON.stringify({ ...toc, tables })).digest('hex');
}

/** Parses a previous state, or says in a sentence why it cannot be built on. */
export function parseState(data: Buffer): PostgresState | string {
  let state: Partial<PostgresState> | undefined;
  try {
    state = JSON.parse(data.toString()) as Partial<PostgresState>;
  } catch {
    return 'its saved state is not JSON';
  }
  if (state?.version !== STATE_VERSION) return `its saved state has version ${JSON.stringify(state?.version)}, this backupkit builds on version ${STATE_VERSION}`;
  if (typeof state.encoding !== 'string' || typeof state.schema !== 'string' || !Array.isArray(state.tables) || !state.tables.every(isTableState)) {
    return 'its saved state lacks fields';
  }
  return state as PostgresState;
}

function isTableState(value: unknown): value is TableState {
  const t = value as Partial<TableState> | null;
  return (
    typeof t?.table === 'string' &&
    typeof t.sha256 === 'string' &&
    typeof t.archive === 'string' &&
    typeof t.path === 'string' &&
    [t.bytes, t.rows, t.chunks].every((n) => Number.isSafeInteger(n) && (n as number) >= 0)
  );
}

/** A `.ref` entry's JSON. */
export function renderRef(held: TableState): string {
  const ref: TableRef = { archive: held.archive, path: held.path, sha256: held.sha256, bytes: held.bytes, rows: held.rows, chunks: held.chunks };
  return `${JSON.stringify(ref, null, 1)}\n`;
}

/** Reads a `.ref` entry, refusing anything but the shape renderRef writes. */
export function parseRef(data: Buffer, path: string): TableRef {
  let ref: Partial<TableRef> | undefined;
  try {
    ref = JSON.parse(data.toString()) as Partial<TableRef>;
  } catch (cause) {
    throw new BackupError('CORRUPT_ARCHIVE', `${path} of a PostgreSQL source is not JSON`, { cause });
  }
  const ok =
    typeof ref?.archive === 'string' &&
    typeof ref.path === 'string' &&
    /^data\/[^/]+$/.test(ref.path) &&
    typeof ref.sha256 === 'string' &&
    /^[0-9a-f]{64}$/.test(ref.sha256) &&
    [ref.bytes, ref.rows, ref.chunks].every((n) => Number.isSafeInteger(n) && (n as number) >= 0);
  if (!ok) throw new BackupError('CORRUPT_ARCHIVE', `${path} of a PostgreSQL source is not a reference to a table's data`);
  return ref as TableRef;
}
