/** Issue 17: no silent difference between a PostgreSQL database and its restored copy. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Database, memory, postgres, type BackupWarning } from '../src/index.js';
import { CRAFTED_NAME, consistentArchive, store } from './helpers/craft.js';
import { rejectsWithCode } from './helpers/errors.js';
import { createDatabase, databasesLike, dataFingerprint, pgUrl, schemaDump, sql, uniqueName, dropDatabasesLike } from './helpers/postgres.js';

const server = pgUrl('postgres');

/** Backs `source` up and restores it beside it; returns the restored database and the backup's warnings. */
async function roundTrip(source: string, target: { trustArchiveSql?: boolean } = {}): Promise<{ restored: string; warnings: readonly BackupWarning[] }> {
  const destination = memory();
  const db = new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source) })] });
  const result = await db.startBackup({ to: destination }).done;
  const restored = `${source}_restored${target.trustArchiveSql ? '_trusted' : ''}`;
  await Database.restore({ from: destination, targets: { pg: { connection: server, database: restored, ...target } } });
  return { restored, warnings: result.warnings };
}

/** A role of its own for one test, dropped when the test ends, after the databases created before it (hooks run in order). */
async function createRole(t: { after(fn: () => Promise<void>): void }, label: string): Promise<string> {
  const role = uniqueName(label);
  await sql('postgres', `CREATE ROLE ${role}`);
  t.after(() => sql('postgres', `DROP ROLE ${role}`).then(() => {}));
  return role;
}

async function assertSame(source: string, restored: string): Promise<void> {
  assert.equal(await schemaDump(restored), await schemaDump(source));
  assert.deepEqual(await dataFingerprint(restored), await dataFingerprint(source));
}

describe('postgres fidelity', () => {
  it('backs up and restores a LATIN1 database holding ASCII data: every query backupkit sends is ASCII', async (t) => {
    const source = uniqueName('latin1');
    await sql('postgres', `CREATE DATABASE "${source}" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    t.after(() => dropDatabasesLike(source));
    await sql(source, `
      CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL);
      INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 100) i;
      COMMENT ON TABLE notes IS 'plain ASCII';`);
    const { restored } = await roundTrip(source);
    const [row] = await sql<{ encoding: string }>('postgres', 'SELECT pg_encoding_to_char(encoding) AS encoding FROM pg_database WHERE datname = $1', [restored]);
    assert.equal(row?.encoding, 'LATIN1');
    await assertSame(source, restored);
  });

  it('skips an index left invalid by a failed CREATE UNIQUE INDEX CONCURRENTLY, with a warning naming it, as pg_dump does', async (t) => {
    const source = await createDatabase(t, 'invalidindex');
    await sql(source, `
      CREATE TABLE people (id integer PRIMARY KEY, email text NOT NULL);
      INSERT INTO people VALUES (1, 'a@example.com'), (2, 'a@example.com'), (3, 'b@example.com');
      CREATE INDEX people_email_plain ON people (email);`);
    await assert.rejects(sql(source, 'CREATE UNIQUE INDEX CONCURRENTLY people_email_unique ON people (email)'), /could not create unique index/);
    const [index] = await sql<{ valid: boolean }>(source, `SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'public.people_email_unique'::regclass`);
    assert.equal(index?.valid, false, 'the fixture holds an invalid index');

    const { restored, warnings } = await roundTrip(source);
    const skipped = warnings.filter((warning) => warning.code === 'SKIPPED');
    assert.equal(skipped.length, 1);
    assert.match(skipped[0]!.message, /public\.people_email_unique/);
    assert.equal(skipped[0]!.source, 'pg');
    // pg_dump leaves the invalid index out too: without it, the two dumps are the same.
    await sql(source, 'DROP INDEX people_email_unique');
    await assertSame(source, restored);
  });

  it('refreshes a materialized view after the materialized views it is built on', async (t) => {
    const source = await createDatabase(t, 'matviews');
    await sql(source, `
      CREATE TABLE readings (id integer PRIMARY KEY, value integer NOT NULL);
      INSERT INTO readings SELECT i, i % 10 FROM generate_series(1, 100) i;
      CREATE MATERIALIZED VIEW z_first AS SELECT value, count(*) AS n FROM readings GROUP BY value;
      CREATE VIEW middle AS SELECT value, n FROM z_first WHERE n > 0;
      CREATE MATERIALIZED VIEW a_second AS SELECT sum(n) AS total FROM middle;`);
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    const [row] = await sql<{ total: string }>(restored, 'SELECT total::text FROM a_second');
    assert.equal(row?.total, '100');
  });

  it('keeps the public schema without a comment when the source removed it', async (t) => {
    const source = await createDatabase(t, 'publiccomment');
    await sql(source, `COMMENT ON SCHEMA public IS NULL; CREATE TABLE things (id integer);`);
    const { restored } = await roundTrip(source);
    const [row] = await sql<{ comment: string | null }>(restored, `SELECT obj_description('public'::regnamespace, 'pg_namespace') AS comment`);
    assert.equal(row?.comment, null);
    await assertSame(source, restored);
  });

  it('keeps the enable mode of a trigger on one partition (disabled, ALWAYS, REPLICA) apart from its parent\'s', async (t) => {
    const source = await createDatabase(t, 'partitiontriggers');
    await sql(source, `
      CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
      CREATE TABLE events (id integer NOT NULL, at integer NOT NULL) PARTITION BY RANGE (at);
      CREATE TABLE events_a PARTITION OF events FOR VALUES FROM (0) TO (10);
      CREATE TABLE events_b PARTITION OF events FOR VALUES FROM (10) TO (20);
      CREATE TABLE events_c PARTITION OF events FOR VALUES FROM (20) TO (30);
      CREATE TABLE events_d PARTITION OF events FOR VALUES FROM (30) TO (40) PARTITION BY RANGE (at);
      CREATE TABLE events_d1 PARTITION OF events_d FOR VALUES FROM (30) TO (35);
      CREATE TABLE events_d2 PARTITION OF events_d FOR VALUES FROM (35) TO (40);
      CREATE TRIGGER stamp BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION touch();
      ALTER TABLE events_a DISABLE TRIGGER stamp;
      ALTER TABLE events_b ENABLE ALWAYS TRIGGER stamp;
      ALTER TABLE events_c ENABLE REPLICA TRIGGER stamp;
      ALTER TABLE events_d DISABLE TRIGGER stamp;
      ALTER TABLE events_d2 ENABLE TRIGGER stamp;
      -- And the other way round: disabled on the parent, enabled on one partition.
      CREATE TRIGGER audit BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION touch();
      ALTER TABLE events DISABLE TRIGGER audit;
      ALTER TABLE events_a ENABLE TRIGGER audit;
      INSERT INTO events SELECT i, i % 40 FROM generate_series(1, 200) i;`);
    const modes = `SELECT c.relname || ' ' || t.tgname || ' ' || t.tgenabled::text AS mode FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                    WHERE NOT t.tgisinternal ORDER BY 1`;
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    assert.deepEqual(await sql(restored, modes), await sql(source, modes));
    assert.deepEqual((await sql<{ mode: string }>(restored, modes)).map((row) => row.mode).filter((mode) => / stamp /.test(mode)), [
      'events stamp O', 'events_a stamp D', 'events_b stamp A', 'events_c stamp R', 'events_d stamp D', 'events_d1 stamp D', 'events_d2 stamp O',
    ]);
  });

  it('keeps GRANT and REVOKE on functions of an extension (pgcrypto), as they differ from what the extension set', async (t) => {
    const source = await createDatabase(t, 'extacl');
    const role = await createRole(t, 'extacl_user');
    await sql(source, `
      CREATE EXTENSION pgcrypto;
      REVOKE ALL ON FUNCTION crypt(text, text) FROM PUBLIC;
      GRANT EXECUTE ON FUNCTION crypt(text, text) TO ${role};
      REVOKE EXECUTE ON FUNCTION gen_salt(text) FROM PUBLIC;
      CREATE TABLE users (id integer PRIMARY KEY, hash text NOT NULL);
      INSERT INTO users VALUES (1, crypt('secret', gen_salt('md5')));`);
    const can = `SELECT has_function_privilege('public', 'public.crypt(text, text)', 'EXECUTE') AS public_crypt,
                        has_function_privilege('${role}', 'public.crypt(text, text)', 'EXECUTE') AS role_crypt,
                        has_function_privilege('${role}', 'public.gen_salt(text)', 'EXECUTE') AS role_salt,
                        has_function_privilege('${role}', 'public.digest(text, text)', 'EXECUTE') AS role_digest`;
    // Run by the superuser after the temporary role's SQL (the extension's functions are not the role's), and as the superuser throughout.
    for (const trustArchiveSql of [false, true]) {
      const { restored } = await roundTrip(source, { trustArchiveSql });
      await assertSame(source, restored);
      assert.deepEqual(await sql(restored, can), [{ public_crypt: false, role_crypt: true, role_salt: false, role_digest: true }]);
    }
  });

  it('keeps comments on inline CHECK constraints and on the indexes of keys, the index options of keys, and toast.* storage parameters', async (t) => {
    const source = await createDatabase(t, 'keyoptions');
    await sql(source, `
      CREATE TABLE accounts (
        id integer CONSTRAINT accounts_pk PRIMARY KEY WITH (fillfactor = 70),
        code text CONSTRAINT accounts_code_key UNIQUE WITH (fillfactor = 60),
        balance integer CONSTRAINT balance_positive CHECK (balance >= 0),
        owner_id integer
      ) WITH (fillfactor = 80, toast.autovacuum_enabled = false, toast.vacuum_truncate = false);
      CREATE TABLE entries (id integer PRIMARY KEY, account integer REFERENCES accounts);
      COMMENT ON CONSTRAINT balance_positive ON accounts IS 'never overdrawn';
      COMMENT ON CONSTRAINT accounts_pk ON accounts IS 'the key';
      COMMENT ON INDEX accounts_pk IS 'the key''s index';
      COMMENT ON INDEX accounts_code_key IS 'codes are unique';
      INSERT INTO accounts SELECT i, 'c' || i, i, NULL FROM generate_series(1, 50) i;
      INSERT INTO entries SELECT i, i FROM generate_series(1, 50) i;
      CREATE MATERIALIZED VIEW balances WITH (toast.autovacuum_enabled = false) AS SELECT id, balance::text AS balance FROM accounts;`);
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    // pg_dump leaves the materialized view's toast.* options out: compared from the catalog.
    const toast = `SELECT c.relname, t.reloptions FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.relname IN ('accounts', 'balances') ORDER BY 1`;
    assert.deepEqual(await sql(restored, toast), await sql(source, toast));
    assert.deepEqual((await sql<{ reloptions: string[] }>(restored, toast)).map((row) => row.reloptions), [
      ['autovacuum_enabled=false', 'vacuum_truncate=false'], ['autovacuum_enabled=false'],
    ]);
  });

  it('keeps column-level grants on views and materialized views', async (t) => {
    const source = await createDatabase(t, 'viewcolumns');
    const role = await createRole(t, 'viewcolumns_user');
    await sql(source, `
      CREATE TABLE staff (id integer PRIMARY KEY, name text NOT NULL, salary integer NOT NULL);
      INSERT INTO staff SELECT i, 'n' || i, 1000 * i FROM generate_series(1, 20) i;
      CREATE VIEW staff_names AS SELECT id, name, salary FROM staff;
      CREATE MATERIALIZED VIEW staff_totals AS SELECT count(*) AS people, sum(salary) AS payroll FROM staff;
      GRANT SELECT (id, name), UPDATE (name) ON staff_names TO ${role};
      GRANT SELECT (people) ON staff_totals TO ${role} WITH GRANT OPTION;`);
    const columns = `SELECT c.relname, a.attname, a.attacl::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                      WHERE a.attacl IS NOT NULL AND c.relnamespace = 'public'::regnamespace ORDER BY 1, 2`;
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    assert.deepEqual(await sql(restored, columns), await sql(source, columns));
    assert.deepEqual((await sql<{ attname: string }>(restored, columns)).map((row) => row.attname), ['id', 'name', 'people']);
  });

  it('keeps the grantor of privileges granted by a role other than the owner, and the order of the grants', async (t) => {
    const source = await createDatabase(t, 'grantors');
    const [owner, alice, bob] = [await createRole(t, 'grantors_owner'), await createRole(t, 'grantors_alice'), await createRole(t, 'grantors_bob')];
    await sql(source, `
      CREATE SCHEMA app AUTHORIZATION ${owner};
      SET ROLE ${owner};
      CREATE TABLE app.items (id integer PRIMARY KEY, secret text);
      CREATE SEQUENCE app.numbers;
      CREATE FUNCTION app.answer() RETURNS integer LANGUAGE sql AS 'SELECT 42';
      GRANT USAGE ON SCHEMA app TO ${alice} WITH GRANT OPTION;
      GRANT SELECT ON app.items TO ${alice} WITH GRANT OPTION;
      GRANT UPDATE (secret) ON app.items TO ${alice} WITH GRANT OPTION;
      GRANT USAGE ON SEQUENCE app.numbers TO ${alice} WITH GRANT OPTION;
      GRANT EXECUTE ON FUNCTION app.answer() TO ${alice} WITH GRANT OPTION;
      SET ROLE ${alice};
      GRANT USAGE ON SCHEMA app TO ${bob};
      GRANT SELECT ON app.items TO ${bob};
      GRANT UPDATE (secret) ON app.items TO ${bob};
      GRANT USAGE ON SEQUENCE app.numbers TO ${bob};
      GRANT EXECUTE ON FUNCTION app.answer() TO ${bob};
      SET ROLE ${owner};
      -- The owner grants again after alice did: the ACL's order is kept.
      GRANT INSERT ON app.items TO ${bob};
      RESET ROLE;
      INSERT INTO app.items SELECT i, 's' || i FROM generate_series(1, 10) i;`);
    const acls = `SELECT 'items' AS name, relacl::text AS acl FROM pg_class WHERE oid = 'app.items'::regclass
                  UNION ALL SELECT 'numbers', relacl::text FROM pg_class WHERE oid = 'app.numbers'::regclass
                  UNION ALL SELECT 'secret', attacl::text FROM pg_attribute WHERE attrelid = 'app.items'::regclass AND attname = 'secret'
                  UNION ALL SELECT 'answer', proacl::text FROM pg_proc WHERE oid = 'app.answer()'::regprocedure
                  UNION ALL SELECT 'app', nspacl::text FROM pg_namespace WHERE nspname = 'app'`;
    const before = await sql<{ name: string; acl: string }>(source, acls);
    const sortedItems = (rows: Array<{ name: string; acl: string }>): unknown => rows.map(({ name, acl }) => ({ name, acl: acl.slice(1, -1).split(',').sort() }));
    assert.ok(before.every((row) => row.acl.includes(`${bob}=`) && row.acl.includes(`/${alice}`)), 'the fixture has grants by alice');
    // The temporary role cannot act as alice: the superuser does, after it; and as the superuser throughout.
    for (const trustArchiveSql of [false, true]) {
      const { restored } = await roundTrip(source, { trustArchiveSql });
      await assertSame(source, restored);
      const after = await sql<{ name: string; acl: string }>(restored, acls);
      if (trustArchiveSql) assert.deepEqual(after, before);
      // The temporary role owned everything while the owner's grants ran: ALTER ... OWNER TO merged its
      // item into the owner's at its place, ahead of PUBLIC's in a function's ACL. The same rights, the same pg_dump.
      else assert.deepEqual(sortedItems(after), sortedItems(before));
      assert.ok(after.every((row) => row.acl.includes(`${bob}=`) && row.acl.includes(`/${alice}`)));
    }
  });

  it('keeps the type and bounds of an identity column\'s sequence that differ from the column\'s (AS integer on bigint)', async (t) => {
    const source = await createDatabase(t, 'identitytype');
    await sql(source, `
      CREATE TABLE narrow (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text);
      ALTER SEQUENCE narrow_id_seq AS integer;
      CREATE TABLE wide (id integer GENERATED ALWAYS AS IDENTITY (START WITH 5 INCREMENT BY 3 CYCLE), note text);
      ALTER SEQUENCE wide_id_seq AS bigint MAXVALUE 9000000000;
      CREATE TABLE small (id smallint GENERATED BY DEFAULT AS IDENTITY (MAXVALUE 1000), note text);
      INSERT INTO narrow (note) SELECT 'n' || i FROM generate_series(1, 5) i;
      INSERT INTO wide (note) SELECT 'w' || i FROM generate_series(1, 5) i;
      INSERT INTO small (note) SELECT 's' || i FROM generate_series(1, 5) i;`);
    // pg_dump 15 writes no AS for an identity's sequence either: the catalog is the oracle here.
    const sequences = `SELECT seqrelid::regclass::text AS name, format_type(seqtypid, NULL) AS type, seqstart::text, seqincrement::text,
                              seqmin::text, seqmax::text, seqcache::text, seqcycle FROM pg_sequence ORDER BY 1`;
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    assert.deepEqual(await sql(restored, sequences), await sql(source, sequences));
    assert.deepEqual((await sql<{ type: string; seqmax: string }>(restored, sequences)).map((row) => `${row.type} ${row.seqmax}`), [
      'integer 2147483647', 'smallint 1000', 'bigint 9000000000',
    ]);
  });

  it('restores a database with the ICU locale provider with its provider, locale and encoding: ORDER BY stays the same', async (t) => {
    const source = uniqueName('icu');
    await sql('postgres', `CREATE DATABASE "${source}" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'
                            LOCALE_PROVIDER icu ICU_LOCALE 'de-u-co-phonebk'`);
    t.after(() => dropDatabasesLike(source));
    await sql(source, `
      CREATE TABLE words (word text PRIMARY KEY);
      INSERT INTO words VALUES ('Zebra'), ('apfel'), ('Äpfel'), ('Müller'), ('Mueller'), ('mull'), ('zz'), ('Ähre');`);
    const ordered = 'SELECT string_agg(word, \' \' ORDER BY word) AS words FROM words';
    const locale = `SELECT pg_encoding_to_char(encoding) AS encoding, datcollate, datctype, datlocprovider::text AS provider, daticulocale AS locale
                      FROM pg_database WHERE datname = current_database()`;
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    assert.deepEqual(await sql(restored, locale), await sql(source, locale));
    assert.deepEqual(await sql(restored, locale), [{ encoding: 'UTF8', datcollate: 'C.UTF-8', datctype: 'C.UTF-8', provider: 'i', locale: 'de-u-co-phonebk' }]);
    assert.deepEqual(await sql(restored, ordered), await sql(source, ordered));
    // The C locale sorts these in another order: the comparison above can fail.
    assert.notDeepEqual(await sql(restored, `${ordered.replace('ORDER BY word', 'ORDER BY word COLLATE "C"')}`), await sql(source, ordered));
  });

  it('refuses to restore into a locale the server does not have, rather than into its default, and leaves nothing', async (t) => {
    const target = uniqueName('nolocale');
    t.after(() => dropDatabasesLike(target));
    const destination = memory();
    await store(destination, await consistentArchive([], { encoding: 'UTF8', collate: 'xx_XX.UTF-8', ctype: 'xx_XX.UTF-8', provider: 'libc' }));
    await rejectsWithCode(
      Database.restore({ from: destination, backup: CRAFTED_NAME, targets: { pg: { connection: server, database: target } } }).done,
      'RESTORE_FAILED', /cannot create .* with the source's encoding and locale \(UTF8, LC_COLLATE xx_XX\.UTF-8, .*invalid locale name/,
    );
    assert.deepEqual(await databasesLike(target), []);
  });

  it('restores a view that groups by a primary key: created as a stand-in before the data, then replaced once the key exists', async (t) => {
    const source = await createDatabase(t, 'groupbykey');
    await sql(source, `
      CREATE TABLE orders (id integer PRIMARY KEY, customer text NOT NULL, total integer NOT NULL);
      CREATE TABLE lines (order_id integer NOT NULL, amount integer NOT NULL);
      INSERT INTO orders SELECT i, 'c' || (i % 7), i * 10 FROM generate_series(1, 50) i;
      INSERT INTO lines SELECT i % 50 + 1, i FROM generate_series(1, 200) i;
      -- customer and total are functionally dependent on the key: valid only while the key exists.
      CREATE VIEW order_sums WITH (security_barrier) AS
        SELECT o.id, o.customer, o.total, sum(l.amount) AS lines FROM orders o JOIN lines l ON l.order_id = o.id GROUP BY o.id;
      COMMENT ON VIEW order_sums IS 'per order';
      -- Uses the view's row type before the data: the stand-in has the same columns.
      CREATE FUNCTION biggest() RETURNS SETOF order_sums LANGUAGE sql AS 'SELECT * FROM order_sums ORDER BY lines DESC LIMIT 1';
      CREATE VIEW top_customers AS SELECT customer, count(*) AS n FROM order_sums GROUP BY customer;`);
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    assert.deepEqual(await sql(restored, 'SELECT * FROM biggest()'), await sql(source, 'SELECT * FROM biggest()'));
  });

  it('restores a NOT VALID CHECK constraint on an inheritance parent, which its children inherit', async (t) => {
    const source = await createDatabase(t, 'notvalidparent');
    await sql(source, `
      CREATE TABLE measures (id integer NOT NULL, value integer);
      CREATE TABLE measures_old (note text) INHERITS (measures);
      INSERT INTO measures_old VALUES (1, -5, 'before the rule');
      ALTER TABLE measures ADD CONSTRAINT value_positive CHECK (value > 0) NOT VALID;
      INSERT INTO measures VALUES (2, 3);`);
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    const checks = `SELECT conrelid::regclass::text AS "table", convalidated, conislocal FROM pg_constraint WHERE conname = 'value_positive' ORDER BY 1`;
    assert.deepEqual(await sql(restored, checks), await sql(source, checks));
  });

  it('restores a column default calling a BEGIN ATOMIC function that reads the same table: the default is set after the function', async (t) => {
    const source = await createDatabase(t, 'defaultcycle');
    await sql(source, `
      CREATE TABLE tickets (id integer NOT NULL, seq integer);
      CREATE FUNCTION next_ticket() RETURNS integer LANGUAGE sql BEGIN ATOMIC SELECT coalesce(max(seq), 0) + 1 FROM tickets; END;
      ALTER TABLE tickets ALTER COLUMN seq SET DEFAULT next_ticket();
      INSERT INTO tickets (id) SELECT i FROM generate_series(1, 5) i;`);
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    for (const database of [source, restored]) await sql(database, 'INSERT INTO tickets (id) VALUES (6)');
    assert.deepEqual(await sql(restored, 'SELECT seq FROM tickets WHERE id = 6'), await sql(source, 'SELECT seq FROM tickets WHERE id = 6'));
  });

  it('refuses a backup limited to schemas whose view reads a table of another schema, naming both, instead of a backup that cannot restore', async (t) => {
    const source = await createDatabase(t, 'otherschema');
    await sql(source, `
      CREATE SCHEMA app; CREATE SCHEMA shared;
      CREATE TABLE shared.countries (code text PRIMARY KEY);
      CREATE TABLE app.users (id integer PRIMARY KEY, country text);
      CREATE VIEW app.user_countries AS SELECT u.id, c.code FROM app.users u JOIN shared.countries c ON c.code = u.country;`);
    const backup = (schemas: string[]) => new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source), schemas })] }).startBackup({ to: memory() }).done;
    await rejectsWithCode(backup(['app']), 'SOURCE_FAILED', /view app\.user_countries uses table shared\.countries/);
    await backup(['app', 'shared']);
  });

  it('backs up a LATIN1 database holding non-ASCII data and comments, and restores it byte for byte into a LATIN1 database', async (t) => {
    const source = uniqueName('latin1text');
    await sql('postgres', `CREATE DATABASE "${source}" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    t.after(() => dropDatabasesLike(source));
    // The query text is ASCII: escapes put LATIN1 bytes in (a table named größe; é, Æ, ø, ÿ, ¤ in rows and comment).
    await sql(source, `
      CREATE TABLE U&"gr\\00f6\\00dfe" (id integer PRIMARY KEY, body text NOT NULL);
      INSERT INTO U&"gr\\00f6\\00dfe" VALUES (1, E'caf\\xe9'), (2, E'\\xc6r\\xf8'), (3, E'\\xff\\xa4 tab\\there');
      COMMENT ON TABLE U&"gr\\00f6\\00dfe" IS E'Gr\\xf6\\xdfe in \\xa4';`);
    const bytes = `SELECT (SELECT string_agg(encode(convert_to(body, 'LATIN1'), 'hex'), ',' ORDER BY id) FROM U&"gr\\00f6\\00dfe") AS rows,
                          encode(convert_to(obj_description(c.oid, 'pg_class'), 'LATIN1'), 'hex') AS comment, encode(convert_to(c.relname::text, 'LATIN1'), 'hex') AS name
                     FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relname::text = U&'gr\\00f6\\00dfe'`;
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    assert.deepEqual(await sql(restored, bytes), await sql(source, bytes));
    assert.deepEqual(await sql(restored, bytes), [{ rows: '636166e9,c672f8,ffa4207461620968657265', comment: '4772f6df6520696e20a4', name: '6772f6df65' }]);
    const [row] = await sql<{ encoding: string }>('postgres', 'SELECT pg_encoding_to_char(encoding) AS encoding FROM pg_database WHERE datname = $1', [restored]);
    assert.equal(row?.encoding, 'LATIN1');
  });

  it('backs up a SQL_ASCII database whose rows hold bytes that are not UTF-8, byte for byte; refuses a name that is not UTF-8', async (t) => {
    const source = uniqueName('sqlascii');
    await sql('postgres', `CREATE DATABASE "${source}" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    t.after(() => dropDatabasesLike(source));
    await sql(source, `
      CREATE TABLE blobs_as_text (id integer PRIMARY KEY, body text NOT NULL);
      INSERT INTO blobs_as_text VALUES (1, E'latin1 caf\\xe9'), (2, E'utf8 caf\\xc3\\xa9'), (3, E'cut \\xe2\\x82'), (4, E'\\x80\\xff\\xfe');
      COMMENT ON TABLE blobs_as_text IS E'UTF-8 comment: caf\\xc3\\xa9';`);
    const bytes = `SELECT string_agg(encode(convert_to(body, 'SQL_ASCII'), 'hex'), ',' ORDER BY id) AS rows FROM blobs_as_text`;
    const { restored } = await roundTrip(source);
    await assertSame(source, restored);
    assert.deepEqual(await sql(restored, bytes), await sql(source, bytes));
    assert.deepEqual(await sql(restored, bytes), [{ rows: '6c6174696e3120636166e9,7574663820636166c3a9,63757420e282,80fffe' }]);
    const [row] = await sql<{ encoding: string }>('postgres', 'SELECT pg_encoding_to_char(encoding) AS encoding FROM pg_database WHERE datname = $1', [restored]);
    assert.equal(row?.encoding, 'SQL_ASCII');

    // A comment may hold such bytes (postgres-refused.test.ts), a name may not: pg sends every statement as UTF-8.
    await sql(source, `DO 'BEGIN EXECUTE format(''CREATE TABLE %I (id integer)'', convert_from(''\\x636166e9''::bytea, ''SQL_ASCII'')); END'`);
    const db = new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source) })] });
    await rejectsWithCode(db.startBackup({ to: memory() }).done, 'SOURCE_FAILED', /has names that are not UTF-8 \(public\.caf\uFFFD\)/);
  });
});
