/** User-defined types: enums, composites, ranges, domains. */
import { notExtensionMember, type CatalogBuilder } from './builder.js';
import { aclSql } from './privileges.js';

/** Enums, composite types, ranges and domains (with their constraints). */
export async function readTypes(b: CatalogBuilder): Promise<void> {
  const types = await b.query<{
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
       AND ${notExtensionMember('pg_type', 't.oid')}`, [b.namespaces]);
  for (const type of types) {
    const creates = [b.key('pg_type', type.oid), b.key('pg_type', type.array)];
    let sql: string;
    let kind = 'TYPE';
    const deferred: Array<{ name: string; def: string; comment: string | null; oid: number }> = [];
    switch (type.typtype) {
      case 'e':
        sql = `CREATE TYPE ${type.qname} AS ENUM (\n    ${(type.labels ?? []).join(',\n    ')}\n);`;
        break;
      case 'c':
        creates.push(b.key('pg_class', type.relid));
        sql = `CREATE TYPE ${type.qname} AS (\n    ${(type.attributes ?? []).join(',\n    ')}\n);`;
        break;
      case 'r': {
        const range = type.range!;
        const options = [`subtype = ${range['subtype']}`];
        if (range['opclass']) options.push(`subtype_opclass = ${range['opclass']}`);
        if (range['collation']) options.push(`collation = ${range['collation']}`);
        if (range['diff']) options.push(`subtype_diff = ${range['diff']}`);
        if (range['multirange']) options.push(`multirange_type_name = ${range['multirange']}`);
        if (type.multirange) creates.push(b.key('pg_type', type.multirange), b.key('pg_type', type.multirangearray));
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
            creates.push(b.key('pg_constraint', constraint.oid));
          } else deferred.push(constraint);
        }
        sql = `${parts.join('\n    ')};`;
      }
    }
    const keyword = kind === 'DOMAIN' ? 'DOMAIN' : 'TYPE';
    const entry = b.add({
      kind, schema: type.schema, name: type.name, section: 'pre-data', sql, owner: `ALTER ${keyword} ${type.qname} OWNER TO ${type.owner};`, creates,
    });
    for (const constraint of deferred) {
      const check = b.add({
        kind: 'CONSTRAINT', schema: type.schema, name: `${type.name} ${constraint.name}`, section: 'post-data',
        sql: `ALTER DOMAIN ${type.qname} ADD CONSTRAINT ${constraint.name} ${constraint.def};`, creates: [b.key('pg_constraint', constraint.oid)], after: [entry.id],
      });
      b.comment(`CONSTRAINT ${constraint.name} ON DOMAIN ${type.qname}`, constraint.comment, check, type.schema);
    }
    for (const constraint of type.constraints ?? []) {
      if (constraint.validated) b.comment(`CONSTRAINT ${constraint.name} ON DOMAIN ${type.qname}`, constraint.comment, entry, type.schema);
    }
    b.comment(`${keyword} ${type.qname}`, type.comment, entry, type.schema);
    for (const col of type.attcomments ?? []) b.comment(`COLUMN ${type.qname}.${col.col}`, col.text, entry, type.schema);
    b.grants(`${keyword} ${type.qname}`, `TYPE ${type.qname}`, type.owner, type.acl, entry, type.schema);
  }
}
