/** The checks that make a backup fail early and clearly, and the table locks, as pg_dump takes them. */
import type pg from 'pg';
import { BackupError } from '../../../errors.js';
import { FIRST_NORMAL_OID, notExtensionMember, type CatalogBuilder } from './builder.js';

/** Oldest server whose catalogs backupkit reads (pg_dump supports older ones; we do not test them). */
const MIN_SERVER_VERSION = 120000;

export function refuseOldServer(version: string, versionNum: number): void {
  if (versionNum < MIN_SERVER_VERSION) {
    throw new BackupError('SOURCE_FAILED', `PostgreSQL ${version} is not supported: backupkit needs PostgreSQL 12 or newer`, {
      hint: 'Upgrade the server, or back this database up with the pg_dump of its version.',
    });
  }
}

/**
 * Fails the backup when the database holds kinds of objects that backupkit does not capture yet: a
 * backup that silently lost them would be found out only at restore time.
 */
export async function refuseUncovered(b: CatalogBuilder): Promise<void> {
  const [row] = await b.query<{ found: string[] | null }>(`
    SELECT array_remove(ARRAY[
      -- Parsers and templates are made of C functions, by a superuser; dictionaries and configurations on them are covered.
      (SELECT 'text search parsers or templates' FROM pg_ts_parser WHERE prsnamespace = ANY($1) AND ${notExtensionMember('pg_ts_parser', 'oid')}
        UNION ALL SELECT 'text search parsers or templates' FROM pg_ts_template WHERE tmplnamespace = ANY($1) AND ${notExtensionMember('pg_ts_template', 'oid')} LIMIT 1),
      (SELECT 'conversions' FROM pg_conversion WHERE connamespace = ANY($1) AND ${notExtensionMember('pg_conversion', 'oid')} LIMIT 1),
      (SELECT 'procedural languages' FROM pg_language WHERE oid >= ${FIRST_NORMAL_OID} AND ${notExtensionMember('pg_language', 'oid')} LIMIT 1),
      (SELECT 'access methods' FROM pg_am WHERE oid >= ${FIRST_NORMAL_OID} AND ${notExtensionMember('pg_am', 'oid')} LIMIT 1),
      (SELECT 'transforms' FROM pg_transform WHERE ${notExtensionMember('pg_transform', 'oid')} LIMIT 1),
      (SELECT 'base or shell types (' || string_agg(format('%I.%I', typnamespace::regnamespace, typname), ', ') || ')' FROM pg_type
        WHERE typnamespace = ANY($1) AND typtype IN ('b', 'p') AND NOT (typelem <> 0 AND typlen = -1) AND ${notExtensionMember('pg_type', 'oid')}),
      (SELECT 'range types with a canonical function' FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid
        WHERE t.typnamespace = ANY($1) AND r.rngcanonical <> 0 AND ${notExtensionMember('pg_type', 't.oid')} LIMIT 1),
      (SELECT 'security labels' FROM pg_seclabel LIMIT 1),
      (SELECT 'view column defaults' FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid WHERE c.relkind = 'v' AND c.relnamespace = ANY($1) LIMIT 1)
    ], NULL) AS found`, [b.namespaces]);
  const found = row?.found ?? [];
  if (found.length > 0) {
    throw new BackupError('SOURCE_FAILED', `The database has objects backupkit cannot back up yet: ${found.join('; ')}`, {
      hint: 'docs/POSTGRES.md lists what is covered. Use `schemas` to back up only the schemas without them, or pg_dump for this database.',
    });
  }
}

/**
 * Preflight and locks, as pg_dump takes them: ACCESS SHARE on every table, so no one can drop or
 * alter one until the backup ends, while reads and writes go on. Fails early and clearly where
 * pg_dump would fail late: missing privileges, row-level security that would hide rows, a lock
 * table too small for this many tables, a lock held by someone else for too long.
 */
export async function lockTables(client: pg.Client, namespaces: number[], lockTimeoutMs: number): Promise<void> {
  const { rows: relations } = await client.query<{ qname: string; relkind: string; readable: boolean; hidden: boolean }>(`
    SELECT format('%I.%I', n.nspname, c.relname) AS qname, c.relkind::text AS relkind,
           has_table_privilege(c.oid, 'SELECT') AS readable,
           c.relrowsecurity AND NOT pg_has_role(c.relowner, 'USAGE')
             AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) AS hidden
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relnamespace = ANY($1) AND c.relkind IN ('r', 'p', 'm', 'S') AND ${notExtensionMember('pg_class', 'c.oid')}
     ORDER BY 1`, [namespaces]);
  const list = (names: string[]): string => `${names.slice(0, 10).join(', ')}${names.length > 10 ? ` and ${names.length - 10} more` : ''}`;
  const unreadable = relations.filter((r) => !r.readable).map((r) => r.qname);
  if (unreadable.length > 0) {
    throw new BackupError('SOURCE_FAILED', `The role ${String(client.user ?? '')} cannot read ${list(unreadable)}`, {
      hint: 'Back up as the owner of the database or a role with SELECT on every table and sequence (pg_read_all_data), or limit `schemas`.',
    });
  }
  const hidden = relations.filter((r) => r.hidden).map((r) => r.qname);
  if (hidden.length > 0) {
    throw new BackupError('SOURCE_FAILED', `Row-level security would hide rows of ${list(hidden)} from this role`, {
      hint: 'Back up as the tables\' owner, a superuser, or a role with BYPASSRLS: a backup must see every row.',
    });
  }
  const tables = relations.filter((r) => r.relkind === 'r' || r.relkind === 'p').map((r) => r.qname);
  // The shared lock table has max_locks_per_transaction x (max_connections + max_prepared_transactions) slots.
  const [lockTable] = (await client.query<{ perTransaction: number; sessions: number }>(`
    SELECT current_setting('max_locks_per_transaction')::int AS "perTransaction",
           current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int AS sessions`)).rows;
  const { perTransaction, sessions } = lockTable!;
  if (tables.length >= perTransaction * sessions) {
    throw new BackupError('SOURCE_FAILED', `The database has ${tables.length} tables, more than the server's lock table holds (${perTransaction * sessions} locks)`, {
      hint: `Raise max_locks_per_transaction to at least ${Math.ceil((tables.length * 1.25) / sessions)} (it is ${perTransaction}) and restart the server, or limit \`schemas\`.`,
    });
  }
  await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`);
  for (let i = 0; i < tables.length; i += 1000) {
    const batch = tables.slice(i, i + 1000);
    try {
      await client.query(`LOCK TABLE ${batch.join(', ')} IN ACCESS SHARE MODE`);
    } catch (cause) {
      if ((cause as { code?: string }).code !== '55P03') throw cause;
      throw new BackupError('SOURCE_FAILED', `Could not lock the tables within ${lockTimeoutMs} ms: another session holds an exclusive lock on one of ${list(batch)}`, {
        cause, hint: 'A schema change, VACUUM FULL or a long transaction holds it. Retry later, or raise `lockTimeoutMs`.',
      });
    }
  }
  await client.query('SET LOCAL lock_timeout = 0');
}

/**
 * Fails a backup limited to `schemas` whose objects use objects of other schemas (a view reading a
 * table there, a default calling a sequence there): its restore would fail. Names what uses what.
 */
export async function refuseOutsideDependencies(b: CatalogBuilder, links: Array<{ obj: string; ref: string }>, schemas: readonly string[]): Promise<void> {
  const split = (object: string): number[] => object.split(':').map(Number);
  const rows = await b.query<{ what: string; uses: string }>(`
    SELECT DISTINCT pg_describe_object(l.oc, l.oo, 0) AS what, pg_describe_object(l.rc, l.ro, 0) AS uses
      FROM unnest($1::oid[], $2::oid[], $3::oid[], $4::oid[]) AS l(oc, oo, rc, ro), pg_identify_object(l.rc, l.ro, 0) AS r
     WHERE r.schema IS NOT NULL AND r.schema <> ALL($5) AND r.schema NOT IN ('pg_catalog', 'information_schema')
     ORDER BY 1, 2 LIMIT 10`, [
    links.map((link) => split(link.obj)[0]), links.map((link) => split(link.obj)[1]),
    links.map((link) => split(link.ref)[0]), links.map((link) => split(link.ref)[1]), schemas,
  ]);
  if (rows.length === 0) return;
  throw new BackupError('SOURCE_FAILED', `Objects of the schemas backed up (${schemas.join(', ')}) use objects of other schemas, which a restore would lack: ${rows.map((row) => `${row.what} uses ${row.uses}`).join('; ')}`, {
    hint: 'Add those schemas to `schemas`, or back up the whole database.',
  });
}
