/** What is created after the data: constraints, indexes, extended statistics, triggers, rules, policies. */
import { cooperative } from '../../../util/yield.js';
import { quoteIdent } from '../connection.js';
import { commentJoin, notExtensionMember, type CatalogBuilder, type Draft } from './builder.js';

/** `tgenabled`/`ev_enabled` as the ALTER TABLE words that set it. */
const TRIGGER_MODES: Record<string, string> = { O: 'ENABLE', D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' };

/** Joins the table `rel` of a row, as `c`, and its schema, as `n`. */
function onTable(rel: string): string {
  return `JOIN pg_class c ON c.oid = ${rel} JOIN pg_namespace n ON n.oid = c.relnamespace`;
}

/** The readers of what is created after the data, in the order they add their entries. */
export const POST_DATA_READERS = [readConstraintsAndIndexes, readIndexAttaches, readStatistics, readTriggers, readRules, readPolicies];

/**
 * Constraints that live outside CREATE TABLE (check constraints NOT VALID too), then the indexes: a
 * primary key's or unique constraint's index is its constraint's entry.
 */
async function readConstraintsAndIndexes(b: CatalogBuilder): Promise<void> {
  const constraintsRead = b.query<{
    oid: number; schema: string; table: string; tableName: string; relkind: string; name: string; contype: string; def: string; index: number; comment: string | null;
    indexName: string | null; indexOptions: string[] | null; indexComment: string | null;
  }>(`
    SELECT co.oid::int AS oid, n.nspname AS schema, format('%I.%I', n.nspname, c.relname) AS table, c.relname AS "tableName", c.relkind,
           quote_ident(co.conname) AS name, co.contype::text AS contype, pg_get_constraintdef(co.oid) AS def, co.conindid::int AS index,
           cd.description AS comment,
           -- The index of a primary key or unique constraint has its own options and comment, which pg_get_constraintdef leaves out.
           CASE WHEN ic.oid IS NOT NULL THEN format('%I.%I', n.nspname, ic.relname) END AS "indexName",
           CASE WHEN co.contype IN ('p', 'u') THEN ic.reloptions END AS "indexOptions", id.description AS "indexComment"
      FROM pg_constraint co ${onTable('co.conrelid')} LEFT JOIN pg_class ic ON ic.oid = co.conindid
      ${commentJoin('cd', 'pg_constraint', 'co.oid')} ${commentJoin('id', 'pg_class', 'co.conindid')}
     WHERE c.relnamespace = ANY($1) AND c.relkind IN ('r', 'p', 'f')
       AND (co.contype IN ('p', 'u', 'x') OR (co.contype = 'f' AND co.conparentid = 0) OR (co.contype = 'c' AND co.conislocal AND NOT co.convalidated))
       AND ${notExtensionMember('pg_class', 'c.oid')}
     -- In a fixed order, so that entry ids do not change with the query plan (incremental backups compare TOCs).
     ORDER BY n.nspname, c.relname, co.conname`, [b.namespaces]);
  // Sent with the constraints' query, to run beside it.
  const indexesRead = b.query<{
    oid: number; schema: string; name: string; ident: string; qname: string; table: string; valid: boolean; clustered: boolean; replident: boolean;
    /** Null for the index of a constraint, which the constraint's entry creates. */
    def: string | null;
    comment: string | null; stats: string[] | null;
  }>(`
    SELECT i.indexrelid::int AS oid, n.nspname AS schema, ic.relname AS name, quote_ident(ic.relname) AS ident, format('%I.%I', n.nspname, ic.relname) AS qname,
           format('%I.%I', n.nspname, c.relname) AS table,
           -- A constraint's index is created by its ADD CONSTRAINT: its definition is not needed.
           CASE WHEN k.oid IS NULL THEN pg_get_indexdef(i.indexrelid) END AS def,
           -- A partitioned index is invalid until every partition's index is attached: the restore attaches them too.
           i.indisvalid OR ic.relkind = 'I' AS valid, i.indisclustered AS clustered,
           i.indisreplident AS replident, cd.description AS comment,
           -- No statistics target is -1 before PostgreSQL 17, NULL since.
           (SELECT array_agg(a.attnum || ' ' || a.attstattarget) FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0) AS stats
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid ${onTable('i.indrelid')} ${commentJoin('cd', 'pg_class', 'i.indexrelid')}
      LEFT JOIN pg_constraint k ON k.conrelid = i.indrelid AND k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x')
     WHERE c.relnamespace = ANY($1) AND c.relkind IN ('r', 'p', 'm') AND ${notExtensionMember('pg_class', 'c.oid')}
     ORDER BY n.nspname, ic.relname`, [b.namespaces]);
  indexesRead.catch(() => {}); // awaited once the constraints are added
  const constraintRows = await constraintsRead;
  const indexCreators = new Map<number, Draft>();
  const yieldNow = cooperative();
  for (const row of constraintRows) {
    await yieldNow();
    const foreign = row.contype === 'f';
    // A CHECK constraint is added to the children too (they have it, inherited): ONLY fails on an inheritance parent.
    const only = (foreign && row.relkind === 'p') || row.contype === 'c' ? '' : 'ONLY ';
    const indexOptions = row.indexOptions ? ` WITH (${row.indexOptions.join(', ')})` : '';
    const entry = b.add({
      kind: foreign ? 'FK CONSTRAINT' : 'CONSTRAINT', schema: row.schema, name: `${row.tableName} ${row.name}`, section: 'post-data',
      sql: `ALTER TABLE ${only}${row.table}\n    ADD CONSTRAINT ${row.name} ${row.def}${indexOptions};`,
      creates: [b.key('pg_constraint', row.oid), ...(foreign || row.index === 0 ? [] : [b.key('pg_class', row.index)])],
    });
    if (!foreign && row.index !== 0) indexCreators.set(row.index, entry);
    b.comment(`CONSTRAINT ${row.name} ON ${row.table}`, row.comment, entry, row.schema);
    if (!foreign && row.indexName) b.comment(`INDEX ${row.indexName}`, row.indexComment, entry, row.schema);
  }

  const indexes = await indexesRead;
  for (const index of indexes) {
    await yieldNow();
    if (!index.valid) {
      // What a failed CREATE INDEX CONCURRENTLY leaves: recreating it would fail the restore (a unique one) or
      // build an index the source does not use. pg_dump skips it too.
      b.warn({ code: 'SKIPPED', message: `Index ${index.qname} is invalid (left by a failed CREATE INDEX CONCURRENTLY?) and is not backed up, as pg_dump does: drop it, or REINDEX it to keep it` });
      continue;
    }
    let entry = indexCreators.get(index.oid);
    if (index.def !== null) {
      const statements = [`${index.def};`];
      for (const stat of index.stats ?? []) {
        const [column, target] = stat.split(' ');
        statements.push(`ALTER INDEX ${index.qname} ALTER COLUMN ${column} SET STATISTICS ${target};`);
      }
      entry = b.add({ kind: 'INDEX', schema: index.schema, name: index.name, section: 'post-data', sql: statements.join('\n'), creates: [b.key('pg_class', index.oid)] });
      b.comment(`INDEX ${index.qname}`, index.comment, entry, index.schema);
    }
    if (!entry) continue;
    if (index.clustered) b.add({ kind: 'CLUSTER ON', schema: index.schema, name: index.name, section: 'post-data', sql: `ALTER TABLE ${index.table} CLUSTER ON ${index.ident};`, after: [entry.id] });
    if (index.replident) b.add({ kind: 'REPLICA IDENTITY', schema: index.schema, name: index.name, section: 'post-data', sql: `ALTER TABLE ONLY ${index.table} REPLICA IDENTITY USING INDEX ${index.ident};`, after: [entry.id] });
  }
}

/** Indexes of partitions are attached to their partitioned parent's index; pg_depend does not order that for us. */
async function readIndexAttaches(b: CatalogBuilder): Promise<void> {
  for (const row of await b.query<{ child: number; parent: number; schema: string; name: string; sql: string }>(`
    SELECT i.inhrelid::int AS child, i.inhparent::int AS parent, n.nspname AS schema, c.relname AS name,
           format('ALTER INDEX %I.%I ATTACH PARTITION %I.%I;', pn.nspname, p.relname, n.nspname, c.relname) AS sql
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
     WHERE c.relkind IN ('i', 'I') AND c.relnamespace = ANY($1)
       AND EXISTS (SELECT 1 FROM pg_index x WHERE x.indexrelid = c.oid AND (x.indisvalid OR c.relkind = 'I'))`, [b.namespaces])) {
    b.add({ kind: 'INDEX ATTACH', schema: row.schema, name: row.name, section: 'post-data', sql: row.sql, needs: [b.key('pg_class', row.child), b.key('pg_class', row.parent)] });
  }
}

async function readStatistics(b: CatalogBuilder): Promise<void> {
  for (const stat of await b.query<{ oid: number; schema: string; name: string; qname: string; def: string; owner: string; target: number | null; comment: string | null }>(`
    SELECT s.oid::int AS oid, n.nspname AS schema, s.stxname AS name, format('%I.%I', n.nspname, s.stxname) AS qname, pg_get_statisticsobjdef(s.oid) AS def,
           quote_ident(pg_get_userbyid(s.stxowner)) AS owner, CASE WHEN (to_jsonb(s)->>'stxstattarget')::int >= 0 THEN (to_jsonb(s)->>'stxstattarget')::int END AS target,
           obj_description(s.oid, 'pg_statistic_ext') AS comment
      FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
     WHERE s.stxnamespace = ANY($1) AND ${notExtensionMember('pg_statistic_ext', 's.oid')}`, [b.namespaces])) {
    const statements = [`${stat.def};`, ...(stat.target === null ? [] : [`ALTER STATISTICS ${stat.qname} SET STATISTICS ${stat.target};`])];
    const entry = b.add({
      kind: 'STATISTICS', schema: stat.schema, name: stat.name, section: 'post-data', sql: statements.join('\n'),
      owner: `ALTER STATISTICS ${stat.qname} OWNER TO ${stat.owner};`, creates: [b.key('pg_statistic_ext', stat.oid)],
    });
    b.comment(`STATISTICS ${stat.qname}`, stat.comment, entry, stat.schema);
  }
}

/**
 * A partition's copy of its parent's trigger comes with the parent's; only an enable mode of its own
 * (DISABLE, ENABLE ALWAYS/REPLICA on that partition) is written, after the parent's, as pg_dump does.
 */
async function readTriggers(b: CatalogBuilder): Promise<void> {
  const parentId = b.serverVersion >= 130000 ? 't.tgparentid' : '0';
  for (const trigger of await b.query<{ oid: number; schema: string; name: string; table: string; def: string; enabled: string; parent: number; comment: string | null }>(`
    SELECT t.oid::int AS oid, n.nspname AS schema, t.tgname AS name, format('%I.%I', n.nspname, c.relname) AS table,
           pg_get_triggerdef(t.oid, false) AS def, t.tgenabled::text AS enabled, ${parentId}::int AS parent, cd.description AS comment
      FROM pg_trigger t ${onTable('t.tgrelid')} ${commentJoin('cd', 'pg_trigger', 't.oid')}
     WHERE c.relnamespace = ANY($1) AND NOT t.tgisinternal AND ${notExtensionMember('pg_class', 'c.oid')}
       AND (${parentId} = 0 OR t.tgenabled <> (SELECT p.tgenabled FROM pg_trigger p WHERE p.oid = ${parentId}))`, [b.namespaces])) {
    const mode = `ALTER TABLE ${trigger.table} ${TRIGGER_MODES[trigger.enabled]} TRIGGER ${quoteIdent(trigger.name)};`;
    if (trigger.parent !== 0) {
      b.add({ kind: 'TRIGGER', schema: trigger.schema, name: trigger.name, section: 'post-data', sql: mode, needs: [b.key('pg_trigger', trigger.parent)] });
      continue;
    }
    const statements = [`${trigger.def};`, ...(trigger.enabled === 'O' ? [] : [mode])];
    const entry = b.add({ kind: 'TRIGGER', schema: trigger.schema, name: trigger.name, section: 'post-data', sql: statements.join('\n'), creates: [b.key('pg_trigger', trigger.oid)] });
    b.comment(`TRIGGER ${quoteIdent(trigger.name)} ON ${trigger.table}`, trigger.comment, entry, trigger.schema);
  }
}

async function readRules(b: CatalogBuilder): Promise<void> {
  for (const rule of await b.query<{ oid: number; schema: string; name: string; table: string; def: string; enabled: string; comment: string | null }>(`
    SELECT r.oid::int AS oid, n.nspname AS schema, r.rulename AS name, format('%I.%I', n.nspname, c.relname) AS table,
           pg_get_ruledef(r.oid) AS def, r.ev_enabled::text AS enabled, obj_description(r.oid, 'pg_rewrite') AS comment
      FROM pg_rewrite r ${onTable('r.ev_class')}
     WHERE c.relnamespace = ANY($1) AND r.rulename <> '_RETURN' AND ${notExtensionMember('pg_class', 'c.oid')}`, [b.namespaces])) {
    const statements = [rule.def];
    if (rule.enabled !== 'O') statements.push(`ALTER TABLE ${rule.table} ${TRIGGER_MODES[rule.enabled]} RULE ${quoteIdent(rule.name)};`);
    const entry = b.add({ kind: 'RULE', schema: rule.schema, name: rule.name, section: 'post-data', sql: statements.join('\n'), creates: [b.key('pg_rewrite', rule.oid)] });
    b.comment(`RULE ${quoteIdent(rule.name)} ON ${rule.table}`, rule.comment, entry, rule.schema);
  }
}

async function readPolicies(b: CatalogBuilder): Promise<void> {
  for (const policy of await b.query<{ oid: number; schema: string; name: string; sql: string; comment: string | null; table: string }>(`
    SELECT p.oid::int AS oid, n.nspname AS schema, p.polname AS name, format('%I.%I', n.nspname, c.relname) AS table,
           format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s%s%s;', p.polname, n.nspname, c.relname,
                  CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                  CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                  (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ') FROM unnest(p.polroles) AS r),
                  CASE WHEN p.polqual IS NOT NULL THEN ' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')' ELSE '' END,
                  CASE WHEN p.polwithcheck IS NOT NULL THEN ' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')' ELSE '' END) AS sql,
           obj_description(p.oid, 'pg_policy') AS comment
      FROM pg_policy p ${onTable('p.polrelid')}
     WHERE c.relnamespace = ANY($1)`, [b.namespaces])) {
    const entry = b.add({ kind: 'POLICY', schema: policy.schema, name: policy.name, section: 'post-data', sql: policy.sql, creates: [b.key('pg_policy', policy.oid)] });
    b.comment(`POLICY ${quoteIdent(policy.name)} ON ${policy.table}`, policy.comment, entry, policy.schema);
  }
}
