/** Functions, procedures and aggregates. */
import { quoteLiteral } from '../connection.js';
import { FIRST_NORMAL_OID, notExtensionMember, type CatalogBuilder } from './builder.js';
import { aclSql } from './privileges.js';

/** Functions, procedures and aggregates, written by pg_get_functiondef (aggregates by hand). */
export async function readRoutines(b: CatalogBuilder): Promise<void> {
  const routines = await b.query<{
    oid: number; schema: string; name: string; signature: string; grantSignature: string; prokind: string; owner: string; acl: string | null; comment: string | null;
    def: string | null; agg: Record<string, string | boolean | null> | null;
  }>(`
    SELECT p.oid::int AS oid, n.nspname AS schema, p.proname AS name,
           format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS signature, p.prokind,
           -- GRANT names an ordered-set aggregate by its argument types alone, without ORDER BY.
           format('%I.%I(%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes)) AS "grantSignature",
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
                     'parallel', p.proparallel::text, 'kind', a.aggkind::text,
                     'msfunc', CASE WHEN a.aggmtransfn <> 0 THEN a.aggmtransfn::regproc::text END,
                     'minvfunc', CASE WHEN a.aggminvtransfn <> 0 THEN a.aggminvtransfn::regproc::text END,
                     'mstype', CASE WHEN a.aggmtranstype <> 0 THEN format_type(a.aggmtranstype, NULL) END,
                     'msspace', NULLIF(a.aggmtransspace, 0)::text,
                     'mfinalfunc', CASE WHEN a.aggmfinalfn <> 0 THEN a.aggmfinalfn::regproc::text END,
                     'mfinalextra', a.aggmfinalextra, 'mfinalmodify', a.aggmfinalmodify::text, 'minitcond', a.aggminitval)
              FROM pg_aggregate a WHERE a.aggfnoid = p.oid) AS agg
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.pronamespace = ANY($1) AND ${notExtensionMember('pg_proc', 'p.oid')}
       -- Constructors of range and multirange types are created with their type.
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i')`, [b.namespaces]);
  for (const routine of routines) {
    const keyword = routine.prokind === 'p' ? 'PROCEDURE' : routine.prokind === 'a' ? 'AGGREGATE' : 'FUNCTION';
    const sql = routine.prokind === 'a' ? aggregateSql(routine.signature, routine.agg!) : `${routine.def!.trimEnd()};`;
    const entry = b.add({
      kind: keyword, schema: routine.schema, name: routine.signature.slice(routine.signature.indexOf('.') + 1), section: 'pre-data', sql,
      owner: `ALTER ${keyword} ${routine.signature} OWNER TO ${routine.owner};`, creates: [b.key('pg_proc', routine.oid)],
    });
    b.comment(`${keyword} ${routine.signature}`, routine.comment, entry, routine.schema);
    const grantTarget = routine.signature.includes(' ORDER BY ') ? routine.grantSignature : routine.signature;
    b.grants(`${keyword} ${routine.signature}`, `${keyword === 'PROCEDURE' ? 'PROCEDURE' : 'FUNCTION'} ${grantTarget}`, routine.owner, routine.acl, entry, routine.schema);
  }
}

function aggregateSql(signature: string, agg: Record<string, string | boolean | null>): string {
  const options = [`SFUNC = ${agg['sfunc']}`, `STYPE = ${agg['stype']}`];
  if (agg['sspace']) options.push(`SSPACE = ${agg['sspace']}`);
  // An ordered-set aggregate's final function defaults to READ_WRITE, a plain one's to READ_ONLY: said whenever it may differ.
  const orderedSet = agg['kind'] !== 'n';
  const modify = (value: unknown): string | undefined => ({ r: 'READ_ONLY', s: 'SHAREABLE', w: 'READ_WRITE' })[String(value)];
  if (agg['finalfunc']) {
    options.push(`FINALFUNC = ${agg['finalfunc']}`);
    if (agg['finalextra']) options.push('FINALFUNC_EXTRA');
    const finalModify = modify(agg['finalmodify']);
    if (finalModify && (finalModify !== 'READ_ONLY' || orderedSet)) options.push(`FINALFUNC_MODIFY = ${finalModify}`);
  }
  // The moving-aggregate mode, for window frames that move: an inverse transition function takes rows out.
  if (agg['msfunc']) {
    options.push(`MSFUNC = ${agg['msfunc']}`, `MINVFUNC = ${agg['minvfunc']}`, `MSTYPE = ${agg['mstype']}`);
    if (agg['msspace']) options.push(`MSSPACE = ${agg['msspace']}`);
    if (agg['mfinalfunc']) {
      options.push(`MFINALFUNC = ${agg['mfinalfunc']}`);
      if (agg['mfinalextra']) options.push('MFINALFUNC_EXTRA');
      const mfinalModify = modify(agg['mfinalmodify']);
      if (mfinalModify && mfinalModify !== 'READ_ONLY') options.push(`MFINALFUNC_MODIFY = ${mfinalModify}`);
    }
    if (agg['minitcond'] !== null) options.push(`MINITCOND = ${quoteLiteral(String(agg['minitcond']))}`);
  }
  if (agg['kind'] === 'h') options.push('HYPOTHETICAL');
  if (agg['combinefunc']) options.push(`COMBINEFUNC = ${agg['combinefunc']}`);
  if (agg['serialfunc']) options.push(`SERIALFUNC = ${agg['serialfunc']}`);
  if (agg['deserialfunc']) options.push(`DESERIALFUNC = ${agg['deserialfunc']}`);
  if (agg['initcond'] !== null) options.push(`INITCOND = ${quoteLiteral(String(agg['initcond']))}`);
  if (agg['sortop']) options.push(`SORTOP = ${agg['sortop']}`);
  const parallel = { s: 'SAFE', r: 'RESTRICTED' }[String(agg['parallel'])];
  if (parallel) options.push(`PARALLEL = ${parallel}`);
  return `CREATE AGGREGATE ${signature} (\n    ${options.join(',\n    ')}\n);`;
}

/**
 * User-defined casts, as pg_dump finds them: created after initdb, by no extension, and not the
 * ones PostgreSQL makes itself (internally dependent). Restoring one needs to own its source or
 * target type, or a superuser for a cast between system types or a binary-coercible one.
 */
export async function readCasts(b: CatalogBuilder): Promise<void> {
  for (const cast of await b.query<{ oid: number; source: string; target: string; func: string | null; context: string; method: string; comment: string | null }>(`
    SELECT c.oid::int AS oid, format_type(c.castsource, NULL) AS source, format_type(c.casttarget, NULL) AS target,
           CASE WHEN c.castfunc <> 0 THEN c.castfunc::regprocedure::text END AS func, c.castcontext::text AS context, c.castmethod::text AS method,
           obj_description(c.oid, 'pg_cast') AS comment
      FROM pg_cast c
     WHERE c.oid >= ${FIRST_NORMAL_OID} AND ${notExtensionMember('pg_cast', 'c.oid')}
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_cast'::regclass AND d.objid = c.oid AND d.deptype = 'i')
       -- Of no schema: with a schemas limit, those of their types or functions, which the objects backed up may use (a view casting).
       AND ($2 OR EXISTS (SELECT 1 FROM pg_type t WHERE t.oid IN (c.castsource, c.casttarget) AND t.typnamespace = ANY($1))
               OR EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = c.castfunc AND p.pronamespace = ANY($1)))
     ORDER BY 2, 3`, [b.namespaces, b.wholeDatabase])) {
    const how = cast.method === 'f' ? `WITH FUNCTION ${cast.func}` : cast.method === 'i' ? 'WITH INOUT' : 'WITHOUT FUNCTION';
    const context = { a: ' AS ASSIGNMENT', i: ' AS IMPLICIT' }[cast.context] ?? '';
    const target = `CAST (${cast.source} AS ${cast.target})`;
    const entry = b.add({
      kind: 'CAST', schema: null, name: `${cast.source} AS ${cast.target}`, section: 'pre-data', sql: `CREATE ${target} ${how}${context};`,
      creates: [b.key('pg_cast', cast.oid)],
    });
    b.comment(target, cast.comment, entry, null);
  }
}
