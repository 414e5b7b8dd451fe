/** Schemas, extensions (with the grants on their members) and collations: what other objects live in or use. */
import { quoteLiteral } from '../connection.js';
import { notExtensionMember, type CatalogBuilder, type Draft } from './builder.js';
import { aclSql, aclStatements } from './privileges.js';

/** A schema backed up, as readCatalog found it. */
export type NamespaceRow = {
  oid: number;
  name: string;
  ident: string;
  owner: string;
  acl: string | null;
  comment: string | null;
};

/** `public` exists in every new database: only its owner, grants and comment are restored. */
export function addSchemas(b: CatalogBuilder, namespaceRows: readonly NamespaceRow[]): void {
  for (const ns of namespaceRows) {
    const entry = b.add({
      kind: 'SCHEMA', schema: null, name: ns.name, section: 'pre-data',
      sql: ns.name === 'public' ? '-- the public schema exists in every new database' : `CREATE SCHEMA ${ns.ident};`,
      owner: `ALTER SCHEMA ${ns.ident} OWNER TO ${ns.owner};`, creates: [b.key('pg_namespace', ns.oid)],
    });
    b.comment(`SCHEMA ${ns.ident}`, ns.comment, entry, null);
    if (ns.name === 'public' && ns.comment === null) {
      // A new database's public schema comes with the comment 'standard public schema': the source had it removed.
      b.add({ kind: 'COMMENT', schema: null, name: 'SCHEMA public', section: 'pre-data', sql: 'COMMENT ON SCHEMA public IS NULL;', after: [entry.id] });
    }
    b.grants(`SCHEMA ${ns.ident}`, `SCHEMA ${ns.ident}`, ns.owner, ns.acl, entry, null);
  }
}

/**
 * Extensions: the CREATE EXTENSION only; their member objects are the extension's business, but for
 * grants on them that differ from what the extension's script set.
 */
export async function readExtensions(b: CatalogBuilder): Promise<void> {
  const extensionEntries = new Map<number, Draft>();
  // Grants on an extension's members that differ from what its script set (pg_init_privs), as pg_dump
  // dumps them: `REVOKE EXECUTE ON FUNCTION crypt(…) FROM PUBLIC` is lost otherwise, reopening access.
  const membersRead = b.query<{ ext: number; schema: string; target: string; owner: string; acl: string | null }>(`
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
     ORDER BY m.target`, [b.namespaces]);
  membersRead.catch(() => {}); // awaited once the extensions are added
  for (const ext of await b.query<{ oid: number; name: string; ident: string; schema: string; comment: string | null }>(`
    SELECT e.oid::int AS oid, e.extname AS name, quote_ident(e.extname) AS ident, quote_ident(n.nspname) AS schema,
           obj_description(e.oid, 'pg_extension') AS comment
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     ORDER BY e.extname`)) {
    const entry = b.add({
      kind: 'EXTENSION', schema: null, name: ext.name, section: 'pre-data',
      sql: `CREATE EXTENSION IF NOT EXISTS ${ext.ident} WITH SCHEMA ${ext.schema};`, creates: [b.key('pg_extension', ext.oid)],
    });
    extensionEntries.set(ext.oid, entry);
    b.comment(`EXTENSION ${ext.ident}`, ext.comment, entry, null);
  }

  for (const member of await membersRead) {
    const ext = extensionEntries.get(member.ext);
    if (!ext) continue;
    // An empty ACL (everything revoked, the owner's rights too) is null here: revoke and grant nothing.
    const plan = aclStatements(member.target, member.owner, member.acl ?? '[]');
    b.add({ kind: 'EXTENSION ACL', schema: member.schema, name: member.target, section: 'post-data', sql: [...plan.owned, ...plan.delegated].join('\n'), after: [ext.id] });
  }
}

export async function readCollations(b: CatalogBuilder): Promise<void> {
  for (const coll of await b.query<{ oid: number; schema: string; name: string; qname: string; owner: string; info: Record<string, unknown>; comment: string | null }>(`
    SELECT c.oid::int AS oid, n.nspname AS schema, c.collname AS name, format('%I.%I', n.nspname, c.collname) AS qname,
           quote_ident(pg_get_userbyid(c.collowner)) AS owner, to_jsonb(c) AS info, obj_description(c.oid, 'pg_collation') AS comment
      FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
     WHERE c.collnamespace = ANY($1) AND ${notExtensionMember('pg_collation', 'c.oid')}`, [b.namespaces])) {
    const info = coll.info;
    const options =
      info['collprovider'] === 'i'
        ? [`provider = icu`, `locale = ${quoteLiteral(String(info['colllocale'] ?? info['colliculocale'] ?? info['collcollate']))}`]
        : [`provider = libc`, `lc_collate = ${quoteLiteral(String(info['collcollate']))}`, `lc_ctype = ${quoteLiteral(String(info['collctype']))}`];
    if (typeof info['collicurules'] === 'string') options.push(`rules = ${quoteLiteral(info['collicurules'])}`);
    if (info['collisdeterministic'] === false) options.push('deterministic = false');
    const entry = b.add({
      kind: 'COLLATION', schema: coll.schema, name: coll.name, section: 'pre-data',
      sql: `CREATE COLLATION ${coll.qname} (${options.join(', ')});`, owner: `ALTER COLLATION ${coll.qname} OWNER TO ${coll.owner};`,
      creates: [b.key('pg_collation', coll.oid)],
    });
    b.comment(`COLLATION ${coll.qname}`, coll.comment, entry, coll.schema);
  }
}
