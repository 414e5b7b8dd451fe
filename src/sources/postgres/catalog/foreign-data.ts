/**
 * Foreign-data wrappers, foreign servers and user mappings (foreign tables are relations). Backed up
 * whatever `schemas` says, unlike pg_dump: a foreign table of those schemas cannot be restored
 * without its server, and they belong to no schema.
 */
import { BackupError } from '../../../errors.js';
import { quoteLiteral } from '../connection.js';
import { notExtensionMember, type CatalogBuilder } from './builder.js';
import { aclSql, aclStatements } from './privileges.js';
import { optionsSql } from './relations.js';

/** A function's name as `schema.name`, or null for none. */
function functionName(oid: string): string {
  return `(SELECT format('%I.%I', fn.nspname, f.proname) FROM pg_proc f JOIN pg_namespace fn ON fn.oid = f.pronamespace WHERE f.oid = ${oid})`;
}

/** Wrappers of no extension, grants on an extension's wrapper, servers and user mappings, with their options, owners, grants and comments. */
export async function readForeignData(b: CatalogBuilder): Promise<void> {
  for (const fdw of await b.query<{
    oid: number; name: string; ident: string; owner: string; handler: string | null; validator: string | null; options: string | null; acl: string | null; comment: string | null;
  }>(`
    SELECT w.oid::int AS oid, w.fdwname AS name, quote_ident(w.fdwname) AS ident, quote_ident(pg_get_userbyid(w.fdwowner)) AS owner,
           ${functionName('w.fdwhandler')} AS handler, ${functionName('w.fdwvalidator')} AS validator, ${optionsSql('w.fdwoptions')} AS options,
           ${aclSql('w.fdwacl')} AS acl, obj_description(w.oid, 'pg_foreign_data_wrapper') AS comment
      FROM pg_foreign_data_wrapper w
     WHERE ${notExtensionMember('pg_foreign_data_wrapper', 'w.oid')}
     ORDER BY w.fdwname`)) {
    const clauses = [
      ...(fdw.handler ? [`HANDLER ${fdw.handler}`] : []), ...(fdw.validator ? [`VALIDATOR ${fdw.validator}`] : []), ...(fdw.options ? [`OPTIONS (${fdw.options})`] : []),
    ];
    const entry = b.add({
      kind: 'FOREIGN DATA WRAPPER', schema: null, name: fdw.name, section: 'pre-data', sql: `CREATE FOREIGN DATA WRAPPER ${fdw.ident}${clauses.map((clause) => ` ${clause}`).join('')};`,
      owner: `ALTER FOREIGN DATA WRAPPER ${fdw.ident} OWNER TO ${fdw.owner};`, creates: [b.key('pg_foreign_data_wrapper', fdw.oid)],
    });
    b.comment(`FOREIGN DATA WRAPPER ${fdw.ident}`, fdw.comment, entry, null);
    b.grants(`FOREIGN DATA WRAPPER ${fdw.ident}`, `FOREIGN DATA WRAPPER ${fdw.ident}`, fdw.owner, fdw.acl, entry, null);
  }

  // An extension's wrapper (postgres_fdw) granted to roles that may then create servers: the grants
  // that differ from what the extension's script set, as for its functions (schemas.ts).
  for (const member of await b.query<{ ext: number; name: string; ident: string; owner: string; acl: string | null }>(`
    SELECT d.refobjid::int AS ext, w.fdwname AS name, quote_ident(w.fdwname) AS ident, quote_ident(pg_get_userbyid(w.fdwowner)) AS owner, ${aclSql('w.fdwacl')} AS acl
      FROM pg_foreign_data_wrapper w JOIN pg_depend d ON d.classid = 'pg_foreign_data_wrapper'::regclass AND d.objid = w.oid AND d.deptype = 'e'
      LEFT JOIN pg_init_privs i ON i.classoid = d.classid AND i.objoid = w.oid AND i.objsubid = 0
     WHERE w.fdwacl IS DISTINCT FROM i.initprivs
     ORDER BY w.fdwname`)) {
    const plan = aclStatements(`FOREIGN DATA WRAPPER ${member.ident}`, member.owner, member.acl ?? '[]');
    b.add({
      kind: 'EXTENSION ACL', schema: null, name: `FOREIGN DATA WRAPPER ${member.name}`, section: 'post-data', sql: [...plan.owned, ...plan.delegated].join('\n'),
      needs: [b.key('pg_extension', member.ext)],
    });
  }

  for (const server of await b.query<{
    oid: number; name: string; ident: string; fdw: string; type: string | null; version: string | null; owner: string; options: string | null; acl: string | null; comment: string | null;
  }>(`
    SELECT s.oid::int AS oid, s.srvname AS name, quote_ident(s.srvname) AS ident, quote_ident(w.fdwname) AS fdw, s.srvtype AS type, s.srvversion AS version,
           quote_ident(pg_get_userbyid(s.srvowner)) AS owner, ${optionsSql('s.srvoptions')} AS options, ${aclSql('s.srvacl')} AS acl,
           obj_description(s.oid, 'pg_foreign_server') AS comment
      FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
     WHERE ${notExtensionMember('pg_foreign_server', 's.oid')}
     ORDER BY s.srvname`)) {
    const sql = `CREATE SERVER ${server.ident}${server.type === null ? '' : ` TYPE ${quoteLiteral(server.type)}`}${server.version === null ? '' : ` VERSION ${quoteLiteral(server.version)}`}` +
      ` FOREIGN DATA WRAPPER ${server.fdw}${server.options ? ` OPTIONS (${server.options})` : ''};`;
    const entry = b.add({
      kind: 'SERVER', schema: null, name: server.name, section: 'pre-data', sql,
      owner: `ALTER SERVER ${server.ident} OWNER TO ${server.owner};`, creates: [b.key('pg_foreign_server', server.oid)],
    });
    b.comment(`SERVER ${server.ident}`, server.comment, entry, null);
    b.grants(`SERVER ${server.ident}`, `FOREIGN SERVER ${server.ident}`, server.owner, server.acl, entry, null);
  }

  // pg_user_mappings shows a mapping's options (user names, passwords) only to the server's owner,
  // a superuser, or the mapped role: a backup without them would restore mappings that cannot log in.
  const mappings = await b.query<{ oid: number; server: string; serverName: string; role: string; options: string | null; visible: boolean }>(`
    SELECT m.umid::int AS oid, quote_ident(m.srvname) AS server, m.srvname AS "serverName",
           CASE WHEN m.umuser = 0 THEN 'PUBLIC' ELSE quote_ident(m.usename) END AS role, ${optionsSql('m.umoptions')} AS options,
           (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR pg_has_role(s.srvowner, 'USAGE')
             OR (m.umuser <> 0 AND m.usename = current_user AND has_server_privilege(s.oid, 'USAGE')) AS visible
      FROM pg_user_mappings m JOIN pg_foreign_server s ON s.oid = m.srvid
     ORDER BY m.srvname, m.usename`);
  const hidden = mappings.filter((mapping) => !mapping.visible);
  if (hidden.length > 0) {
    throw new BackupError('SOURCE_FAILED', `The options of user mappings are hidden from this role: ${hidden.slice(0, 5).map((m) => `${m.role} on server ${m.serverName}`).join(', ')}`, {
      hint: "Back up as a superuser or as the servers' owner: a backup without the mappings' options would restore mappings that cannot connect.",
    });
  }
  for (const mapping of mappings) {
    b.add({
      kind: 'USER MAPPING', schema: null, name: `${mapping.role} SERVER ${mapping.serverName}`, section: 'pre-data',
      sql: `CREATE USER MAPPING FOR ${mapping.role} SERVER ${mapping.server}${mapping.options ? ` OPTIONS (${mapping.options})` : ''};`,
      creates: [b.key('pg_user_mapping', mapping.oid)],
    });
  }
}
