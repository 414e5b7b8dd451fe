/**
 * Schema capture without pg_dump: reads the catalogs inside the snapshot transaction and writes
 * each object with the server's own deparse functions (pg_get_indexdef, pg_get_viewdef, …), with
 * search_path set to '' so every name comes out schema-qualified.
 */
import type pg from 'pg';
import { BackupError } from '../../errors.js';
import { quoteIdent, quoteLiteral } from './connection.js';
import { sortEntries, type LargeObjectInfo, type Section, type Toc, type TocEntry, type TocTable } from './toc.js';

/** Objects created by initdb or by the system have OIDs below this (FirstNormalObjectId). */
const FIRST_NORMAL_OID = 16384;

interface Draft {
  id: number;
  kind: string;
  schema: string | null;
  name: string;
  section: Section;
  sql: string;
  owner?: string;
  /** Catalog objects this entry creates, as `classid:objid`; dependencies are matched on them. */
  creates: string[];
  /** Extra dependencies known without pg_depend: entries… */
  after: number[];
  /** …and whichever entries create these catalog objects. */
  needs: string[];
  /** A view's stand-in with the same columns, for when its query needs what post-data creates (see postponeViews). */
  dummy?: string;
}

type Row = Record<string, unknown>;

/** Oldest server whose catalogs backupkit reads (pg_dump supports older ones; we do not test them). */
const MIN_SERVER_VERSION = 120000;

/**
 * Checks that the backup can succeed, locks every table, then reads the whole schema. Call inside
 * the snapshot transaction, with search_path ''.
 */
export async function readCatalog(
  client: pg.Client, options: { schemas?: readonly string[] | undefined; lockTimeoutMs: number; warn: (warning: { code: 'SKIPPED'; message: string }) => void },
): Promise<Toc> {
  const { schemas } = options;
  const q = async <T extends Row>(sql: string, params: unknown[] = []): Promise<T[]> => (await client.query<T>(sql, params)).rows;

  const [server] = await q<{ version: string; num: number; db: string; encoding: string; collate: string; ctype: string; provider: string | null; locale: string | null; rules: string | null }>(`
    SELECT current_setting('server_version') AS version, current_setting('server_version_num')::int AS num,
           d.datname AS db, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate, d.datctype AS ctype,
           -- Columns of PostgreSQL 15 (datlocprovider, daticulocale), 16 (daticurules) and 17 (datlocale), read by name.
           to_jsonb(d)->>'datlocprovider' AS provider, coalesce(to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale') AS locale,
           to_jsonb(d)->>'daticurules' AS rules
      FROM pg_database d WHERE d.datname = current_database()`);
  const classIds = Object.fromEntries(
    (await q<{ name: string; oid: number }>(`
      SELECT relname AS name, oid::int AS oid FROM pg_class
       WHERE relnamespace = 'pg_catalog'::regnamespace AND relname = ANY($1)`, [
      ['pg_class', 'pg_type', 'pg_proc', 'pg_namespace', 'pg_constraint', 'pg_attrdef', 'pg_rewrite', 'pg_trigger', 'pg_policy', 'pg_extension', 'pg_collation', 'pg_statistic_ext'],
    ])).map((row) => [row.name, row.oid]),
  ) as Record<string, number>;
  const key = (catalog: string, oid: unknown): string => `${classIds[catalog]}:${String(oid)}`;

  const namespaceRows = await q<{ oid: number; name: string; ident: string; owner: string; acl: string | null; comment: string | null }>(`
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

  if (server!.num < MIN_SERVER_VERSION) {
    throw new BackupError('SOURCE_FAILED', `PostgreSQL ${server!.version} is not supported: backupkit needs PostgreSQL 12 or newer`, {
      hint: 'Upgrade the server, or back this database up with the pg_dump of its version.',
    });
  }
  await refuseUncovered(q, namespaces);
  await lockTables(client, namespaces, options.lockTimeoutMs);

  const drafts: Draft[] = [];
  let nextId = 1;
  const add: Add = (draft) => {
    const entry: Draft = { id: nextId++, creates: [], after: [], needs: [], ...draft };
    drafts.push(entry);
    return entry;
  };
  const comment = (target: string, text: string | null, of: Draft, schema: string | null): void => {
    if (text === null) return;
    add({ kind: 'COMMENT', schema, name: target, section: of.section, sql: `COMMENT ON ${target} IS ${quoteLiteral(text)};`, after: [of.id] });
  };
  const grants: Grants = (target, grantTarget, owner, acl, of, schema, columns = []) => {
    if (acl === null && columns.length === 0) return;
    const plans = [...(acl === null ? [] : [aclStatements(grantTarget, owner, acl)]), ...columns];
    const owned = add({ kind: 'ACL', schema, name: target, section: 'post-data', sql: plans.flatMap((plan) => plan.owned).join('\n'), after: [of.id] });
    // Grants given by other roles than the owner: run by the superuser under each grantor (restore.ts).
    const delegated = plans.flatMap((plan) => plan.delegated);
    if (delegated.length > 0) add({ kind: 'DELEGATED ACL', schema, name: target, section: 'post-data', sql: delegated.join('\n'), after: [owned.id] });
  };

  // Schemas. `public` exists in every new database: only its owner, grants and comment are restored.
  for (const ns of namespaceRows) {
    const entry = add({
      kind: 'SCHEMA', schema: null, name: ns.name, section: 'pre-data',
      sql: ns.name === 'public' ? '-- the public schema exists in every new database' : `CREATE SCHEMA ${ns.ident};`,
      owner: `ALTER SCHEMA ${ns.ident} OWNER TO ${ns.owner};`, creates: [key('pg_namespace', ns.oid)],
    });
    comment(`SCHEMA ${ns.ident}`, ns.comment, entry, null);
    if (ns.name === 'public' && ns.comment === null) {
      // A new database's public schema comes with the comment 'standard public schema': the source had it removed.
      add({ kind: 'COMMENT', schema: null, name: 'SCHEMA public', section: 'pre-data', sql: 'COMMENT ON SCHEMA public IS NULL;', after: [entry.id] });
    }
    grants(`SCHEMA ${ns.ident}`, `SCHEMA ${ns.ident}`, ns.owner, ns.acl, entry, null);
  }

  // Extensions: the CREATE EXTENSION only; their member objects are the extension's business.
  const extensionEntries = new Map<number, Draft>();
  for (const ext of await q<{ oid: number; name: string; ident: string; schema: string; comment: string | null }>(`
    SELECT e.oid::int AS oid, e.extname AS name, quote_ident(e.extname) AS ident, quote_ident(n.nspname) AS schema,
           obj_description(e.oid, 'pg_extension') AS comment
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     ORDER BY e.extname`)) {
    const entry = add({
      kind: 'EXTENSION', schema: null, name: ext.name, section: 'pre-data',
      sql: `CREATE EXTENSION IF NOT EXISTS ${ext.ident} WITH SCHEMA ${ext.schema};`, creates: [key('pg_extension', ext.oid)],
    });
    extensionEntries.set(ext.oid, entry);
    comment(`EXTENSION ${ext.ident}`, ext.comment, entry, null);
  }

  // Grants on an extension's members that differ from what its script set (pg_init_privs), as pg_dump
  // dumps them: `REVOKE EXECUTE ON FUNCTION crypt(…) FROM PUBLIC` is lost otherwise, reopening access.
  for (const member of await q<{ ext: number; schema: string; target: string; owner: string; acl: string | null }>(`
    SELECT m.ext::int AS ext, n.nspname AS schema, m.target, quote_ident(pg_get_userbyid(m.owner)) AS owner, ${aclSql('m.acl')} AS acl
      FROM (SELECT d.refobjid AS ext, p.pronamespace AS ns, p.proowner AS owner, d.classid, d.objid,
                   format('%s %I.%I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS target,
                   coalesce(p.proacl, acldefault('f', p.proowner)) AS acl, p.proacl IS NULL AS unset
              FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
            UNION ALL
            SELECT d.refobjid, c.relnamespace, c.relowner, d.classid, d.objid,
                   format('%s %I.%I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname),
                   coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner)), c.relacl IS NULL
              FROM pg_depend d JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
            UNION ALL
            SELECT d.refobjid, t.typnamespace, t.typowner, d.classid, d.objid, format('TYPE %I.%I', n.nspname, t.typname),
                   coalesce(t.typacl, acldefault('T', t.typowner)), t.typacl IS NULL
              FROM pg_depend d JOIN pg_type t ON t.oid = d.objid JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE d.classid = 'pg_type'::regclass AND d.deptype = 'e' AND t.typelem = 0) m
      JOIN pg_namespace n ON n.oid = m.ns
      LEFT JOIN pg_init_privs i ON i.classoid = m.classid AND i.objoid = m.objid AND i.objsubid = 0
     WHERE m.ns = ANY($1) AND (CASE WHEN m.unset THEN NULL ELSE m.acl END) IS DISTINCT FROM i.initprivs
     ORDER BY m.target`, [namespaces])) {
    const ext = extensionEntries.get(member.ext);
    if (!ext) continue;
    // An empty ACL (everything revoked, the owner's rights too) is null here: revoke and grant nothing.
    const plan = aclStatements(member.target, member.owner, member.acl ?? '[]');
    add({ kind: 'EXTENSION ACL', schema: member.schema, name: member.target, section: 'post-data', sql: [...plan.owned, ...plan.delegated].join('\n'), after: [ext.id] });
  }

  // Collations.
  for (const coll of await q<{ oid: number; schema: string; name: string; qname: string; owner: string; info: Record<string, unknown>; comment: string | null }>(`
    SELECT c.oid::int AS oid, n.nspname AS schema, c.collname AS name, format('%I.%I', n.nspname, c.collname) AS qname,
           quote_ident(pg_get_userbyid(c.collowner)) AS owner, to_jsonb(c) AS info, obj_description(c.oid, 'pg_collation') AS comment
      FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
     WHERE c.collnamespace = ANY($1) AND ${notExtensionMember('pg_collation', 'c.oid')}`, [namespaces])) {
    const info = coll.info;
    const options =
      info['collprovider'] === 'i'
        ? [`provider = icu`, `locale = ${quoteLiteral(String(info['colllocale'] ?? info['colliculocale'] ?? info['collcollate']))}`]
        : [`provider = libc`, `lc_collate = ${quoteLiteral(String(info['collcollate']))}`, `lc_ctype = ${quoteLiteral(String(info['collctype']))}`];
    if (typeof info['collicurules'] === 'string') options.push(`rules = ${quoteLiteral(info['collicurules'])}`);
    if (info['collisdeterministic'] === false) options.push('deterministic = false');
    const entry = add({
      kind: 'COLLATION', schema: coll.schema, name: coll.name, section: 'pre-data',
      sql: `CREATE COLLATION ${coll.qname} (${options.join(', ')});`, owner: `ALTER COLLATION ${coll.qname} OWNER TO ${coll.owner};`,
      creates: [key('pg_collation', coll.oid)],
    });
    comment(`COLLATION ${coll.qname}`, coll.comment, entry, coll.schema);
  }

  await readTypes(q, namespaces, key, add, comment, grants);
  await readRoutines(q, namespaces, key, add, comment, grants);
  const { tables, sequenceValues } = await readRelations(q, namespaces, key, add, comment, grants);
  await readPostData(q, namespaces, key, add, comment, server!.num, options.warn);

  // Dependencies from pg_depend, translated from catalog objects to the entries that create them.
  // Members of an extension stand for the extension, so what uses them comes after CREATE EXTENSION.
  const creator = new Map<string, number>();
  for (const draft of drafts) for (const object of draft.creates) creator.set(object, draft.id);
  for (const row of await q<{ obj: string; ext: number }>(`
    SELECT d.classid::int || ':' || d.objid::int AS obj, d.refobjid::int AS ext FROM pg_depend d WHERE d.deptype = 'e'`)) {
    const ext = creator.get(key('pg_extension', row.ext));
    if (ext !== undefined && !creator.has(row.obj)) creator.set(row.obj, ext);
  }
  const deps = new Map(drafts.map((draft) => [draft.id, new Set(draft.after)]));
  for (const draft of drafts) {
    for (const object of draft.needs) {
      const to = creator.get(object);
      if (to !== undefined) deps.get(draft.id)!.add(to);
    }
  }
  // With `schemas`, what the backed-up objects use in other schemas would be missing at restore.
  const outside: Array<{ obj: string; ref: string }> = [];
  // A sequence's OWNED BY link ('a' from sequence to table) is a separate entry, or it would cycle with the column default.
  for (const row of await q<{ obj: string; ref: string }>(`
    SELECT d.classid::int || ':' || d.objid::int AS obj, d.refclassid::int || ':' || d.refobjid::int AS ref
      FROM pg_depend d
     WHERE d.deptype IN ('n', 'a', 'i') AND d.objid >= ${FIRST_NORMAL_OID} AND d.refobjid >= ${FIRST_NORMAL_OID}
       AND NOT (d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
                AND EXISTS (SELECT 1 FROM pg_class s WHERE s.oid = d.objid AND s.relkind = 'S'))`)) {
    const from = creator.get(row.obj);
    const to = creator.get(row.ref);
    if (from !== undefined && to !== undefined && from !== to) deps.get(from)!.add(to);
    if (schemas && from !== undefined && to === undefined) outside.push(row);
  }
  if (outside.length > 0) await refuseOutsideDependencies(q, outside, schemas!);

  postponeViews(drafts, deps, () => nextId++);
  orderRefreshes(drafts, deps);

  const entries: TocEntry[] = drafts.map((draft) => ({
    id: draft.id, kind: draft.kind, schema: draft.schema, name: draft.name, section: draft.section,
    deps: [...deps.get(draft.id)!].sort((a, b) => a - b), sql: draft.sql, ...(draft.owner ? { owner: draft.owner } : {}),
  }));
  const { sorted, cycles } = sortEntries(entries);
  if (cycles.length > 0) {
    throw new BackupError('SOURCE_FAILED', `The schema has a dependency cycle backupkit cannot order, through ${cycles.map((e) => `${e.kind} ${e.name}`).join(', ')}`, {
      hint: 'Report this with the objects named; pg_dump breaks such cycles with special cases that backupkit does not have yet.',
    });
  }
  // A restore runs pre-data before post-data whatever the dependencies: one that points back would fail it.
  const byId = new Map(entries.map((entry) => [entry.id, entry]));
  const early = entries.flatMap((entry) => (entry.section === 'pre-data' ? entry.deps.filter((dep) => byId.get(dep)?.section === 'post-data').map((dep) => [entry, byId.get(dep)!]) : []));
  if (early.length > 0) {
    throw new BackupError('SOURCE_FAILED', `The schema has objects that need what is created after the data, which no restore could order: ${early.slice(0, 5).map(([entry, dep]) => `${entry!.kind} ${entry!.schema ?? ''}.${entry!.name} needs ${dep!.kind} ${dep!.schema ?? ''}.${dep!.name}`).join('; ')}`, {
      hint: 'Report this with the objects named; pg_dump breaks such dependencies with special cases that backupkit does not have yet.',
    });
  }
  for (const [entry, value] of sequenceValues) {
    const seq = drafts[entry - 1]!;
    sorted.push({ id: nextId++, kind: 'SEQUENCE SET', schema: seq.schema, name: seq.name, section: 'data', deps: [entry], sql: value });
  }
  const largeObjects = await readLargeObjects(q);
  return {
    formatVersion: 1,
    server: { version: server!.version, versionNum: server!.num },
    database: {
      name: server!.db, encoding: server!.encoding, collate: server!.collate, ctype: server!.ctype,
      provider: ({ i: 'icu', b: 'builtin' } as const)[server!.provider ?? ''] ?? 'libc', locale: server!.locale, icuRules: server!.rules,
    },
    entries: sorted,
    tables,
    largeObjects,
  };
}

/**
 * Fails a backup limited to `schemas` whose objects use objects of other schemas (a view reading a
 * table there, a default calling a sequence there): its restore would fail. Names what uses what.
 */
async function refuseOutsideDependencies(q: Query, links: Array<{ obj: string; ref: string }>, schemas: readonly string[]): Promise<void> {
  const split = (object: string): number[] => object.split(':').map(Number);
  const rows = await q<{ what: string; uses: string }>(`
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

/**
 * A view whose query needs what is created after the data (a view grouping by a primary key needs the
 * key) is created twice, as pg_dump does: before the data as a stand-in with the same columns (other
 * objects may use its row type), then `CREATE OR REPLACE VIEW` with its query after what it needs.
 */
function postponeViews(drafts: Draft[], deps: Map<number, Set<number>>, newId: () => number): void {
  const byId = new Map(drafts.map((draft) => [draft.id, draft]));
  for (const view of [...drafts]) {
    if (view.dummy === undefined) continue;
    const late = [...deps.get(view.id)!].filter((dep) => byId.get(dep)?.section === 'post-data');
    if (late.length === 0) continue;
    for (const dep of late) deps.get(view.id)!.delete(dep);
    const replace: Draft = {
      id: newId(), kind: 'VIEW', schema: view.schema, name: view.name, section: 'post-data', sql: view.sql.replace(/^CREATE VIEW /, 'CREATE OR REPLACE VIEW '),
      creates: [], after: [view.id], needs: [],
    };
    view.sql = view.dummy;
    drafts.push(replace);
    deps.set(replace.id, new Set([view.id, ...late]));
  }
}

/**
 * A materialized view's REFRESH reads the materialized views it is built on, directly or through
 * views: those must be refreshed first (as pg_dump's buildMatViewRefreshDependencies does), or the
 * refresh fails with "has not been populated".
 */
function orderRefreshes(drafts: readonly Draft[], deps: Map<number, Set<number>>): void {
  const byId = new Map(drafts.map((draft) => [draft.id, draft]));
  const refreshOf = new Map<number, number>();
  for (const draft of drafts) if (draft.kind === 'MATERIALIZED VIEW DATA') refreshOf.set(draft.after[0]!, draft.id);
  for (const [matview, refresh] of refreshOf) {
    const seen = new Set<number>([matview]);
    const pending = [...deps.get(matview)!];
    while (pending.length > 0) {
      const id = pending.pop()!;
      const kind = byId.get(id)?.kind;
      if (seen.has(id) || (kind !== 'VIEW' && kind !== 'MATERIALIZED VIEW')) continue;
      seen.add(id);
      const before = refreshOf.get(id);
      if (before !== undefined) deps.get(refresh)!.add(before);
      pending.push(...deps.get(id)!);
    }
  }
}

/** `tgenabled`/`ev_enabled` as the ALTER TABLE words that set it. */
const TRIGGER_MODES: Record<string, string> = { O: 'ENABLE', D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' };

type Query = <T extends Row>(sql: string, params?: unknown[]) => Promise<T[]>;
type Add = (draft: Omit<Draft, 'id' | 'creates' | 'after' | 'needs'> & { creates?: string[]; after?: number[]; needs?: string[] }) => Draft;
type Key = (catalog: string, oid: unknown) => string;
type Comment = (target: string, text: string | null, of: Draft, schema: string | null) => void;
type Grants = (target: string, grantTarget: string, owner: string, acl: string | null, of: Draft, schema: string | null, columns?: AclPlan[]) => void;

/**
 * Preflight and locks, as pg_dump takes them: ACCESS SHARE on every table, so no one can drop or
 * alter one until the backup ends, while reads and writes go on. Fails early and clearly where
 * pg_dump would fail late: missing privileges, row-level security that would hide rows, a lock
 * table too small for this many tables, a lock held by someone else for too long.
 */
async function lockTables(client: pg.Client, namespaces: number[], lockTimeoutMs: number): Promise<void> {
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

function notExtensionMember(catalog: string, oid: string): string {
  return `NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '${catalog}'::regclass AND e.objid = ${oid} AND e.deptype = 'e')`;
}

/** An ACL as JSON `[{item, grantee, grantor, privilege, grantable}]` in the array's order, or null for the default. */
function aclSql(column: string): string {
  return `(SELECT json_agg(json_build_object(
            'item', a.ord, 'grantee', CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
            'grantor', quote_ident(pg_get_userbyid(x.grantor)), 'privilege', x.privilege_type, 'grantable', x.is_grantable) ORDER BY a.ord, x.privilege_type)::text
          FROM unnest(${column}) WITH ORDINALITY AS a(item, ord), aclexplode(ARRAY[a.item]) AS x)`;
}

/**
 * The statements that recreate an ACL item by item, in the array's order. Items granted by the owner
 * run as the restoring role (`owned`). From the first item another role granted (holding the grant
 * option) on, they run under that grantor (`SET ROLE`), as pg_dump writes them, so the grantor is
 * kept and the order too (`delegated`).
 */
function aclPlan(aclJson: string, owner: string, grant: (privileges: string[], grantee: string, withOption: boolean) => string[]): AclPlan {
  const items = (JSON.parse(aclJson) ?? []) as Array<{ item: number; grantee: string; grantor: string; privilege: string; grantable: boolean }>;
  const plan: AclPlan = { owned: [], delegated: [] };
  let role = owner;
  for (let i = 0; i < items.length; ) {
    const { item, grantee, grantor } = items[i]!;
    const privileges = { plain: [] as string[], withOption: [] as string[] };
    for (; i < items.length && items[i]!.item === item; i++) (items[i]!.grantable ? privileges.withOption : privileges.plain).push(items[i]!.privilege);
    const statements = [
      ...(privileges.plain.length > 0 ? grant(privileges.plain, grantee, false) : []),
      ...(privileges.withOption.length > 0 ? grant(privileges.withOption, grantee, true) : []),
    ];
    if (grantor === owner && plan.delegated.length === 0) {
      plan.owned.push(...statements);
      continue;
    }
    if (grantor !== role) {
      if (role !== owner) plan.delegated.push('RESET ROLE;');
      if (grantor !== owner) plan.delegated.push(`SET ROLE ${grantor};`);
      role = grantor;
    }
    plan.delegated.push(...statements);
  }
  if (role !== owner) plan.delegated.push('RESET ROLE;');
  return plan;
}

interface AclPlan {
  owned: string[];
  delegated: string[];
}

/** Recreates an object's ACL exactly: revoke the defaults, then grant item by item in the original order. */
function aclStatements(target: string, owner: string, aclJson: string): AclPlan {
  const plan = aclPlan(aclJson, owner, (privileges, grantee, withOption) => [
    `GRANT ${privileges.join(',')} ON ${target} TO ${grantee}${withOption ? ' WITH GRANT OPTION' : ''};`,
  ]);
  return { owned: [`REVOKE ALL ON ${target} FROM PUBLIC;`, `REVOKE ALL ON ${target} FROM ${owner};`, ...plan.owned], delegated: plan.delegated };
}

/** Column privileges, as GRANT … (column) statements. */
function columnGrants(table: string, column: string, owner: string, aclJson: string): AclPlan {
  return aclPlan(aclJson, owner, (privileges, grantee, withOption) =>
    privileges.map((privilege) => `GRANT ${privilege}(${column}) ON TABLE ${table} TO ${grantee}${withOption ? ' WITH GRANT OPTION' : ''};`),
  );
}

/**
 * Fails the backup when the database holds kinds of objects that backupkit does not capture yet: a
 * backup that silently lost them would be found out only at restore time.
 */
async function refuseUncovered(q: Query, namespaces: number[]): Promise<void> {
  const [row] = await q<{ found: string[] | null }>(`
    SELECT array_remove(ARRAY[
      (SELECT 'foreign tables (' || string_agg(oid::regclass::text, ', ') || ')' FROM pg_class WHERE relkind = 'f' AND relnamespace = ANY($1)),
      (SELECT 'foreign servers' FROM pg_foreign_server WHERE ${notExtensionMember('pg_foreign_server', 'oid')} LIMIT 1),
      (SELECT 'foreign-data wrappers' FROM pg_foreign_data_wrapper WHERE ${notExtensionMember('pg_foreign_data_wrapper', 'oid')} LIMIT 1),
      (SELECT 'event triggers' FROM pg_event_trigger WHERE ${notExtensionMember('pg_event_trigger', 'oid')} LIMIT 1),
      (SELECT 'publications' FROM pg_publication LIMIT 1),
      -- pg_subscription is shared by the cluster: only this database's. Its subname column is readable by every role.
      (SELECT 'subscriptions (' || string_agg(quote_ident(subname), ', ' ORDER BY subname) || ')' FROM pg_subscription
        WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
      (SELECT 'default privileges (ALTER DEFAULT PRIVILEGES)' FROM pg_default_acl LIMIT 1),
      (SELECT 'casts' FROM pg_cast c WHERE c.oid >= ${FIRST_NORMAL_OID} AND ${notExtensionMember('pg_cast', 'c.oid')}
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_cast'::regclass AND d.objid = c.oid AND d.deptype = 'i') LIMIT 1),
      (SELECT 'operators' FROM pg_operator WHERE oprnamespace = ANY($1) AND ${notExtensionMember('pg_operator', 'oid')} LIMIT 1),
      (SELECT 'operator classes' FROM pg_opclass WHERE opcnamespace = ANY($1) AND ${notExtensionMember('pg_opclass', 'oid')} LIMIT 1),
      (SELECT 'operator families' FROM pg_opfamily WHERE opfnamespace = ANY($1) AND ${notExtensionMember('pg_opfamily', 'oid')} LIMIT 1),
      (SELECT 'text search configurations or dictionaries' FROM pg_ts_config WHERE cfgnamespace = ANY($1) AND ${notExtensionMember('pg_ts_config', 'oid')}
        UNION ALL SELECT 'text search configurations or dictionaries' FROM pg_ts_dict WHERE dictnamespace = ANY($1) AND ${notExtensionMember('pg_ts_dict', 'oid')} LIMIT 1),
      (SELECT 'conversions' FROM pg_conversion WHERE connamespace = ANY($1) AND ${notExtensionMember('pg_conversion', 'oid')} LIMIT 1),
      (SELECT 'procedural languages' FROM pg_language WHERE oid >= ${FIRST_NORMAL_OID} AND ${notExtensionMember('pg_language', 'oid')} LIMIT 1),
      (SELECT 'access methods' FROM pg_am WHERE oid >= ${FIRST_NORMAL_OID} AND ${notExtensionMember('pg_am', 'oid')} LIMIT 1),
      (SELECT 'transforms' FROM pg_transform WHERE ${notExtensionMember('pg_transform', 'oid')} LIMIT 1),
      (SELECT 'base or shell types (' || string_agg(format('%I.%I', typnamespace::regnamespace, typname), ', ') || ')' FROM pg_type
        WHERE typnamespace = ANY($1) AND typtype IN ('b', 'p') AND NOT (typelem <> 0 AND typlen = -1) AND ${notExtensionMember('pg_type', 'oid')}),
      (SELECT 'range types with a canonical function' FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid
        WHERE t.typnamespace = ANY($1) AND r.rngcanonical <> 0 AND ${notExtensionMember('pg_type', 't.oid')} LIMIT 1),
      (SELECT 'ordered-set or moving aggregates' FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
        WHERE p.pronamespace = ANY($1) AND (a.aggkind <> 'n' OR a.aggmtransfn <> 0) AND ${notExtensionMember('pg_proc', 'p.oid')} LIMIT 1),
      (SELECT 'typed tables (CREATE TABLE ... OF type)' FROM pg_class WHERE reloftype <> 0 AND relnamespace = ANY($1) LIMIT 1),
      (SELECT 'objects in non-default tablespaces' FROM pg_class WHERE reltablespace <> 0 AND relnamespace = ANY($1) LIMIT 1),
      (SELECT 'security labels' FROM pg_seclabel LIMIT 1),
      (SELECT 'view column defaults' FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid WHERE c.relkind = 'v' AND c.relnamespace = ANY($1) LIMIT 1),
      (SELECT 'data of extension configuration tables (' || string_agg(extname, ', ') || ')' FROM pg_extension WHERE extconfig IS NOT NULL)
    ], NULL) AS found`, [namespaces]);
  const found = row?.found ?? [];
  if (found.length > 0) {
    throw new BackupError('SOURCE_FAILED', `The database has objects backupkit cannot back up yet: ${found.join('; ')}`, {
      hint: 'docs/POSTGRES.md lists what is covered. Use `schemas` to back up only the schemas without them, or pg_dump for this database.',
    });
  }
}

async function readTypes(q: Query, namespaces: number[], key: Key, add: Add, comment: Comment, grants: Grants): Promise<void> {
  const types = await q<{
    oid: number; schema: string; name: string; qname: string; typtype: string; owner: string; acl: string | null; comment: string | null;
    array: number; relid: number; def: string | null; basetype: string | null; notnull: boolean; collation: string | null;
    labels: string[] | null; attributes: string[] | null; attcomments: Array<{ col: string; text: string }> | null; range: Record<string, string | null> | null;
    multirange: number | null; multirangearray: number | null; constraints: Array<{ oid: number; name: string; def: string; validated: boolean; comment: string | null }> | null;
  }>(`
    SELECT t.oid::int AS oid, n.nspname AS schema, t.typname AS name, format('%I.%I', n.nspname, t.typname) AS qname, t.typtype,
           quote_ident(pg_get_userbyid(t.typowner)) AS owner, ${aclSql('t.typacl')} AS acl, obj_description(t.oid, 'pg_type') AS comment,
           t.typarray::int AS array, t.typrelid::int AS relid, pg_get_expr(t.typdefaultbin, 0) AS def,
           CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS basetype, t.typnotnull AS notnull,
           CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> (SELECT typcollation FROM pg_type WHERE oid = t.typbasetype)
                THEN (SELECT format('%I.%I', cn.nspname, c.collname) FROM pg_collation c JOIN pg_namespace cn ON cn.oid = c.collnamespace WHERE c.oid = t.typcollation) END AS collation,
           (SELECT array_agg(quote_literal(e.enumlabel) ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels,
           (SELECT array_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)) ||
                     CASE WHEN a.attcollation <> 0 AND a.attcollation <> at.typcollation
                          THEN ' COLLATE ' || (SELECT format('%I.%I', cn.nspname, c.collname) FROM pg_collation c JOIN pg_namespace cn ON cn.oid = c.collnamespace WHERE c.oid = a.attcollation)
                          ELSE '' END ORDER BY a.attnum)
              FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
             WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) AS attributes,
           (SELECT json_agg(json_build_object('col', quote_ident(a.attname), 'text', d.description) ORDER BY a.attnum)
              FROM pg_attribute a JOIN pg_description d ON d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
             WHERE t.typtype = 'c' AND a.attrelid = t.typrelid) AS attcomments,
           (SELECT json_build_object(
                     'subtype', format_type(r.rngsubtype, NULL),
                     'opclass', (SELECT format('%I.%I', on2.nspname, o.opcname) FROM pg_opclass o JOIN pg_namespace on2 ON on2.oid = o.opcnamespace WHERE o.oid = r.rngsubopc AND NOT o.opcdefault),
                     'collation', (SELECT format('%I.%I', cn.nspname, c.collname) FROM pg_collation c JOIN pg_namespace cn ON cn.oid = c.collnamespace
                                    WHERE c.oid = r.rngcollation AND r.rngcollation <> (SELECT typcollation FROM pg_type WHERE oid = r.rngsubtype)),
                     'diff', CASE WHEN r.rngsubdiff <> 0 THEN r.rngsubdiff::regproc::text END,
                     'multirange', (SELECT format('%I.%I', mn.nspname, m.typname) FROM pg_type m JOIN pg_namespace mn ON mn.oid = m.typnamespace WHERE m.oid = r.rngmultitypid))
              FROM pg_range r WHERE r.rngtypid = t.oid) AS range,
           (SELECT r.rngmultitypid::int FROM pg_range r WHERE r.rngtypid = t.oid) AS multirange,
           (SELECT m.typarray::int FROM pg_range r JOIN pg_type m ON m.oid = r.rngmultitypid WHERE r.rngtypid = t.oid) AS multirangearray,
           (SELECT json_agg(json_build_object('oid', c.oid::int, 'name', quote_ident(c.conname), 'def', pg_get_constraintdef(c.oid),
                                              'validated', c.convalidated, 'comment', obj_description(c.oid, 'pg_constraint')) ORDER BY c.conname)
              FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c') AS constraints
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.typnamespace = ANY($1) AND t.typtype IN ('e', 'c', 'd', 'r')
       AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
       AND ${notExtensionMember('pg_type', 't.oid')}`, [namespaces]);
  for (const type of types) {
    const creates = [key('pg_type', type.oid), key('pg_type', type.array)];
    let sql: string;
    let kind = 'TYPE';
    const deferred: Array<{ name: string; def: string; comment: string | null; oid: number }> = [];
    switch (type.typtype) {
      case 'e':
        sql = `CREATE TYPE ${type.qname} AS ENUM (\n    ${(type.labels ?? []).join(',\n    ')}\n);`;
        break;
      case 'c':
        creates.push(key('pg_class', type.relid));
        sql = `CREATE TYPE ${type.qname} AS (\n    ${(type.attributes ?? []).join(',\n    ')}\n);`;
        break;
      case 'r': {
        const range = type.range!;
        const options = [`subtype = ${range['subtype']}`];
        if (range['opclass']) options.push(`subtype_opclass = ${range['opclass']}`);
        if (range['collation']) options.push(`collation = ${range['collation']}`);
        if (range['diff']) options.push(`subtype_diff = ${range['diff']}`);
        if (range['multirange']) options.push(`multirange_type_name = ${range['multirange']}`);
        if (type.multirange) creates.push(key('pg_type', type.multirange), key('pg_type', type.multirangearray));
        sql = `CREATE TYPE ${type.qname} AS RANGE (\n    ${options.join(',\n    ')}\n);`;
        break;
      }
      default: {
        kind = 'DOMAIN';
        const parts = [`CREATE DOMAIN ${type.qname} AS ${type.basetype}`];
        if (type.collation) parts.push(`COLLATE ${type.collation}`);
        if (type.def !== null) parts.push(`DEFAULT ${type.def}`);
        if (type.notnull) parts.push('NOT NULL');
        for (const constraint of type.constraints ?? []) {
          if (constraint.validated) {
            parts.push(`CONSTRAINT ${constraint.name} ${constraint.def}`);
            creates.push(key('pg_constraint', constraint.oid));
          } else deferred.push(constraint);
        }
        sql = `${parts.join('\n    ')};`;
      }
    }
    const keyword = kind === 'DOMAIN' ? 'DOMAIN' : 'TYPE';
    const entry = add({
      kind, schema: type.schema, name: type.name, section: 'pre-data', sql, owner: `ALTER ${keyword} ${type.qname} OWNER TO ${type.owner};`, creates,
    });
    for (const constraint of deferred) {
      const check = add({
        kind: 'CONSTRAINT', schema: type.schema, name: `${type.name} ${constraint.name}`, section: 'post-data',
        sql: `ALTER DOMAIN ${type.qname} ADD CONSTRAINT ${constraint.name} ${constraint.def};`, creates: [key('pg_constraint', constraint.oid)], after: [entry.id],
      });
      comment(`CONSTRAINT ${constraint.name} ON DOMAIN ${type.qname}`, constraint.comment, check, type.schema);
    }
    for (const constraint of type.constraints ?? []) {
      if (constraint.validated) comment(`CONSTRAINT ${constraint.name} ON DOMAIN ${type.qname}`, constraint.comment, entry, type.schema);
    }
    comment(`${keyword} ${type.qname}`, type.comment, entry, type.schema);
    for (const col of type.attcomments ?? []) comment(`COLUMN ${type.qname}.${col.col}`, col.text, entry, type.schema);
    grants(`${keyword} ${type.qname}`, `TYPE ${type.qname}`, type.owner, type.acl, entry, type.schema);
  }
}

async function readRoutines(q: Query, namespaces: number[], key: Key, add: Add, comment: Comment, grants: Grants): Promise<void> {
  const routines = await q<{
    oid: number; schema: string; name: string; signature: string; prokind: string; owner: string; acl: string | null; comment: string | null;
    def: string | null; agg: Record<string, string | boolean | null> | null;
  }>(`
    SELECT p.oid::int AS oid, n.nspname AS schema, p.proname AS name,
           format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS signature, p.prokind,
           quote_ident(pg_get_userbyid(p.proowner)) AS owner, ${aclSql('p.proacl')} AS acl, obj_description(p.oid, 'pg_proc') AS comment,
           CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS def,
           (SELECT json_build_object(
                     'sfunc', a.aggtransfn::regproc::text, 'stype', format_type(a.aggtranstype, NULL),
                     'sspace', NULLIF(a.aggtransspace, 0)::text,
                     'finalfunc', CASE WHEN a.aggfinalfn <> 0 THEN a.aggfinalfn::regproc::text END,
                     'finalextra', a.aggfinalextra, 'finalmodify', a.aggfinalmodify::text,
                     'combinefunc', CASE WHEN a.aggcombinefn <> 0 THEN a.aggcombinefn::regproc::text END,
                     'serialfunc', CASE WHEN a.aggserialfn <> 0 THEN a.aggserialfn::regproc::text END,
                     'deserialfunc', CASE WHEN a.aggdeserialfn <> 0 THEN a.aggdeserialfn::regproc::text END,
                     'initcond', a.agginitval,
                     'sortop', (SELECT format('OPERATOR(%I.%s)', opn.nspname, o.oprname) FROM pg_operator o JOIN pg_namespace opn ON opn.oid = o.oprnamespace WHERE o.oid = a.aggsortop),
                     'parallel', p.proparallel::text)
              FROM pg_aggregate a WHERE a.aggfnoid = p.oid) AS agg
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.pronamespace = ANY($1) AND ${notExtensionMember('pg_proc', 'p.oid')}
       -- Constructors of range and multirange types are created with their type.
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i')`, [namespaces]);
  for (const routine of routines) {
    const keyword = routine.prokind === 'p' ? 'PROCEDURE' : routine.prokind === 'a' ? 'AGGREGATE' : 'FUNCTION';
    const sql = routine.prokind === 'a' ? aggregateSql(routine.signature, routine.agg!) : `${routine.def!.trimEnd()};`;
    const entry = add({
      kind: keyword, schema: routine.schema, name: routine.signature.slice(routine.signature.indexOf('.') + 1), section: 'pre-data', sql,
      owner: `ALTER ${keyword} ${routine.signature} OWNER TO ${routine.owner};`, creates: [key('pg_proc', routine.oid)],
    });
    comment(`${keyword} ${routine.signature}`, routine.comment, entry, routine.schema);
    grants(`${keyword} ${routine.signature}`, `${keyword === 'PROCEDURE' ? 'PROCEDURE' : 'FUNCTION'} ${routine.signature}`, routine.owner, routine.acl, entry, routine.schema);
  }
}

function aggregateSql(signature: string, agg: Record<string, string | boolean | null>): string {
  const options = [`SFUNC = ${agg['sfunc']}`, `STYPE = ${agg['stype']}`];
  if (agg['sspace']) options.push(`SSPACE = ${agg['sspace']}`);
  if (agg['finalfunc']) {
    options.push(`FINALFUNC = ${agg['finalfunc']}`);
    if (agg['finalextra']) options.push('FINALFUNC_EXTRA');
    const modify = { r: 'READ_ONLY', s: 'SHAREABLE', w: 'READ_WRITE' }[String(agg['finalmodify'])];
    if (modify && modify !== 'READ_ONLY') options.push(`FINALFUNC_MODIFY = ${modify}`);
  }
  if (agg['combinefunc']) options.push(`COMBINEFUNC = ${agg['combinefunc']}`);
  if (agg['serialfunc']) options.push(`SERIALFUNC = ${agg['serialfunc']}`);
  if (agg['deserialfunc']) options.push(`DESERIALFUNC = ${agg['deserialfunc']}`);
  if (agg['initcond'] !== null) options.push(`INITCOND = ${quoteLiteral(String(agg['initcond']))}`);
  if (agg['sortop']) options.push(`SORTOP = ${agg['sortop']}`);
  const parallel = { s: 'SAFE', r: 'RESTRICTED' }[String(agg['parallel'])];
  if (parallel) options.push(`PARALLEL = ${parallel}`);
  return `CREATE AGGREGATE ${signature} (\n    ${options.join(',\n    ')}\n);`;
}

interface ColumnRow {
  name: string;
  type: string;
  num: number;
  notnull: boolean;
  local: boolean;
  def: string | null;
  generated: string;
  identity: string;
  collation: string | null;
  storage: string | null;
  compression: string | null;
  stattarget: number | null;
  options: string[] | null;
  acl: string | null;
  comment: string | null;
  identitySeq: { oid: number; qname: string; options: string } | null;
}

async function readRelations(
  q: Query, namespaces: number[], key: Key, add: Add, comment: Comment, grants: Grants,
): Promise<{ tables: TocTable[]; sequenceValues: Array<[number, string]> }> {
  const sequenceOptions = (s: string): string => `format('AS %s START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s',
      format_type(${s}.seqtypid, NULL), ${s}.seqstart, ${s}.seqincrement, ${s}.seqmin, ${s}.seqmax, ${s}.seqcache, CASE WHEN ${s}.seqcycle THEN ' CYCLE' ELSE '' END)`;
  const relations = await q<{
    oid: number; schema: string; name: string; qname: string; relkind: string; persistence: string; ispartition: boolean; rowtype: number; rowarray: number | null;
    owner: string; acl: string | null; comment: string | null; options: string[] | null; partkey: string | null; bound: string | null;
    parent: string | null; inherits: string[] | null; rls: boolean; forcerls: boolean; replident: string; am: string | null;
    viewdef: string | null; populated: boolean; seq: string | null; ownedby: { qualified: string; table: number } | null; identityseq: boolean; bytes: string;
    checks: Array<{ oid: number; name: string; def: string; comment: string | null }> | null; columns: ColumnRow[] | null; rules: number[] | null;
  }>(`
    SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, format('%I.%I', n.nspname, c.relname) AS qname, c.relkind,
           c.relpersistence AS persistence, c.relispartition AS ispartition, c.reltype::int AS rowtype,
           (SELECT typarray::int FROM pg_type WHERE oid = c.reltype) AS rowarray,
           quote_ident(pg_get_userbyid(c.relowner)) AS owner, ${aclSql('c.relacl')} AS acl, obj_description(c.oid, 'pg_class') AS comment,
           -- toast.* options live on the TOAST table; CREATE TABLE and CREATE MATERIALIZED VIEW take them with the prefix.
           c.reloptions || (SELECT array_agg('toast.' || o) FROM pg_class tc, unnest(tc.reloptions) AS o WHERE tc.oid = c.reltoastrelid) AS options, CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
           CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
           (SELECT format('%I.%I', pn.nspname, p.relname) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
             WHERE i.inhrelid = c.oid AND c.relispartition) AS parent,
           (SELECT array_agg(format('%I.%I', pn.nspname, p.relname) ORDER BY i.inhseqno) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
              JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid AND NOT c.relispartition) AS inherits,
           c.relrowsecurity AS rls, c.relforcerowsecurity AS forcerls, c.relreplident::text AS replident,
           (SELECT quote_ident(amname) FROM pg_am WHERE oid = c.relam AND amname <> 'heap') AS am,
           CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS viewdef, c.relispopulated AS populated,
           (SELECT ${sequenceOptions('s')} FROM pg_sequence s WHERE s.seqrelid = c.oid) AS seq,
           (SELECT json_build_object('qualified', format('%I.%I.%I', tn.nspname, t.relname, a.attname), 'table', t.oid::int) FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
              JOIN pg_namespace tn ON tn.oid = t.relnamespace JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
             WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a') AS ownedby,
           EXISTS (SELECT 1 FROM pg_depend d WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i') AS identityseq,
           pg_relation_size(c.oid)::text AS bytes,
           (SELECT json_agg(json_build_object('oid', co.oid::int, 'name', quote_ident(co.conname), 'def', pg_get_constraintdef(co.oid),
                                              'comment', obj_description(co.oid, 'pg_constraint')) ORDER BY co.conname)
              FROM pg_constraint co WHERE co.conrelid = c.oid AND co.contype = 'c' AND co.convalidated
               -- ATTACH PARTITION requires the parent's CHECK constraints on the partition already.
               AND (co.conislocal OR c.relispartition)) AS checks,
           (SELECT json_agg(json_build_object(
                     'name', quote_ident(a.attname), 'num', a.attnum, 'type', format_type(a.atttypid, a.atttypmod), 'notnull', a.attnotnull,
                     'local', a.attislocal, 'def', pg_get_expr(ad.adbin, ad.adrelid), 'generated', a.attgenerated::text, 'identity', a.attidentity::text,
                     'collation', CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                        THEN (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END,
                     'storage', CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END,
                     'compression', NULLIF(to_jsonb(a)->>'attcompression', ''),
                     'stattarget', CASE WHEN (to_jsonb(a)->>'attstattarget')::int >= 0 THEN (to_jsonb(a)->>'attstattarget')::int END,
                     -- pg_attver is bookkeeping some server builds add to every column, not a user's setting.
                     'options', (SELECT array_agg(o) FROM unnest(a.attoptions) AS o WHERE o NOT LIKE 'pg\\_attver=%'), 'acl', ${aclSql('a.attacl')},
                     'comment', col_description(c.oid, a.attnum),
                     'identitySeq', (SELECT json_build_object('oid', s.seqrelid::int, 'qname', format('%I.%I', sn.nspname, sc.relname), 'options', ${sequenceOptions('s')})
                                       FROM pg_depend d JOIN pg_sequence s ON s.seqrelid = d.objid JOIN pg_class sc ON sc.oid = s.seqrelid
                                       JOIN pg_namespace sn ON sn.oid = sc.relnamespace
                                      WHERE a.attidentity <> '' AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                                        AND d.refobjid = c.oid AND d.refobjsubid = a.attnum AND d.deptype = 'i'))
                     ORDER BY a.attnum)
              FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
           (SELECT array_agg(r.oid::int) FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename = '_RETURN') AS rules
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relnamespace = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND ${notExtensionMember('pg_class', 'c.oid')}
     ORDER BY n.nspname, c.relname`, [namespaces]);

  // A default that calls a function is set apart from its table, after the function, as pg_dump does: the function
  // may read the table (a BEGIN ATOMIC body depends on it), which would make a cycle.
  const attrdefs = new Map<number, Array<{ oid: number; num: number; callsRoutine: boolean }>>();
  for (const row of await q<{ relid: number; oid: number; num: number; callsRoutine: boolean }>(`
    SELECT d.adrelid::int AS relid, d.oid::int AS oid, d.adnum::int AS num,
           EXISTS (SELECT 1 FROM pg_depend p WHERE p.classid = 'pg_attrdef'::regclass AND p.objid = d.oid
                      AND p.refclassid = 'pg_proc'::regclass AND p.refobjid >= ${FIRST_NORMAL_OID}) AS "callsRoutine"
      FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid WHERE c.relnamespace = ANY($1)`, [namespaces])) {
    attrdefs.set(row.relid, [...(attrdefs.get(row.relid) ?? []), row]);
  }

  const tables: TocTable[] = [];
  const sequenceValues: Array<[number, string]> = [];
  const sequenceReads: Array<{ entry: number; qname: string }> = [];
  const byQname = new Map<string, Draft>();
  const attaches: Array<{ child: Draft; parent: string; sql: string; schema: string; name: string }> = [];

  /** The grants on a table, view or materialized view, and on its columns. */
  const relationGrants = (rel: (typeof relations)[number], keyword: string, entry: Draft): void => {
    const columnAcl = (rel.columns ?? []).flatMap((column) => (column.acl ? [columnGrants(rel.qname, column.name, rel.owner, column.acl)] : []));
    grants(`${keyword} ${rel.qname}`, `TABLE ${rel.qname}`, rel.owner, rel.acl, entry, rel.schema, columnAcl);
  };

  for (const rel of relations) {
    const creates = [key('pg_class', rel.oid), key('pg_type', rel.rowtype), ...(rel.rowarray ? [key('pg_type', rel.rowarray)] : [])];
    const options = (rel.options ?? []).filter((option) => !option.startsWith('check_option='));
    const withOptions = options.length > 0 ? ` WITH (${options.join(', ')})` : '';
    if (rel.relkind === 'S') {
      if (rel.identityseq) continue;
      const entry = add({
        kind: 'SEQUENCE', schema: rel.schema, name: rel.name, section: 'pre-data',
        sql: `CREATE${rel.persistence === 'u' ? ' UNLOGGED' : ''} SEQUENCE ${rel.qname} ${rel.seq};`,
        owner: `ALTER SEQUENCE ${rel.qname} OWNER TO ${rel.owner};`, creates: [key('pg_class', rel.oid)],
      });
      sequenceReads.push({ entry: entry.id, qname: rel.qname });
      if (rel.ownedby) {
        add({
          kind: 'SEQUENCE OWNED BY', schema: rel.schema, name: rel.name, section: 'pre-data',
          sql: `ALTER SEQUENCE ${rel.qname} OWNED BY ${rel.ownedby.qualified};`, after: [entry.id], needs: [key('pg_class', rel.ownedby.table)],
        });
      }
      comment(`SEQUENCE ${rel.qname}`, rel.comment, entry, rel.schema);
      grants(`SEQUENCE ${rel.qname}`, `SEQUENCE ${rel.qname}`, rel.owner, rel.acl, entry, rel.schema);
      continue;
    }
    if (rel.relkind === 'v' || rel.relkind === 'm') {
      const matview = rel.relkind === 'm';
      const checkOption = (rel.options ?? []).find((option) => option.startsWith('check_option='))?.slice('check_option='.length);
      const body = rel.viewdef!.trim().replace(/;$/, '');
      const sql = matview
        ? `CREATE MATERIALIZED VIEW ${rel.qname}${rel.am ? ` USING ${rel.am}` : ''}${withOptions} AS\n${body}\n  WITH NO DATA;`
        : `CREATE VIEW ${rel.qname}${withOptions} AS\n${body}${checkOption ? `\n  WITH ${checkOption.toUpperCase()} CHECK OPTION` : ''};`;
      const keyword = matview ? 'MATERIALIZED VIEW' : 'VIEW';
      const dummyColumns = (rel.columns ?? []).map((column) => `NULL::${column.type}${column.collation ? ` COLLATE ${column.collation}` : ''} AS ${column.name}`);
      const entry = add({
        kind: keyword, schema: rel.schema, name: rel.name, section: 'pre-data', sql, owner: `ALTER ${keyword} ${rel.qname} OWNER TO ${rel.owner};`,
        creates: [...creates, ...(rel.rules ?? []).map((rule) => key('pg_rewrite', rule))],
        ...(matview ? {} : { dummy: `CREATE VIEW ${rel.qname} AS\nSELECT${dummyColumns.length > 0 ? `\n    ${dummyColumns.join(',\n    ')}` : ''};` }),
      });
      byQname.set(rel.qname, entry);
      if (matview && rel.populated) {
        add({ kind: 'MATERIALIZED VIEW DATA', schema: rel.schema, name: rel.name, section: 'post-data', sql: `REFRESH MATERIALIZED VIEW ${rel.qname};`, after: [entry.id] });
      }
      comment(`${keyword} ${rel.qname}`, rel.comment, entry, rel.schema);
      for (const column of rel.columns ?? []) comment(`COLUMN ${rel.qname}.${column.name}`, column.comment, entry, rel.schema);
      relationGrants(rel, keyword, entry);
      continue;
    }

    // A table: columns, inline CHECK constraints, then per-column settings CREATE TABLE cannot say.
    const columns = rel.columns ?? [];
    const printed = columns.filter((column) => column.local || rel.ispartition);
    const defaults = attrdefs.get(rel.oid) ?? [];
    const apart = defaults.filter((attrdef) => attrdef.callsRoutine && columns.some((column) => column.num === attrdef.num && column.generated === ''));
    const inline = (column: ColumnRow): boolean => column.def !== null && column.generated === '' && !apart.some((attrdef) => attrdef.num === column.num);
    const lines = printed.map((column) => {
      let line = `${column.name} ${column.type}`;
      if (column.collation) line += ` COLLATE ${column.collation}`;
      if (column.generated === 's') line += ` GENERATED ALWAYS AS (${column.def}) STORED`;
      else if (inline(column)) line += ` DEFAULT ${column.def}`;
      if (column.notnull) line += ' NOT NULL';
      return line;
    });
    for (const check of rel.checks ?? []) {
      lines.push(`CONSTRAINT ${check.name} ${check.def}`);
      creates.push(key('pg_constraint', check.oid));
    }
    for (const attrdef of defaults) if (!apart.includes(attrdef)) creates.push(key('pg_attrdef', attrdef.oid));
    const statements = [
      `CREATE${rel.persistence === 'u' ? ' UNLOGGED' : ''} TABLE ${rel.qname} (${lines.length > 0 ? `\n    ${lines.join(',\n    ')}\n` : ''})` +
        `${rel.inherits ? `\nINHERITS (${rel.inherits.join(', ')})` : ''}${rel.partkey ? `\nPARTITION BY ${rel.partkey}` : ''}` +
        `${rel.am ? `\nUSING ${rel.am}` : ''}${withOptions};`,
    ];
    for (const column of columns) {
      const alter = `ALTER TABLE ONLY ${rel.qname} ALTER COLUMN ${column.name}`;
      if (!printed.includes(column)) {
        if (column.notnull) statements.push(`${alter} SET NOT NULL;`);
        if (inline(column)) statements.push(`${alter} SET DEFAULT ${column.def};`);
      }
      if (column.identitySeq) {
        const { oid, qname, options } = column.identitySeq;
        creates.push(key('pg_class', oid));
        // The identity's sequence takes the column's type, and refuses an `AS` of its own: another type
        // (`AS integer` on a bigint column) is set afterwards, with the bounds that may not fit the column's.
        const [, type, rest] = /^AS (\S+) (.*)$/.exec(options)!;
        const ownType = type !== column.type;
        const identityOptions = ownType ? rest!.replace(/ MINVALUE \S+ MAXVALUE \S+/, '') : rest;
        statements.push(`${alter} ADD GENERATED ${column.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY (\n    SEQUENCE NAME ${qname}\n    ${identityOptions}\n);`);
        if (ownType) statements.push(`ALTER SEQUENCE ${qname} ${options};`);
      }
      if (column.storage) statements.push(`${alter} SET STORAGE ${{ p: 'PLAIN', e: 'EXTERNAL', m: 'MAIN', x: 'EXTENDED' }[column.storage]};`);
      if (column.compression) statements.push(`${alter} SET COMPRESSION ${{ p: 'pglz', l: 'lz4' }[column.compression] ?? column.compression};`);
      if (column.stattarget !== null) statements.push(`${alter} SET STATISTICS ${column.stattarget};`);
      if (column.options) statements.push(`${alter} SET (${column.options.join(', ')});`);
    }
    if (rel.replident === 'n' || rel.replident === 'f') statements.push(`ALTER TABLE ONLY ${rel.qname} REPLICA IDENTITY ${rel.replident === 'n' ? 'NOTHING' : 'FULL'};`);
    const entry = add({
      kind: 'TABLE', schema: rel.schema, name: rel.name, section: 'pre-data', sql: statements.join('\n'),
      owner: `ALTER TABLE ${rel.qname} OWNER TO ${rel.owner};`, creates,
    });
    byQname.set(rel.qname, entry);
    for (const attrdef of apart) {
      const column = columns.find((c) => c.num === attrdef.num)!;
      add({
        kind: 'DEFAULT', schema: rel.schema, name: `${rel.name} ${column.name}`, section: 'pre-data',
        sql: `ALTER TABLE ONLY ${rel.qname} ALTER COLUMN ${column.name} SET DEFAULT ${column.def};`, creates: [key('pg_attrdef', attrdef.oid)], after: [entry.id],
      });
    }
    for (const column of columns) {
      if (column.identitySeq) sequenceReads.push({ entry: entry.id, qname: column.identitySeq.qname });
    }
    if (rel.parent) attaches.push({ child: entry, parent: rel.parent, sql: `ALTER TABLE ONLY ${rel.parent} ATTACH PARTITION ${rel.qname} ${rel.bound};`, schema: rel.schema, name: rel.name });
    if (rel.rls || rel.forcerls) {
      const rls = [`ALTER TABLE ${rel.qname} ENABLE ROW LEVEL SECURITY;`, ...(rel.forcerls ? [`ALTER TABLE ${rel.qname} FORCE ROW LEVEL SECURITY;`] : [])];
      add({ kind: 'ROW SECURITY', schema: rel.schema, name: rel.name, section: 'post-data', sql: rls.join('\n'), after: [entry.id] });
    }
    comment(`TABLE ${rel.qname}`, rel.comment, entry, rel.schema);
    for (const check of rel.checks ?? []) comment(`CONSTRAINT ${check.name} ON ${rel.qname}`, check.comment, entry, rel.schema);
    for (const column of columns) comment(`COLUMN ${rel.qname}.${column.name}`, column.comment, entry, rel.schema);
    relationGrants(rel, 'TABLE', entry);
    if (rel.relkind === 'r') {
      tables.push({
        entry: entry.id, qualifiedName: rel.qname, columns: columns.filter((column) => column.generated === '').map((column) => column.name),
        dataPath: `data/${String(entry.id).padStart(5, '0')}-${slug(`${rel.schema}.${rel.name}`)}`, estimatedBytes: Number(rel.bytes),
      });
    }
  }
  for (const attach of attaches) {
    const parent = byQname.get(attach.parent);
    add({ kind: 'TABLE ATTACH', schema: attach.schema, name: attach.name, section: 'pre-data', sql: attach.sql, after: [attach.child.id, ...(parent ? [parent.id] : [])] });
  }

  // Sequence values, read inside the snapshot (they are not transactional: as pg_dump, this is the value now).
  for (let i = 0; i < sequenceReads.length; i += 500) {
    const batch = sequenceReads.slice(i, i + 500);
    const rows = await q<{ i: number; last: string; called: boolean }>(
      batch.map((seq, j) => `SELECT ${j} AS i, last_value::text AS last, is_called AS called FROM ${seq.qname}`).join(' UNION ALL '),
    );
    for (const row of rows) {
      const seq = batch[row.i]!;
      sequenceValues.push([seq.entry, `SELECT pg_catalog.setval(${quoteLiteral(seq.qname)}, ${row.last}, ${row.called});`]);
    }
  }
  return { tables, sequenceValues };
}

async function readPostData(
  q: Query, namespaces: number[], key: Key, add: Add, comment: Comment, versionNum: number, warn: (warning: { code: 'SKIPPED'; message: string }) => void,
): Promise<void> {
  const relationOf = `JOIN pg_class c ON c.oid = %REL% JOIN pg_namespace n ON n.oid = c.relnamespace`;
  const onTable = (rel: string): string => relationOf.replace('%REL%', rel);

  // Constraints that live outside CREATE TABLE; check constraints NOT VALID come here too.
  const constraintRows = await q<{
    oid: number; schema: string; table: string; tableName: string; relkind: string; name: string; contype: string; def: string; index: number; comment: string | null;
    indexName: string | null; indexOptions: string[] | null; indexComment: string | null;
  }>(`
    SELECT co.oid::int AS oid, n.nspname AS schema, format('%I.%I', n.nspname, c.relname) AS table, c.relname AS "tableName", c.relkind,
           quote_ident(co.conname) AS name, co.contype::text AS contype, pg_get_constraintdef(co.oid) AS def, co.conindid::int AS index,
           obj_description(co.oid, 'pg_constraint') AS comment,
           -- The index of a primary key or unique constraint has its own options and comment, which pg_get_constraintdef leaves out.
           (SELECT format('%I.%I', n.nspname, ic.relname) FROM pg_class ic WHERE ic.oid = co.conindid) AS "indexName",
           (SELECT ic.reloptions FROM pg_class ic WHERE ic.oid = co.conindid AND co.contype IN ('p', 'u')) AS "indexOptions",
           CASE WHEN co.conindid <> 0 THEN obj_description(co.conindid, 'pg_class') END AS "indexComment"
      FROM pg_constraint co ${onTable('co.conrelid')}
     WHERE c.relnamespace = ANY($1) AND c.relkind IN ('r', 'p')
       AND (co.contype IN ('p', 'u', 'x') OR (co.contype = 'f' AND co.conparentid = 0) OR (co.contype = 'c' AND co.conislocal AND NOT co.convalidated))
       AND ${notExtensionMember('pg_class', 'c.oid')}`, [namespaces]);
  const constraintIndexes = new Set(constraintRows.filter((row) => row.contype !== 'f').map((row) => row.index));
  const indexCreators = new Map<number, Draft>();
  for (const row of constraintRows) {
    const foreign = row.contype === 'f';
    // A CHECK constraint is added to the children too (they have it, inherited): ONLY fails on an inheritance parent.
    const only = (foreign && row.relkind === 'p') || row.contype === 'c' ? '' : 'ONLY ';
    const indexOptions = row.indexOptions ? ` WITH (${row.indexOptions.join(', ')})` : '';
    const entry = add({
      kind: foreign ? 'FK CONSTRAINT' : 'CONSTRAINT', schema: row.schema, name: `${row.tableName} ${row.name}`, section: 'post-data',
      sql: `ALTER TABLE ${only}${row.table}\n    ADD CONSTRAINT ${row.name} ${row.def}${indexOptions};`,
      creates: [key('pg_constraint', row.oid), ...(foreign || row.index === 0 ? [] : [key('pg_class', row.index)])],
    });
    if (!foreign && row.index !== 0) indexCreators.set(row.index, entry);
    comment(`CONSTRAINT ${row.name} ON ${row.table}`, row.comment, entry, row.schema);
    if (!foreign && row.indexName) comment(`INDEX ${row.indexName}`, row.indexComment, entry, row.schema);
  }

  const indexes = await q<{
    oid: number; schema: string; name: string; ident: string; qname: string; table: string; def: string; valid: boolean; clustered: boolean; replident: boolean;
    comment: string | null; stats: string[] | null;
  }>(`
    SELECT i.indexrelid::int AS oid, n.nspname AS schema, ic.relname AS name, quote_ident(ic.relname) AS ident, format('%I.%I', n.nspname, ic.relname) AS qname,
           format('%I.%I', n.nspname, c.relname) AS table, pg_get_indexdef(i.indexrelid) AS def,
           -- A partitioned index is invalid until every partition's index is attached: the restore attaches them too.
           i.indisvalid OR ic.relkind = 'I' AS valid, i.indisclustered AS clustered,
           i.indisreplident AS replident, obj_description(i.indexrelid, 'pg_class') AS comment,
           (SELECT array_agg(a.attnum || ' ' || (to_jsonb(a)->>'attstattarget')) FROM pg_attribute a
             WHERE a.attrelid = i.indexrelid AND (to_jsonb(a)->>'attstattarget')::int >= 0) AS stats
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid ${onTable('i.indrelid')}
     WHERE c.relnamespace = ANY($1) AND c.relkind IN ('r', 'p', 'm') AND ${notExtensionMember('pg_class', 'c.oid')}`, [namespaces]);
  for (const index of indexes) {
    if (!index.valid) {
      // What a failed CREATE INDEX CONCURRENTLY leaves: recreating it would fail the restore (a unique one) or
      // build an index the source does not use. pg_dump skips it too.
      warn({ code: 'SKIPPED', message: `Index ${index.qname} is invalid (left by a failed CREATE INDEX CONCURRENTLY?) and is not backed up, as pg_dump does: drop it, or REINDEX it to keep it` });
      continue;
    }
    let entry = indexCreators.get(index.oid);
    if (!constraintIndexes.has(index.oid)) {
      const statements = [`${index.def};`];
      for (const stat of index.stats ?? []) {
        const [column, target] = stat.split(' ');
        statements.push(`ALTER INDEX ${index.qname} ALTER COLUMN ${column} SET STATISTICS ${target};`);
      }
      entry = add({ kind: 'INDEX', schema: index.schema, name: index.name, section: 'post-data', sql: statements.join('\n'), creates: [key('pg_class', index.oid)] });
      comment(`INDEX ${index.qname}`, index.comment, entry, index.schema);
    }
    if (!entry) continue;
    if (index.clustered) add({ kind: 'CLUSTER ON', schema: index.schema, name: index.name, section: 'post-data', sql: `ALTER TABLE ${index.table} CLUSTER ON ${index.ident};`, after: [entry.id] });
    if (index.replident) add({ kind: 'REPLICA IDENTITY', schema: index.schema, name: index.name, section: 'post-data', sql: `ALTER TABLE ONLY ${index.table} REPLICA IDENTITY USING INDEX ${index.ident};`, after: [entry.id] });
  }

  // Indexes of partitions are attached to their partitioned parent's index; pg_depend does not order that for us.
  for (const row of await q<{ child: number; parent: number; schema: string; name: string; sql: string }>(`
    SELECT i.inhrelid::int AS child, i.inhparent::int AS parent, n.nspname AS schema, c.relname AS name,
           format('ALTER INDEX %I.%I ATTACH PARTITION %I.%I;', pn.nspname, p.relname, n.nspname, c.relname) AS sql
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
     WHERE c.relkind IN ('i', 'I') AND c.relnamespace = ANY($1)
       AND EXISTS (SELECT 1 FROM pg_index x WHERE x.indexrelid = c.oid AND (x.indisvalid OR c.relkind = 'I'))`, [namespaces])) {
    add({ kind: 'INDEX ATTACH', schema: row.schema, name: row.name, section: 'post-data', sql: row.sql, needs: [key('pg_class', row.child), key('pg_class', row.parent)] });
  }

  for (const stat of await q<{ oid: number; schema: string; name: string; qname: string; def: string; owner: string; target: number | null; comment: string | null }>(`
    SELECT s.oid::int AS oid, n.nspname AS schema, s.stxname AS name, format('%I.%I', n.nspname, s.stxname) AS qname, pg_get_statisticsobjdef(s.oid) AS def,
           quote_ident(pg_get_userbyid(s.stxowner)) AS owner, CASE WHEN (to_jsonb(s)->>'stxstattarget')::int >= 0 THEN (to_jsonb(s)->>'stxstattarget')::int END AS target,
           obj_description(s.oid, 'pg_statistic_ext') AS comment
      FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
     WHERE s.stxnamespace = ANY($1) AND ${notExtensionMember('pg_statistic_ext', 's.oid')}`, [namespaces])) {
    const statements = [`${stat.def};`, ...(stat.target === null ? [] : [`ALTER STATISTICS ${stat.qname} SET STATISTICS ${stat.target};`])];
    const entry = add({
      kind: 'STATISTICS', schema: stat.schema, name: stat.name, section: 'post-data', sql: statements.join('\n'),
      owner: `ALTER STATISTICS ${stat.qname} OWNER TO ${stat.owner};`, creates: [key('pg_statistic_ext', stat.oid)],
    });
    comment(`STATISTICS ${stat.qname}`, stat.comment, entry, stat.schema);
  }

  // A partition's copy of its parent's trigger comes with the parent's; only an enable mode of its own
  // (DISABLE, ENABLE ALWAYS/REPLICA on that partition) is written, after the parent's, as pg_dump does.
  const parentId = versionNum >= 130000 ? 't.tgparentid' : '0';
  for (const trigger of await q<{ oid: number; schema: string; name: string; table: string; def: string; enabled: string; parent: number; comment: string | null }>(`
    SELECT t.oid::int AS oid, n.nspname AS schema, t.tgname AS name, format('%I.%I', n.nspname, c.relname) AS table,
           pg_get_triggerdef(t.oid, false) AS def, t.tgenabled::text AS enabled, ${parentId}::int AS parent, obj_description(t.oid, 'pg_trigger') AS comment
      FROM pg_trigger t ${onTable('t.tgrelid')}
     WHERE c.relnamespace = ANY($1) AND NOT t.tgisinternal AND ${notExtensionMember('pg_class', 'c.oid')}
       AND (${parentId} = 0 OR t.tgenabled <> (SELECT p.tgenabled FROM pg_trigger p WHERE p.oid = ${parentId}))`, [namespaces])) {
    const mode = `ALTER TABLE ${trigger.table} ${TRIGGER_MODES[trigger.enabled]} TRIGGER ${quoteIdent(trigger.name)};`;
    if (trigger.parent !== 0) {
      add({ kind: 'TRIGGER', schema: trigger.schema, name: trigger.name, section: 'post-data', sql: mode, needs: [key('pg_trigger', trigger.parent)] });
      continue;
    }
    const statements = [`${trigger.def};`, ...(trigger.enabled === 'O' ? [] : [mode])];
    const entry = add({ kind: 'TRIGGER', schema: trigger.schema, name: trigger.name, section: 'post-data', sql: statements.join('\n'), creates: [key('pg_trigger', trigger.oid)] });
    comment(`TRIGGER ${quoteIdent(trigger.name)} ON ${trigger.table}`, trigger.comment, entry, trigger.schema);
  }

  for (const rule of await q<{ oid: number; schema: string; name: string; table: string; def: string; enabled: string; comment: string | null }>(`
    SELECT r.oid::int AS oid, n.nspname AS schema, r.rulename AS name, format('%I.%I', n.nspname, c.relname) AS table,
           pg_get_ruledef(r.oid) AS def, r.ev_enabled::text AS enabled, obj_description(r.oid, 'pg_rewrite') AS comment
      FROM pg_rewrite r ${onTable('r.ev_class')}
     WHERE c.relnamespace = ANY($1) AND r.rulename <> '_RETURN' AND ${notExtensionMember('pg_class', 'c.oid')}`, [namespaces])) {
    const statements = [rule.def];
    if (rule.enabled !== 'O') statements.push(`ALTER TABLE ${rule.table} ${TRIGGER_MODES[rule.enabled]} RULE ${quoteIdent(rule.name)};`);
    const entry = add({ kind: 'RULE', schema: rule.schema, name: rule.name, section: 'post-data', sql: statements.join('\n'), creates: [key('pg_rewrite', rule.oid)] });
    comment(`RULE ${quoteIdent(rule.name)} ON ${rule.table}`, rule.comment, entry, rule.schema);
  }

  for (const policy of await q<{ oid: number; schema: string; name: string; sql: string; comment: string | null; table: string }>(`
    SELECT p.oid::int AS oid, n.nspname AS schema, p.polname AS name, format('%I.%I', n.nspname, c.relname) AS table,
           format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s%s%s;', p.polname, n.nspname, c.relname,
                  CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                  CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                  (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ') FROM unnest(p.polroles) AS r),
                  CASE WHEN p.polqual IS NOT NULL THEN ' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')' ELSE '' END,
                  CASE WHEN p.polwithcheck IS NOT NULL THEN ' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')' ELSE '' END) AS sql,
           obj_description(p.oid, 'pg_policy') AS comment
      FROM pg_policy p ${onTable('p.polrelid')}
     WHERE c.relnamespace = ANY($1)`, [namespaces])) {
    const entry = add({ kind: 'POLICY', schema: policy.schema, name: policy.name, section: 'post-data', sql: policy.sql, creates: [key('pg_policy', policy.oid)] });
    comment(`POLICY ${quoteIdent(policy.name)} ON ${policy.table}`, policy.comment, entry, policy.schema);
  }
}

/** Large objects with their sizes, read through descriptors opened in the snapshot (INV_READ). */
async function readLargeObjects(q: Query): Promise<LargeObjectInfo[]> {
  const rows = await q<{ oid: number; size: string; owner: string; acl: string | null; comment: string | null }>(`
    SELECT m.oid::bigint AS oid, lo_lseek64(lo_open(m.oid, 262144), 0, 2)::text AS size, quote_ident(pg_get_userbyid(m.lomowner)) AS owner,
           ${aclSql('m.lomacl')} AS acl, obj_description(m.oid, 'pg_largeobject') AS comment
      FROM pg_largeobject_metadata m ORDER BY m.oid`);
  return rows.map((row) => ({
    oid: Number(row.oid),
    size: Number(row.size),
    owner: row.owner,
    acl: row.acl === null ? null : Object.values(aclStatements(`LARGE OBJECT ${row.oid}`, row.owner, row.acl)).flat().join('\n'),
    comment: row.comment,
  }));
}

/** A folder name readable by people and safe on every filesystem. */
function slug(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 60);
}
