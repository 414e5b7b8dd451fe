/**
 * A SQL_ASCII database holds bytes, not characters: its comments may hold bytes that are not UTF-8
 * (Latin-1 text typed into a SQL_ASCII database), which `pg`, reading and sending every text as
 * UTF-8, cannot carry. Its catalogs are read with `client_encoding = SQL_ASCII` (the server checks
 * nothing), such comments are read again as bytes and restored by a statement that carries them
 * as data, and whatever else is not UTF-8 (names, definitions) is refused.
 */
import type pg from 'pg';
import { BackupError } from '../../../errors.js';
import { quoteLiteral } from '../connection.js';
import type { Toc } from '../toc.js';
import type { CatalogBuilder } from './builder.js';

/** What `pg` makes of bytes that are not UTF-8: each bad sequence reads as this character. */
const REPLACEMENT = '\uFFFD';
const utf8 = new TextDecoder('utf-8', { fatal: true });
/** The server sends a SQL_ASCII database's bytes as they are. */
export const BYTES_ENCODING = "SET LOCAL client_encoding = 'SQL_ASCII'";

/**
 * In a SQL_ASCII database, has the server send the catalogs' bytes as they are, and fails if a
 * table's or schema's name is not UTF-8 (the backup names tables back to the server, to lock and
 * copy them); true if it does.
 */
export async function readAsBytes(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ encoding: string; database: string }>("SELECT current_setting('server_encoding') AS encoding, current_database() AS database");
  if (rows[0]?.encoding !== 'SQL_ASCII') return false;
  await client.query(BYTES_ENCODING);
  const { rows: names } = await client.query<{ schema: Buffer; name: Buffer }>(`
    SELECT convert_to(n.nspname::text, 'SQL_ASCII') AS schema, convert_to(c.relname::text, 'SQL_ASCII') AS name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname::text || c.relname::text ~ '[\\x80-\\xff]'`);
  const bad = names.filter((row) => !isUtf8(row.schema) || !isUtf8(row.name)).map((row) => `${row.schema.toString()}.${row.name.toString()}`);
  if (bad.length > 0) throw notUtf8(rows[0].database, `names that are not UTF-8 (${bad.slice(0, 5).join(', ')})`);
  return true;
}

/**
 * Rewrites each comment whose text is not UTF-8 (read with the replacement character in place of
 * its bad bytes) as a statement that sets the comment's exact bytes. Comments are matched by text:
 * two comments whose bytes differ but read the same cannot be told apart, and are refused.
 */
export async function carryCommentBytes(b: CatalogBuilder): Promise<void> {
  const texts = await b.query<{ bytes: Buffer }>(`SELECT DISTINCT convert_to(description, 'SQL_ASCII') AS bytes FROM pg_description WHERE description ~ '[\\x80-\\xff]'`);
  const bytesByText = new Map<string, Buffer[]>();
  for (const { bytes } of texts) bytesByText.set(bytes.toString('utf8'), [...(bytesByText.get(bytes.toString('utf8')) ?? []), bytes]);
  for (const [text, variants] of bytesByText) {
    if (!variants.some((bytes) => !isUtf8(bytes))) continue;
    if (variants.length > 1) {
      throw new BackupError('SOURCE_FAILED', `Comments of the database differ only in bytes that are not UTF-8 (${JSON.stringify(text.slice(0, 80))}): backupkit cannot tell which object has which`, {
        hint: 'Rewrite those comments in UTF-8 (or ASCII), or back this database up with pg_dump.',
      });
    }
    const literal = ` IS ${quoteLiteral(text)};`;
    for (const draft of b.drafts) {
      if (draft.kind !== 'COMMENT' || !draft.sql.startsWith('COMMENT ON ') || !draft.sql.endsWith(literal)) continue;
      const target = draft.sql.slice('COMMENT ON '.length, -literal.length);
      // format() reads `%` as a placeholder: the target's own are doubled.
      const statement = `COMMENT ON ${target.replaceAll('%', '%%')} IS %L`;
      draft.sql = `DO ${quoteLiteral(`BEGIN EXECUTE pg_catalog.format(${quoteLiteral(statement)}, pg_catalog.convert_from(pg_catalog.decode('${variants[0]!.toString('hex')}', 'hex'), 'SQL_ASCII')); END`)};`;
    }
  }
}

/** Fails a backup whose catalogs hold bytes that are not UTF-8 anywhere but in the comments carried as bytes. */
export function refuseOtherBytes(toc: Toc): void {
  if (!JSON.stringify(toc).includes(REPLACEMENT)) return;
  throw notUtf8(toc.database.name, 'names or definitions that are not UTF-8 (or hold U+FFFD, which cannot be told from them)');
}

function notUtf8(database: string, what: string): BackupError {
  return new BackupError('SOURCE_FAILED', `Database ${JSON.stringify(database)} has ${what}, which backupkit cannot send back as they are`, {
    hint: 'In a SQL_ASCII database only rows and comments may hold bytes that are not UTF-8: rewrite those names or definitions in UTF-8 (or ASCII), or back this database up with pg_dump.',
  });
}

function isUtf8(bytes: Buffer): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}
