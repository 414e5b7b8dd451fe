import { cooperative } from '../../util/yield.js';
import { quoteLiteral } from './connection.js';
import { chunkPath } from './copy-out.js';
import { ANALYZED_TABLES_SQL, RESTORE_SETTINGS, clientEncoding, copyTarget, piecePath, renderEntry, type TableDataSummary, type Toc } from './toc.js';

/** What restore.sql of an incremental needs: the tables whose rows an earlier archive of the chain holds. */
export interface ScriptRefs {
  /** The source's name: its folder in every archive, `sources/<name>/`. */
  readonly source: string;
  /** By table entry, where the chain holds the rows of a table this archive does not. */
  readonly refs: ReadonlyMap<number, { readonly archive: string; readonly path: string }>;
  /** By OID, where the chain holds the bytes of a large object this archive does not. */
  readonly largeObjects: ReadonlyMap<number, { readonly archive: string; readonly path: string }>;
}

/**
 * `restore.sql`: the whole source as a psql script, for restoring by hand without backupkit. Run it
 * from the source's folder of the extracted archive: `psql -v ON_ERROR_STOP=1 -d NEW_DB -f restore.sql`.
 * Large objects are written with `lo_from_bytea` from hex made by `od`, so they keep their OIDs. In an
 * incremental, the rows of an unchanged table are read from the archive that holds them, extracted
 * beside this one into a folder named as that archive.
 */
export async function renderRestoreSql(toc: Toc, summaries: readonly TableDataSummary[], incremental?: ScriptRefs): Promise<string> {
  // Thousands of entries and tables: written between turns of the event loop, not in one.
  const yieldNow = cooperative();
  const byEntry = new Map(summaries.map((summary) => [summary.entry, summary]));
  const held = incremental?.refs ?? new Map<number, { archive: string; path: string }>();
  const heldBlobs = incremental?.largeObjects ?? new Map<number, { archive: string; path: string }>();
  // From <archive>/sources/<name>/ of this archive, up to the folder the archives are extracted in.
  const elsewhere = (ref: { archive: string; path: string } | undefined, path: string): string => (ref && incremental ? `../../../${ref.archive}/sources/${incremental.source}/${path}` : path);
  const lines = [
    '-- Restores this PostgreSQL source by hand. From this folder of the extracted archive, into a new',
    "-- database with the source's encoding and locale (as pg_dump --create makes it):",
    `--   createdb ${createdbOptions(toc.database)} NEW_DB && psql -v ON_ERROR_STOP=1 -d NEW_DB -f restore.sql`,
    ...(held.size + heldBlobs.size > 0
      ? [
          '-- This is an incremental backup: the rows of unchanged tables are in earlier archives of its chain.',
          '-- Extract this archive and each one named below into a folder named as the archive, side by side,',
          `-- and run this script from this archive's folder sources/${incremental?.source ?? ''}/ as above:`,
          ...[...new Set([...held.values(), ...heldBlobs.values()].map((ref) => ref.archive))].map((archive) => `--   ${archive}`),
        ]
      : []),
    '\\set ON_ERROR_STOP on',
    ...RESTORE_SETTINGS,
    ...clientEncoding(toc),
    '',
  ];
  const section = async (name: string, filter: (kind: string) => boolean): Promise<void> => {
    lines.push(`-- ${name}`, '');
    for (const entry of toc.entries) {
      if (filter(entry.kind) && entry.section === name) lines.push(...renderEntry(entry));
      await yieldNow();
    }
  };
  await section('pre-data', () => true);
  lines.push('-- data');
  for (const table of toc.tables) {
    const ref = held.get(table.entry);
    const summary = byEntry.get(table.entry);
    const folder = ref ? { dataPath: ref.path } : table;
    // A split table's pieces in page order: its rows come back in the order they were copied out.
    const pieces = summary?.pieces?.map((piece, i) => ({ path: piecePath(folder, i), chunks: piece.chunks })) ?? [{ path: folder.dataPath, chunks: summary?.chunks ?? 0 }];
    for (const piece of pieces) {
      for (let index = 1; index <= piece.chunks; index++) lines.push(`\\copy ${copyTarget(table)} FROM '${elsewhere(ref, chunkPath({ dataPath: piece.path }, index))}'`);
    }
    await yieldNow();
  }
  await section('data', () => true);
  for (const lo of toc.largeObjects) {
    lines.push(`\\set blob \`od -An -v -tx1 ${elsewhere(heldBlobs.get(lo.oid), `blobs/${lo.oid}`)} | tr -d ' \\n'\``, `SELECT pg_catalog.lo_from_bytea(${lo.oid}, decode(:'blob', 'hex'));`);
    lines.push(`ALTER LARGE OBJECT ${lo.oid} OWNER TO ${lo.owner};`);
    if (lo.comment !== null) lines.push(`COMMENT ON LARGE OBJECT ${lo.oid} IS ${quoteLiteral(lo.comment)};`);
    if (lo.acl !== null) lines.push(lo.acl);
  }
  const grants = (kind: string): boolean => kind === 'ACL' || kind === 'EXTENSION ACL' || kind === 'DELEGATED ACL' || kind === 'DEFAULT ACL';
  await section('post-data', (kind) => !grants(kind) && kind !== 'MATERIALIZED VIEW DATA' && kind !== 'EVENT TRIGGER');
  for (const entry of toc.entries) if (grants(entry.kind)) lines.push(...renderEntry(entry));
  for (const entry of toc.entries) if (entry.kind === 'MATERIALIZED VIEW DATA') lines.push(...renderEntry(entry));
  for (const entry of toc.entries) if (entry.kind === 'EVENT TRIGGER') lines.push(...renderEntry(entry));
  lines.push(`SELECT 'ANALYZE ' || string_agg(name, ', ') FROM (${ANALYZED_TABLES_SQL}) AS t HAVING count(*) > 0`, '\\gexec', '');
  return lines.join('\n');
}

/** createdb's options for a database with the source's encoding, locale, locale provider and default tablespace. */
function createdbOptions(from: Toc['database']): string {
  // The options go into a comment line of the script: a line break would end it.
  const shell = (value: string): string => (/[\r\n]/.test(value) ? '<as in toc.json>' : `'${value.replaceAll("'", "'\\''")}'`);
  const options = ['--template=template0', `--encoding=${shell(from.encoding)}`, `--lc-collate=${shell(from.collate)}`, `--lc-ctype=${shell(from.ctype)}`];
  if (from.provider && from.provider !== 'libc') options.push(`--locale-provider=${from.provider}`, `--${from.provider}-locale=${shell(from.locale ?? '')}`);
  if (from.icuRules) options.push(`--icu-rules=${shell(from.icuRules)}`);
  if (from.tablespace) options.push(`--tablespace=${shell(from.tablespace)}`);
  return options.join(' ');
}
