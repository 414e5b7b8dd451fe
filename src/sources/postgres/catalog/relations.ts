/** Tables, sequences, views and materialized views: one entry each, with their columns, defaults, comments and grants. */
import { cooperative } from '../../../util/yield.js';
import { quoteLiteral } from '../connection.js';
import type { TocTable } from '../toc.js';
import { FIRST_NORMAL_OID, commentJoin, notExtensionMember, type CatalogBuilder, type Draft } from './builder.js';
import { aclSql, columnGrants } from './privileges.js';

type ColumnRow = {
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
  /** A foreign table's column options, as `name 'value', …`. */
  fdwoptions: string | null;
  acl: string | null;
  comment: string | null;
  identitySeq: { oid: number; qname: string; options: string } | null;
};

type RelationRow = {
  oid: number; schema: string; name: string; qname: string; relkind: string; persistence: string; ispartition: boolean; rowtype: number; rowarray: number | null;
  owner: string; acl: string | null; comment: string | null; options: string[] | null; partkey: string | null; bound: string | null;
  parent: string | null; inherits: string[] | null; oftype: string | null; server: string | null; ftoptions: string | null; rls: boolean; forcerls: boolean; replident: string; am: string | null;
  viewdef: string | null; populated: boolean; seq: string | null; ownedby: { qualified: string; table: number } | null; identityseq: boolean; bytes: string;
  checks: Array<{ oid: number; name: string; def: string; comment: string | null }> | null; columns: ColumnRow[] | null; rules: number[] | null;
};

/** A column default, and whether it calls a user's function (then it is set apart from its table). */
interface AttrDef {
  oid: number;
  num: number;
  callsRoutine: boolean;
}

/** What the relation readers collect for one another and for readCatalog. */
interface Relations {
  readonly builder: CatalogBuilder;
  readonly tables: TocTable[];
  /** Sequences (and identity columns' sequences) whose current value is read after the schema. */
  readonly sequenceReads: Array<{ entry: number; qname: string }>;
  /** Tables and views by qualified name, for partitions' ATTACH entries. */
  readonly byQname: Map<string, Draft>;
  readonly attaches: Array<{ child: Draft; parent: string; sql: string; schema: string; name: string }>;
  readonly attrdefs: Map<number, AttrDef[]>;
}

/** Options of a foreign-data object (`{name=value}`) as `name 'value', …`, or null for none. */
export function optionsSql(column: string): string {
  return `(SELECT string_agg(quote_ident(o.option_name) || ' ' || quote_literal(o.option_value), ', ') FROM pg_options_to_table(${column}) AS o)`;
}

/** A sequence's options as `AS … START WITH … CYCLE`, from the pg_sequence row aliased `s`. */
function sequenceOptions(s: string): string {
  return `format('AS %s START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s',
      format_type(${s}.seqtypid, NULL), ${s}.seqstart, ${s}.seqincrement, ${s}.seqmin, ${s}.seqmax, ${s}.seqcache, CASE WHEN ${s}.seqcycle THEN ' CYCLE' ELSE '' END)`;
}

/**
 * Reads every table, sequence and view of the schemas backed up, and the sequences' values, in the
 * snapshot. Returns the tables whose data is copied and the SQL that sets each sequence's value.
 */
export async function readRelations(b: CatalogBuilder): Promise<{ tables: TocTable[]; sequenceValues: Array<[number, string]> }> {
  const [relations, columns, attrdefs] = await Promise.all([b.query<RelationRow>(`
    SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, format('%I.%I', n.nspname, c.relname) AS qname, c.relkind,
           c.relpersistence AS persistence, c.relispartition AS ispartition, c.reltype::int AS rowtype, rt.typarray::int AS rowarray,
           quote_ident(pg_get_userbyid(c.relowner)) AS owner, ${aclSql('c.relacl')} AS acl, cd.description AS comment,
           -- toast.* options live on the TOAST table; CREATE TABLE and CREATE MATERIALIZED VIEW take them with the prefix.
           c.reloptions || (SELECT array_agg('toast.' || o) FROM unnest(tc.reloptions) AS o) AS options, CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
           CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
           (SELECT format('%I.%I', pn.nspname, p.relname) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
             WHERE i.inhrelid = c.oid AND c.relispartition) AS parent,
           (SELECT array_agg(format('%I.%I', pn.nspname, p.relname) ORDER BY i.inhseqno) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
              JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid AND NOT c.relispartition) AS inherits,
           CASE WHEN c.reloftype <> 0 THEN format_type(c.reloftype, NULL) END AS oftype,
           quote_ident(fs.srvname) AS server, CASE WHEN ft.ftrelid IS NOT NULL THEN ${optionsSql('ft.ftoptions')} END AS ftoptions,
           c.relrowsecurity AS rls, c.relforcerowsecurity AS forcerls, c.relreplident::text AS replident,
           CASE WHEN am.amname <> 'heap' THEN quote_ident(am.amname) END AS am,
           CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS viewdef, c.relispopulated AS populated,
           CASE WHEN s.seqrelid IS NOT NULL THEN ${sequenceOptions('s')} END AS seq,
           (SELECT json_build_object('qualified', format('%I.%I.%I', tn.nspname, t.relname, a.attname), 'table', t.oid::int) FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
              JOIN pg_namespace tn ON tn.oid = t.relnamespace JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
             WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a') AS ownedby,
           EXISTS (SELECT 1 FROM pg_depend d WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i') AS identityseq,
           pg_relation_size(c.oid)::text AS bytes,
           (SELECT json_agg(json_build_object('oid', co.oid::int, 'name', quote_ident(co.conname), 'def', pg_get_constraintdef(co.oid),
                                              'comment', kd.description) ORDER BY co.conname)
              FROM pg_constraint co ${commentJoin('kd', 'pg_constraint', 'co.oid')}
             WHERE co.conrelid = c.oid AND co.contype = 'c' AND co.convalidated
               -- ATTACH PARTITION requires the parent's CHECK constraints on the partition already.
               AND (co.conislocal OR c.relispartition)) AS checks,
           (SELECT array_agg(r.oid::int) FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename = '_RETURN') AS rules
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_type rt ON rt.oid = c.reltype
      LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid LEFT JOIN pg_am am ON am.oid = c.relam LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
      LEFT JOIN pg_foreign_table ft ON ft.ftrelid = c.oid LEFT JOIN pg_foreign_server fs ON fs.oid = ft.ftserver
      ${commentJoin('cd', 'pg_class', 'c.oid')}
     WHERE ${inRelations('c')}
     ORDER BY n.nspname, c.relname`, [b.namespaces]), readColumns(b), readDefaults(b)]);
  for (const rel of relations) rel.columns = columns.get(rel.oid) ?? null;
  const state: Relations = { builder: b, tables: [], sequenceReads: [], byQname: new Map(), attaches: [], attrdefs };
  // Thousands of relations: added between turns of the event loop.
  const yieldNow = cooperative();
  for (const rel of relations) {
    if (rel.relkind === 'S') addSequence(state, rel);
    else if (rel.relkind === 'v' || rel.relkind === 'm') addView(state, rel);
    else addTable(state, rel);
    await yieldNow();
  }
  const { byQname, attaches } = state;
  for (const attach of attaches) {
    const parent = byQname.get(attach.parent);
    b.add({ kind: 'TABLE ATTACH', schema: attach.schema, name: attach.name, section: 'pre-data', sql: attach.sql, after: [attach.child.id, ...(parent ? [parent.id] : [])] });
  }
  return { tables: state.tables, sequenceValues: await readSequenceValues(b, state.sequenceReads) };
}

/** The relations readRelations reads, the table `c` of pg_class: tables, sequences, views and materialized views of the schemas backed up. */
function inRelations(c: string): string {
  return `${c}.relnamespace = ANY($1) AND ${c}.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND ${notExtensionMember('pg_class', `${c}.oid`)}`;
}

/** The columns of every relation readRelations reads, in one query, by relation in column order. */
async function readColumns(b: CatalogBuilder): Promise<Map<number, ColumnRow[]>> {
  const rows = await b.query<ColumnRow & { rel: number }>(`
    SELECT a.attrelid::int AS rel, quote_ident(a.attname) AS name, a.attnum AS num, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
           a.attislocal AS local, pg_get_expr(ad.adbin, ad.adrelid) AS def, a.attgenerated::text AS generated, a.attidentity::text AS identity,
           CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN format('%I.%I', cn.nspname, co.collname) END AS collation,
           CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END AS storage,
           ${b.serverVersion >= 140000 ? "NULLIF(a.attcompression::text, '')" : 'NULL'} AS compression,
           -- No statistics target is -1 before PostgreSQL 17, NULL since.
           CASE WHEN a.attstattarget >= 0 THEN a.attstattarget::int END AS stattarget,
           -- pg_attver is bookkeeping some server builds add to every column, not a user's setting.
           (SELECT array_agg(o) FROM unnest(a.attoptions) AS o WHERE o NOT LIKE 'pg\\_attver=%') AS options, ${aclSql('a.attacl')} AS acl,
           ${optionsSql('a.attfdwoptions')} AS fdwoptions, dc.description AS comment,
           CASE WHEN a.attidentity <> '' THEN
             (SELECT json_build_object('oid', s.seqrelid::int, 'qname', format('%I.%I', sn.nspname, sc.relname), 'options', ${sequenceOptions('s')})
                FROM pg_depend d JOIN pg_sequence s ON s.seqrelid = d.objid JOIN pg_class sc ON sc.oid = s.seqrelid JOIN pg_namespace sn ON sn.oid = sc.relnamespace
               WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                 AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum AND d.deptype = 'i') END AS "identitySeq"
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
      LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      ${commentJoin('dc', 'pg_class', 'a.attrelid', 'a.attnum')}
     WHERE ${inRelations('c')} AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attrelid, a.attnum`, [b.namespaces]);
  const columns = new Map<number, ColumnRow[]>();
  for (const { rel, ...column } of rows) {
    const list = columns.get(rel);
    if (list) list.push(column);
    else columns.set(rel, [column]);
  }
  return columns;
}

/**
 * The defaults of every table. One that calls a function is set apart from its table, after the function, as
 * pg_dump does: the function may read the table (a BEGIN ATOMIC body depends on it), which would make a cycle.
 */
async function readDefaults(b: CatalogBuilder): Promise<Map<number, AttrDef[]>> {
  const attrdefs = new Map<number, AttrDef[]>();
  for (const row of await b.query<{ relid: number; oid: number; num: number; callsRoutine: boolean }>(`
    SELECT d.adrelid::int AS relid, d.oid::int AS oid, d.adnum::int AS num,
           EXISTS (SELECT 1 FROM pg_depend p WHERE p.classid = 'pg_attrdef'::regclass AND p.objid = d.oid
                      AND p.refclassid = 'pg_proc'::regclass AND p.refobjid >= ${FIRST_NORMAL_OID}) AS "callsRoutine"
      FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid WHERE c.relnamespace = ANY($1)`, [b.namespaces])) {
    attrdefs.set(row.relid, [...(attrdefs.get(row.relid) ?? []), row]);
  }
  return attrdefs;
}

/** The catalog objects a table or view creates: itself, its row type and that type's array. */
function relationCreates(b: CatalogBuilder, rel: RelationRow): string[] {
  return [b.key('pg_class', rel.oid), b.key('pg_type', rel.rowtype), ...(rel.rowarray ? [b.key('pg_type', rel.rowarray)] : [])];
}

/** The WITH (…) of CREATE TABLE or VIEW; a view's check_option is written as WITH CHECK OPTION instead. */
function withOptions(rel: RelationRow): string {
  const options = (rel.options ?? []).filter((option) => !option.startsWith('check_option='));
  return options.length > 0 ? ` WITH (${options.join(', ')})` : '';
}

/** The grants on a table, view or materialized view, and on its columns. */
function relationGrants(b: CatalogBuilder, rel: RelationRow, keyword: string, entry: Draft): void {
  const columnAcl = (rel.columns ?? []).flatMap((column) => (column.acl ? [columnGrants(rel.qname, column.name, rel.owner, column.acl)] : []));
  b.grants(`${keyword} ${rel.qname}`, `TABLE ${rel.qname}`, rel.owner, rel.acl, entry, rel.schema, columnAcl);
}

/** A sequence of its own; an identity column's is created with its table. */
function addSequence({ builder: b, sequenceReads }: Relations, rel: RelationRow): void {
    if (rel.identityseq) return;
    const entry = b.add({
      kind: 'SEQUENCE', schema: rel.schema, name: rel.name, section: 'pre-data',
      sql: `CREATE${rel.persistence === 'u' ? ' UNLOGGED' : ''} SEQUENCE ${rel.qname} ${rel.seq};`,
      owner: `ALTER SEQUENCE ${rel.qname} OWNER TO ${rel.owner};`, creates: [b.key('pg_class', rel.oid)],
    });
    sequenceReads.push({ entry: entry.id, qname: rel.qname });
    if (rel.ownedby) {
      b.add({
        kind: 'SEQUENCE OWNED BY', schema: rel.schema, name: rel.name, section: 'pre-data',
        sql: `ALTER SEQUENCE ${rel.qname} OWNED BY ${rel.ownedby.qualified};`, after: [entry.id], needs: [b.key('pg_class', rel.ownedby.table)],
      });
    }
    b.comment(`SEQUENCE ${rel.qname}`, rel.comment, entry, rel.schema);
    b.grants(`SEQUENCE ${rel.qname}`, `SEQUENCE ${rel.qname}`, rel.owner, rel.acl, entry, rel.schema);
}

function addView({ builder: b, byQname }: Relations, rel: RelationRow): void {
    const matview = rel.relkind === 'm';
    const checkOption = (rel.options ?? []).find((option) => option.startsWith('check_option='))?.slice('check_option='.length);
    const body = rel.viewdef!.trim().replace(/;$/, '');
    const sql = matview
      ? `CREATE MATERIALIZED VIEW ${rel.qname}${rel.am ? ` USING ${rel.am}` : ''}${withOptions(rel)} AS\n${body}\n  WITH NO DATA;`
      : `CREATE VIEW ${rel.qname}${withOptions(rel)} AS\n${body}${checkOption ? `\n  WITH ${checkOption.toUpperCase()} CHECK OPTION` : ''};`;
    const keyword = matview ? 'MATERIALIZED VIEW' : 'VIEW';
    const dummyColumns = (rel.columns ?? []).map((column) => `NULL::${column.type}${column.collation ? ` COLLATE ${column.collation}` : ''} AS ${column.name}`);
    const entry = b.add({
      kind: keyword, schema: rel.schema, name: rel.name, section: 'pre-data', sql, owner: `ALTER ${keyword} ${rel.qname} OWNER TO ${rel.owner};`,
      creates: [...relationCreates(b, rel), ...(rel.rules ?? []).map((rule) => b.key('pg_rewrite', rule))],
      ...(matview ? {} : { dummy: `CREATE VIEW ${rel.qname} AS\nSELECT${dummyColumns.length > 0 ? `\n    ${dummyColumns.join(',\n    ')}` : ''};` }),
    });
    byQname.set(rel.qname, entry);
    if (matview && rel.populated) {
      b.add({ kind: 'MATERIALIZED VIEW DATA', schema: rel.schema, name: rel.name, section: 'post-data', sql: `REFRESH MATERIALIZED VIEW ${rel.qname};`, after: [entry.id] });
    }
    b.comment(`${keyword} ${rel.qname}`, rel.comment, entry, rel.schema);
    for (const column of rel.columns ?? []) b.comment(`COLUMN ${rel.qname}.${column.name}`, column.comment, entry, rel.schema);
    relationGrants(b, rel, keyword, entry);
}

/** A table: columns, inline CHECK constraints, then per-column settings CREATE TABLE cannot say. */
function addTable({ builder: b, byQname, attaches, attrdefs, sequenceReads, tables }: Relations, rel: RelationRow): void {
  const creates = relationCreates(b, rel);
  // A foreign table's rows are the remote server's: its definition only, as pg_dump writes it.
  const keyword = rel.relkind === 'f' ? 'FOREIGN TABLE' : 'TABLE';
    const columns = rel.columns ?? [];
  const printed = columns.filter((column) => column.local || rel.ispartition);
  const defaults = attrdefs.get(rel.oid) ?? [];
  const apart = defaults.filter((attrdef) => attrdef.callsRoutine && columns.some((column) => column.num === attrdef.num && column.generated === ''));
  const inline = (column: ColumnRow): boolean => column.def !== null && column.generated === '' && !apart.some((attrdef) => attrdef.num === column.num);
  // A typed table's columns are its type's: only their options are written (`WITH OPTIONS`).
  const lines = (rel.oftype ? printed.filter((column) => column.notnull || inline(column)) : printed).map((column) => {
    let line = rel.oftype ? `${column.name} WITH OPTIONS` : `${column.name} ${column.type}`;
    if (column.collation) line += ` COLLATE ${column.collation}`;
    if (column.generated === 's') line += ` GENERATED ALWAYS AS (${column.def}) STORED`;
    else if (inline(column)) line += ` DEFAULT ${column.def}`;
    if (column.notnull) line += ' NOT NULL';
    return line;
  });
  for (const check of rel.checks ?? []) {
    lines.push(`CONSTRAINT ${check.name} ${check.def}`);
    creates.push(b.key('pg_constraint', check.oid));
  }
  for (const attrdef of defaults) if (!apart.includes(attrdef)) creates.push(b.key('pg_attrdef', attrdef.oid));
  const statements = [
    `CREATE${rel.persistence === 'u' ? ' UNLOGGED' : ''} ${keyword} ${rel.qname}${rel.oftype ? ` OF ${rel.oftype}` : ''}` +
      `${lines.length > 0 || !rel.oftype ? ` (${lines.length > 0 ? `\n    ${lines.join(',\n    ')}\n` : ''})` : ''}` +
      `${rel.inherits ? `\nINHERITS (${rel.inherits.join(', ')})` : ''}${rel.partkey ? `\nPARTITION BY ${rel.partkey}` : ''}` +
      `${rel.server ? `\nSERVER ${rel.server}${rel.ftoptions ? `\nOPTIONS (${rel.ftoptions})` : ''}` : ''}` +
      `${rel.am ? `\nUSING ${rel.am}` : ''}${withOptions(rel)};`,
  ];
  for (const column of columns) {
    const alter = `ALTER ${keyword} ONLY ${rel.qname} ALTER COLUMN ${column.name}`;
    if (!printed.includes(column)) {
      if (column.notnull) statements.push(`${alter} SET NOT NULL;`);
      if (inline(column)) statements.push(`${alter} SET DEFAULT ${column.def};`);
    }
    if (column.identitySeq) {
      const { oid, qname, options } = column.identitySeq;
      creates.push(b.key('pg_class', oid));
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
    if (column.fdwoptions) statements.push(`${alter} OPTIONS (${column.fdwoptions});`);
  }
  if (rel.relkind !== 'f' && (rel.replident === 'n' || rel.replident === 'f')) statements.push(`ALTER TABLE ONLY ${rel.qname} REPLICA IDENTITY ${rel.replident === 'n' ? 'NOTHING' : 'FULL'};`);
  const entry = b.add({
    kind: keyword, schema: rel.schema, name: rel.name, section: 'pre-data', sql: statements.join('\n'),
    owner: `ALTER ${keyword} ${rel.qname} OWNER TO ${rel.owner};`, creates,
  });
  byQname.set(rel.qname, entry);
  for (const attrdef of apart) {
    const column = columns.find((c) => c.num === attrdef.num)!;
    b.add({
      kind: 'DEFAULT', schema: rel.schema, name: `${rel.name} ${column.name}`, section: 'pre-data',
      sql: `ALTER ${keyword} ONLY ${rel.qname} ALTER COLUMN ${column.name} SET DEFAULT ${column.def};`, creates: [b.key('pg_attrdef', attrdef.oid)], after: [entry.id],
    });
  }
  for (const column of columns) {
    if (column.identitySeq) sequenceReads.push({ entry: entry.id, qname: column.identitySeq.qname });
  }
  if (rel.parent) attaches.push({ child: entry, parent: rel.parent, sql: `ALTER TABLE ONLY ${rel.parent} ATTACH PARTITION ${rel.qname} ${rel.bound};`, schema: rel.schema, name: rel.name });
  if (rel.rls || rel.forcerls) {
    const rls = [`ALTER TABLE ${rel.qname} ENABLE ROW LEVEL SECURITY;`, ...(rel.forcerls ? [`ALTER TABLE ${rel.qname} FORCE ROW LEVEL SECURITY;`] : [])];
    b.add({ kind: 'ROW SECURITY', schema: rel.schema, name: rel.name, section: 'post-data', sql: rls.join('\n'), after: [entry.id] });
  }
  b.comment(`${keyword} ${rel.qname}`, rel.comment, entry, rel.schema);
  for (const check of rel.checks ?? []) b.comment(`CONSTRAINT ${check.name} ON ${rel.qname}`, check.comment, entry, rel.schema);
  for (const column of columns) b.comment(`COLUMN ${rel.qname}.${column.name}`, column.comment, entry, rel.schema);
  relationGrants(b, rel, keyword, entry);
  if (rel.relkind === 'r') {
    tables.push({
      entry: entry.id, qualifiedName: rel.qname, columns: columns.filter((column) => column.generated === '').map((column) => column.name),
      dataPath: dataPath(entry.id, rel.schema, rel.name), estimatedBytes: Number(rel.bytes),
    });
  }
}

/** Sequence values, read inside the snapshot (they are not transactional: as pg_dump, this is the value now). */
async function readSequenceValues(b: CatalogBuilder, sequenceReads: ReadonlyArray<{ entry: number; qname: string }>): Promise<Array<[number, string]>> {
  const sequenceValues: Array<[number, string]> = [];
  for (let i = 0; i < sequenceReads.length; i += 500) {
    const batch = sequenceReads.slice(i, i + 500);
    const rows = await b.query<{ i: number; last: string; called: boolean }>(
      batch.map((seq, j) => `SELECT ${j} AS i, last_value::text AS last, is_called AS called FROM ${seq.qname}`).join(' UNION ALL '),
    );
    for (const row of rows) {
      const seq = batch[row.i]!;
      sequenceValues.push([seq.entry, `SELECT pg_catalog.setval(${quoteLiteral(seq.qname)}, ${row.last}, ${row.called});`]);
    }
  }
  return sequenceValues;
}

/** The folder of a table's data chunks, `data/<entry>-<slug>`: readable by people and safe on every filesystem. */
export function dataPath(entry: number, schema: string, name: string): string {
  return `data/${String(entry).padStart(5, '0')}-${`${schema}.${name}`.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 60)}`;
}
