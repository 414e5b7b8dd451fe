import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pLimit from 'p-limit';
import type pg from 'pg';
import { BackupError, asBackupError } from '../../errors.js';
import { ensureSpace } from '../../util/fs.js';
import { readLimited } from '../../util/streams.js';
import type { RestoreEntry, RestoreLayer, RestoreSink, VerifyCheck } from '../../types.js';
import { SessionPool, clientConfig, connect, loadCopyStreams, quoteIdent, quoteLiteral } from './connection.js';
import { copyTableOut } from './copy-out.js';
import { parseLargeObjectRef, parseTableRef, type DataRef } from './incremental.js';
import { Lease, dropServerLeftovers, makeSpoolFolder, newTag, removeAbandonedSpools, restoreRoleName, revokeTablespaces, scramVerifier } from './lease.js';
import type { ParsedTarget } from './restore.js';
import { ANALYZED_TABLES_SQL, OUTPUT_SETTINGS, RESTORE_SETTINGS, TOC_FORMAT_VERSIONS, clientEncoding, copyTarget, inTablespace, piecePath, piecesSha256, type DataFigures, type DatabaseLocale, type TableDataSummary, type Toc, type TocEntry, type TocTable } from './toc.js';

const MAX_METADATA_BYTES = 256 * 1024 * 1024;
const LARGE_OBJECT_PIECE = 1024 * 1024;
/**
 * Chunks and large objects up to this size wait in memory instead of the spool folder, up to
 * HELD_IN_MEMORY_BYTES in all: a file created, written, read and removed per table made most of the
 * time of restoring thousands of small tables. Larger ones, and any past the total, go to the spool.
 */
const SMALL_ENTRY_BYTES = 256 * 1024;
const HELD_IN_MEMORY_BYTES = 32 * 1024 * 1024;
/** Rows read back by a verification are hashed and dropped in pieces of this size. */
const VERIFY_CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * Every statement of a restore commits on its own, and waiting for each commit's WAL to reach the
 * disk made a restore of many small objects slower than pg_restore. Nothing is lost: the staging
 * database is renamed into place by a commit that waits, which flushes every earlier one with it,
 * and a crash before that leaves only a staging database, which the next restore drops.
 */
const ASYNC_COMMIT = 'SET synchronous_commit = off;';
/**
 * Entries sent together in one simple query: a round trip per statement cost more than most
 * statements of a schema (a comment, a small table). Few enough that a batch's locks fit the
 * server's lock table, and that a batch that failed is quickly run again one entry at a time.
 */
const BATCH_ENTRIES = 64;
/** Post-data entries that only read their table and build something: safe to run side by side. */
const PARALLEL_POST_DATA = new Set(['INDEX', 'CONSTRAINT', 'STATISTICS']);
const DEADLOCK_DETECTED = '40P01';
const INSUFFICIENT_PRIVILEGE = '42501';
const FEATURE_NOT_SUPPORTED = '0A000';
const UNPRIVILEGED_HINT =
  "The archive's SQL ran as a temporary role without superuser rights, and needs more. If you made this archive and can vouch for it (signed, restored with verifySignature), restore it with `trustArchiveSql: true`.";
const ROLE_LOGIN_HINT =
  "A restore connected as a superuser runs the archive's SQL as a temporary role (backupkit_restore_*) that logs in with a password: allow password logins (scram-sha-256) for it in pg_hba.conf, or connect as a role with CREATEDB that is not a superuser.";

/** The shapes of identifiers and statements backupkit writes for owners: anything else is refused before it runs as a superuser. */
const IDENT = String.raw`(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")`;
const QUALIFIED = String.raw`${IDENT}(?:\.${IDENT})?`;
const ARGUMENTS = String.raw`\((?:[A-Za-z0-9_$ ,.*\[\]]|"(?:[^"]|"")*")*\)`;
const OPERATOR = String.raw`${IDENT}\.[-+*/<>=~!@#%^&|\`?]+ ${ARGUMENTS}`;
const OWNER_STATEMENT = new RegExp(
  String.raw`^ALTER (?:(?:TABLE|SEQUENCE|VIEW|MATERIALIZED VIEW|SCHEMA|COLLATION|TYPE|DOMAIN|STATISTICS|TEXT SEARCH (?:DICTIONARY|CONFIGURATION)) ${QUALIFIED}|(?:FUNCTION|PROCEDURE|AGGREGATE) ${QUALIFIED}${ARGUMENTS}|OPERATOR ${OPERATOR}|PUBLICATION ${IDENT}) OWNER TO ${IDENT};$`,
);
const ROLE_NAME = new RegExp(`^${IDENT}$`);
/**
 * The grant statements backupkit writes for an extension's members and for grants given by roles
 * other than the owner, which the superuser runs: nothing else is accepted.
 */
const GRANT_TARGET = String.raw`((?:TABLE|SEQUENCE|TYPE) ${QUALIFIED}|(?:FUNCTION|PROCEDURE) ${QUALIFIED}${ARGUMENTS}|SCHEMA ${IDENT})`;
const PRIVILEGES = String.raw`[A-Z]+(?:,[A-Z]+)*|[A-Z]+\(${IDENT}\)`;
const GRANT_STATEMENT = new RegExp(
  String.raw`^(?:REVOKE ALL ON ${GRANT_TARGET} FROM ${IDENT}|GRANT (?:${PRIVILEGES}) ON ${GRANT_TARGET} TO ${IDENT}(?: WITH GRANT OPTION)?|SET ROLE ${IDENT}|RESET ROLE);$`,
);
/** Default privileges as backupkit writes them (catalog/database-wide.ts), which the superuser runs: they act for another role. */
const DEFAULT_PRIVILEGES_STATEMENT = new RegExp(
  String.raw`^ALTER DEFAULT PRIVILEGES FOR ROLE ${IDENT}(?: IN SCHEMA (${IDENT}))? (?:REVOKE ALL ON (?:TABLES|SEQUENCES|FUNCTIONS|TYPES|SCHEMAS) FROM ${IDENT}|GRANT [A-Z]+(?:,[A-Z]+)* ON (?:TABLES|SEQUENCES|FUNCTIONS|TYPES|SCHEMAS) TO ${IDENT}(?: WITH GRANT OPTION)?);$`,
);
/**
 * Entries only a superuser can restore: an event trigger runs its function for whoever changes the
 * schema later, superusers too, so the temporary role must not make one for the archive. Foreign
 * data needs a wrapper, which only a superuser creates (postgres_fdw and file_fdw are not trusted
 * extensions), and user mappings may lend the remote server's credentials to anyone. Operator
 * classes and families: a wrong one corrupts indexes, so PostgreSQL keeps them to superusers. A
 * subscription holds the publisher's credentials, and connects to it once enabled.
 */
const SUPERUSER_KINDS = new Set(['EVENT TRIGGER', 'FOREIGN DATA WRAPPER', 'SERVER', 'USER MAPPING', 'FOREIGN TABLE', 'OPERATOR CLASS', 'OPERATOR FAMILY', 'SUBSCRIPTION']);
/** …and an aggregate whose state is `internal` (a C structure its functions trust blindly). */
function needsSuperuser(entry: TocEntry): boolean {
  return SUPERUSER_KINDS.has(entry.kind) || (entry.kind === 'AGGREGATE' && /\n {4}M?STYPE = internal,?\n/.test(entry.sql));
}
/**
 * The schema of a grant's object, and whether it belongs to an extension: the superuser grants only
 * on objects of the archive or of its extensions, never on the system's (pg_read_file and the like).
 */
const GRANT_OBJECT_SQL = `
  SELECT coalesce(i.schema, i.identity) AS schema, EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.classid AND d.objid = o.oid AND d.deptype = 'e') AS member
    FROM (SELECT CASE WHEN $1 IN ('FUNCTION', 'PROCEDURE') THEN 'pg_catalog.pg_proc'::pg_catalog.regclass WHEN $1 = 'TYPE' THEN 'pg_catalog.pg_type'::pg_catalog.regclass
                      WHEN $1 = 'SCHEMA' THEN 'pg_catalog.pg_namespace'::pg_catalog.regclass ELSE 'pg_catalog.pg_class'::pg_catalog.regclass END AS classid,
                 CASE WHEN $1 IN ('FUNCTION', 'PROCEDURE') THEN pg_catalog.to_regprocedure($2)::oid WHEN $1 = 'TYPE' THEN pg_catalog.to_regtype($2)::oid
                      WHEN $1 = 'SCHEMA' THEN pg_catalog.to_regnamespace($2)::oid ELSE pg_catalog.to_regclass($2)::oid END AS oid) o,
         pg_catalog.pg_identify_object(o.classid, o.oid, 0) AS i
   WHERE o.oid IS NOT NULL`;
/** The server's warnings that a GRANT or REVOKE changed nothing: the role running it lacks the rights. */
const PRIVILEGE_NOT_CHANGED = new Set(['01006', '01007']);
/** Grant entries: restored after everything else but materialized view data, and only with `ownership`. */
const GRANT_KINDS = new Set(['ACL', 'EXTENSION ACL', 'DELEGATED ACL', 'DEFAULT ACL']);
/** Grant entries the superuser runs when the archive's SQL runs as a temporary role (see handOver). */
const SUPERUSER_GRANT_KINDS = new Set(['EXTENSION ACL', 'DELEGATED ACL', 'DEFAULT ACL']);
/** A string literal as quoteLiteral() writes it: no backslash in a plain one, only doubled ones in an E'' one. */
const LITERAL = String.raw`(?:'(?:[^'\\]|'')*'|E'(?:[^'\\]|''|\\\\)*')`;
const EXTENSION_COMMENT = new RegExp(String.raw`^COMMENT ON EXTENSION ${IDENT} IS ${LITERAL};$`);
/**
 * Publications of every table or of a schema's need a superuser too, but say only which tables a
 * subscriber may copy: the superuser creates them (and comments on publications, which may not exist
 * before), once the temporary role is done, in these shapes only.
 */
const PUBLISH = String.raw`'(?:(?:insert|update|delete|truncate)(?:, (?:insert|update|delete|truncate))*)?'`;
const SUPERUSER_PUBLICATION = new RegExp(
  String.raw`^(?:CREATE PUBLICATION ${IDENT} FOR ALL TABLES WITH \(publish = ${PUBLISH}(?:, publish_via_partition_root = true)?\)|ALTER PUBLICATION ${IDENT} ADD TABLES IN SCHEMA (${IDENT})|COMMENT ON PUBLICATION ${IDENT} IS ${LITERAL});$`,
);
function bySuperuser(entry: TocEntry): boolean {
  return (entry.kind === 'PUBLICATION' && / FOR ALL TABLES /.test(entry.sql)) || entry.kind === 'PUBLICATION TABLES IN SCHEMA' || (entry.kind === 'COMMENT' && entry.sql.startsWith('COMMENT ON PUBLICATION '));
}

/** CREATE DATABASE's errors for a locale or encoding the server cannot have (invalid locale name, encoding and locale that do not match). */
const LOCALE_REFUSED = new Set(['42809', '22023']);
const LOCALE_HINT =
  'A database restores with the encoding, locale and locale provider of its source, or not at all (another sort order would change ORDER BY, unique indexes and range partitions): install the locale on this server (locale-gen, an ICU-enabled build), or restore on a server that has it.';

/**
 * The encoding, locale and locale provider clauses of CREATE DATABASE, as `pg_dump --create` writes
 * them. The provider is always named on servers that have one: their default may be another.
 */
function localeClauses(from: DatabaseLocale, serverVersion: number, database: string): string {
  const clauses = [`ENCODING ${quoteLiteral(from.encoding)}`, `LC_COLLATE ${quoteLiteral(from.collate)}`, `LC_CTYPE ${quoteLiteral(from.ctype)}`];
  const provider = from.provider ?? 'libc';
  const needs = (version: number, what: string): void => {
    if (serverVersion >= version) return;
    throw new BackupError('RESTORE_FAILED', `This server cannot create ${database} with the source's encoding and locale (${describeLocale(from)}): ${what} needs PostgreSQL ${version / 10000} or newer`, {
      hint: LOCALE_HINT,
    });
  };
  if (provider === 'libc') return serverVersion >= 150000 ? [...clauses, 'LOCALE_PROVIDER libc'].join(' ') : clauses.join(' ');
  needs(provider === 'icu' ? 150000 : 170000, `the ${provider} locale provider`);
  clauses.push(`LOCALE_PROVIDER ${provider}`, `${provider === 'icu' ? 'ICU_LOCALE' : 'BUILTIN_LOCALE'} ${quoteLiteral(from.locale ?? '')}`);
  if (from.icuRules) {
    needs(160000, 'ICU_RULES');
    clauses.push(`ICU_RULES ${quoteLiteral(from.icuRules)}`);
  }
  return clauses.join(' ');
}

/**
 * The tablespaces the archive's objects are created in, checked to exist on the server before
 * anything is created: RESTORE_FAILED naming the missing ones otherwise.
 */
async function usableTablespaces(client: pg.Client, from: Toc, database: string): Promise<string[]> {
  const named = [...new Set(from.entries.flatMap((entry) => (entry.tablespace === undefined ? [] : [entry.tablespace])))];
  const wanted = from.database.tablespace === undefined ? named : [...new Set([...named, from.database.tablespace])];
  if (wanted.length === 0) return [];
  const { rows } = await client.query<{ name: string }>('SELECT spcname AS name FROM pg_catalog.pg_tablespace WHERE spcname = ANY($1)', [wanted]);
  const missing = wanted.filter((name) => !rows.some((row) => row.name === name)).sort();
  if (missing.length > 0) {
    throw new BackupError('RESTORE_FAILED', `This server lacks the tablespace(s) ${missing.join(', ')} that ${database}'s objects were in; nothing was restored`, {
      hint: "Create them on this server first (CREATE TABLESPACE … LOCATION '…'), or restore with `tablespaces: false` to put everything in the server's default tablespace, as pg_restore --no-tablespaces does.",
    });
  }
  return named;
}

function describeLocale(from: DatabaseLocale): string {
  const provider = from.provider ?? 'libc';
  return `${from.encoding}, LC_COLLATE ${from.collate}, LC_CTYPE ${from.ctype}, provider ${provider}${provider === 'libc' ? '' : ` ${from.locale ?? ''}`}${from.icuRules ? ' with rules' : ''}`;
}

/**
 * The filter condition each extension configuration table has in the restored database, as its
 * extension registered it: a verification reads the same rows back as the backup copied, with the
 * condition of the server's extension script, never one from the archive.
 */
const EXTENSION_CONDITIONS_SQL = `
  SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS qname, coalesce(x.cond, '') AS condition
    FROM pg_catalog.pg_extension e, unnest(e.extconfig, e.extcondition) AS x(rel, cond)
    JOIN pg_catalog.pg_class c ON c.oid = x.rel JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`;

/** Objects that make a database "not empty": anything a user created. */
const USER_OBJECTS_SQL = `
  WITH ns AS (SELECT oid, nspname FROM pg_namespace
               WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND nspname !~ '^pg_(toast_)?temp_')
  SELECT description FROM (
    SELECT 'relation ' || format('%I.%I', ns.nspname, c.relname) AS description FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
    UNION ALL SELECT 'routine ' || p.oid::regprocedure::text FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
    UNION ALL SELECT 'type ' || format('%I.%I', ns.nspname, t.typname) FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
               WHERE t.typrelid = 0 AND t.typcategory <> 'A'
    UNION ALL SELECT 'schema ' || quote_ident(nspname) FROM ns WHERE nspname <> 'public'
    UNION ALL SELECT 'extension ' || quote_ident(extname) FROM pg_extension WHERE extname <> 'plpgsql'
    UNION ALL SELECT 'large object ' || oid::text FROM pg_largeobject_metadata
    UNION ALL SELECT 'operator ' || o.oid::regoperator::text FROM pg_operator o JOIN ns ON ns.oid = o.oprnamespace
    UNION ALL SELECT 'text search configuration ' || c.oid::regconfig::text FROM pg_ts_config c JOIN ns ON ns.oid = c.cfgnamespace
    UNION ALL SELECT 'text search dictionary ' || d.oid::regdictionary::text FROM pg_ts_dict d JOIN ns ON ns.oid = d.dictnamespace
    UNION ALL SELECT 'operator family ' || quote_ident(f.opfname) FROM pg_opfamily f JOIN ns ON ns.oid = f.opfnamespace
    UNION ALL SELECT 'foreign-data wrapper ' || quote_ident(fdwname) FROM pg_foreign_data_wrapper
    UNION ALL SELECT 'foreign server ' || quote_ident(srvname) FROM pg_foreign_server
    UNION ALL SELECT 'publication ' || quote_ident(pubname) FROM pg_publication
    UNION ALL SELECT 'event trigger ' || quote_ident(evtname) FROM pg_event_trigger
    UNION ALL SELECT 'subscription ' || quote_ident(subname) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL SELECT 'default privileges of ' || quote_ident(pg_get_userbyid(defaclrole)) FROM pg_default_acl
  ) objects LIMIT 5`;


/**
 * One restore of a PostgreSQL source, as pg_restore does it, in phases: pre-data in dependency
 * order, data with parallel COPY FROM, sequence values, large objects, post-data (indexes and
 * constraints in parallel, then foreign keys, triggers, policies), grants, materialized view
 * refreshes, ANALYZE. Everything goes into a staging database created beside the target, renamed
 * into place at commit. Nothing reaches the server before the engine verified the archive
 * (`prepare`); connected as a superuser, the archive's SQL runs as a temporary role without
 * superuser rights.
 */
export class PostgresRestoreSink implements RestoreSink {
  private readonly staging: string;
  /** Set when the archive's SQL runs as a temporary role instead of the superuser connected. */
  private restricted: { role: string; password: string } | undefined;
  private roleCreated = false;
  /** The staging database's connections, `jobs` at most; opened by createStaging. */
  private sessions: SessionPool | undefined;
  /** By table entry, the rows and chunks loaded into each piece (one for a table not split). */
  private readonly rowsLoaded = new Map<number, Array<{ rows: number; chunks: number }>>();
  private toc: Toc | undefined;
  private tables = new Map<string, TocTable>();
  private summaries: TableDataSummary[] | undefined;
  // Nothing from the archive reaches the server before the engine verified the manifest (prepare):
  // until then table chunks and large objects wait, in memory or in a private spool folder, in archive order.
  private spool: string | undefined;
  /** By table entry, each piece's chunks (one piece for a table not split). */
  private readonly chunks = new Map<number, Held[][]>();
  private readonly blobs: Array<{ oid: number; held: Held }> = [];
  private spooled = 0;
  /** Bytes of the chunks and large objects held in memory (at most HELD_IN_MEMORY_BYTES). */
  private heldInMemory = 0;
  /** A split table whose pieces loaded side by side, in no known order: verify() cannot compare it. */
  private loadedUnordered: string | undefined;
  private created = false;
  private committed = false;
  private previousOwner: string | undefined;
  /** The archive whose entries are being written; `depth` 0 is the backup restored, which holds the schema. */
  private current: { archive: string; depth: number } = { archive: '', depth: 0 };
  /**
   * The `.ref` entries of the backup restored, by the archive holding the data and its path there
   * (a table's folder of chunks, a large object's file): taken from that archive when it is read,
   * and checked against the ref's SHA-256.
   */
  private readonly refs = new Map<string, Map<string, PendingRef>>();

  private constructor(
    private readonly target: ParsedTarget,
    private readonly signal: AbortSignal,
    private readonly tag: string,
    private readonly lease: Lease,
    /** The restore may be verified (verifyTables), which compares each table's text with the archive's in order. */
    private readonly inPageOrder: boolean,
  ) {
    this.staging = `${Buffer.from(target.database).subarray(0, 40).toString().replace(/\uFFFD+$/, '')}_backupkit_${tag}`;
  }

  /** Takes the restore's lease and sweeps what killed restores left behind. */
  static async begin(target: ParsedTarget, signal: AbortSignal, inPageOrder: boolean): Promise<PostgresRestoreSink> {
    const tag = newTag();
    const lease = await Lease.take(target.admin, tag);
    try {
      await dropServerLeftovers(lease.client);
      await removeAbandonedSpools();
    } catch (error) {
      await lease.release();
      throw error;
    }
    return new PostgresRestoreSink(target, signal, tag, lease, inPageOrder);
  }

  /**
   * The next archive of the chain, newest first. Only the newest's schema is restored; an older
   * archive gives only the rows its newer ones refer to.
   */
  async layer(layer: RestoreLayer): Promise<void> {
    this.checkLayerRefs();
    this.current = { archive: layer.archive, depth: layer.depth };
  }

  async write(entry: RestoreEntry): Promise<void> {
    if (this.current.depth > 0) return await this.writeOlder(entry);
    if (entry.type === 'directory') return;
    if (entry.type !== 'file') throw new BackupError('CORRUPT_ARCHIVE', `Unexpected ${entry.type} ${JSON.stringify(entry.path)} in a PostgreSQL source`);
    const chunk = /^(data\/[^/]+)\/(?:(\d{4})\/)?\d{6}\.copy$/.exec(entry.path);
    if (chunk) {
      const table = this.tables.get(chunk[1]!);
      if (!table) throw new BackupError('CORRUPT_ARCHIVE', `${entry.path} belongs to no table of toc.json`);
      const piece = chunk[2] === undefined ? 0 : Number(chunk[2]) - 1;
      if (piece < 0 || (chunk[2] !== undefined) !== (table.pieces !== undefined)) throw new BackupError('CORRUPT_ARCHIVE', `${entry.path} is no chunk of ${table.qualifiedName} as toc.json splits it`);
      // A piece's chunks load in archive order; see loadTables for the order of a split table's pieces.
      this.keepChunk(table, piece, await this.hold(entry));
      return;
    }
    const ref = /^(data\/[^/]+)\.ref$/.exec(entry.path);
    if (ref) {
      this.requireToc(entry.path);
      const table = this.tables.get(ref[1]!);
      if (!table) throw new BackupError('CORRUPT_ARCHIVE', `${entry.path} belongs to no table of toc.json`);
      const held = parseTableRef(await readAll(entry.body, MAX_METADATA_BYTES), entry.path);
      if (held.pieces === undefined) {
        this.expect(entry.path, held, `the rows of ${table.qualifiedName}`, held.chunks, (body) => this.keepChunk(table, 0, body));
        return;
      }
      // A split table's pieces are checked one by one, and with them the SHA-256 the ref records.
      if (piecesSha256(held.pieces) !== held.sha256) throw new BackupError('CORRUPT_ARCHIVE', `${entry.path}: the SHA-256 of its pieces is not the table's`);
      held.pieces.forEach((piece, i) => {
        const ref = { archive: held.archive, path: piecePath({ dataPath: held.path }, i), sha256: piece.sha256, bytes: piece.bytes };
        this.expect(entry.path, ref, `the rows of ${table.qualifiedName} (piece ${i + 1})`, piece.chunks, (body) => this.keepChunk(table, i, body));
      });
      return;
    }
    const blobRef = /^blobs\/(\d+)\.ref$/.exec(entry.path);
    if (blobRef) {
      this.requireToc(entry.path);
      const oid = Number(blobRef[1]);
      const held = parseLargeObjectRef(await readAll(entry.body, MAX_METADATA_BYTES), entry.path);
      this.expect(entry.path, held, `large object ${oid}`, 1, (body) => this.blobs.push({ oid, held: body }));
      return;
    }
    const blob = /^blobs\/(\d+)$/.exec(entry.path);
    if (blob) {
      this.requireToc(entry.path);
      this.blobs.push({ oid: Number(blob[1]), held: await this.hold(entry) });
      return;
    }
    switch (entry.path) {
      case 'toc.json': {
        if (this.toc) throw new BackupError('CORRUPT_ARCHIVE', 'A PostgreSQL source has two toc.json');
        this.toc = parseToc(await readAll(entry.body, MAX_METADATA_BYTES));
        this.tables = new Map(this.toc.tables.map((table) => [table.dataPath, table]));
        return;
      }
      case 'data.json':
        this.requireToc(entry.path);
        this.summaries = parseDataSummary(await readAll(entry.body, MAX_METADATA_BYTES));
        return;
      case 'schema.sql':
      case 'restore.sql':
        for await (const piece of entry.body) void piece;
        return;
      default:
        throw new BackupError('CORRUPT_ARCHIVE', `Unexpected entry ${JSON.stringify(entry.path)} in a PostgreSQL source`);
    }
  }

  private keepChunk(table: TocTable, piece: number, held: Held): void {
    const pieces = this.chunks.get(table.entry) ?? [];
    this.chunks.set(table.entry, pieces);
    (pieces[piece] ??= []).push(held);
  }

  /** Waits for the data a `.ref` of the backup restored names, in an older archive of the chain. */
  private expect(path: string, ref: DataRef, what: string, entries: number, keep: (held: Held) => void): void {
    if (ref.archive === this.current.archive) throw new BackupError('CORRUPT_ARCHIVE', `${path} refers to the archive it is in`);
    const inArchive = this.refs.get(ref.archive) ?? new Map<string, PendingRef>();
    this.refs.set(ref.archive, inArchive);
    inArchive.set(ref.path, { what, ref, entries, keep, hash: createHash('sha256'), received: 0 });
  }

  /** An entry of an older archive of the chain: data the restored backup refers to (kept), or anything else (skipped). */
  private async writeOlder(entry: RestoreEntry): Promise<void> {
    const chunk = /^(data\/[^/]+(?:\/\d{4})?)\/(\d{6})\.copy$/.exec(entry.path);
    const pending = entry.type === 'file' ? this.refs.get(this.current.archive)?.get(chunk ? chunk[1]! : entry.path) : undefined;
    if (!pending) {
      for await (const piece of entry.body) void piece;
      return;
    }
    if ((chunk ? Number(chunk[2]) : 1) !== pending.received + 1) {
      throw new BackupError('CORRUPT_ARCHIVE', `${entry.path} of archive ${this.current.archive} is out of order: ${pending.what} cannot be restored`);
    }
    pending.received += 1;
    pending.keep(await this.hold(entry, pending.hash));
  }

  /** Once an archive was read: everything the restored backup refers to in it was there, byte for byte. */
  private checkLayerRefs(): void {
    const { archive } = this.current;
    for (const pending of this.refs.get(archive)?.values() ?? []) {
      if (pending.received !== pending.entries || pending.hash.digest('hex') !== pending.ref.sha256) {
        throw new BackupError('CORRUPT_ARCHIVE', `Archive ${archive} does not hold ${pending.what} that the backup restored refers to (${pending.ref.path}: SHA-256 or chunk count differs)`, {
          hint: 'That archive of the chain was replaced or damaged: restore an earlier point, or a backup made after a new full one.',
        });
      }
    }
    this.refs.delete(archive);
  }

  async prepare(): Promise<void> {
    try {
      this.checkLayerRefs();
      const [unread] = this.refs;
      if (unread) {
        const [archive, pending] = unread;
        throw new BackupError('CORRUPT_ARCHIVE', `Archive ${archive}, which holds ${[...pending.values()][0]!.what}, is no part of the chain restored`, {
          hint: 'Restore from the destination that holds the whole chain, from its full backup on.',
        });
      }
      const from = this.requireToc('the end of the archive');
      const summaries = this.summaries;
      if (!summaries) throw new BackupError('CORRUPT_ARCHIVE', 'The PostgreSQL source has no data.json');
      const sessions = await this.createStaging(from);
      await this.runPreData(sessions, from);
      await this.loadTables(sessions, from, summaries);
      await sessions.use((main) => this.loadSequencesAndLargeObjects(main, from));
      await this.runPostData(sessions, from);
      await sessions.use((main) => this.finish(main, from));
      await this.analyze(sessions);
      await sessions.end();
      if (this.restricted) await this.handOver(from, this.restricted.role);
    } finally {
      await this.removeSpool();
    }
  }

  async verify(): Promise<VerifyCheck[]> {
    const restored = this.requireToc('verification');
    if (this.loadedUnordered !== undefined) {
      throw new BackupError('VERIFY_FAILED', `${this.loadedUnordered} was restored in pieces side by side, its rows in no known order: it cannot be compared with the archive's text`, {
        hint: 'A restore that is to be verified says so when it begins (`verified: true`, as verifyBackup does): its split tables then load in page order.',
      });
    }
    return [await verifyTables(this.target, restored, this.summaries ?? [], this.signal), await verifyLargeObjects(this.target, restored)];
  }

  async commit(): Promise<void> {
    const { target, staging } = this;
    const client = await this.admin();
    try {
      const { rows } = await client.query<{ owner: string }>('SELECT quote_ident(pg_get_userbyid(datdba)) AS owner FROM pg_database WHERE datname = $1', [target.database]);
      if (rows[0]) {
        // Checked again: someone may have created objects in it while the restore ran.
        await refuseUserObjects(target);
        this.previousOwner = rows[0].owner;
        await client.query(`DROP DATABASE ${quoteIdent(target.database)}`);
      }
      await client.query(`ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(target.database)}`);
      this.committed = true;
      if (this.previousOwner) await client.query(`ALTER DATABASE ${quoteIdent(target.database)} OWNER TO ${this.previousOwner}`);
    } catch (cause) {
      throw asBackupError(cause, 'RESTORE_FAILED', `Renaming the staging database ${staging} to ${target.database} failed`);
    } finally {
      await client.end().catch(() => {});
    }
    await this.lease.release();
  }

  async abort(): Promise<void> {
    const { target, staging } = this;
    await this.removeSpool();
    await this.sessions?.end().catch(() => {});
    if (!this.created && !this.roleCreated) return await this.lease.release();
    const client = await this.admin();
    try {
      if (this.created) {
        if (this.committed) await client.query(`ALTER DATABASE ${quoteIdent(target.database)} RENAME TO ${quoteIdent(staging)}`);
        await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(staging)} WITH (FORCE)`);
        if (this.previousOwner) await client.query(`CREATE DATABASE ${quoteIdent(target.database)} OWNER ${this.previousOwner}`);
      }
      await this.dropRole(client);
    } finally {
      await client.end().catch(() => {});
      await this.lease.release();
    }
  }

  /**
   * Creates the staging database with the source's encoding and locale, owned by a temporary role
   * when connected as a superuser, and the pool of sessions that restore into it.
   */
  private async createStaging(from: Toc): Promise<SessionPool> {
    const { target, staging } = this;
    const client = await this.admin();
    let owner = '';
    try {
      const { rows } = await client.query<{ superuser: boolean }>('SELECT rolsuper AS superuser FROM pg_catalog.pg_roles WHERE rolname = current_user');
      const superuserOnly = from.entries.filter((entry) => needsSuperuser(entry) || (!rows[0]?.superuser && bySuperuser(entry) && entry.kind !== 'COMMENT'));
      if (superuserOnly.length > 0 && !(rows[0]?.superuser && target.trustArchiveSql)) {
        throw new BackupError('RESTORE_FAILED', `The archive holds what only a superuser can create (${superuserOnly.slice(0, 5).map((entry) => `${entry.kind} ${entry.name}`).join(', ')}); nothing was restored`, {
          hint: rows[0]?.superuser
            ? "Connected as a superuser, a restore runs the archive's SQL as a temporary role without superuser rights, which cannot create these. If you made this archive and can vouch for it (signed, restored with verifySignature), restore it with `trustArchiveSql: true`."
            : 'Restore as a superuser with `trustArchiveSql: true`, if you can vouch for the archive (signed, restored with verifySignature).',
        });
      }
      const tablespaces = target.tablespaces ? await usableTablespaces(client, from, target.database) : [];
      if (rows[0]?.superuser && !target.trustArchiveSql) {
        this.restricted = { role: restoreRoleName(this.tag), password: randomBytes(24).toString('base64url') };
        await client.query(
          `CREATE ROLE ${quoteIdent(this.restricted.role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS PASSWORD ${quoteLiteral(scramVerifier(this.restricted.password))}`,
        );
        this.roleCreated = true;
        owner = ` OWNER ${quoteIdent(this.restricted.role)}`;
        // Taken back with the role (dropRole).
        for (const name of tablespaces) await client.query(`GRANT CREATE ON TABLESPACE ${quoteIdent(name)} TO ${quoteIdent(this.restricted.role)}`);
      }
      const { rows: [server] } = await client.query<{ num: number }>(`SELECT current_setting('server_version_num')::int AS num`);
      const locale = localeClauses(from.database, server!.num, target.database) + (target.tablespaces && from.database.tablespace ? ` TABLESPACE ${quoteIdent(from.database.tablespace)}` : '');
      // No fallback to the server's default locale: another sort order is a silent difference.
      await client.query(`CREATE DATABASE ${quoteIdent(staging)}${owner} TEMPLATE template0 ${locale}`).catch((cause: { code?: string; message?: string }) => {
        if (!LOCALE_REFUSED.has(cause.code ?? '')) throw cause;
        throw new BackupError('RESTORE_FAILED', `This server cannot create ${target.database} with the source's encoding and locale (${describeLocale(from.database)}): ${cause.message}`, {
          cause, hint: LOCALE_HINT,
        });
      });
      this.created = true;
    } catch (cause) {
      throw asBackupError(cause, 'RESTORE_FAILED', `Creating the staging database ${staging} failed`);
    } finally {
      await client.end().catch(() => {});
    }
    const restricted = this.restricted;
    const config = { ...clientConfig(target.connection, staging), ...(restricted ? { user: restricted.role, password: restricted.password } : {}) };
    this.sessions = await SessionPool.open(config, {
      max: target.jobs,
      settings: [...RESTORE_SETTINGS, ...clientEncoding(from), ASYNC_COMMIT],
      code: 'RESTORE_FAILED',
      describeConnectFailure: (error) =>
        restricted ? new BackupError('RESTORE_FAILED', `${error.message} as the temporary role ${restricted.role}`, { cause: error, hint: ROLE_LOGIN_HINT }) : error,
    });
    return this.sessions;
  }

  /**
   * Pre-data on `jobs` sessions at once, where pg_restore runs it on one: the entries in their order,
   * in batches, each sent once the batches that hold what its entries depend on are done (creating
   * 2,000 tables took most of the restore of a schema of small tables). A batch waits before it takes
   * a session, so that sessions never wait on one another.
   */
  private async runPreData(sessions: SessionPool, from: Toc): Promise<void> {
    const limit = pLimit(this.target.jobs);
    const preData = from.entries.filter((entry) => entry.section === 'pre-data');
    const batchOf = new Map<number, Promise<void>>();
    const batches: Array<Promise<void>> = [];
    for (let start = 0; start < preData.length; start += BATCH_ENTRIES) {
      const entries = preData.slice(start, start + BATCH_ENTRIES);
      // Dependencies within the batch run in order in it; one on a later entry (not the TOC's order) is not waited for.
      const before = new Set(entries.flatMap((entry) => entry.deps.flatMap((dep) => batchOf.get(dep) ?? [])));
      const batch = Promise.all(before).then(() => limit(() => sessions.use((client) => this.runEntries(client, entries))));
      for (const entry of entries) batchOf.set(entry.id, batch);
      batches.push(batch);
    }
    await Promise.all(batches);
  }

  /**
   * Every table's chunks on `jobs` sessions at once, the largest loads first, then the row counts of
   * each table and piece checked against data.json. A split table's pieces load side by side, unless
   * the restore may be verified: then one after the other in page order, so that its rows lie as they
   * were copied out and verifyTables compares its text with the archive's, byte for byte.
   */
  private async loadTables(sessions: SessionPool, from: Toc, summaries: readonly TableDataSummary[]): Promise<void> {
    const limit = pLimit(this.target.jobs);
    const byEntry = new Map(from.tables.map((table) => [table.entry, table]));
    const loads = [...this.chunks].flatMap(([entry, pieces]) => {
      const table = byEntry.get(entry)!;
      const each = [...pieces.entries()].map(([piece, held = []]) => ({ table, pieces: [{ piece, held }] }));
      return this.inPageOrder ? [{ table, pieces: each.flatMap((load) => load.pieces) }] : each;
    });
    if (!this.inPageOrder) this.loadedUnordered = loads.find((load) => (this.chunks.get(load.table.entry)?.length ?? 0) > 1)?.table.qualifiedName;
    const bytesOf = (load: (typeof loads)[number]): number => load.pieces.reduce((sum, { held }) => held.reduce((total, one) => total + heldBytes(one), sum), 0);
    loads.sort((a, b) => bytesOf(b) - bytesOf(a));
    await Promise.all(
      loads.map(({ table, pieces }) =>
        limit(() =>
          sessions.use(async (client) => {
            for (const { piece, held } of pieces) for (const one of held) await this.loadChunk(client, table, piece, one);
          }),
        ),
      ),
    );
    this.chunks.clear();
    for (const summary of summaries) {
      const name = byEntry.get(summary.entry)?.qualifiedName ?? `#${summary.entry}`;
      const loaded = this.rowsLoaded.get(summary.entry) ?? [];
      const expected: readonly DataFigures[] = summary.pieces ?? [summary];
      if (loaded.length > expected.length) throw new BackupError('CORRUPT_ARCHIVE', `${name}: chunks of ${loaded.length} pieces restored, the backup recorded ${expected.length}`);
      expected.forEach((figures, i) => {
        const { rows, chunks } = loaded[i] ?? { rows: 0, chunks: 0 };
        if (rows === figures.rows && chunks === figures.chunks) return;
        const what = summary.pieces ? `${name} (piece ${i + 1})` : name;
        throw new BackupError('CORRUPT_ARCHIVE', `${what}: ${rows} rows in ${chunks} chunks restored, the backup recorded ${figures.rows} in ${figures.chunks}`);
      });
    }
  }

  private async loadChunk(client: pg.Client, table: TocTable, piece: number, held: Held): Promise<void> {
    const { from: copyFrom } = await loadCopyStreams();
    const stream = client.query(copyFrom(`COPY ${copyTarget(table)} FROM STDIN`));
    try {
      await pipeline('data' in held ? Readable.from([held.data]) : createReadStream(held.file), stream, { signal: this.signal });
    } catch (cause) {
      if (this.signal.aborted) throw cause;
      throw asBackupError(cause, 'RESTORE_FAILED', `Loading rows into ${table.qualifiedName} failed`);
    }
    if ('file' in held) await rm(held.file);
    const pieces = this.rowsLoaded.get(table.entry) ?? [];
    this.rowsLoaded.set(table.entry, pieces);
    const loaded = pieces[piece] ?? { rows: 0, chunks: 0 };
    pieces[piece] = { rows: loaded.rows + stream.rowCount, chunks: loaded.chunks + 1 };
  }

  /** The data section's entries (sequence values), then large objects with their owners and comments. */
  private async loadSequencesAndLargeObjects(main: pg.Client, from: Toc): Promise<void> {
    await this.runEntries(main, from.entries.filter((entry) => entry.section === 'data'));
    for (const { oid, held } of this.blobs) await this.writeLargeObject(main, oid, held);
    this.blobs.length = 0;
    for (const lo of from.largeObjects) {
      if (this.target.ownership && !this.restricted) await this.run(main, `ALTER LARGE OBJECT ${lo.oid} OWNER TO ${lo.owner};`, `the owner of large object ${lo.oid}`);
      if (lo.comment !== null) await this.run(main, `COMMENT ON LARGE OBJECT ${lo.oid} IS ${quoteLiteral(lo.comment)};`, `the comment of large object ${lo.oid}`);
    }
  }

  private async writeLargeObject(client: pg.Client, oid: number, held: Held): Promise<void> {
    await this.run(client, `SELECT pg_catalog.lo_create(${oid})`, `large object ${oid}`);
    if ('data' in held) {
      for (let offset = 0; offset < held.data.length; offset += LARGE_OBJECT_PIECE) {
        await client.query('SELECT pg_catalog.lo_put($1, $2, $3)', [oid, offset, held.data.subarray(offset, offset + LARGE_OBJECT_PIECE)]);
      }
      return;
    }
    let offset = 0;
    for await (const piece of createReadStream(held.file, { highWaterMark: LARGE_OBJECT_PIECE, signal: this.signal })) {
      await client.query('SELECT pg_catalog.lo_put($1, $2, $3)', [oid, offset, piece]);
      offset += (piece as Buffer).length;
    }
    await rm(held.file);
  }

  /**
   * Indexes, constraints and statistics `jobs` at once, then the rest of post-data but grants and
   * refreshes in the TOC's order on one session (a partition's trigger mode must follow its parent's,
   * which no dependency says), but for foreign keys: each run of them in that order goes to the
   * `jobs` sessions side by side, as pg_restore -j does, each in a transaction of its own so that a
   * session never holds a batch's table locks while another waits for them (a foreign key locks
   * both of its tables, and two batches of them would deadlock).
   */
  private async runPostData(sessions: SessionPool, from: Toc): Promise<void> {
    const limit = pLimit(this.target.jobs);
    const postData = from.entries.filter((entry) => entry.section === 'post-data');
    const parallel = postData.filter((entry) => PARALLEL_POST_DATA.has(entry.kind));
    // Batches small enough to keep every session busy to the end: a few large index builds each run on their own.
    const size = Math.max(1, Math.min(BATCH_ENTRIES, Math.floor(parallel.length / (this.target.jobs * 4))));
    const batches = Array.from({ length: Math.ceil(parallel.length / size) }, (_, i) => parallel.slice(i * size, (i + 1) * size));
    await Promise.all(batches.map((batch) => limit(() => sessions.use((client) => this.runEntries(client, batch)))));
    const last = new Set([...GRANT_KINDS, 'MATERIALIZED VIEW DATA', 'EVENT TRIGGER']);
    const rest = postData.filter((entry) => !PARALLEL_POST_DATA.has(entry.kind) && !last.has(entry.kind));
    for (let start = 0; start < rest.length; ) {
      const foreignKeys = rest[start]!.kind === 'FK CONSTRAINT';
      let end = start;
      while (end < rest.length && (rest[end]!.kind === 'FK CONSTRAINT') === foreignKeys) end++;
      const run = rest.slice(start, end);
      start = end;
      if (foreignKeys) await Promise.all(run.map((entry) => limit(() => sessions.use((client) => this.runEntry(client, entry)))));
      else await sessions.use((main) => this.runEntries(main, run));
    }
  }

  /** Grants, materialized view refreshes (which may depend on them), event triggers. */
  private async finish(main: pg.Client, from: Toc): Promise<void> {
    const postData = from.entries.filter((entry) => entry.section === 'post-data');
    if (this.target.ownership) {
      // An extension's members belong to the superuser that ran its script, and the temporary role cannot act as
      // another grantor (SET ROLE): those grants wait for handOver().
      for (const entry of postData) if (GRANT_KINDS.has(entry.kind) && !(this.restricted && SUPERUSER_GRANT_KINDS.has(entry.kind))) await this.runGrants(main, entry);
      for (const lo of from.largeObjects) if (lo.acl !== null) await this.run(main, lo.acl, `the grants of large object ${lo.oid}`);
    }
    for (const entry of postData) if (entry.kind === 'MATERIALIZED VIEW DATA') await this.runEntry(main, entry);
    // Last of the archive's SQL: an event trigger that blocks schema changes (GRANT, REFRESH…) must not block the restore.
    for (const entry of postData) if (entry.kind === 'EVENT TRIGGER') await this.runEntry(main, entry);
  }

  /** Statistics of every table, as after a load they have none: `jobs` sessions each analyze their share of the tables. */
  private async analyze(sessions: SessionPool): Promise<void> {
    const { rows } = await sessions.use((client) => client.query<{ name: string }>(ANALYZED_TABLES_SQL));
    const jobs = this.target.jobs;
    const shares = Array.from({ length: jobs }, (_, job) => rows.filter((_row, i) => i % jobs === job).map((row) => row.name));
    await Promise.all(
      shares.map((names) =>
        sessions.use(async (client) => {
          for (let i = 0; i < names.length; i += 1000) await this.run(client, `ANALYZE ${names.slice(i, i + 1000).join(', ')}`, 'statistics (ANALYZE)');
        }),
      ),
    );
  }

  /**
   * As the superuser, once the temporary role's sessions are over: gives each object the owner the
   * archive names (statements of the one shape backupkit writes, nothing else), the rest to the
   * connected role, then drops the temporary role.
   */
  private async handOver(from: Toc, role: string): Promise<void> {
    const { target } = this;
    const client = await connect(clientConfig(target.connection, this.staging), 'RESTORE_FAILED');
    try {
      for (const setting of RESTORE_SETTINGS) await client.query(setting);
      // Extensions that come with the template (plpgsql) belong to the bootstrap superuser.
      for (const entry of from.entries) if (isExtensionComment(entry)) await this.run(client, entry.sql, `${entry.kind} ${entry.name}`);
      // Before the owners: a publication FOR ALL TABLES gets its owner (a superuser, as it must be) there.
      for (const entry of from.entries) if (bySuperuser(entry)) await this.run(client, checkedPublication(entry), `${entry.kind} ${entry.name}`);
      if (target.ownership) {
        const owned = from.entries.filter((entry) => entry.owner !== undefined);
        // Checked one by one, sent in batches (one round trip each); a batch that fails is run again statement by statement.
        const statements = owned.map((entry) => checkedOwnerStatement(entry.owner!));
        for (let start = 0; start < owned.length; start += BATCH_ENTRIES) {
          // A sequence owned by a column follows its table's owner, and refuses one of its own: that error is expected.
          const failed = await client.query(statements.slice(start, start + BATCH_ENTRIES).join('\n')).then(() => false, () => true);
          if (!failed) continue;
          for (const [i, entry] of owned.slice(start, start + BATCH_ENTRIES).entries()) {
            await client.query(statements[start + i]!).catch((cause: { code?: string }) => {
              if (entry.kind === 'SEQUENCE' && cause.code === FEATURE_NOT_SUPPORTED) return;
              throw asBackupError(cause, 'RESTORE_FAILED', `Restoring the owner of ${entry.kind} ${entry.name} into ${target.database} failed`);
            });
          }
        }
        for (const lo of from.largeObjects) {
          await this.run(client, `ALTER LARGE OBJECT ${checkedOid(lo.oid)} OWNER TO ${checkedRole(lo.owner)};`, `the owner of large object ${lo.oid}`);
        }
        for (const entry of from.entries) {
          if (!SUPERUSER_GRANT_KINDS.has(entry.kind)) continue;
          await this.runGrants(client, entry, await checkedGrants(client, entry));
          await client.query('RESET ROLE');
        }
      }
      await this.run(client, `REASSIGN OWNED BY ${quoteIdent(role)} TO CURRENT_USER; DROP OWNED BY ${quoteIdent(role)}`, `the objects of the temporary role ${role}`);
    } finally {
      await client.end().catch(() => {});
    }
    await this.dropRole(this.lease.client);
  }

  private async dropRole(client: pg.Client): Promise<void> {
    if (!this.roleCreated || !this.restricted) return;
    await revokeTablespaces(client, this.restricted.role);
    await client.query(`DROP ROLE IF EXISTS ${quoteIdent(this.restricted.role)}`);
    this.roleCreated = false;
  }

  private admin(): Promise<pg.Client> {
    return connect(this.target.admin, 'RESTORE_FAILED');
  }

  private async run(client: pg.Client, sql: string, what: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await client.query(sql);
        return;
      } catch (cause) {
        // Parallel index builds can deadlock on partitioned tables; the loser simply retries.
        const code = (cause as { code?: string }).code;
        if (code === DEADLOCK_DETECTED && attempt < 3) continue;
        if (this.signal.aborted) throw cause;
        const hint = code === INSUFFICIENT_PRIVILEGE && this.restricted ? UNPRIVILEGED_HINT : undefined;
        throw asBackupError(cause, 'RESTORE_FAILED', `Restoring ${what} into ${this.target.database} failed`, hint);
      }
    }
  }

  /**
   * Runs grant statements, failing where the server would only warn that a GRANT or REVOKE changed
   * nothing (the restoring role does not own the object): a restore must not end with other rights.
   */
  private async runGrants(client: pg.Client, entry: TocEntry, sql = entry.sql): Promise<void> {
    const unchanged: string[] = [];
    const listen = (notice: { code?: string; message?: string }): void => {
      if (notice.code && PRIVILEGE_NOT_CHANGED.has(notice.code)) unchanged.push(notice.message ?? notice.code);
    };
    client.on('notice', listen);
    try {
      await this.run(client, sql, `the grants of ${entry.name}`);
    } finally {
      client.off('notice', listen);
    }
    if (unchanged.length > 0) {
      throw new BackupError('RESTORE_FAILED', `Restoring the grants of ${entry.name} into ${this.target.database} failed: ${unchanged[0]}`, {
        hint: 'The restoring role does not own this object. Restore as a superuser, or with `ownership: false` to skip owners and grants.',
      });
    }
  }

  private async runEntry(client: pg.Client, entry: TocEntry): Promise<void> {
    const what = `${entry.kind} ${entry.schema === null ? '' : `${entry.schema}.`}${entry.name}`;
    if (this.skipped(entry)) return;
    await this.run(client, this.target.tablespaces ? inTablespace(entry) : entry.sql, what);
    if (this.ownerHere(entry)) await this.run(client, entry.owner!, `the owner of ${what}`);
  }

  /** Entries the superuser runs in handOver(), not the temporary role. */
  private skipped(entry: TocEntry): boolean {
    return this.restricted !== undefined && (isExtensionComment(entry) || bySuperuser(entry));
  }

  /** A temporary role cannot give objects away: the superuser does, once the archive's SQL is done. */
  private ownerHere(entry: TocEntry): boolean {
    return entry.owner !== undefined && this.target.ownership && !this.restricted;
  }

  /**
   * Runs entries in order as runEntry() does, BATCH_ENTRIES at a time in one simple query, which
   * the server runs as one transaction. A batch that fails was rolled back whole, and is run again
   * one entry at a time, so that the error names its entry. Entries only a superuser creates (a
   * subscription cannot be created inside a transaction) run on their own.
   */
  private async runEntries(client: pg.Client, entries: readonly TocEntry[]): Promise<void> {
    const pending = entries.filter((entry) => !this.skipped(entry));
    for (let start = 0; start < pending.length; ) {
      if (needsSuperuser(pending[start]!)) {
        await this.runEntry(client, pending[start++]!);
        continue;
      }
      const batch: TocEntry[] = [];
      while (start < pending.length && batch.length < BATCH_ENTRIES && !needsSuperuser(pending[start]!)) batch.push(pending[start++]!);
      if (batch.length === 1) {
        await this.runEntry(client, batch[0]!);
        continue;
      }
      // A newline ends a trailing `--` comment before the `;` that ends each entry.
      const sql = batch.flatMap((entry) => [this.target.tablespaces ? inTablespace(entry) : entry.sql, ...(this.ownerHere(entry) ? [entry.owner!] : [])]).join('\n;\n');
      const failed = await client.query(sql).then(() => false, () => true);
      if (failed) for (const entry of batch) await this.runEntry(client, entry);
    }
  }

  /** Keeps an entry's body until prepare(): in memory when small and the total allows, else in the spool folder (free space checked first). */
  private async hold(entry: RestoreEntry, hash?: Hash): Promise<Held> {
    const body = hash ? hashing(entry.body, hash) : entry.body;
    if (entry.size <= SMALL_ENTRY_BYTES && this.heldInMemory + entry.size <= HELD_IN_MEMORY_BYTES) {
      this.heldInMemory += entry.size;
      return { data: await readLimited(body, entry.size, () => new BackupError('CORRUPT_ARCHIVE', `${entry.path} of a PostgreSQL source is larger than its ${entry.size} bytes`)) };
    }
    this.spool ??= await makeSpoolFolder();
    await ensureSpace(this.spool, entry.size, `${entry.path} of PostgreSQL source`);
    const file = join(this.spool, String(++this.spooled));
    await pipeline(body, createWriteStream(file, { flags: 'wx', mode: 0o600 }), { signal: this.signal });
    return { file, bytes: entry.size };
  }

  private async removeSpool(): Promise<void> {
    if (this.spool !== undefined) await rm(this.spool, { recursive: true, force: true });
    this.spool = undefined;
  }

  private requireToc(path: string): Toc {
    if (!this.toc) throw new BackupError('CORRUPT_ARCHIVE', `${path} comes before toc.json in a PostgreSQL source`);
    return this.toc;
  }
}

/** A chunk or large object waiting for prepare(): its bytes, or the spool file that holds them. */
type Held = { readonly data: Buffer } | { readonly file: string; readonly bytes: number };

function heldBytes(held: Held): number {
  return 'data' in held ? held.data.length : held.bytes;
}

/** A `.ref` entry of the backup restored, waiting for the older archive that holds its table's rows. */
interface PendingRef {
  /** For messages: `the rows of public.t0`, `large object 16400`. */
  readonly what: string;
  readonly ref: DataRef;
  /** How many entries hold it: a table's chunks, or a large object's one file. */
  readonly entries: number;
  /** Takes the next entry, held. */
  readonly keep: (held: Held) => void;
  /** Of the entries received so far, in order. */
  readonly hash: Hash;
  received: number;
}

async function* hashing(body: AsyncIterable<Uint8Array>, hash: Hash): AsyncGenerator<Uint8Array> {
  for await (const piece of body) {
    hash.update(piece);
    yield piece;
  }
}

/**
 * COPYs every table of the restored database out again and compares its text with the archive's:
 * same row count, same SHA-256. With the backup's output settings the server prints each value as
 * it did then, and rows lie in the order they were loaded.
 */
async function verifyTables(target: ParsedTarget, toc: Toc, summaries: readonly TableDataSummary[], signal: AbortSignal): Promise<VerifyCheck> {
  const byEntry = new Map(toc.tables.map((table) => [table.entry, table]));
  const problems: string[] = [];
  let rows = 0;
  let bytes = 0;
  const sessions = await SessionPool.open(clientConfig(target.connection, target.database), {
    max: target.jobs,
    // A synchronized scan may start mid-table; the comparison needs rows from the first page on.
    settings: [...OUTPUT_SETTINGS, ...clientEncoding(toc), 'SET synchronize_seqscans = off'],
    code: 'RESTORE_FAILED',
  });
  const limit = pLimit(target.jobs);
  try {
    const conditions = toc.tables.some((table) => table.condition !== undefined)
      ? new Map((await sessions.use((client) => client.query<{ qname: string; condition: string }>(EXTENSION_CONDITIONS_SQL))).rows.map((row) => [row.qname, row.condition]))
      : new Map<string, string>();
    await Promise.all(
      summaries.map((summary) =>
        limit(async () => {
          if (signal.aborted) throw signal.reason;
          const archived = byEntry.get(summary.entry);
          if (!archived) return void problems.push(`data.json names table #${summary.entry}, which toc.json lacks`);
          // An extension configuration table's rows are read back with the restored database's condition.
          const { condition: archivedCondition, ...plain } = archived;
          const condition = archivedCondition === undefined ? undefined : conditions.get(plain.qualifiedName);
          if (archivedCondition !== undefined && condition === undefined) return void problems.push(`${plain.qualifiedName} is no extension's configuration table in the restored database`);
          const table: TocTable = condition ? { ...plain, condition } : plain;
          // A split table's text is hashed piece by piece, at the byte counts the backup recorded.
          const pieces = summary.pieces ? new PieceHashes(summary.pieces.map((piece) => piece.bytes)) : undefined;
          const found = await sessions.use((client) => copyTableOut(client, table, VERIFY_CHUNK_BYTES, async (chunk) => pieces?.update(chunk)));
          rows += found.rows;
          bytes += found.bytes;
          const sha256 = pieces && found.bytes === summary.bytes ? pieces.digest() : found.sha256;
          if (found.rows !== summary.rows) problems.push(`${table.qualifiedName} holds ${found.rows} rows, the backup holds ${summary.rows}`);
          else if (sha256 !== summary.sha256) problems.push(`${table.qualifiedName} differs from the backup (SHA-256 of its COPY text)`);
        }),
      ),
    );
  } catch (cause) {
    if (signal.aborted) throw cause;
    throw asBackupError(cause, 'RESTORE_FAILED', `Reading the restored database ${target.database} back failed`);
  } finally {
    await sessions.end().catch(() => {});
  }
  return { name: 'table rows and contents', figures: { tables: summaries.length, rows, bytes }, problems };
}

/** The SHA-256 of a split table's COPY text read back whole, as {@link piecesSha256} of pieces of the recorded sizes. */
class PieceHashes {
  private readonly digests: Array<{ sha256: string }> = [];
  private hash = createHash('sha256');
  private left: number;

  constructor(private readonly sizes: readonly number[]) {
    this.left = sizes[0] ?? 0;
  }

  update(chunk: Buffer): void {
    for (let rest = chunk; rest.length > 0; ) {
      this.nextWhileFull();
      // More text than the pieces hold: the byte counts differ, and are compared instead.
      if (this.digests.length === this.sizes.length) return;
      const take = Math.min(this.left, rest.length);
      this.hash.update(rest.subarray(0, take));
      this.left -= take;
      rest = rest.subarray(take);
    }
  }

  digest(): string {
    this.nextWhileFull();
    return piecesSha256(this.digests);
  }

  private nextWhileFull(): void {
    while (this.left === 0 && this.digests.length < this.sizes.length) {
      this.digests.push({ sha256: this.hash.digest('hex') });
      this.hash = createHash('sha256');
      this.left = this.sizes[this.digests.length] ?? 0;
    }
  }
}

async function verifyLargeObjects(target: ParsedTarget, toc: Toc): Promise<VerifyCheck> {
  const client = await connect(clientConfig(target.connection, target.database), 'RESTORE_FAILED');
  try {
    const { rows } = await client.query<{ oid: number; size: string }>(
      'SELECT m.oid::int8 AS oid, coalesce(sum(length(d.data)), 0) AS size FROM pg_largeobject_metadata m LEFT JOIN pg_largeobject d ON d.loid = m.oid GROUP BY m.oid',
    );
    const found = new Map(rows.map((row) => [Number(row.oid), Number(row.size)]));
    const problems: string[] = [];
    for (const lo of toc.largeObjects) {
      const size = found.get(lo.oid);
      if (size === undefined) problems.push(`large object ${lo.oid} is missing`);
      else if (size !== lo.size) problems.push(`large object ${lo.oid} holds ${size} bytes, the backup ${lo.size}`);
    }
    if (found.size > toc.largeObjects.length) problems.push(`${found.size - toc.largeObjects.length} large objects that the backup does not hold`);
    return { name: 'large objects', figures: { largeObjects: found.size }, problems };
  } finally {
    await client.end().catch(() => {});
  }
}

/** TARGET_NOT_EMPTY if the target database exists and holds anything a user created. */
export async function refuseNonEmpty(target: ParsedTarget): Promise<void> {
  const admin = await connect(target.admin, 'RESTORE_FAILED');
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [target.database]);
    if (!rowCount) return;
  } finally {
    await admin.end().catch(() => {});
  }
  await refuseUserObjects(target);
}

/** TARGET_NOT_EMPTY if the existing target database holds anything a user created. */
async function refuseUserObjects(target: ParsedTarget): Promise<void> {
  const client = await connect(clientConfig(target.connection, target.database), 'RESTORE_FAILED');
  try {
    const { rows } = await client.query<{ description: string }>(USER_OBJECTS_SQL);
    if (rows.length > 0) {
      throw new BackupError('TARGET_NOT_EMPTY', `Database ${target.database} is not empty (${rows.map((row) => row.description).join(', ')}); nothing was restored`, {
        hint: 'Restore into a new database name, or drop this database first if its contents are not needed.',
      });
    }
  } finally {
    await client.end().catch(() => {});
  }
}

function parseToc(data: Buffer): Toc {
  const toc = parseJsonEntry(data, 'toc.json') as Toc;
  if (!(TOC_FORMAT_VERSIONS as readonly unknown[]).includes(toc?.formatVersion)) {
    throw new BackupError('UNSUPPORTED_FORMAT', `toc.json has format version ${JSON.stringify(toc?.formatVersion)}; this backupkit reads versions ${TOC_FORMAT_VERSIONS.join(' and ')}`);
  }
  if (!Array.isArray(toc.entries) || !Array.isArray(toc.tables) || !Array.isArray(toc.largeObjects)) {
    throw new BackupError('CORRUPT_ARCHIVE', 'toc.json of a PostgreSQL source lacks entries, tables or largeObjects');
  }
  return toc;
}

function parseDataSummary(data: Buffer): TableDataSummary[] {
  const parsed = parseJsonEntry(data, 'data.json') as { tables?: unknown };
  if (!Array.isArray(parsed?.tables)) throw new BackupError('CORRUPT_ARCHIVE', 'data.json of a PostgreSQL source lacks its tables');
  return parsed.tables as TableDataSummary[];
}

function parseJsonEntry(data: Buffer, name: string): unknown {
  try {
    return JSON.parse(data.toString());
  } catch (cause) {
    throw new BackupError('CORRUPT_ARCHIVE', `${name} of a PostgreSQL source is not JSON`, { cause });
  }
}


/** A comment on an extension, in the one shape backupkit writes: safe to run as the superuser. */
function isExtensionComment(entry: TocEntry): boolean {
  return entry.kind === 'COMMENT' && EXTENSION_COMMENT.test(entry.sql);
}

function checkedPublication(entry: TocEntry): string {
  const match = SUPERUSER_PUBLICATION.exec(entry.sql);
  if (!match || /^"?(pg_|information_schema"?$)/.test(match[1] ?? '')) {
    throw new BackupError('UNSAFE_ARCHIVE', `toc.json of a PostgreSQL source holds a publication statement backupkit does not write: ${JSON.stringify(entry.sql.slice(0, 200))}; nothing was restored`, {
      hint: 'Publications of every table or of a schema are created by the superuser, so only the statements backupkit writes are accepted. Find out who crafted this archive.',
    });
  }
  return entry.sql;
}

function checkedOwnerStatement(statement: string): string {
  if (!OWNER_STATEMENT.test(statement)) throw unsafeOwner(statement);
  return statement;
}

/**
 * The grants the superuser runs, checked: only the shapes backupkit writes, on objects of the archive
 * (an extension's members for an EXTENSION ACL), never on the system's.
 */
async function checkedGrants(client: pg.Client, entry: TocEntry): Promise<string> {
  const unsafe = (statement: string, why: string): BackupError =>
    new BackupError('UNSAFE_ARCHIVE', `toc.json of a PostgreSQL source holds a grant statement ${why}: ${JSON.stringify(statement.slice(0, 200))}; nothing was restored`, {
      hint: 'Grants on extension members and by other grantors are run as the superuser, so only `GRANT|REVOKE … ON <kind> <name> …;` and `SET|RESET ROLE` on objects of the archive are accepted. Restore with `ownership: false`, or find out who crafted this archive.',
    });
  for (const statement of entry.sql.split('\n')) {
    if (entry.kind === 'DEFAULT ACL') {
      const defaults = DEFAULT_PRIVILEGES_STATEMENT.exec(statement);
      if (!defaults) throw unsafe(statement, 'backupkit does not write');
      if (/^"?(pg_|information_schema"?$)/.test(defaults[1] ?? '')) throw unsafe(statement, 'on a schema of the system');
      continue;
    }
    const match = GRANT_STATEMENT.exec(statement);
    if (!match) throw unsafe(statement, 'backupkit does not write');
    const target = match[1] ?? match[2];
    if (target === undefined) continue; // SET ROLE, RESET ROLE
    const space = target.indexOf(' ');
    const { rows } = await client.query<{ schema: string; member: boolean }>(GRANT_OBJECT_SQL, [target.slice(0, space), target.slice(space + 1)]);
    const object = rows[0];
    if (!object) continue; // no such object: the statement fails as it would anyway
    if (/^(pg_|information_schema$)/.test(object.schema)) throw unsafe(statement, 'on an object of the system');
    if (entry.kind === 'EXTENSION ACL' && !object.member) throw unsafe(statement, 'on an object that belongs to no extension');
  }
  return entry.sql;
}

function checkedRole(role: string): string {
  if (typeof role !== 'string' || !ROLE_NAME.test(role)) throw unsafeOwner(String(role));
  return role;
}

function checkedOid(oid: number): number {
  if (!Number.isSafeInteger(oid) || oid < 0) throw new BackupError('UNSAFE_ARCHIVE', `toc.json of a PostgreSQL source names a large object ${JSON.stringify(oid)}`);
  return oid;
}

function unsafeOwner(statement: string): BackupError {
  return new BackupError('UNSAFE_ARCHIVE', `toc.json of a PostgreSQL source holds an owner statement backupkit does not write: ${JSON.stringify(statement.slice(0, 200))}; nothing was restored`, {
    hint: 'Owners are given as the superuser, so only `ALTER <kind> <name> OWNER TO <role>;` is accepted. Restore with `ownership: false`, or find out who crafted this archive.',
  });
}

function readAll(body: AsyncIterable<Uint8Array>, limit: number): Promise<Buffer> {
  return readLimited(body, limit, () => new BackupError('CORRUPT_ARCHIVE', `An entry of a PostgreSQL source is larger than ${limit} bytes`));
}
