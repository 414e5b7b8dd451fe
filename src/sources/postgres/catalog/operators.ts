/** Operators, text search dictionaries and configurations: what a role without superuser rights may define beside its functions. */
import { notExtensionMember, type CatalogBuilder } from './builder.js';

/** A function's name as `schema.name`, for options that take a name and find the function by its arguments. */
function functionName(oid: string): string {
  return `(SELECT format('%I.%I', fn.nspname, f.proname) FROM pg_proc f JOIN pg_namespace fn ON fn.oid = f.pronamespace WHERE f.oid = ${oid})`;
}

/** An operator as `OPERATOR(schema.name)`, for COMMUTATOR and NEGATOR (its argument types follow from the operator's). */
function operatorName(oid: string): string {
  return `(SELECT format('OPERATOR(%I.%s)', rn.nspname, r.oprname) FROM pg_operator r JOIN pg_namespace rn ON rn.oid = r.oprnamespace WHERE r.oid = ${oid})`;
}

/**
 * Operators. A shell operator (no function: what a COMMUTATOR naming an operator not yet defined
 * leaves) is skipped, as pg_dump skips it: the operator that names it makes it again.
 */
export async function readOperators(b: CatalogBuilder): Promise<void> {
  for (const op of await b.query<{
    oid: number; schema: string; name: string; target: string; owner: string; comment: string | null; options: string[];
  }>(`
    SELECT o.oid::int AS oid, n.nspname AS schema, o.oprname AS name, quote_ident(pg_get_userbyid(o.oprowner)) AS owner,
           format('%I.%s (%s, %s)', n.nspname, o.oprname, CASE WHEN o.oprleft = 0 THEN 'NONE' ELSE format_type(o.oprleft, NULL) END,
                  CASE WHEN o.oprright = 0 THEN 'NONE' ELSE format_type(o.oprright, NULL) END) AS target,
           obj_description(o.oid, 'pg_operator') AS comment,
           array_remove(ARRAY[
             'FUNCTION = ' || ${functionName('o.oprcode')},
             CASE WHEN o.oprleft <> 0 THEN 'LEFTARG = ' || format_type(o.oprleft, NULL) END,
             CASE WHEN o.oprright <> 0 THEN 'RIGHTARG = ' || format_type(o.oprright, NULL) END,
             CASE WHEN o.oprcom <> 0 THEN 'COMMUTATOR = ' || ${operatorName('o.oprcom')} END,
             CASE WHEN o.oprnegate <> 0 THEN 'NEGATOR = ' || ${operatorName('o.oprnegate')} END,
             CASE WHEN o.oprcanmerge THEN 'MERGES' END,
             CASE WHEN o.oprcanhash THEN 'HASHES' END,
             CASE WHEN o.oprrest <> 0 THEN 'RESTRICT = ' || ${functionName('o.oprrest')} END,
             CASE WHEN o.oprjoin <> 0 THEN 'JOIN = ' || ${functionName('o.oprjoin')} END
           ], NULL) AS options
      FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
     WHERE o.oprnamespace = ANY($1) AND o.oprcode <> 0 AND ${notExtensionMember('pg_operator', 'o.oid')}
     ORDER BY n.nspname, o.oprname, o.oid`, [b.namespaces])) {
    const entry = b.add({
      kind: 'OPERATOR', schema: op.schema, name: op.target.slice(op.target.indexOf('.') + 1), section: 'pre-data',
      sql: `CREATE OPERATOR ${op.target.slice(0, op.target.indexOf(' ('))} (\n    ${op.options.join(',\n    ')}\n);`,
      owner: `ALTER OPERATOR ${op.target} OWNER TO ${op.owner};`, creates: [b.key('pg_operator', op.oid)],
    });
    b.comment(`OPERATOR ${op.target}`, op.comment, entry, op.schema);
  }
}

/**
 * Text search dictionaries (on any template, with their options as written) and configurations
 * (on any parser), with their token mappings. Templates and parsers of one's own need a superuser
 * and C functions: those are refused (preflight.ts).
 */
export async function readTextSearch(b: CatalogBuilder): Promise<void> {
  for (const dict of await b.query<{ oid: number; schema: string; name: string; qname: string; owner: string; template: string; options: string | null; comment: string | null }>(`
    SELECT d.oid::int AS oid, n.nspname AS schema, d.dictname AS name, format('%I.%I', n.nspname, d.dictname) AS qname,
           quote_ident(pg_get_userbyid(d.dictowner)) AS owner, format('%I.%I', tn.nspname, t.tmplname) AS template, d.dictinitoption AS options,
           obj_description(d.oid, 'pg_ts_dict') AS comment
      FROM pg_ts_dict d JOIN pg_namespace n ON n.oid = d.dictnamespace JOIN pg_ts_template t ON t.oid = d.dicttemplate JOIN pg_namespace tn ON tn.oid = t.tmplnamespace
     WHERE d.dictnamespace = ANY($1) AND ${notExtensionMember('pg_ts_dict', 'd.oid')}
     ORDER BY n.nspname, d.dictname`, [b.namespaces])) {
    const entry = b.add({
      kind: 'TEXT SEARCH DICTIONARY', schema: dict.schema, name: dict.name, section: 'pre-data',
      sql: `CREATE TEXT SEARCH DICTIONARY ${dict.qname} (\n    TEMPLATE = ${dict.template}${dict.options === null ? '' : `,\n    ${dict.options}`}\n);`,
      owner: `ALTER TEXT SEARCH DICTIONARY ${dict.qname} OWNER TO ${dict.owner};`, creates: [b.key('pg_ts_dict', dict.oid)],
    });
    b.comment(`TEXT SEARCH DICTIONARY ${dict.qname}`, dict.comment, entry, dict.schema);
  }
  for (const config of await b.query<{
    oid: number; schema: string; name: string; qname: string; owner: string; parser: string; maps: Array<{ token: string; dict: string }> | null; comment: string | null;
  }>(`
    SELECT c.oid::int AS oid, n.nspname AS schema, c.cfgname AS name, format('%I.%I', n.nspname, c.cfgname) AS qname,
           quote_ident(pg_get_userbyid(c.cfgowner)) AS owner, format('%I.%I', pn.nspname, p.prsname) AS parser,
           (SELECT json_agg(json_build_object('token', quote_ident(t.alias), 'dict', format('%I.%I', dn.nspname, d.dictname)) ORDER BY m.maptokentype, m.mapseqno)
              FROM pg_ts_config_map m JOIN ts_token_type(c.cfgparser) t ON t.tokid = m.maptokentype
              JOIN pg_ts_dict d ON d.oid = m.mapdict JOIN pg_namespace dn ON dn.oid = d.dictnamespace
             WHERE m.mapcfg = c.oid) AS maps,
           obj_description(c.oid, 'pg_ts_config') AS comment
      FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace JOIN pg_ts_parser p ON p.oid = c.cfgparser JOIN pg_namespace pn ON pn.oid = p.prsnamespace
     WHERE c.cfgnamespace = ANY($1) AND ${notExtensionMember('pg_ts_config', 'c.oid')}
     ORDER BY n.nspname, c.cfgname`, [b.namespaces])) {
    // One ADD MAPPING per token type, its dictionaries in the order they are consulted.
    const mappings = new Map<string, string[]>();
    for (const map of config.maps ?? []) mappings.set(map.token, [...(mappings.get(map.token) ?? []), map.dict]);
    const statements = [`CREATE TEXT SEARCH CONFIGURATION ${config.qname} (\n    PARSER = ${config.parser}\n);`];
    for (const [token, dicts] of mappings) statements.push(`ALTER TEXT SEARCH CONFIGURATION ${config.qname}\n    ADD MAPPING FOR ${token} WITH ${dicts.join(', ')};`);
    const entry = b.add({
      kind: 'TEXT SEARCH CONFIGURATION', schema: config.schema, name: config.name, section: 'pre-data', sql: statements.join('\n'),
      owner: `ALTER TEXT SEARCH CONFIGURATION ${config.qname} OWNER TO ${config.owner};`, creates: [b.key('pg_ts_config', config.oid)],
    });
    b.comment(`TEXT SEARCH CONFIGURATION ${config.qname}`, config.comment, entry, config.schema);
  }
}

/** The members of an operator family or class, as the items of CREATE OPERATOR CLASS or ALTER OPERATOR FAMILY … ADD. */
function membersSql(where: (member: string, classid: string) => string): string {
  return `(SELECT json_agg(m.item ORDER BY m.kind, m.num, m.item) FROM (
      SELECT 1 AS kind, o.amopstrategy AS num, o.oid::int AS oid, 'pg_amop' AS catalog,
             format('OPERATOR %s %s', o.amopstrategy, o.amopopr::regoperator) ||
               CASE WHEN o.amoppurpose = 'o' THEN (SELECT format(' FOR ORDER BY %I.%I', sn.nspname, sf.opfname) FROM pg_opfamily sf
                                                     JOIN pg_namespace sn ON sn.oid = sf.opfnamespace WHERE sf.oid = o.amopsortfamily) ELSE '' END AS item
        FROM pg_amop o WHERE ${where('o', 'pg_amop')}
      UNION ALL
      SELECT 2, p.amprocnum, p.oid::int, 'pg_amproc',
             format('FUNCTION %s (%s, %s) %s', p.amprocnum, format_type(p.amproclefttype, NULL), format_type(p.amprocrighttype, NULL), p.amproc::regprocedure)
        FROM pg_amproc p WHERE ${where('p', 'pg_amproc')}) m)`;
}

/** The members' OIDs, by catalog, that an entry creates (so that what uses them is ordered after it). */
function memberOidsSql(where: (member: string, classid: string) => string): string {
  return `(SELECT json_agg(json_build_object('catalog', m.catalog, 'oid', m.oid)) FROM (
      SELECT 'pg_amop' AS catalog, o.oid::int AS oid FROM pg_amop o WHERE ${where('o', 'pg_amop')}
      UNION ALL SELECT 'pg_amproc', p.oid::int FROM pg_amproc p WHERE ${where('p', 'pg_amproc')}) m)`;
}

/**
 * Operator families, with the members added to them apart from any class (`ALTER OPERATOR FAMILY …
 * ADD`), then operator classes with theirs, as pg_dump writes them. Both need a superuser.
 */
export async function readOperatorClasses(b: CatalogBuilder): Promise<void> {
  // A member belongs to a class when it depends on it internally, else (auto) to its family only.
  const loose = (family: string) => (member: string, classid: string) =>
    `${member}.${classid === 'pg_amop' ? 'amopfamily' : 'amprocfamily'} = ${family}
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${classid}'::regclass AND d.objid = ${member}.oid AND d.refclassid = 'pg_opclass'::regclass AND d.deptype = 'i')`;
  const ofClass = (opclass: string) => (member: string, classid: string) =>
    `EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${classid}'::regclass AND d.objid = ${member}.oid AND d.refclassid = 'pg_opclass'::regclass
                AND d.refobjid = ${opclass} AND d.deptype = 'i')`;
  type Row = { oid: number; schema: string; name: string; qname: string; am: string; owner: string; comment: string | null; items: string[] | null; members: Array<{ catalog: string; oid: number }> | null };
  for (const family of await b.query<Row>(`
    SELECT f.oid::int AS oid, n.nspname AS schema, f.opfname AS name, format('%I.%I', n.nspname, f.opfname) AS qname, quote_ident(a.amname) AS am,
           quote_ident(pg_get_userbyid(f.opfowner)) AS owner, obj_description(f.oid, 'pg_opfamily') AS comment,
           ${membersSql(loose('f.oid'))} AS items, ${memberOidsSql(loose('f.oid'))} AS members
      FROM pg_opfamily f JOIN pg_namespace n ON n.oid = f.opfnamespace JOIN pg_am a ON a.oid = f.opfmethod
     WHERE f.opfnamespace = ANY($1) AND ${notExtensionMember('pg_opfamily', 'f.oid')}
     ORDER BY n.nspname, f.opfname, a.amname`, [b.namespaces])) {
    const target = `${family.qname} USING ${family.am}`;
    const statements = [`CREATE OPERATOR FAMILY ${target};`, ...(family.items ? [`ALTER OPERATOR FAMILY ${target} ADD\n    ${family.items.join(',\n    ')};`] : [])];
    const entry = b.add({
      kind: 'OPERATOR FAMILY', schema: family.schema, name: `${family.name} USING ${family.am}`, section: 'pre-data', sql: statements.join('\n'),
      owner: `ALTER OPERATOR FAMILY ${target} OWNER TO ${family.owner};`,
      creates: [b.key('pg_opfamily', family.oid), ...(family.members ?? []).map((member) => b.key(member.catalog, member.oid))],
    });
    b.comment(`OPERATOR FAMILY ${target}`, family.comment, entry, family.schema);
  }
  for (const opclass of await b.query<Row & { type: string; storage: string | null; isdefault: boolean; family: string }>(`
    SELECT c.oid::int AS oid, n.nspname AS schema, c.opcname AS name, format('%I.%I', n.nspname, c.opcname) AS qname, quote_ident(a.amname) AS am,
           quote_ident(pg_get_userbyid(c.opcowner)) AS owner, obj_description(c.oid, 'pg_opclass') AS comment,
           format_type(c.opcintype, NULL) AS type, CASE WHEN c.opckeytype <> 0 THEN format_type(c.opckeytype, NULL) END AS storage, c.opcdefault AS isdefault,
           (SELECT format('%I.%I', fn.nspname, f.opfname) FROM pg_opfamily f JOIN pg_namespace fn ON fn.oid = f.opfnamespace WHERE f.oid = c.opcfamily) AS family,
           ${membersSql(ofClass('c.oid'))} AS items, ${memberOidsSql(ofClass('c.oid'))} AS members
      FROM pg_opclass c JOIN pg_namespace n ON n.oid = c.opcnamespace JOIN pg_am a ON a.oid = c.opcmethod
     WHERE c.opcnamespace = ANY($1) AND ${notExtensionMember('pg_opclass', 'c.oid')}
     ORDER BY n.nspname, c.opcname, a.amname`, [b.namespaces])) {
    const target = `${opclass.qname} USING ${opclass.am}`;
    // AS needs one item at least: the storage type says nothing more than the class's input type when there is none.
    const items = [...(opclass.storage ? [`STORAGE ${opclass.storage}`] : []), ...(opclass.items ?? [])];
    const entry = b.add({
      kind: 'OPERATOR CLASS', schema: opclass.schema, name: `${opclass.name} USING ${opclass.am}`, section: 'pre-data',
      sql: `CREATE OPERATOR CLASS ${opclass.qname}${opclass.isdefault ? ' DEFAULT' : ''}\n    FOR TYPE ${opclass.type} USING ${opclass.am} FAMILY ${opclass.family} AS\n    ` +
        `${(items.length > 0 ? items : [`STORAGE ${opclass.type}`]).join(',\n    ')};`,
      owner: `ALTER OPERATOR CLASS ${target} OWNER TO ${opclass.owner};`,
      creates: [b.key('pg_opclass', opclass.oid), ...(opclass.members ?? []).map((member) => b.key(member.catalog, member.oid))],
    });
    b.comment(`OPERATOR CLASS ${target}`, opclass.comment, entry, opclass.schema);
  }
}
