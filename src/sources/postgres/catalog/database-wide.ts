/**
 * Objects of no schema or of every table: default privileges, publications, subscriptions and event
 * triggers. Like pg_dump, they come after everything else, so that none applies to (or fires on) the
 * objects a restore creates, and only without `schemas` (but for default privileges of a schema
 * backed up).
 */
import { BackupError } from '../../../errors.js';
import { quoteLiteral } from '../connection.js';
import { notExtensionMember, type CatalogBuilder } from './builder.js';
import { aclSql } from './privileges.js';

/** `defaclobjtype` as the words of ALTER DEFAULT PRIVILEGES. */
const DEFAULT_ACL_OBJECTS: Record<string, string> = { r: 'TABLES', S: 'SEQUENCES', f: 'FUNCTIONS', T: 'TYPES', n: 'SCHEMAS' };

/** `evtenabled` as the ALTER EVENT TRIGGER words that set it; `O` (enabled) is what CREATE gives. */
const EVENT_TRIGGER_MODES: Record<string, string> = { D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' };

/**
 * ALTER DEFAULT PRIVILEGES, one entry per role, schema and kind of object. A default for every schema
 * starts from the built-in defaults (`acldefault`), which are revoked first; one for a schema only
 * adds to them, so its grants are the whole of it. Grants are replayed in the ACL's order.
 */
export async function readDefaultPrivileges(b: CatalogBuilder): Promise<void> {
  for (const row of await b.query<{ oid: number; role: string; schema: string | null; ident: string | null; objtype: string; acl: string | null }>(`
    SELECT d.oid::int AS oid, quote_ident(pg_get_userbyid(d.defaclrole)) AS role, n.nspname AS schema, quote_ident(n.nspname) AS ident, d.defaclobjtype::text AS objtype,
           ${aclSql('d.defaclacl')} AS acl
      FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
     WHERE CASE WHEN d.defaclnamespace = 0 THEN $2 ELSE d.defaclnamespace = ANY($1) END
     ORDER BY 2, 3 NULLS FIRST, 4`, [b.namespaces, b.wholeDatabase])) {
    const objects = DEFAULT_ACL_OBJECTS[row.objtype]!;
    const prefix = `ALTER DEFAULT PRIVILEGES FOR ROLE ${row.role}${row.schema === null ? '' : ` IN SCHEMA ${row.ident}`}`;
    const items = (JSON.parse(row.acl ?? '[]') ?? []) as Array<{ item: number; grantee: string; privilege: string; grantable: boolean }>;
    const statements = row.schema === null ? [`${prefix} REVOKE ALL ON ${objects} FROM PUBLIC;`, `${prefix} REVOKE ALL ON ${objects} FROM ${row.role};`] : [];
    for (let i = 0; i < items.length; ) {
      const { item, grantee } = items[i]!;
      const privileges = { plain: [] as string[], withOption: [] as string[] };
      for (; i < items.length && items[i]!.item === item; i++) (items[i]!.grantable ? privileges.withOption : privileges.plain).push(items[i]!.privilege);
      if (privileges.plain.length > 0) statements.push(`${prefix} GRANT ${privileges.plain.join(',')} ON ${objects} TO ${grantee};`);
      if (privileges.withOption.length > 0) statements.push(`${prefix} GRANT ${privileges.withOption.join(',')} ON ${objects} TO ${grantee} WITH GRANT OPTION;`);
    }
    b.add({
      kind: 'DEFAULT ACL', schema: row.schema, name: `${row.role} ${objects}`, section: 'post-data', sql: statements.join('\n'),
      creates: [b.key('pg_default_acl', row.oid)],
    });
  }
}

/**
 * Publications with their tables (row filters and column lists, PostgreSQL 15) and schemas. A
 * publication FOR ALL TABLES or of a schema's tables needs a superuser to create it.
 */
export async function readPublications(b: CatalogBuilder): Promise<void> {
  if (!b.wholeDatabase) return;
  for (const pub of await b.query<{
    oid: number; name: string; ident: string; owner: string; alltables: boolean; publish: string; viaroot: boolean; comment: string | null;
  }>(`
    -- pubviaroot is a column of PostgreSQL 13 and newer, read by name.
    SELECT p.oid::int AS oid, p.pubname AS name, quote_ident(p.pubname) AS ident, quote_ident(pg_get_userbyid(p.pubowner)) AS owner,
           p.puballtables AS alltables, coalesce((to_jsonb(p)->>'pubviaroot')::boolean, false) AS viaroot, obj_description(p.oid, 'pg_publication') AS comment,
           concat_ws(', ', CASE WHEN p.pubinsert THEN 'insert' END, CASE WHEN p.pubupdate THEN 'update' END,
                     CASE WHEN p.pubdelete THEN 'delete' END, CASE WHEN p.pubtruncate THEN 'truncate' END) AS publish
      FROM pg_publication p ORDER BY p.pubname`)) {
    const options = [`publish = ${quoteLiteral(pub.publish)}`, ...(pub.viaroot ? ['publish_via_partition_root = true'] : [])];
    const entry = b.add({
      kind: 'PUBLICATION', schema: null, name: pub.name, section: 'post-data',
      sql: `CREATE PUBLICATION ${pub.ident}${pub.alltables ? ' FOR ALL TABLES' : ''} WITH (${options.join(', ')});`,
      owner: `ALTER PUBLICATION ${pub.ident} OWNER TO ${pub.owner};`, creates: [b.key('pg_publication', pub.oid)],
    });
    b.comment(`PUBLICATION ${pub.ident}`, pub.comment, entry, null);
  }
  const v15 = b.serverVersion >= 150000;
  for (const rel of await b.query<{ oid: number; publication: string; schema: string; table: string; qname: string; columns: string | null; qual: string | null }>(`
    SELECT r.oid::int AS oid, quote_ident(p.pubname) AS publication, n.nspname AS schema, c.relname AS table, format('%I.%I', n.nspname, c.relname) AS qname,
           ${v15 ? `(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord) FROM unnest(r.prattrs::int2[]) WITH ORDINALITY AS k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = r.prrelid AND a.attnum = k.num)` : 'NULL'} AS columns,
           ${v15 ? 'pg_get_expr(r.prqual, r.prrelid)' : 'NULL'} AS qual
      FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     ORDER BY p.pubname, n.nspname, c.relname`)) {
    b.add({
      kind: 'PUBLICATION TABLE', schema: rel.schema, name: `${rel.publication} ${rel.table}`, section: 'post-data',
      sql: `ALTER PUBLICATION ${rel.publication} ADD TABLE ONLY ${rel.qname}${rel.columns === null ? '' : ` (${rel.columns})`}${rel.qual === null ? '' : ` WHERE (${rel.qual})`};`,
      creates: [b.key('pg_publication_rel', rel.oid)],
    });
  }
  if (!v15) return;
  for (const ns of await b.query<{ oid: number; publication: string; schema: string; ident: string }>(`
    SELECT pn.oid::int AS oid, quote_ident(p.pubname) AS publication, n.nspname AS schema, quote_ident(n.nspname) AS ident
      FROM pg_publication_namespace pn JOIN pg_publication p ON p.oid = pn.pnpubid JOIN pg_namespace n ON n.oid = pn.pnnspid
     ORDER BY p.pubname, n.nspname`)) {
    b.add({
      kind: 'PUBLICATION TABLES IN SCHEMA', schema: ns.schema, name: `${ns.publication} ${ns.schema}`, section: 'post-data',
      sql: `ALTER PUBLICATION ${ns.publication} ADD TABLES IN SCHEMA ${ns.ident};`, creates: [b.key('pg_publication_namespace', ns.oid)],
    });
  }
}

/** Event triggers (superuser only), with their enable mode and tags. */
export async function readEventTriggers(b: CatalogBuilder): Promise<void> {
  if (!b.wholeDatabase) return;
  for (const trigger of await b.query<{ oid: number; name: string; ident: string; event: string; owner: string; enabled: string; tags: string[] | null; func: string; comment: string | null }>(`
    SELECT et.oid::int AS oid, et.evtname AS name, quote_ident(et.evtname) AS ident, et.evtevent AS event, quote_ident(pg_get_userbyid(et.evtowner)) AS owner,
           et.evtenabled::text AS enabled, et.evttags AS tags, format('%I.%I', n.nspname, p.proname) AS func, obj_description(et.oid, 'pg_event_trigger') AS comment
      FROM pg_event_trigger et JOIN pg_proc p ON p.oid = et.evtfoid JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE ${notExtensionMember('pg_event_trigger', 'et.oid')}
     ORDER BY et.evtname`)) {
    const tags = trigger.tags ? `\n    WHEN TAG IN (${trigger.tags.map(quoteLiteral).join(', ')})` : '';
    const mode = EVENT_TRIGGER_MODES[trigger.enabled];
    // Its comment in the same entry: a restore creates event triggers after everything else (restore-sink.ts).
    const statements = [
      `CREATE EVENT TRIGGER ${trigger.ident} ON ${trigger.event}${tags}\n    EXECUTE FUNCTION ${trigger.func}();`,
      ...(mode ? [`ALTER EVENT TRIGGER ${trigger.ident} ${mode};`] : []),
      ...(trigger.comment === null ? [] : [`COMMENT ON EVENT TRIGGER ${trigger.ident} IS ${quoteLiteral(trigger.comment)};`]),
    ];
    b.add({
      kind: 'EVENT TRIGGER', schema: null, name: trigger.name, section: 'post-data', sql: statements.join('\n'),
      owner: `ALTER EVENT TRIGGER ${trigger.ident} OWNER TO ${trigger.owner};`, creates: [b.key('pg_event_trigger', trigger.oid)],
    });
  }
}

/**
 * Subscriptions, as pg_dump writes them: `connect = false`, so that a restore neither connects to the
 * publisher nor creates a slot, nor copies anything; a restored subscription is disabled, and is
 * enabled by whoever decides that the copy should replicate (an enabled copy would take its slot
 * from the subscriber it was made from). Their connection strings hold credentials, readable by a
 * superuser only.
 */
export async function readSubscriptions(b: CatalogBuilder): Promise<void> {
  if (!b.wholeDatabase) return;
  const [access] = await b.query<{ count: number; readable: boolean }>(`
    SELECT count(*)::int AS count, has_column_privilege('pg_catalog.pg_subscription', 'subconninfo', 'SELECT') AS readable
      FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`);
  if (!access || access.count === 0) return;
  if (!access.readable) {
    throw new BackupError('SOURCE_FAILED', `The database has ${access.count} subscription(s), whose connection strings only a superuser can read`, {
      hint: 'Back up as a superuser, or back up only some schemas with `schemas` (subscriptions are then left out, as pg_dump --schema leaves them out).',
    });
  }
  for (const sub of await b.query<{ oid: number; name: string; ident: string; owner: string; conninfo: string; slot: string | null; publications: string[]; info: Record<string, unknown>; comment: string | null }>(`
    SELECT s.oid::int AS oid, s.subname AS name, quote_ident(s.subname) AS ident, quote_ident(pg_get_userbyid(s.subowner)) AS owner, s.subconninfo AS conninfo,
           s.subslotname AS slot, (SELECT array_agg(quote_ident(p) ORDER BY o) FROM unnest(s.subpublications) WITH ORDINALITY AS x(p, o)) AS publications,
           -- Options differ between versions (two_phase and disable_on_error 15, origin 16, failover 17): read by name.
           to_jsonb(s) - 'subconninfo' AS info, obj_description(s.oid, 'pg_subscription') AS comment
      FROM pg_subscription s WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
     ORDER BY s.subname`)) {
    const info = sub.info;
    const on = (value: unknown): boolean => value === true || value === 't';
    const options = ['connect = false', `slot_name = ${sub.slot === null ? 'NONE' : quoteLiteral(sub.slot)}`];
    if (on(info['subbinary'])) options.push('binary = true');
    if (on(info['substream'])) options.push('streaming = on');
    if (info['substream'] === 'p') options.push('streaming = parallel');
    if (typeof info['subtwophasestate'] === 'string' && info['subtwophasestate'] !== 'd') options.push('two_phase = on');
    if (on(info['subdisableonerr'])) options.push('disable_on_error = true');
    if (typeof info['subsynccommit'] === 'string' && info['subsynccommit'] !== 'off') options.push(`synchronous_commit = ${quoteLiteral(info['subsynccommit'])}`);
    if (typeof info['suborigin'] === 'string' && info['suborigin'] !== 'any') options.push(`origin = ${quoteLiteral(info['suborigin'])}`);
    if (info['subpasswordrequired'] === false) options.push('password_required = false');
    if (on(info['subrunasowner'])) options.push('run_as_owner = true');
    if (on(info['subfailover'])) options.push('failover = true');
    const entry = b.add({
      kind: 'SUBSCRIPTION', schema: null, name: sub.name, section: 'post-data',
      sql: `CREATE SUBSCRIPTION ${sub.ident} CONNECTION ${quoteLiteral(sub.conninfo)} PUBLICATION ${sub.publications.join(', ')} WITH (${options.join(', ')});`,
      owner: `ALTER SUBSCRIPTION ${sub.ident} OWNER TO ${sub.owner};`, creates: [b.key('pg_subscription', sub.oid)],
    });
    b.comment(`SUBSCRIPTION ${sub.ident}`, sub.comment, entry, null);
  }
}
