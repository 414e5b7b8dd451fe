import { quoteLiteral } from './connection.js';
import { chunkPath } from './copy-out.js';
import { ANALYZED_TABLES_SQL, RESTORE_SETTINGS, clientEncoding, copyTarget, renderEntry, type DatabaseLocale, type TableDataSummary, type Toc } from './toc.js';

/**
 * `restore.sql`: the whole source as a psql script, for restoring by hand without backupkit. Run it
 * from the source's folder of the extracted archive: `psql -v ON_ERROR_STOP=1 -d NEW_DB -f restore.sql`.
 * Large objects are written with `lo_from_bytea` from hex made by `od`, so they keep their OIDs.
 */
export function renderRestoreSql(toc: Toc, summaries: readonly TableDataSummary[]): string {
  const chunks = new Map(summaries.map((summary) => [summary.entry, summary.chunks]));
  const lines = [
    '-- Restores this PostgreSQL source by hand. From this folder of the extracted archive, into a new',
    "-- database with the source's encoding and locale (as pg_dump --create makes it):",
    `--   createdb ${createdbOptions(toc.database)} NEW_DB && psql -v ON_ERROR_STOP=1 -d NEW_DB -f restore.sql`,
    '\\set ON_ERROR_STOP on',
    ...RESTORE_SETTINGS,
    ...clientEncoding(toc),
    '',
  ];
  const section = (name: string, filter: (kind: string) => boolean): void => {
    lines.push(`-- ${name}`, '');
    for (const entry of toc.entries) if (filter(entry.kind) && entry.section === name) lines.push(...renderEntry(entry));
  };
  section('pre-data', () => true);
  lines.push('-- data');
  for (const table of toc.tables) {
    for (let index = 1; index <= (chunks.get(table.entry) ?? 0); index++) {
      lines.push(`\\copy ${copyTarget(table)} FROM '${chunkPath(table, index)}'`);
    }
  }
  section('data', () => true);
  for (const lo of toc.largeObjects) {
    lines.push(`\\set blob \`od -An -v -tx1 blobs/${lo.oid} | tr -d ' \\n'\``, `SELECT pg_catalog.lo_from_bytea(${lo.oid}, decode(:'blob', 'hex'));`);
    lines.push(`ALTER LARGE OBJECT ${lo.oid} OWNER TO ${lo.owner};`);
    if (lo.comment !== null) lines.push(`COMMENT ON LARGE OBJECT ${lo.oid} IS ${quoteLiteral(lo.comment)};`);
    if (lo.acl !== null) lines.push(lo.acl);
  }
  const grants = (kind: string): boolean => kind === 'ACL' || kind === 'EXTENSION ACL' || kind === 'DELEGATED ACL' || kind === 'DEFAULT ACL';
  section('post-data', (kind) => !grants(kind) && kind !== 'MATERIALIZED VIEW DATA' && kind !== 'EVENT TRIGGER');
  for (const entry of toc.entries) if (grants(entry.kind)) lines.push(...renderEntry(entry));
  for (const entry of toc.entries) if (entry.kind === 'MATERIALIZED VIEW DATA') lines.push(...renderEntry(entry));
  for (const entry of toc.entries) if (entry.kind === 'EVENT TRIGGER') lines.push(...renderEntry(entry));
  lines.push(`SELECT 'ANALYZE ' || string_agg(name, ', ') FROM (${ANALYZED_TABLES_SQL}) AS t HAVING count(*) > 0`, '\\gexec', '');
  return lines.join('\n');
}

/** createdb's options for a database with the source's encoding, locale and locale provider. */
function createdbOptions(from: DatabaseLocale): string {
  // The options go into a comment line of the script: a line break would end it.
  const shell = (value: string): string => (/[\r\n]/.test(value) ? '<as in toc.json>' : `'${value.replaceAll("'", "'\\''")}'`);
  const options = ['--template=template0', `--encoding=${shell(from.encoding)}`, `--lc-collate=${shell(from.collate)}`, `--lc-ctype=${shell(from.ctype)}`];
  if (from.provider && from.provider !== 'libc') options.push(`--locale-provider=${from.provider}`, `--${from.provider}-locale=${shell(from.locale ?? '')}`);
  if (from.icuRules) options.push(`--icu-rules=${shell(from.icuRules)}`);
  return options.join(' ');
}
