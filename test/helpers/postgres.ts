/** A real PostgreSQL server for the tests: unique databases per test, dropped afterwards. */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { Database, directory, postgres } from '../../src/index.js';
import { tempDir } from './fs.js';

const run = promisify(execFile);
export const PG_HOST = process.env['BACKUPKIT_TEST_PGHOST'] ?? '127.0.0.1';
export const PG_PORT = Number(process.env['BACKUPKIT_TEST_PGPORT'] ?? 5432);
export const PG_USER = process.env['BACKUPKIT_TEST_PGUSER'] ?? 'postgres';
const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures');

export function pgUrl(database: string): string {
  return `postgres://${PG_USER}@${PG_HOST}:${PG_PORT}/${encodeURIComponent(database)}`;
}

/** Runs SQL (several statements allowed) in a database. */
export async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(database: string, text: string, params?: unknown[]): Promise<T[]> {
  const client = new pg.Client({ connectionString: pgUrl(database) });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** A fresh database name, unique across concurrent test files and runs. */
export function uniqueName(label: string): string {
  return `bk_${label}_${process.pid}_${randomBytes(3).toString('hex')}`;
}

/** Creates a database, dropped (with anything restored beside it) when the test ends. */
export async function createDatabase(t: { after(fn: () => Promise<void>): void }, label: string, fixture?: string): Promise<string> {
  const name = uniqueName(label);
  await sql('postgres', `CREATE DATABASE "${name}"`);
  t.after(() => dropDatabasesLike(name));
  if (fixture) await sql(name, await readFile(join(fixtures, fixture), 'utf8'));
  return name;
}

/** Drops a database and every database whose name starts with it (restored copies, staging leftovers). */
export async function dropDatabasesLike(prefix: string): Promise<void> {
  for (const { datname } of await sql<{ datname: string }>('postgres', 'SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [prefix])) {
    await sql('postgres', `DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  }
}

export async function databasesLike(prefix: string): Promise<string[]> {
  return (await sql<{ datname: string }>('postgres', 'SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1', [prefix])).map((r) => r.datname);
}

/** `pg_dump --schema-only`, the fidelity oracle: two databases with the same schema print the same. */
export async function schemaDump(database: string): Promise<string> {
  const { stdout } = await run('pg_dump', ['--schema-only', '-h', PG_HOST, '-p', String(PG_PORT), '-U', PG_USER, database], { maxBuffer: 64 * 1024 * 1024 });
  // \restrict and \unrestrict carry a random key per run (pg_dump's guard against psql meta-commands in names).
  return stdout.replace(/^-- Dumped (from|by) .*$/gm, '').replace(/^\\(un)?restrict .*$/gm, '');
}

/**
 * The control: `pg_dump -Fc` of `source` restored by `pg_restore` into `<source>_control`, whose
 * schema dump is compared with the source's, so that a difference pg_dump shares is told apart.
 */
export async function pgDumpCopy(source: string): Promise<string> {
  const control = `${source}_control`;
  const connection = ['-h', PG_HOST, '-p', String(PG_PORT), '-U', PG_USER];
  const dir = await mkdtemp(join(tmpdir(), 'backupkit-control-'));
  try {
    const file = join(dir, 'dump');
    await run('pg_dump', ['-Fc', '-f', file, ...connection, source]);
    await sql('postgres', `DROP DATABASE IF EXISTS "${control}" WITH (FORCE)`);
    await sql('postgres', `CREATE DATABASE "${control}" TEMPLATE template0`);
    await run('pg_restore', ['--exit-on-error', '-d', control, ...connection, file]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return control;
}

/** Extracts an archive with tar into the new folder `into`, as docs/POSTGRES.md says; returns the folder of source `name`. */
export async function extractArchive(archive: string, into: string, name = 'pg'): Promise<string> {
  await mkdir(into, { recursive: true });
  await run('tar', ['-xzf', archive, '-C', into]);
  return join(into, 'sources', name);
}

/**
 * Restores by hand with the standard tools only: psql on the restore.sql in `folder` (a source's
 * folder of extracted archives) into the new database `database`, created from template0 with `clauses`.
 */
export async function runRestoreSql(folder: string, database: string, clauses = ''): Promise<string> {
  await sql('postgres', `CREATE DATABASE "${database}" TEMPLATE template0${clauses}`);
  await run('psql', ['-q', '-X', '-d', pgUrl(database), '-f', 'restore.sql'], { cwd: folder });
  return database;
}

/** Backs `source` up into a folder, then restores it by hand into `<source>_byhand`, created with `clauses`. */
export async function restoreByHand(t: Parameters<typeof tempDir>[0], source: string, clauses = ''): Promise<string> {
  const dir = await tempDir(t, 'pg-byhand');
  const result = await new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source) })] }).startBackup({ to: directory({ path: dir }) }).done;
  return runRestoreSql(await extractArchive(join(dir, result.name), join(dir, 'extracted')), `${source}_byhand`, clauses);
}

/** Every table's row count and a hash of its sorted rows, sequence values and large objects. */
export async function dataFingerprint(database: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const tables = await sql<{ name: string }>(database, `
    SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relispopulated ORDER BY 1`);
  for (const { name } of tables) {
    const [row] = await sql<{ n: string; h: string }>(database,
      `SELECT count(*)::text AS n, coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') AS h FROM ONLY ${name} t`);
    out[name] = `${row?.n} ${row?.h}`;
  }
  for (const { name, value } of await sql<{ name: string; value: string }>(database, `
    SELECT format('%I.%I', schemaname, sequencename) AS name, coalesce(last_value::text, 'unset') AS value FROM pg_sequences ORDER BY 1`)) {
    out[`sequence ${name}`] = value;
  }
  for (const { oid, h } of await sql<{ oid: string; h: string }>(database, `SELECT oid::text, md5(lo_get(oid)) AS h FROM pg_largeobject_metadata ORDER BY oid`)) {
    out[`large object ${oid}`] = h;
  }
  return out;
}
