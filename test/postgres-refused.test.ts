/**
 * Issue 17: what real applications have and backupkit refused: the rows users add to extension
 * configuration tables (PostGIS's spatial_ref_sys), objects in non-default tablespaces, and comments
 * that are not UTF-8 in a SQL_ASCII database. Each round trip is compared with its source by
 * `pg_dump --schema-only` and row hashes, and with a `pg_dump | pg_restore` copy (the control).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Database, memory, postgres, verifyBackup, type Restorer } from '../src/index.js';
import { postgresRestorer } from '../src/sources/postgres/index.js';
import { tempDir } from './helpers/fs.js';
import { createDatabase, databasesLike, dataFingerprint, dropDatabasesLike, pgDumpCopy, pgUrl, restoreByHand, schemaDump, sql, uniqueName } from './helpers/postgres.js';
import { rejectsWithCode } from './helpers/errors.js';

const run = promisify(execFile);
const server = pgUrl('postgres');

/** `pg_dump --schema-only` as bytes: a SQL_ASCII database's text is not UTF-8. */
async function schemaBytes(database: string): Promise<Buffer> {
  const { stdout } = await run('pg_dump', ['--schema-only', '-d', pgUrl(database)], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  // latin1 maps each byte to one character and back: the lines of a run (its versions, its \restrict key) are cut byte for byte.
  return Buffer.from(stdout.toString('latin1').replace(/^-- Dumped (from|by) .*$/gm, '').replace(/^\\(un)?restrict .*$/gm, ''), 'latin1');
}

async function backUp(source: string): Promise<ReturnType<typeof memory>> {
  const destination = memory();
  await new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source) })] }).startBackup({ to: destination }).done;
  return destination;
}

async function restore(destination: ReturnType<typeof memory>, restored: string, target: Record<string, unknown> = {}): Promise<string> {
  await Database.restore({ from: destination, targets: { pg: { connection: server, database: restored, ...target } } });
  return restored;
}

/** The server's extension folder, where a test installs an extension of its own. */
async function extensionFolder(): Promise<string> {
  const { stdout } = await run('pg_config', ['--sharedir']);
  return join(stdout.trim(), 'extension');
}

const EXTENSION_PREFIX = 'bk_test_config_';

/**
 * Installs an extension with configuration tables under a name unique to this process, removed when
 * the test ends; files left by a test process that was killed are removed first.
 */
async function installConfigExtension(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const folder = await extensionFolder();
  for (const file of await readdir(folder)) {
    const pid = Number(/^bk_test_config_(\d+)_/.exec(file)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      await rm(join(folder, file), { force: true });
    }
  }
  const name = uniqueName('config').replace(/^bk_config_/, EXTENSION_PREFIX);
  const files = [join(folder, `${name}.control`), join(folder, `${name}--1.0.sql`)];
  t.after(async () => {
    for (const file of files) await rm(file, { force: true });
  });
  await writeFile(files[0]!, `comment = 'backupkit test: configuration tables'\ndefault_version = '1.0'\nrelocatable = true\n`);
  await writeFile(files[1]!, `
    CREATE TABLE ${name}_refs (id serial PRIMARY KEY, label text NOT NULL, shipped boolean NOT NULL DEFAULT false);
    INSERT INTO ${name}_refs (label, shipped) VALUES ('shipped one', true), ('shipped two', true);
    SELECT pg_catalog.pg_extension_config_dump('${name}_refs', 'WHERE NOT shipped');
    SELECT pg_catalog.pg_extension_config_dump('${name}_refs_id_seq', '');
    CREATE TABLE ${name}_notes (note text, at integer);
    SELECT pg_catalog.pg_extension_config_dump('${name}_notes', '');
    CREATE TABLE ${name}_plain (x integer);
    INSERT INTO ${name}_plain VALUES (1);`);
  return name;
}

/**
 * A tablespace in a folder of its own, owned by the server's OS user; dropped (or its name with
 * `_away`, which a test renames it to), with its folder, when the test ends, after the databases
 * registered before it (hooks run in order).
 */
async function createTablespace(t: { after(fn: () => Promise<void>): void }, label: string): Promise<string> {
  const name = uniqueName(label);
  const folder = await mkdtemp(join(tmpdir(), `backupkit-${label}-`));
  t.after(async () => {
    for (const dropped of [name, `${name}_away`]) await sql('postgres', `DROP TABLESPACE IF EXISTS ${dropped}`);
    await rm(folder, { recursive: true, force: true });
  });
  const { stdout } = await run('id', ['-u', 'postgres']);
  const uid = Number(stdout.trim());
  await chown(folder, uid, uid);
  await chmod(folder, 0o700);
  await sql('postgres', `CREATE TABLESPACE ${name} LOCATION '${folder}'`);
  return name;
}

describe('postgres: kinds refused until now', () => {
  it('backs up the rows users added to extension configuration tables, those the filter selects, and their sequence, as pg_dump does', async (t) => {
    const extension = await installConfigExtension(t);
    const source = await createDatabase(t, 'extconfig');
    await sql(source, `
      CREATE EXTENSION ${extension};
      INSERT INTO ${extension}_refs (label) VALUES ('user one'), ('user two'), (E'user three\\twith a tab');
      INSERT INTO ${extension}_notes VALUES ('note', 1), (NULL, 2);
      -- Not a configuration table: its rows are the extension's script's, and a backup leaves them to it.
      INSERT INTO ${extension}_plain VALUES (2);`);
    const dump = await schemaDump(source);
    assert.match(dump, new RegExp(`CREATE EXTENSION IF NOT EXISTS ${extension}`));

    const backup = await backUp(source);
    const restored = await restore(backup, `${source}_restored`, { trustArchiveSql: true });
    assert.equal(await schemaDump(restored), dump);
    const rows = `SELECT (SELECT string_agg(format('%s %s %s', id, label, shipped), ', ' ORDER BY id) FROM ${extension}_refs) AS refs,
                         (SELECT string_agg(format('%s %s', note, at), ', ' ORDER BY at) FROM ${extension}_notes) AS notes,
                         (SELECT string_agg(x::text, ', ' ORDER BY x) FROM ${extension}_plain) AS plain,
                         (SELECT last_value FROM ${extension}_refs_id_seq)::int AS last`;
    const control = await pgDumpCopy(source);
    const expected = await sql(control, rows);
    assert.deepEqual(expected, [{
      refs: '1 shipped one t, 2 shipped two t, 3 user one f, 4 user two f, 5 user three\twith a tab f', notes: 'note 1,  2', plain: '1', last: 5,
    }], 'pg_dump | pg_restore: the rows the filter selects, with the script\'s own, and the sequence');
    assert.deepEqual(await sql(restored, rows), expected);
    assert.deepEqual(await dataFingerprint(restored), await dataFingerprint(control));
    // A verification reads the restored rows back with the restored extension's filter: the archive's three.
    const trusting: Restorer = { ...postgresRestorer, parseTarget: (target, name) => postgresRestorer.parseTarget({ ...(target as object), trustArchiveSql: true }, name) } as Restorer;
    const verified = await verifyBackup({ from: backup, level: 'restore', scratch: { postgres: server, dir: await tempDir(t, 'extconfig') }, restorers: [trusting] });
    assert.deepEqual(verified.problems, []);
    assert.equal(verified.sources[0]!.checks[0]!.figures['rows'], 5, 'three rows of the filtered table and two of the other');
    // By hand: restore.sql copies the rows after CREATE EXTENSION too.
    const byHand = await restoreByHand(t, source);
    assert.deepEqual(await sql(byHand, rows), expected);
    // The next row restored takes the sequence's next value, not one a row already has.
    await sql(restored, `INSERT INTO ${extension}_refs (label) VALUES ('after restore')`);
  });

  it('restores tables, indexes, constraints and materialized views in their tablespaces, and the database in its default one; refuses when one is missing', async (t) => {
    const source = uniqueName('tablespaces');
    t.after(() => dropDatabasesLike(source));
    const [objects, databaseDefault] = [await createTablespace(t, 'ts_objects'), await createTablespace(t, 'ts_default')];
    await sql('postgres', `CREATE DATABASE "${source}" TEMPLATE template0 TABLESPACE ${databaseDefault}`);
    await sql(source, `
      CREATE TABLE placed (id integer CONSTRAINT placed_pk PRIMARY KEY USING INDEX TABLESPACE ${objects}, body text,
                           CONSTRAINT placed_body UNIQUE (body) USING INDEX TABLESPACE ${objects}) TABLESPACE ${objects};
      CREATE INDEX placed_body_lower ON placed (lower(body)) TABLESPACE ${objects};
      CREATE INDEX placed_id_desc ON placed (id DESC);
      CREATE TABLE in_default (id integer PRIMARY KEY) TABLESPACE pg_default;
      CREATE TABLE plain (id integer PRIMARY KEY);
      CREATE TABLE parted (id integer, at date) PARTITION BY RANGE (at) TABLESPACE ${objects};
      CREATE TABLE parted_2024 PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
      CREATE TABLE parted_2025 PARTITION OF parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') TABLESPACE pg_default;
      CREATE MATERIALIZED VIEW summary TABLESPACE ${objects} AS SELECT count(*) AS n FROM placed;
      INSERT INTO placed SELECT g, 'row ' || g FROM generate_series(1, 100) g;
      INSERT INTO in_default VALUES (1), (2);
      INSERT INTO parted VALUES (1, '2024-06-01'), (2, '2025-06-01');
      REFRESH MATERIALIZED VIEW summary;`);
    const places = `SELECT c.relname::text AS name, coalesce(t.spcname, 'default') AS tablespace FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
                     WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1`;
    const databaseTablespace = `SELECT t.spcname AS tablespace FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = $1`;
    const placed = await sql<{ name: string; tablespace: string }>(source, places);
    assert.deepEqual(placed.filter((row) => row.tablespace === objects).map((row) => row.name),
      ['parted', 'placed', 'placed_body', 'placed_body_lower', 'placed_pk', 'parted_2024', 'summary'].sort());
    const dump = await schemaDump(source);
    assert.match(dump, new RegExp(`SET default_tablespace = ${objects};`));
    assert.match(dump, /SET default_tablespace = pg_default;/);

    const backup = await backUp(source);
    // As a temporary role (granted CREATE on the tablespaces for the restore), and as the superuser.
    for (const trustArchiveSql of [false, true]) {
      const restored = await restore(backup, `${source}_restored${trustArchiveSql ? '_trusted' : ''}`, { trustArchiveSql });
      assert.equal(await schemaDump(restored), dump);
      assert.deepEqual(await sql(restored, places), placed);
      assert.deepEqual(await sql('postgres', databaseTablespace, [restored]), [{ tablespace: databaseDefault }]);
      assert.deepEqual(await dataFingerprint(restored), await dataFingerprint(source));
    }
    // By hand: restore.sql sets default_tablespace around each of them, into a database created in the default one.
    const byHand = await restoreByHand(t, source, ` TABLESPACE ${databaseDefault}`);
    assert.equal(await schemaDump(byHand), dump);
    assert.deepEqual(await sql(byHand, places), placed);
    assert.deepEqual(await sql('postgres', `SELECT spcname FROM pg_tablespace WHERE spcacl::text LIKE '%backupkit_restore_%' AND spcname IN ('${objects}', '${databaseDefault}')`), [],
      'the grants to the temporary role are taken back');

    // A server without one of them: refused before anything is created, unless tablespaces are ignored.
    await sql('postgres', `ALTER TABLESPACE ${objects} RENAME TO ${objects}_away`);
    const missing = `${source}_missing`;
    await rejectsWithCode(restore(backup, missing), 'RESTORE_FAILED', new RegExp(`lacks the tablespace\\(s\\) ${objects} that`));
    assert.deepEqual(await databasesLike(missing), [], 'no staging database was created');
    const anywhere = await restore(backup, `${source}_anywhere`, { tablespaces: false });
    assert.deepEqual((await sql(anywhere, places)).filter((row) => row.tablespace !== 'default'), []);
    assert.deepEqual(await sql('postgres', databaseTablespace, [anywhere]), [{ tablespace: 'pg_default' }]);
    assert.deepEqual(await dataFingerprint(anywhere), await dataFingerprint(source));
  });

  it('backs up comments of a SQL_ASCII database that are not UTF-8, byte for byte; refuses two that read the same', async (t) => {
    const source = uniqueName('sqlascii_comments');
    await sql('postgres', `CREATE DATABASE "${source}" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    t.after(() => dropDatabasesLike(source));
    // pg sends statements as UTF-8: the Latin-1 bytes travel as hex, and become text in the server.
    const latin1 = (hex: string): string => `convert_from(decode('${hex}', 'hex'), 'SQL_ASCII')`;
    await sql(source, `
      CREATE TABLE "50%_off" (id integer PRIMARY KEY, "prix_été" numeric);
      CREATE TABLE other (id integer);
      CREATE VIEW other_view AS SELECT id FROM other;
      DO $$BEGIN
        EXECUTE format('COMMENT ON TABLE %I IS %L', '50%_off', ${latin1('4361662c20e974e920657420d4746520272564')});
        EXECUTE format('COMMENT ON COLUMN %I.%I IS %L', '50%_off', 'prix_été', ${latin1('50726978206427e974e9')});
        EXECUTE format('COMMENT ON TABLE other IS %L', ${latin1('4361662c20e974e920657420d4746520272564')});
      END$$;
      COMMENT ON VIEW other_view IS 'UTF-8: été';`);
    const comments = `SELECT encode(convert_to(description, 'SQL_ASCII'), 'hex') AS bytes FROM pg_description WHERE objoid >= 16384 ORDER BY 1`;
    assert.deepEqual(await sql(source, comments), [
      { bytes: '4361662c20e974e920657420d4746520272564' }, { bytes: '4361662c20e974e920657420d4746520272564' }, { bytes: '50726978206427e974e9' }, { bytes: '5554462d383a20c3a974c3a9' },
    ]);
    const dump = await schemaBytes(source);
    assert.ok(dump.includes(Buffer.from('COMMENT ON TABLE public."50%_off" IS \'Caf, \xe9t\xe9 et \xd4te \'\'%d\';', 'latin1')), 'the fixture holds Latin-1 bytes');

    const backup = await backUp(source);
    const restored = await restore(backup, `${source}_restored`);
    assert.deepEqual(await schemaBytes(restored), dump);
    assert.deepEqual(await sql(restored, comments), await sql(source, comments));

    // Bytes that differ but read the same (each bad byte reads as U+FFFD): which object had which is lost, so refused.
    await sql(source, `DO $$BEGIN EXECUTE format('COMMENT ON TABLE other IS %L', ${latin1('4361662c20e874e920657420d4746520272564')}); END$$`);
    await rejectsWithCode(backUp(source), 'SOURCE_FAILED', /differ only in bytes that are not UTF-8/);
  });
});
