/**
 * Schema capture without pg_dump: reads the catalogs inside the snapshot transaction and writes
 * each object with the server's own deparse functions (pg_get_indexdef, pg_get_viewdef, …), with
 * search_path set to '' so every name comes out schema-qualified. Each reader adds the entries of
 * one concern to a shared CatalogBuilder; dependencies.ts orders them.
 */
import type pg from 'pg';
import { BackupError } from '../../../errors.js';
import type { LargeObjectInfo, Toc, TocEntry, TocTable } from '../toc.js';
import { CatalogBuilder, notExtensionMember } from './builder.js';
import { readDependencies, sortedEntries } from './dependencies.js';
import { readDefaultPrivileges, readEventTriggers, readPublications, readSubscriptions } from './database-wide.js';
import { readExtensionConfig } from './extension-config.js';
import { readForeignData } from './foreign-data.js';
import { readLargeObjects } from './large-objects.js';
import { readOperatorClasses, readOperators, readTextSearch } from './operators.js';
import { POST_DATA_READERS } from './post-data.js';
import { lockTables, refuseOldServer, refuseUncovered } from './preflight.js';
import { aclSql } from './privileges.js';
import { readRelations } from './relations.js';
import { readCasts, readRoutines } from './routines.js';
import { addSchemas, readCollations, readExtensions, type NamespaceRow } from './schemas.js';
import { BYTES_ENCODING, carryCommentBytes, readAsBytes, refuseOtherBytes } from './sql-ascii.js';
import { CatalogSessions } from './sessions.js';
import { readTablespaces } from './tablespaces.js';
import { readTypes } from './types.js';

/**
 * Checks that the backup can succeed, locks every table, then reads the whole schema. Call inside
 * the snapshot transaction, with search_path ''.
 */
export async function readCatalog(
  client: pg.Client,
  options: { schemas?: readonly string[] | undefined; lockTimeoutMs: number; warn: (warning: { code: 'SKIPPED'; message: string }) => void; helpers: CatalogHelpers },
): Promise<Toc> {
  const bytes = await readAsBytes(client);
  const sessions = new CatalogSessions(client);
  const { count, open, setup } = options.helpers;
  sessions.addHelpers(count, open, [...setup, ...(bytes ? [BYTES_ENCODING] : [])].join(';\n'));
  try {
    return await readWithSessions(client, sessions, bytes, options);
  } finally {
    await sessions.end();
  }
}

/**
 * Connections that read the catalogs beside the snapshot's own: `open` connects one, `setup`
 * imports the snapshot in a transaction and applies its settings.
 */
export interface CatalogHelpers {
  readonly count: number;
  readonly open: () => Promise<pg.Client>;
  readonly setup: readonly string[];
}

async function readWithSessions(
  client: pg.Client, sessions: CatalogSessions, bytes: boolean,
  options: { schemas?: readonly string[] | undefined; lockTimeoutMs: number; warn: (warning: { code: 'SKIPPED'; message: string }) => void },
): Promise<Toc> {
  const { schemas } = options;
  const q = async <T extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> => (await client.query<T>(sql, params)).rows;

  const [server] = await q<{
    version: string; num: number; db: string; encoding: string; collate: string; ctype: string; provider: string | null; locale: string | null; rules: string | null; tablespace: string;
  }>(`
    SELECT current_setting('server_version') AS version, current_setting('server_version_num')::int AS num,
           d.datname AS db, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate, d.datctype AS ctype,
           -- Columns of PostgreSQL 15 (datlocprovider, daticulocale), 16 (daticurules) and 17 (datlocale), read by name.
           to_jsonb(d)->>'datlocprovider' AS provider, coalesce(to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale') AS locale,
           to_jsonb(d)->>'daticurules' AS rules, (SELECT spcname FROM pg_tablespace WHERE oid = d.dattablespace) AS tablespace
      FROM pg_database d WHERE d.datname = current_database()`);
  const classIds = Object.fromEntries(
    (await q<{ name: string; oid: number }>(`
      SELECT relname AS name, oid::int AS oid FROM pg_class
       WHERE relnamespace = 'pg_catalog'::regnamespace AND relname = ANY($1)`, [
      ['pg_class', 'pg_type', 'pg_proc', 'pg_namespace', 'pg_constraint', 'pg_attrdef', 'pg_rewrite', 'pg_trigger', 'pg_policy', 'pg_extension', 'pg_collation', 'pg_statistic_ext',
       'pg_operator', 'pg_ts_dict', 'pg_ts_config', 'pg_event_trigger', 'pg_publication', 'pg_publication_rel', 'pg_publication_namespace', 'pg_default_acl',
       'pg_foreign_data_wrapper', 'pg_foreign_server', 'pg_user_mapping', 'pg_opclass', 'pg_opfamily', 'pg_amop', 'pg_amproc', 'pg_cast', 'pg_subscription'],
    ])).map((row) => [row.name, row.oid]),
  ) as Record<string, number>;
  const namespaceRows = await q<NamespaceRow>(`
    SELECT n.oid::int AS oid, n.nspname AS name, quote_ident(n.nspname) AS ident, quote_ident(pg_get_userbyid(n.nspowner)) AS owner,
           ${aclSql('n.nspacl')} AS acl, obj_description(n.oid, 'pg_namespace') AS comment
      FROM pg_namespace n
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_(toast_)?temp_'
       AND ($1::text[] IS NULL OR n.nspname = ANY($1))
       AND ${notExtensionMember('pg_namespace', 'n.oid')}
     ORDER BY n.nspname`, [schemas ?? null]);
  const namespaces = namespaceRows.map((row) => row.oid);
  if (schemas) {
    const missing = schemas.filter((name) => !namespaceRows.some((row) => row.name === name));
    if (missing.length > 0) throw new BackupError('INVALID_OPTIONS', `Schema(s) ${missing.join(', ')} do not exist in database ${server!.db}`);
  }

  refuseOldServer(server!.version, server!.num);
  const b = CatalogBuilder.create(sessions, namespaces, classIds, server!.num, schemas === undefined, options.warn);
  await refuseUncovered(b);
  await lockTables(client, namespaces, options.lockTimeoutMs);

  addSchemas(b, namespaceRows);
  let relations!: Awaited<ReturnType<typeof readRelations>>;
  let configTables!: TocTable[];
  let entries!: TocEntry[];
  let largeObjects!: LargeObjectInfo[];
  await b.readInOrder([
    readExtensions, readCollations, readForeignData, readTypes, readRoutines, readCasts, readOperators, readOperatorClasses, readTextSearch,
    async (lane) => (relations = await readRelations(lane)),
    ...POST_DATA_READERS,
    readPublications, readSubscriptions, readDefaultPrivileges, readEventTriggers, readTablespaces,
    async (lane) => (configTables = await readExtensionConfig(lane)),
    ...(bytes ? [carryCommentBytes] : []),
    async (lane) => {
      const dependencies = await readDependencies(lane);
      entries = await sortedEntries(lane, dependencies, schemas, relations.sequenceValues);
    },
    async (lane) => (largeObjects = await readLargeObjects(lane)),
  ]);
  const { tables } = relations;
  const toc: Toc = {
    formatVersion: 1,
    server: { version: server!.version, versionNum: server!.num },
    database: {
      name: server!.db, encoding: server!.encoding, collate: server!.collate, ctype: server!.ctype,
      provider: ({ i: 'icu', b: 'builtin' } as const)[server!.provider ?? ''] ?? 'libc', locale: server!.locale, icuRules: server!.rules,
      ...(server!.tablespace === 'pg_default' ? {} : { tablespace: server!.tablespace }),
    },
    entries,
    tables: [...tables, ...configTables],
    largeObjects,
  };
  if (bytes) refuseOtherBytes(toc);
  return toc;
}
