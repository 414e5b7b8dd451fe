/**
 * The data of extension configuration tables (`pg_extension_config_dump`): CREATE EXTENSION makes
 * the table, with the rows its script inserts; the rows users added are data, which pg_dump dumps
 * after the extension (those its filter condition selects) and so does backupkit.
 */
import { quoteLiteral } from '../connection.js';
import type { TocTable } from '../toc.js';
import type { CatalogBuilder } from './builder.js';
import { dataPath } from './relations.js';

/**
 * Adds a data entry per configuration table and sequence of each extension backed up: the table's
 * rows that its condition selects are copied with the other tables' (returned), after CREATE
 * EXTENSION at restore; a sequence's value is set with the sequences'.
 */
export async function readExtensionConfig(b: CatalogBuilder): Promise<TocTable[]> {
  const rows = await b.query<{ extension: string; schema: string; name: string; qname: string; relkind: string; condition: string; bytes: string; columns: string[] | null; sequence: boolean }>(`
    SELECT e.extname AS extension, n.nspname AS schema, c.relname AS name, format('%I.%I', n.nspname, c.relname) AS qname, c.relkind::text AS relkind,
           coalesce(x.cond, '') AS condition, pg_relation_size(c.oid)::text AS bytes,
           (SELECT array_agg(quote_ident(a.attname) ORDER BY a.attnum) FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS columns
      FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(rel, cond)
      JOIN pg_class c ON c.oid = x.rel JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'S') AND ($1 OR c.relnamespace = ANY($2))
     ORDER BY e.extname, 4`, [b.wholeDatabase, b.namespaces]);
  const tables: TocTable[] = [];
  for (const row of rows) {
    const extension = b.drafts.find((draft) => draft.kind === 'EXTENSION' && draft.name === row.extension);
    if (!extension) continue;
    if (row.relkind === 'S') {
      const [value] = await b.query<{ last: string; called: boolean }>(`SELECT last_value::text AS last, is_called AS called FROM ${row.qname}`);
      b.add({
        kind: 'SEQUENCE SET', schema: row.schema, name: row.name, section: 'data',
        sql: `SELECT pg_catalog.setval(${quoteLiteral(row.qname)}, ${value!.last}, ${value!.called});`, after: [extension.id],
      });
      continue;
    }
    const entry = b.add({
      kind: 'TABLE DATA', schema: row.schema, name: row.name, section: 'data',
      sql: `-- the rows of ${row.qname}, configuration table of extension ${row.extension}${row.condition === '' ? '' : ` (${row.condition.replace(/\s+/g, ' ')})`}, are loaded with the other tables'`,
      after: [extension.id],
    });
    tables.push({
      entry: entry.id, qualifiedName: row.qname, columns: row.columns ?? [], dataPath: dataPath(entry.id, row.schema, row.name), estimatedBytes: Number(row.bytes),
      ...(row.condition === '' ? {} : { condition: row.condition }),
    });
  }
  return tables;
}
