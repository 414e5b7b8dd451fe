import type { LargeObjectInfo } from '../toc.js';
import type { CatalogBuilder } from './builder.js';
import { aclSql, aclStatements } from './privileges.js';

/** Large objects with their sizes, read through descriptors opened in the snapshot (INV_READ). */
export async function readLargeObjects(b: CatalogBuilder): Promise<LargeObjectInfo[]> {
  const rows = await b.query<{ oid: number; size: string; owner: string; acl: string | null; comment: string | null }>(`
    SELECT m.oid::bigint AS oid, lo_lseek64(lo_open(m.oid, 262144), 0, 2)::text AS size, quote_ident(pg_get_userbyid(m.lomowner)) AS owner,
           ${aclSql('m.lomacl')} AS acl, obj_description(m.oid, 'pg_largeobject') AS comment
      FROM pg_largeobject_metadata m ORDER BY m.oid`);
  return rows.map((row) => ({
    oid: Number(row.oid),
    size: Number(row.size),
    owner: row.owner,
    acl: row.acl === null ? null : Object.values(aclStatements(`LARGE OBJECT ${row.oid}`, row.owner, row.acl)).flat().join('\n'),
    comment: row.comment,
  }));
}
