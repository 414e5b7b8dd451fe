/**
 * The table of contents of a PostgreSQL source (`toc.json`): every schema object as one entry with
 * its section and dependencies, in an order that restores, like pg_dump's archive TOC.
 */
import { createHash } from 'node:crypto';
import { cooperative } from '../../util/yield.js';
import { quoteIdent } from './connection.js';

/** When an entry is restored: before the data, with it, or after it. */
export type Section = 'pre-data' | 'data' | 'post-data';

export interface TocEntry {
  /** Unique in the TOC; dependencies refer to it. */
  readonly id: number;
  /** What it creates, in pg_dump's words: `TABLE`, `INDEX`, `FK CONSTRAINT`, `ACL`, … */
  readonly kind: string;
  readonly schema: string | null;
  readonly name: string;
  readonly section: Section;
  /** Ids of the entries that must be restored first. */
  readonly deps: number[];
  /** The statement(s) that create it. */
  readonly sql: string;
  /** `ALTER … OWNER TO …`, skipped by a restore with `ownership: false`. */
  readonly owner?: string;
  /** The tablespace of what it creates, when not the database's default: set as `default_tablespace` around its SQL. */
  readonly tablespace?: string;
}

export interface TocTable {
  /** The TOC entry that creates the table (an extension's configuration table: its TABLE DATA entry). */
  readonly entry: number;
  /** Qualified, quoted name. */
  readonly qualifiedName: string;
  /** Quoted names of the columns COPY reads and writes, generated columns left out. */
  readonly columns: string[];
  /** The folder of its data chunks inside the source, `data/<entry>-<slug>`. */
  readonly dataPath: string;
  /** On-disk size from the catalog when the backup started: for progress and for ordering workers. */
  readonly estimatedBytes: number;
  /**
   * Of an extension's configuration table, the filter condition (`WHERE …`) its extension registered
   * with `pg_extension_config_dump`: only the rows it selects are backed up, as pg_dump does.
   */
  readonly condition?: string;
  /**
   * Of a table copied in pieces (format version 2): the first heap page of each piece, ascending
   * from 0. Piece `i` holds the rows of pages `[pieces[i], pieces[i + 1])`, the last one every page
   * from its first on; its chunks are `<dataPath>/<i + 1, 4 digits>/000001.copy`…
   */
  readonly pieces?: readonly number[];
}

export interface LargeObjectInfo {
  readonly oid: number;
  readonly size: number;
  readonly owner: string;
  /** GRANT statements, or null for default privileges. */
  readonly acl: string | null;
  readonly comment: string | null;
}

/** What `CREATE DATABASE` needs to give the restored database the source's encoding and sort order. */
export interface DatabaseLocale {
  readonly encoding: string;
  readonly collate: string;
  readonly ctype: string;
  /** The locale provider, from PostgreSQL 15 on (`libc`, `icu`, `builtin`); archives of older servers have none: libc. */
  readonly provider?: 'libc' | 'icu' | 'builtin';
  /** The ICU or builtin locale (`daticulocale`, `datlocale`), and ICU's tailoring rules (PostgreSQL 16+). */
  readonly locale?: string | null;
  readonly icuRules?: string | null;
}

/**
 * The format of a PostgreSQL source: 1 without split tables, 2 when a table is copied in pieces
 * (a backupkit that reads only 1 refuses it with UNSUPPORTED_FORMAT instead of failing on its paths).
 */
export const TOC_FORMAT_VERSIONS = [1, 2] as const;

export interface Toc {
  readonly formatVersion: (typeof TOC_FORMAT_VERSIONS)[number];
  readonly server: { readonly version: string; readonly versionNum: number };
  /** The source database; `tablespace`: its default tablespace, when not `pg_default`. */
  readonly database: DatabaseLocale & { readonly name: string; readonly tablespace?: string };
  readonly entries: TocEntry[];
  readonly tables: TocTable[];
  readonly largeObjects: LargeObjectInfo[];
}

/** A table and the columns COPY reads and writes, as every COPY statement names them (backup, restore, restore.sql). */
export function copyTarget(table: TocTable): string {
  return table.columns.length > 0 ? `${table.qualifiedName} (${table.columns.join(', ')})` : table.qualifiedName;
}

/**
 * What a backup's COPY reads: the table, or the rows of an extension's configuration table that its
 * condition selects. A restore's verification takes the condition from the restored
 * database's catalog, never from the archive.
 */
export function copySource(table: TocTable): string {
  if (table.condition === undefined) return copyTarget(table);
  return `(SELECT ${table.columns.join(', ')} FROM ONLY ${table.qualifiedName} ${table.condition})`;
}

/** The rows of one piece of a split table, or of a whole table. */
export interface DataFigures {
  readonly rows: number;
  readonly bytes: number;
  readonly chunks: number;
  /** SHA-256 of the COPY text, all chunks in order. */
  readonly sha256: string;
}

/** Per-table figures written after the data (`data.json`), checked by a restore; each chunk's SHA-256 is in the manifest. */
export interface TableDataSummary extends DataFigures {
  readonly entry: number;
  /**
   * Of a table copied in pieces, each piece's figures in page order; the table's are their sums, and
   * its `sha256` is {@link piecesSha256} of theirs.
   */
  readonly pieces?: readonly DataFigures[];
}

/**
 * The SHA-256 of a table copied in pieces: of its pieces' SHA-256 (lowercase hex) concatenated in
 * page order. Pieces are hashed side by side, and a SHA-256 cannot be continued from another.
 */
export function piecesSha256(pieces: readonly Pick<DataFigures, 'sha256'>[]): string {
  return createHash('sha256').update(pieces.map((piece) => piece.sha256).join('')).digest('hex');
}

/** The folder of a table's chunks, or of one piece's (0-based) of a split table. */
export function piecePath(table: Pick<TocTable, 'dataPath'>, piece: number | undefined): string {
  return piece === undefined ? table.dataPath : `${table.dataPath}/${String(piece + 1).padStart(4, '0')}`;
}

/**
 * What COPY reads of one piece of a split table: its rows in a page range, by a TID range scan
 * (PostgreSQL 14+), in the order a sequential scan gives them.
 */
export function pieceSource(table: TocTable, piece: number): string {
  const pieces = table.pieces!;
  const from = `ctid >= '(${pieces[piece]},0)'::pg_catalog.tid`;
  const to = piece + 1 < pieces.length ? ` AND ctid < '(${pieces[piece + 1]},0)'::pg_catalog.tid` : '';
  return `(SELECT ${table.columns.join(', ')} FROM ONLY ${table.qualifiedName} WHERE ${from}${to})`;
}

const SECTION_RANK: Record<Section, number> = { 'pre-data': 0, data: 1, 'post-data': 2 };

/** Like pg_dump's dbObjectTypePriority: the order among entries that do not depend on each other. */
const KIND_PRIORITY: Record<string, number> = {
  SCHEMA: 1,
  EXTENSION: 2,
  COLLATION: 3,
  TYPE: 4,
  DOMAIN: 4,
  FUNCTION: 5,
  PROCEDURE: 5,
  AGGREGATE: 6,
  CAST: 6,
  OPERATOR: 6,
  'OPERATOR FAMILY': 6,
  'OPERATOR CLASS': 6,
  'TEXT SEARCH DICTIONARY': 6,
  'TEXT SEARCH CONFIGURATION': 6,
  SEQUENCE: 7,
  'FOREIGN DATA WRAPPER': 7,
  SERVER: 7,
  'USER MAPPING': 7,
  TABLE: 8,
  'FOREIGN TABLE': 8,
  'TABLE ATTACH': 9,
  VIEW: 10,
  'MATERIALIZED VIEW': 10,
  'SEQUENCE OWNED BY': 11,
  DEFAULT: 11,
  'SEQUENCE SET': 12,
  INDEX: 20,
  CONSTRAINT: 21,
  STATISTICS: 22,
  'INDEX ATTACH': 23,
  'FK CONSTRAINT': 24,
  TRIGGER: 25,
  RULE: 26,
  POLICY: 27,
  'ROW SECURITY': 28,
  'REPLICA IDENTITY': 29,
  'CLUSTER ON': 29,
  COMMENT: 30,
  PUBLICATION: 31,
  'PUBLICATION TABLE': 32,
  'PUBLICATION TABLES IN SCHEMA': 32,
  SUBSCRIPTION: 33,
  ACL: 40,
  'EXTENSION ACL': 40,
  'DELEGATED ACL': 41,
  'DEFAULT ACL': 42,
  'EVENT TRIGGER': 45,
  'MATERIALIZED VIEW DATA': 50,
};

function sortKey(entry: TocEntry): string {
  const priority = KIND_PRIORITY[entry.kind] ?? 35;
  return `${SECTION_RANK[entry.section]}:${String(priority).padStart(2, '0')}:${entry.schema ?? ''}\u0000${entry.name}\u0000${String(entry.id).padStart(9, '0')}`;
}

/**
 * Orders entries so each comes after what it depends on, ties broken by section, kind priority and
 * name (as pg_dump does). A dependency cycle is broken at its lowest-priority entry, and reported.
 */
export async function sortEntries(entries: readonly TocEntry[]): Promise<{ sorted: TocEntry[]; cycles: TocEntry[] }> {
  const yieldNow = cooperative();
  const byId = new Map(entries.map((entry) => [entry.id, entry]));
  const waitingOn = new Map<number, number>();
  const dependents = new Map<number, number[]>();
  for (const entry of entries) {
    const deps = new Set(entry.deps.filter((dep) => dep !== entry.id && byId.has(dep)));
    waitingOn.set(entry.id, deps.size);
    for (const dep of deps) {
      const list = dependents.get(dep);
      if (list) list.push(entry.id);
      else dependents.set(dep, [entry.id]);
    }
    await yieldNow();
  }
  // The ids in key order, and the heap holds positions in it: numbers compare much faster than the
  // string keys did, which took most of the time of ordering 10,000 entries.
  const byKey = entries.map((entry) => ({ id: entry.id, key: sortKey(entry) })).sort((a, b) => (a.key < b.key ? -1 : 1)).map((entry) => entry.id);
  const rank = new Map(byKey.map((id, position) => [id, position]));
  const ready = new MinHeap<number>((a, b) => a - b);
  for (const [id, count] of waitingOn) if (count === 0) ready.push(rank.get(id)!);

  const sorted: TocEntry[] = [];
  const cycles: TocEntry[] = [];
  const done = new Set<number>();
  const release = (id: number): void => {
    done.add(id);
    sorted.push(byId.get(id)!);
    for (const dependent of dependents.get(id) ?? []) {
      const left = waitingOn.get(dependent)! - 1;
      waitingOn.set(dependent, left);
      if (left === 0) ready.push(rank.get(dependent)!);
    }
  };
  while (sorted.length < entries.length) {
    await yieldNow();
    const next = ready.pop();
    if (next !== undefined) {
      if (!done.has(byKey[next]!)) release(byKey[next]!);
      continue;
    }
    const stuck = byId.get(byKey.find((id) => !done.has(id))!)!;
    cycles.push(stuck);
    waitingOn.set(stuck.id, 0);
    release(stuck.id);
  }
  return { sorted, cycles };
}

class MinHeap<T> {
  private readonly items: T[] = [];
  constructor(private readonly compare: (a: T, b: T) => number) {}

  push(item: T): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.compare(items[i]!, items[parent]!) >= 0) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < items.length && this.compare(items[left]!, items[smallest]!) < 0) smallest = left;
        if (right < items.length && this.compare(items[right]!, items[smallest]!) < 0) smallest = right;
        if (smallest === i) break;
        [items[i], items[smallest]] = [items[smallest]!, items[i]!];
        i = smallest;
      }
    }
    return top;
  }
}

/**
 * How values are printed when rows are copied out, as pg_dump sets them: the same at backup and
 * when a verification reads a restored table back, so that equal data gives equal text.
 */
export const OUTPUT_SETTINGS = [
  "SET search_path = ''",
  'SET DateStyle = ISO',
  'SET IntervalStyle = postgres',
  'SET extra_float_digits = 3',
  'SET row_security = off',
  'SET statement_timeout = 0',
  'SET lock_timeout = 0',
  'SET idle_in_transaction_session_timeout = 0',
];

/**
 * The tables ANALYZE reads: not foreign tables nor their inheritance or partition parents, whose
 * statistics would be read from the remote server (which the restoring host may not reach) or from
 * a wrapper without a handler, failing the restore for statistics pg_restore does not gather at all.
 */
export const ANALYZED_TABLES_SQL = `
  WITH RECURSIVE remote AS (
    SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind = 'f'
    UNION SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN remote r ON r.oid = i.inhrelid)
  SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS name
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE (c.relkind IN ('r', 'p') OR (c.relkind = 'm' AND c.relispopulated))
     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_(toast_)?temp_'
     AND c.oid NOT IN (SELECT oid FROM remote)
     -- ANALYZE of a partitioned table samples its partitions and analyzes each: a partition is named only when its parent is not.
     AND NOT (c.relispartition AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid AND i.inhparent NOT IN (SELECT oid FROM remote)))
   ORDER BY 1`;

/** The settings a restore (and `schema.sql`) runs with, as pg_dump's scripts start. */
export const RESTORE_SETTINGS = [
  "SET statement_timeout = 0;",
  "SET lock_timeout = 0;",
  "SET idle_in_transaction_session_timeout = 0;",
  "SET client_encoding = 'UTF8';",
  "SET standard_conforming_strings = on;",
  "SELECT pg_catalog.set_config('search_path', '', false);",
  "SET check_function_bodies = false;",
  "SET xmloption = content;",
  "SET client_min_messages = warning;",
  "SET row_security = off;",
];

/**
 * A SQL_ASCII database holds bytes, not characters, and its rows may hold any: they load as they
 * were copied out only with no client encoding to check them against (UTF8 would refuse them).
 */
export function clientEncoding(from: { readonly database: Pick<DatabaseLocale, 'encoding'> }): string[] {
  return from.database.encoding === 'SQL_ASCII' ? ["SET client_encoding = 'SQL_ASCII';"] : [];
}

/** The TOC as a script a person can read and load with psql: every schema statement, no data. */
export async function renderSchemaSql(toc: Toc): Promise<string> {
  const lines = [
    `--`,
    `-- PostgreSQL database schema, written by backupkit`,
    `-- Source: database ${toc.database.name} on PostgreSQL ${toc.server.version}`,
    `-- Load with: psql -v ON_ERROR_STOP=1 -d <new database> -f schema.sql`,
    `-- (restore.sql, at the end of this source's folder, loads the data as well)`,
    `--`,
    '',
    ...RESTORE_SETTINGS,
    '',
  ];
  const yieldNow = cooperative();
  for (const entry of toc.entries) {
    if (entry.section === 'data' || entry.kind === 'MATERIALIZED VIEW DATA') continue;
    lines.push(...renderEntry(entry));
    await yieldNow();
  }
  return `${lines.join('\n')}\n`;
}

/** `toc.json`: the TOC as `JSON.stringify(toc, null, 1)` writes it, built between turns of the event loop. */
export async function renderTocJson(toc: Toc): Promise<string> {
  const pieces: string[] = [];
  const yieldNow = cooperative();
  for (const piece of jsonPieces(toc, 1)) {
    pieces.push(piece);
    await yieldNow();
  }
  return `${pieces.join('')}\n`;
}

/** The array items JSON.stringify writes in one call: a piece of jsonPieces. */
const JSON_SLICE = 256;

/**
 * What `JSON.stringify(value, null, indent)` writes of an object of plain data, in pieces: its
 * arrays a slice of items at a time, so that a TOC of thousands of entries can be written (or
 * hashed) a piece at a time, yielding to the event loop between pieces. Each piece is written by
 * JSON.stringify itself, inside an object of its field alone, so that its indentation is the
 * depth it has in `value`.
 */
export function* jsonPieces(value: object, indent: 0 | 1): Generator<string> {
  const newline = indent === 1 ? '\n' : '';
  const fields = Object.entries(value).filter(([, field]) => field !== undefined);
  if (fields.length === 0) {
    yield '{}';
    return;
  }
  yield `{${newline}`;
  for (const [i, [key, field]] of fields.entries()) {
    const tail = i < fields.length - 1 ? `,${newline}` : newline;
    // `{\n "key": …\n}` without the braces, or `{"key":…}`.
    const alone = (item: unknown): string => JSON.stringify({ [key]: item }, null, indent).slice(1 + newline.length, -1 - newline.length);
    if (!Array.isArray(field) || field.length === 0) {
      yield `${alone(field)}${tail}`;
      continue;
    }
    const head = `${indent === 1 ? ' ' : ''}${JSON.stringify(key)}:${indent === 1 ? ' ' : ''}[${newline}`;
    const end = `${newline}${indent === 1 ? ' ' : ''}]`;
    yield head;
    for (let start = 0; start < field.length; start += JSON_SLICE) {
      yield `${start === 0 ? '' : `,${newline}`}${alone(field.slice(start, start + JSON_SLICE)).slice(head.length, -end.length)}`;
    }
    yield `${end}${tail}`;
  }
  yield '}';
}

export function renderEntry(entry: TocEntry): string[] {
  const title = `-- ${entry.kind}: ${entry.schema === null ? '' : `${entry.schema}.`}${entry.name} (${entry.section})`;
  return [title, inTablespace(entry), ...(entry.owner ? [entry.owner] : []), ''];
}

/** An entry's SQL, run with its tablespace as `default_tablespace` (as pg_dump writes it), then the database's default again. */
export function inTablespace(entry: TocEntry): string {
  if (entry.tablespace === undefined) return entry.sql;
  return `SET default_tablespace = ${quoteIdent(entry.tablespace)};\n${entry.sql}\nSET default_tablespace = '';`;
}
