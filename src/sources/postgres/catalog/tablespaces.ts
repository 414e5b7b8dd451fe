/** Tablespaces: where tables, indexes and materialized views lie, when not in the database's default one. */
import type { CatalogBuilder } from './builder.js';

/**
 * Names the tablespace of each entry that creates a table, materialized view, index or the index of
 * a constraint lying outside the database's default tablespace: a restore creates it there (as
 * pg_dump's `SET default_tablespace`), or, with `tablespaces: false`, in the default one.
 */
export async function readTablespaces(b: CatalogBuilder): Promise<void> {
  const rows = await b.query<{ oid: number; tablespace: string }>(`
    SELECT c.oid::int AS oid, t.spcname AS tablespace FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
     WHERE c.relnamespace = ANY($1) AND c.relkind IN ('r', 'p', 'm', 'i', 'I')`, [b.namespaces]);
  if (rows.length === 0) return;
  const tablespaces = new Map(rows.map((row) => [b.key('pg_class', row.oid), row.tablespace]));
  for (const draft of b.drafts) {
    const tablespace = draft.creates.map((object) => tablespaces.get(object)).find((name) => name !== undefined);
    if (tablespace !== undefined) draft.tablespace = tablespace;
  }
}
