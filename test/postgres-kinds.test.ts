/**
 * Issue 17: the kinds of objects backupkit refused until now (default privileges, event triggers,
 * publications, subscriptions, text search, typed tables, operators and their classes, casts,
 * ordered-set and moving aggregates, foreign data) round-trip exactly. Each fixture is compared
 * with its restored copy by `pg_dump --schema-only` and row hashes, and with a `pg_dump | pg_restore`
 * copy of it (the control), so a difference pg_dump shares would be told apart.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Database, memory, postgres } from '../src/index.js';
import { consistentArchive, store } from './helpers/craft.js';
import { rejectsWithCode } from './helpers/errors.js';
import { createDatabase, databasesLike, dataFingerprint, dropDatabasesLike, pgDumpCopy, pgUrl, PG_HOST, PG_PORT, restoreByHand, schemaDump, sql, uniqueName } from './helpers/postgres.js';

const server = pgUrl('postgres');

/** A backup of `source`, in memory. */
async function backUp(source: string): Promise<ReturnType<typeof memory>> {
  const destination = memory();
  await new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source) })] }).startBackup({ to: destination }).done;
  return destination;
}

/** Restores a backup beside its source (as `<source>_restored`, `_trusted` with `trustArchiveSql`). */
async function restore(destination: ReturnType<typeof memory>, source: string, target: { trustArchiveSql?: boolean } = {}): Promise<string> {
  const restored = `${source}_restored${target.trustArchiveSql ? '_trusted' : ''}`;
  await Database.restore({ from: destination, targets: { pg: { connection: server, database: restored, ...target } } });
  return restored;
}

/**
 * The source's schema dump, checked to hold `expected` (so the comparison cannot pass on a fixture
 * that lost its point) and to survive pg_dump | pg_restore (the control).
 */
async function sourceDump(source: string, expected: RegExp[], control: { fails?: RegExp } = {}): Promise<string> {
  const dump = await schemaDump(source);
  for (const pattern of expected) assert.match(dump, pattern);
  if (control.fails) await assert.rejects(pgDumpCopy(source), control.fails, 'pg_restore fails on this fixture');
  else assert.equal(await schemaDump(await pgDumpCopy(source)), dump, 'pg_dump | pg_restore keeps the fixture');
  return dump;
}

async function assertSame(source: string, restored: string, dump: string): Promise<void> {
  assert.equal(await schemaDump(restored), dump);
  assert.deepEqual(await dataFingerprint(restored), await dataFingerprint(source));
}

/** A role of its own for one test, dropped when the test ends, after the databases created before it (hooks run in order). */
async function createRole(t: { after(fn: () => Promise<void>): void }, label: string): Promise<string> {
  const role = uniqueName(label);
  await sql('postgres', `CREATE ROLE ${role}`);
  t.after(() => sql('postgres', `DROP ROLE ${role}`).then(() => {}));
  return role;
}

describe('postgres kinds', () => {
  it('keeps default privileges (ALTER DEFAULT PRIVILEGES), for every schema and for one, and applies none to the restored objects', async (t) => {
    const source = await createDatabase(t, 'defaultacl');
    const [owner, reader] = [await createRole(t, 'defaultacl_owner'), await createRole(t, 'defaultacl_reader')];
    await sql(source, `
      CREATE SCHEMA app AUTHORIZATION ${owner};
      CREATE TABLE app.before_defaults (id integer PRIMARY KEY);
      ALTER TABLE app.before_defaults OWNER TO ${owner};
      INSERT INTO app.before_defaults SELECT generate_series(1, 10);
      ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA app GRANT SELECT ON TABLES TO ${reader};
      ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA app GRANT USAGE ON SEQUENCES TO ${reader} WITH GRANT OPTION;
      ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} GRANT INSERT, SELECT ON TABLES TO ${reader};
      ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
      ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} REVOKE USAGE ON TYPES FROM PUBLIC;
      ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} GRANT USAGE ON SCHEMAS TO ${reader};
      -- The restoring superuser's own defaults: a restore that set them before creating its objects would grant on them.
      ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO ${reader};
      ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
      CREATE TABLE public.plain (id integer);
      CREATE FUNCTION public.answer() RETURNS integer LANGUAGE sql AS 'SELECT 42';
      REVOKE SELECT ON public.plain FROM ${reader};
      GRANT EXECUTE ON FUNCTION public.answer() TO PUBLIC;`);
    const defaults = `SELECT pg_get_userbyid(defaclrole) AS role, defaclnamespace::regnamespace::text AS schema, defaclobjtype::text AS type, defaclacl::text AS acl
                        FROM pg_default_acl ORDER BY 1, 2, 3`;
    const dump = await sourceDump(source, [/ALTER DEFAULT PRIVILEGES FOR ROLE \S+ IN SCHEMA app GRANT SELECT ON TABLES/, /ALTER DEFAULT PRIVILEGES FOR ROLE postgres REVOKE ALL ON FUNCTIONS\s+FROM PUBLIC/]);
    const backup = await backUp(source);
    // Run by the superuser after the temporary role's SQL (it acts for other roles), and as the superuser throughout.
    for (const trustArchiveSql of [false, true]) {
      const restored = await restore(backup, source, { trustArchiveSql });
      await assertSame(source, restored, dump);
      assert.deepEqual(await sql(restored, defaults), await sql(source, defaults));
      assert.deepEqual(await sql(restored, `SELECT has_table_privilege('${reader}', 'public.plain', 'SELECT') AS plain`), [{ plain: false }]);
      // And they act as in the source on what is created afterwards.
      await sql(restored, `SET ROLE ${owner}; CREATE TABLE app.after_restore (id integer)`);
      assert.deepEqual(await sql(restored, `SELECT has_table_privilege('${reader}', 'app.after_restore', 'SELECT') AS granted`), [{ granted: true }]);
    }
    // By hand too: restore.sql sets them with the grants, at the end.
    const byHand = await restoreByHand(t, source);
    await assertSame(source, byHand, dump);

    // With schemas, as pg_dump --schema: the defaults of those schemas only, not those for every schema.
    const limited = memory();
    await new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source), schemas: ['app'] })] }).startBackup({ to: limited }).done;
    await Database.restore({ from: limited, targets: { pg: { connection: server, database: `${source}_limited` } } });
    assert.deepEqual(await sql(`${source}_limited`, defaults), (await sql<{ schema: string }>(source, defaults)).filter((row) => row.schema === 'app'));
    assert.equal((await sql(`${source}_limited`, defaults)).length, 2);
  });

  it('skips default privileges with ownership: false, as it skips grants', async (t) => {
    const source = await createDatabase(t, 'defaultaclnoown');
    const reader = await createRole(t, 'defaultaclnoown_reader');
    await sql(source, `ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO ${reader}; CREATE TABLE t (id integer)`);
    const restored = `${source}_restored`;
    await Database.restore({ from: await backUp(source), targets: { pg: { connection: server, database: restored, ownership: false } } });
    assert.deepEqual(await sql(restored, 'SELECT count(*)::int AS n FROM pg_default_acl'), [{ n: 0 }]);
  });

  it('keeps event triggers (enable mode, tags, comment) when restored as a superuser trusting the archive; refuses, before anything, otherwise', async (t) => {
    const source = await createDatabase(t, 'eventtriggers');
    await sql(source, `
      CREATE TABLE audit (id serial PRIMARY KEY, tag text NOT NULL);
      INSERT INTO audit (tag) VALUES ('before');
      CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO public.audit (tag) VALUES (tg_tag); END$$;
      CREATE FUNCTION noop() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$;
      CREATE EVENT TRIGGER a_log ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'CREATE VIEW') EXECUTE FUNCTION log_ddl();
      CREATE EVENT TRIGGER b_off ON sql_drop EXECUTE FUNCTION noop();
      ALTER EVENT TRIGGER b_off DISABLE;
      CREATE EVENT TRIGGER c_always ON table_rewrite EXECUTE FUNCTION noop();
      ALTER EVENT TRIGGER c_always ENABLE ALWAYS;
      COMMENT ON EVENT TRIGGER c_always IS 'rewrites';
      -- Blocks what a restore runs after creating everything (grants, refreshes): event triggers come last.
      CREATE TABLE readings (id integer PRIMARY KEY, value integer);
      INSERT INTO readings SELECT i, i * 2 FROM generate_series(1, 10) i;
      CREATE MATERIALIZED VIEW totals AS SELECT sum(value) AS total FROM readings;
      GRANT SELECT ON readings TO PUBLIC;
      CREATE FUNCTION frozen() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'the schema is frozen (%)', tg_tag; END$$;
      CREATE EVENT TRIGGER d_frozen ON ddl_command_start WHEN TAG IN ('GRANT', 'REVOKE', 'REFRESH MATERIALIZED VIEW', 'COMMENT') EXECUTE FUNCTION frozen();`);
    const triggers = `SELECT evtname, evtevent, evtenabled::text, evttags, evtfoid::regproc::text AS func, obj_description(oid, 'pg_event_trigger') AS comment
                        FROM pg_event_trigger ORDER BY 1`;
    // pg_restore creates event triggers before the refreshes of materialized views: d_frozen stops it there.
    const dump = await sourceDump(source, [/CREATE EVENT TRIGGER a_log ON ddl_command_end/, /ALTER EVENT TRIGGER b_off DISABLE/], { fails: /the schema is frozen \(REFRESH MATERIALIZED VIEW\)/ });
    const backup = await backUp(source);
    // As the temporary role (the default) and as a role without superuser rights, nothing can make them: refused before any database exists.
    await rejectsWithCode(restore(backup, source), 'RESTORE_FAILED', /only a superuser can create \(EVENT TRIGGER a_log, EVENT TRIGGER b_off, EVENT TRIGGER c_always, EVENT TRIGGER d_frozen\)/);
    const creator = uniqueName('eventtriggers_creator');
    await sql('postgres', `CREATE ROLE ${creator} LOGIN CREATEDB`);
    t.after(() => sql('postgres', `DROP ROLE ${creator}`).then(() => {}));
    const asCreator = `postgres://${creator}@${PG_HOST}:${PG_PORT}/postgres`;
    await rejectsWithCode(Database.restore({ from: backup, targets: { pg: { connection: asCreator, database: `${source}_restored` } } }), 'RESTORE_FAILED', /only a superuser can create/);
    assert.deepEqual(await databasesLike(`${source}_restored`), []);
    const restored = await restore(backup, source, { trustArchiveSql: true });
    await assertSame(source, restored, dump);
    assert.deepEqual(await sql(restored, triggers), await sql(source, triggers));
    // Created last: they fired on none of the restore's statements, and fire on what comes after.
    const audit = await sql(source, 'SELECT tag FROM audit ORDER BY id');
    assert.deepEqual(await sql(restored, 'SELECT tag FROM audit ORDER BY id'), audit);
    await sql(restored, 'CREATE TABLE later (id integer)');
    assert.deepEqual(await sql(restored, 'SELECT tag FROM audit ORDER BY id'), [...audit, { tag: 'CREATE TABLE' }]);
    await assert.rejects(sql(restored, 'REFRESH MATERIALIZED VIEW totals'), /the schema is frozen/);
    // By hand too: restore.sql creates them last as well.
    await assertSame(source, await restoreByHand(t, source), dump);
  });

  it('keeps publications: of tables (column lists, row filters, publish options), FOR ALL TABLES and of a schema (which the superuser creates)', async (t) => {
    const source = await createDatabase(t, 'publications');
    await sql(source, `
      CREATE SCHEMA sales;
      CREATE TABLE public.customers (id integer PRIMARY KEY, name text NOT NULL, secret text);
      CREATE TABLE public.events (id integer NOT NULL, at integer NOT NULL) PARTITION BY RANGE (at);
      CREATE TABLE public.events_a PARTITION OF public.events FOR VALUES FROM (0) TO (10);
      CREATE TABLE sales.orders (id integer PRIMARY KEY, total integer);
      INSERT INTO public.customers SELECT i, 'n' || i, 's' || i FROM generate_series(1, 20) i;
      INSERT INTO sales.orders SELECT i, i * 3 FROM generate_series(1, 20) i;
      CREATE PUBLICATION names FOR TABLE public.customers (id, name) WHERE (id > 10) WITH (publish = 'insert, update');
      CREATE PUBLICATION partitions FOR TABLE public.events WITH (publish_via_partition_root = true, publish = '');
      COMMENT ON PUBLICATION names IS 'for the directory';`);
    const publications = `SELECT p.pubname, p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.pubviaroot, pg_get_userbyid(p.pubowner) AS owner,
                                 (SELECT string_agg(format('%s %s %s', r.prrelid::regclass, r.prattrs, pg_get_expr(r.prqual, r.prrelid)), '; ' ORDER BY r.prrelid::regclass::text)
                                    FROM pg_publication_rel r WHERE r.prpubid = p.oid) AS tables,
                                 (SELECT string_agg(pn.pnnspid::regnamespace::text, ', ') FROM pg_publication_namespace pn WHERE pn.pnpubid = p.oid) AS schemas
                            FROM pg_publication p ORDER BY 1`;
    let dump = await sourceDump(source, [/ALTER PUBLICATION names ADD TABLE ONLY public\.customers \(id, name\) WHERE \(\(id > 10\)\)/]);
    let restored = await restore(await backUp(source), source);
    await assertSame(source, restored, dump);
    assert.deepEqual(await sql(restored, publications), await sql(source, publications));
    await sql('postgres', `DROP DATABASE "${restored}" WITH (FORCE)`);

    await sql(source, `
      CREATE PUBLICATION everything FOR ALL TABLES;
      CREATE PUBLICATION sales_only FOR TABLES IN SCHEMA sales WITH (publish = 'insert');`);
    dump = await sourceDump(source, [/CREATE PUBLICATION everything FOR ALL TABLES/, /ALTER PUBLICATION sales_only ADD TABLES IN SCHEMA sales/]);
    await sql(source, `COMMENT ON PUBLICATION everything IS 'for the replica'`);
    dump = await sourceDump(source, [/COMMENT ON PUBLICATION everything/]);
    const backup = await backUp(source);
    // They need a superuser: created by the superuser once the temporary role is done, or by the superuser throughout.
    for (const trustArchiveSql of [false, true]) {
      restored = await restore(backup, source, { trustArchiveSql });
      await assertSame(source, restored, dump);
      assert.deepEqual(await sql(restored, publications), await sql(source, publications));
    }
    // A role without superuser rights cannot create them: refused before anything.
    const creator = uniqueName('publications_creator');
    await sql('postgres', `CREATE ROLE ${creator} LOGIN CREATEDB`);
    t.after(() => sql('postgres', `DROP ROLE ${creator}`).then(() => {}));
    const asCreator = `postgres://${creator}@${PG_HOST}:${PG_PORT}/postgres`;
    await rejectsWithCode(Database.restore({ from: backup, targets: { pg: { connection: asCreator, database: `${source}_creator`, ownership: false } } }),
      'RESTORE_FAILED', /only a superuser can create \(PUBLICATION everything, PUBLICATION TABLES IN SCHEMA sales_only sales\)/);
    assert.deepEqual(await databasesLike(`${source}_creator`), []);
  });

  it('keeps text search dictionaries and configurations, with their mappings, and what uses them', async (t) => {
    const source = await createDatabase(t, 'textsearch');
    const owner = await createRole(t, 'textsearch_owner');
    await sql(source, `
      CREATE SCHEMA search;
      CREATE TEXT SEARCH DICTIONARY search.short_words (TEMPLATE = pg_catalog.simple, stopwords = english, accept = false);
      CREATE TEXT SEARCH DICTIONARY search."Stems" (TEMPLATE = snowball, language = english);
      CREATE TEXT SEARCH CONFIGURATION search.docs (COPY = pg_catalog.english);
      ALTER TEXT SEARCH CONFIGURATION search.docs ALTER MAPPING FOR asciiword, word WITH search.short_words, search."Stems";
      ALTER TEXT SEARCH CONFIGURATION search.docs DROP MAPPING FOR url, email;
      CREATE TEXT SEARCH CONFIGURATION search.bare (PARSER = pg_catalog."default");
      -- The common French setup: an extension's dictionary first (unaccent, trusted), then the stemmer.
      CREATE EXTENSION unaccent;
      CREATE TEXT SEARCH CONFIGURATION search.fr (COPY = pg_catalog.french);
      ALTER TEXT SEARCH CONFIGURATION search.fr ALTER MAPPING FOR hword, hword_part, word WITH public.unaccent, french_stem;
      COMMENT ON TEXT SEARCH CONFIGURATION search.docs IS 'for documents';
      COMMENT ON TEXT SEARCH DICTIONARY search.short_words IS 'no stop words';
      ALTER TEXT SEARCH CONFIGURATION search.bare OWNER TO ${owner};
      CREATE TABLE documents (id integer PRIMARY KEY, body text NOT NULL,
                              words tsvector GENERATED ALWAYS AS (to_tsvector('search.docs'::regconfig, body)) STORED);
      CREATE INDEX documents_search ON documents USING gin (to_tsvector('search.docs'::regconfig, body));
      INSERT INTO documents (id, body) SELECT i, 'the running foxes number ' || i FROM generate_series(1, 30) i;`);
    const mappings = `SELECT c.cfgname, t.alias, m.mapseqno, m.mapdict::regdictionary::text AS dict
                        FROM pg_ts_config c JOIN pg_ts_config_map m ON m.mapcfg = c.oid JOIN ts_token_type(c.cfgparser) t ON t.tokid = m.maptokentype
                       WHERE c.cfgnamespace = 'search'::regnamespace ORDER BY 1, 2, 3`;
    const dump = await sourceDump(source, [/ADD MAPPING FOR asciiword WITH search\.short_words, search\."Stems"/, /CREATE TEXT SEARCH CONFIGURATION search\.bare/, /ADD MAPPING FOR word WITH public\.unaccent, french_stem/]);
    const restored = await restore(await backUp(source), source);
    await assertSame(source, restored, dump);
    assert.deepEqual(await sql(restored, mappings), await sql(source, mappings));
    const query = `SELECT id FROM documents WHERE to_tsvector('search.docs'::regconfig, body) @@ to_tsquery('search.docs', 'run & fox') ORDER BY id LIMIT 3`;
    assert.deepEqual(await sql(restored, query), await sql(source, query));
    assert.equal((await sql(restored, query)).length, 3);
    const french = `SELECT to_tsvector('search.fr', 'Élève à l''école') AS v`;
    assert.deepEqual(await sql(restored, french), await sql(source, french));
  });

  it('keeps typed tables (CREATE TABLE ... OF type) with their column options, constraints and rows', async (t) => {
    const source = await createDatabase(t, 'typedtables');
    await sql(source, `
      CREATE TYPE person AS (id integer, name text, born date);
      CREATE TABLE people OF person (id WITH OPTIONS PRIMARY KEY, name WITH OPTIONS NOT NULL DEFAULT 'anonymous', CONSTRAINT born_past CHECK (born < '2100-01-01'));
      CREATE TABLE people_bare OF person;
      COMMENT ON COLUMN people.name IS 'as written';
      INSERT INTO people SELECT i, 'p' || i, date '2000-01-01' + i FROM generate_series(1, 25) i;
      INSERT INTO people_bare VALUES (1, NULL, NULL);
      ALTER TYPE person ADD ATTRIBUTE email text CASCADE;`);
    const typed = `SELECT relname, reloftype::regtype::text AS type FROM pg_class WHERE reloftype <> 0 ORDER BY 1`;
    const dump = await sourceDump(source, [/CREATE TABLE public\.people OF public\.person/]);
    const restored = await restore(await backUp(source), source);
    await assertSame(source, restored, dump);
    assert.deepEqual(await sql(restored, typed), [{ relname: 'people', type: 'person' }, { relname: 'people_bare', type: 'person' }]);
    // Still bound to the type: a new attribute reaches them.
    await sql(restored, 'ALTER TYPE person ADD ATTRIBUTE phone text CASCADE');
    assert.deepEqual(await sql(restored, `SELECT count(*)::int AS n FROM pg_attribute WHERE attname = 'phone' AND attrelid IN ('people'::regclass, 'people_bare'::regclass)`), [{ n: 2 }]);
  });

  it('keeps operators (commutator, negator, estimators, HASHES, MERGES) and the views and indexes that use them', async (t) => {
    const source = await createDatabase(t, 'operators');
    await sql(source, `
      CREATE SCHEMA ops;
      CREATE FUNCTION ops.ci_eq(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT lower($1) = lower($2)';
      CREATE FUNCTION ops.ci_ne(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT lower($1) <> lower($2)';
      CREATE FUNCTION ops.neg(integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT -$1';
      CREATE OPERATOR ops.=~= (FUNCTION = ops.ci_eq, LEFTARG = text, RIGHTARG = text, COMMUTATOR = OPERATOR(ops.=~=), NEGATOR = OPERATOR(ops.<~>),
                               RESTRICT = eqsel, JOIN = eqjoinsel);
      CREATE OPERATOR ops.<~> (FUNCTION = ops.ci_ne, LEFTARG = text, RIGHTARG = text, COMMUTATOR = OPERATOR(ops.<~>), RESTRICT = neqsel, JOIN = neqjoinsel);
      CREATE OPERATOR ops.~- (FUNCTION = ops.neg, RIGHTARG = integer);
      CREATE OPERATOR public.=== (FUNCTION = int4eq, LEFTARG = integer, RIGHTARG = integer, COMMUTATOR = ===, HASHES, MERGES, RESTRICT = eqsel, JOIN = eqjoinsel);
      COMMENT ON OPERATOR ops.=~= (text, text) IS 'equal but for case';
      CREATE TABLE tags (id integer PRIMARY KEY, name text NOT NULL);
      INSERT INTO tags SELECT i, CASE WHEN i % 2 = 0 THEN 'Red' ELSE 'RED' END FROM generate_series(1, 20) i;
      CREATE VIEW red_tags AS SELECT id, OPERATOR(ops.~-) id AS negated FROM tags WHERE name OPERATOR(ops.=~=) 'red' AND id OPERATOR(public.===) id;
      CREATE INDEX tags_red ON tags (id) WHERE name OPERATOR(ops.=~=) 'red';`);
    const operators = `SELECT oprname, oprkind, oprleft::regtype::text, oprright::regtype::text, oprcode::text, oprcom::regoper::text, oprnegate::regoper::text,
                              oprrest::text, oprjoin::text, oprcanhash, oprcanmerge FROM pg_operator WHERE oid >= 16384 ORDER BY 1, 3, 4`;
    const dump = await sourceDump(source, [/CREATE OPERATOR ops\.=~= \(/, /NEGATOR = OPERATOR\(ops\.<~>\)/]);
    const restored = await restore(await backUp(source), source);
    await assertSame(source, restored, dump);
    assert.deepEqual(await sql(restored, operators), await sql(source, operators));
    assert.deepEqual(await sql(restored, 'SELECT count(*)::int AS n FROM red_tags'), [{ n: 20 }]);
  });

  it('keeps foreign-data wrappers, servers, user mappings and foreign tables when restored as a superuser trusting the archive; refuses, before anything, otherwise', async (t) => {
    const source = await createDatabase(t, 'foreigndata');
    const role = await createRole(t, 'foreigndata_user');
    await sql(source, `
      CREATE EXTENSION postgres_fdw;
      CREATE FOREIGN DATA WRAPPER quiet OPTIONS (debug 'true');
      CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '5432', dbname '${source}');
      CREATE SERVER archive TYPE 'tape' VERSION '2' FOREIGN DATA WRAPPER quiet;
      CREATE USER MAPPING FOR PUBLIC SERVER loopback OPTIONS (user 'postgres');
      CREATE USER MAPPING FOR ${role} SERVER loopback OPTIONS (user 'someone', password 'it''s secret');
      GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO ${role};
      GRANT USAGE ON FOREIGN SERVER loopback TO ${role};
      COMMENT ON SERVER loopback IS 'this very server';
      CREATE TABLE local_items (id integer PRIMARY KEY, name text NOT NULL);
      INSERT INTO local_items SELECT i, 'item ' || i FROM generate_series(1, 20) i;
      CREATE FOREIGN TABLE remote_items (id integer OPTIONS (column_name 'id') NOT NULL, name text DEFAULT 'unnamed' COLLATE "C")
        SERVER loopback OPTIONS (schema_name 'public', table_name 'local_items');
      COMMENT ON FOREIGN TABLE remote_items IS 'the same rows, through the server';
      GRANT SELECT ON remote_items TO ${role};
      CREATE TABLE archived (id integer, note text);
      CREATE FOREIGN TABLE archived_old () INHERITS (archived) SERVER archive;
      ALTER FOREIGN TABLE archived_old ALTER COLUMN note OPTIONS (format 'text');
      CREATE TABLE measures (id integer NOT NULL, at integer NOT NULL) PARTITION BY RANGE (at);
      CREATE TABLE measures_local PARTITION OF measures FOR VALUES FROM (0) TO (10);
      CREATE FOREIGN TABLE measures_remote PARTITION OF measures FOR VALUES FROM (10) TO (20) SERVER archive;
      INSERT INTO measures_local SELECT i, i % 10 FROM generate_series(1, 5) i;
      ALTER FOREIGN TABLE remote_items ADD CONSTRAINT positive CHECK (id > 0), ADD CONSTRAINT named CHECK (name <> '') NOT VALID;
      COMMENT ON CONSTRAINT named ON remote_items IS 'not checked against the remote rows';`);
    const catalog = `SELECT 'wrapper ' || fdwname || ' ' || coalesce(fdwoptions::text, '') || ' ' || coalesce(fdwacl::text, '') AS what FROM pg_foreign_data_wrapper
                     UNION ALL SELECT 'server ' || srvname || ' ' || coalesce(srvtype, '') || ' ' || coalesce(srvversion, '') || ' ' || coalesce(srvoptions::text, '') || ' ' || coalesce(srvacl::text, '') FROM pg_foreign_server
                     UNION ALL SELECT 'mapping ' || srvname || ' ' || usename || ' ' || coalesce(umoptions::text, '') FROM pg_user_mappings
                     UNION ALL SELECT 'table ' || ftrelid::regclass::text || ' ' || coalesce(ftoptions::text, '') FROM pg_foreign_table ORDER BY 1`;
    const dump = await sourceDump(source, [/CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw/, /CREATE USER MAPPING FOR \S+ SERVER loopback/, /CREATE FOREIGN TABLE public\.remote_items/, /ADD CONSTRAINT named CHECK .* NOT VALID/]);
    // A role that reads every table but does not own the server sees no mapping's options: a backup without them would restore mappings that cannot connect.
    const reader = uniqueName('foreigndata_reader');
    await sql('postgres', `CREATE ROLE ${reader} LOGIN IN ROLE pg_read_all_data`);
    t.after(() => sql('postgres', `DROP ROLE ${reader}`).then(() => {}));
    const asReader = new Database({ sources: [postgres({ name: 'pg', connection: `postgres://${reader}@${PG_HOST}:${PG_PORT}/${source}` })] });
    await rejectsWithCode(asReader.startBackup({ to: memory() }).done, 'SOURCE_FAILED', /options of user mappings are hidden from this role: \S+ on server loopback, PUBLIC on server loopback/);

    const backup = await backUp(source);
    await rejectsWithCode(restore(backup, source), 'RESTORE_FAILED', /only a superuser can create \(SERVER loopback, USER MAPPING PUBLIC SERVER loopback, .*FOREIGN DATA WRAPPER quiet/);
    assert.deepEqual(await databasesLike(`${source}_restored`), []);
    const restored = await restore(backup, source, { trustArchiveSql: true });
    await assertSame(source, restored, dump);
    assert.deepEqual(await sql(restored, catalog), await sql(source, catalog));
    assert.match(JSON.stringify(await sql(restored, catalog)), /password=it's secret/);
    // ANALYZE skipped the partitioned table with a foreign partition, but not its local partition (never analyzed, it would count -1 rows).
    assert.deepEqual(await sql(restored, `SELECT reltuples::int AS n FROM pg_class WHERE relname = 'measures_local'`), [{ n: 5 }]);
    // The foreign table reads the source's rows through the restored server and mapping.
    assert.deepEqual(await sql(restored, 'SELECT count(*)::int AS n, max(name) AS last FROM remote_items'), [{ n: 20, last: 'item 9' }]);
    // By hand too, where ANALYZE leaves out the foreign tables and their parents (archived has a child without a handler).
    const byHand = await restoreByHand(t, source);
    await assertSame(source, byHand, dump);
  });

  it('keeps operator classes and families (with members of their own) and the indexes on them, restored as a superuser trusting the archive; refuses, before anything, otherwise', async (t) => {
    const source = await createDatabase(t, 'opclasses');
    await sql(source, `
      CREATE SCHEMA ci;
      CREATE FUNCTION ci.cmp(text, text) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT CASE WHEN lower($1) < lower($2) THEN -1 WHEN lower($1) > lower($2) THEN 1 ELSE 0 END';
      CREATE FUNCTION ci.lt(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT lower($1) < lower($2)';
      CREATE FUNCTION ci.le(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT lower($1) <= lower($2)';
      CREATE FUNCTION ci.eq(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT lower($1) = lower($2)';
      CREATE FUNCTION ci.ge(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT lower($1) >= lower($2)';
      CREATE FUNCTION ci.gt(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT lower($1) > lower($2)';
      CREATE OPERATOR ci.< (FUNCTION = ci.lt, LEFTARG = text, RIGHTARG = text);
      CREATE OPERATOR ci.<= (FUNCTION = ci.le, LEFTARG = text, RIGHTARG = text);
      CREATE OPERATOR ci.= (FUNCTION = ci.eq, LEFTARG = text, RIGHTARG = text);
      CREATE OPERATOR ci.>= (FUNCTION = ci.ge, LEFTARG = text, RIGHTARG = text);
      CREATE OPERATOR ci.> (FUNCTION = ci.gt, LEFTARG = text, RIGHTARG = text);
      CREATE OPERATOR CLASS ci.text_ops FOR TYPE text USING btree AS
        OPERATOR 1 ci.<, OPERATOR 2 ci.<=, OPERATOR 3 ci.=, OPERATOR 4 ci.>=, OPERATOR 5 ci.>, FUNCTION 1 ci.cmp(text, text);
      COMMENT ON OPERATOR CLASS ci.text_ops USING btree IS 'case-insensitive';
      CREATE OPERATOR FAMILY ci.loose USING btree;
      ALTER OPERATOR FAMILY ci.loose USING btree ADD OPERATOR 1 ci.< (text, text), FUNCTION 1 (text, text) ci.cmp(text, text);
      CREATE OPERATOR FAMILY ci.empty USING hash;
      CREATE TABLE words (id integer PRIMARY KEY, word text NOT NULL);
      INSERT INTO words VALUES (1, 'b'), (2, 'A'), (3, 'a'), (4, 'B'), (5, 'c');
      CREATE INDEX words_ci ON words (word ci.text_ops);`);
    const members = `SELECT f.opfname, a.amname, o.amopstrategy::text || ' ' || o.amopopr::regoperator::text AS member FROM pg_amop o JOIN pg_opfamily f ON f.oid = o.amopfamily JOIN pg_am a ON a.oid = f.opfmethod
                      WHERE f.opfnamespace = 'ci'::regnamespace
                     UNION ALL SELECT f.opfname, a.amname, p.amprocnum::text || ' ' || p.amproc::regprocedure::text FROM pg_amproc p JOIN pg_opfamily f ON f.oid = p.amprocfamily JOIN pg_am a ON a.oid = f.opfmethod
                      WHERE f.opfnamespace = 'ci'::regnamespace ORDER BY 1, 2, 3`;
    const dump = await sourceDump(source, [/CREATE OPERATOR CLASS ci\.text_ops/, /ALTER OPERATOR FAMILY ci\.loose USING btree ADD/, /CREATE INDEX words_ci ON public\.words USING btree \(word ci\.text_ops\)/]);
    const backup = await backUp(source);
    await rejectsWithCode(restore(backup, source), 'RESTORE_FAILED', /only a superuser can create \(.*OPERATOR CLASS text_ops USING btree/);
    assert.deepEqual(await databasesLike(`${source}_restored`), []);
    const restored = await restore(backup, source, { trustArchiveSql: true });
    await assertSame(source, restored, dump);
    assert.deepEqual(await sql(restored, members), await sql(source, members));
    // The restored operators compare as the source's did.
    const found = `SELECT string_agg(id::text, ' ' ORDER BY id) AS ids FROM words WHERE word OPERATOR(ci.=) 'a' OR word OPERATOR(ci.>) 'b'`;
    assert.deepEqual(await sql(restored, found), await sql(source, found));
    assert.deepEqual(await sql(restored, found), [{ ids: '2 3 5' }]);
  });

  it('counts a publication, a foreign server or default privileges as user objects: such a target is not empty, and is left as it was', async (t) => {
    const source = await createDatabase(t, 'notempty');
    const reader = await createRole(t, 'notempty_reader');
    await sql(source, 'CREATE TABLE items (id integer PRIMARY KEY); INSERT INTO items VALUES (1)');
    const backup = await backUp(source);
    const target = `${source}_restored`;
    await sql('postgres', `CREATE DATABASE "${target}" TEMPLATE template0`);
    for (const [object, pattern, drop] of [
      ['CREATE PUBLICATION kept', /publication kept/, 'DROP PUBLICATION kept'],
      ['CREATE FOREIGN DATA WRAPPER bare; CREATE SERVER kept FOREIGN DATA WRAPPER bare', /foreign-data wrapper bare, foreign server kept/, 'DROP SERVER kept; DROP FOREIGN DATA WRAPPER bare'],
      [`ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO ${reader}`, /default privileges of postgres/, `ALTER DEFAULT PRIVILEGES REVOKE SELECT ON TABLES FROM ${reader}`],
    ] as const) {
      await sql(target, object);
      await rejectsWithCode(restore(backup, source), 'TARGET_NOT_EMPTY', pattern);
      await sql(target, drop);
    }
    // Empty again: restored into it.
    await restore(backup, source);
    assert.deepEqual(await sql(target, 'SELECT id FROM items'), [{ id: 1 }]);
  });

  it('runs default privileges and publications of every table or of a schema as the superuser only in the shapes backupkit writes', async (t) => {
    const target = uniqueName('craftedkinds');
    t.after(() => dropDatabasesLike(target));
    const role = await createRole(t, 'craftedkinds_user');
    const attempts = [
      { kind: 'DEFAULT ACL', sql: `ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT ON TABLES TO ${role}; ALTER ROLE ${role} SUPERUSER;`, refused: /grant statement backupkit does not write/ },
      { kind: 'DEFAULT ACL', sql: `GRANT SELECT ON TABLE public.t TO ${role};`, refused: /grant statement backupkit does not write/ },
      { kind: 'DEFAULT ACL', sql: `ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA pg_catalog GRANT SELECT ON TABLES TO ${role};`, refused: /on a schema of the system/ },
      { kind: 'PUBLICATION', sql: `CREATE PUBLICATION everything FOR ALL TABLES WITH (publish = 'insert'); ALTER ROLE ${role} SUPERUSER;`, refused: /publication statement backupkit does not write/ },
      { kind: 'PUBLICATION TABLES IN SCHEMA', sql: 'ALTER PUBLICATION everything ADD TABLES IN SCHEMA pg_catalog;', refused: /publication statement backupkit does not write/ },
    ];
    for (const { kind, sql: text, refused } of attempts) {
      const destination = memory();
      await store(destination, await consistentArchive([{ kind, section: 'post-data', sql: text }]));
      await rejectsWithCode(Database.restore({ from: destination, targets: { pg: { connection: server, database: target } } }), 'UNSAFE_ARCHIVE', refused);
      assert.deepEqual(await databasesLike(target), []);
    }
    assert.deepEqual(await sql('postgres', 'SELECT rolsuper FROM pg_roles WHERE rolname = $1', [role]), [{ rolsuper: false }]);
  });

  it('keeps user-defined casts (with a function, with INOUT; explicit, assignment, implicit) and what uses them', async (t) => {
    const source = await createDatabase(t, 'casts');
    await sql(source, `
      CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
      CREATE TYPE pair AS (a integer, b integer);
      CREATE FUNCTION mood_score(mood) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT array_position(enum_range(NULL::mood), $1) - 2';
      CREATE FUNCTION pair_sum(pair) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT ($1).a + ($1).b';
      CREATE CAST (mood AS integer) WITH FUNCTION mood_score(mood) AS ASSIGNMENT;
      CREATE CAST (pair AS bigint) WITH FUNCTION pair_sum(pair) AS IMPLICIT;
      CREATE CAST (text AS pair) WITH INOUT;
      COMMENT ON CAST (mood AS integer) IS 'sad is -1';
      CREATE TABLE feelings (id integer PRIMARY KEY, mood mood NOT NULL, score integer, pair pair);
      INSERT INTO feelings VALUES (1, 'happy', NULL, '(1,2)'), (2, 'sad', NULL, '(3,4)');
      UPDATE feelings SET score = mood;
      CREATE VIEW scores AS SELECT id, mood::integer AS score, pair::bigint AS total, '(5,6)'::text::pair AS fixed FROM feelings;`);
    const casts = `SELECT castsource::regtype::text, casttarget::regtype::text, castfunc::regprocedure::text, castcontext::text, castmethod::text
                     FROM pg_cast WHERE oid >= 16384 ORDER BY 1, 2`;
    const dump = await sourceDump(source, [/CREATE CAST \(public\.mood AS integer\) WITH FUNCTION public\.mood_score\(public\.mood\) AS ASSIGNMENT/, /WITH INOUT/]);
    const restored = await restore(await backUp(source), source);
    await assertSame(source, restored, dump);
    assert.deepEqual(await sql(restored, casts), await sql(source, casts));
    assert.equal((await sql(restored, casts)).length, 3);
    assert.deepEqual(await sql(restored, 'SELECT * FROM scores ORDER BY id'), await sql(source, 'SELECT * FROM scores ORDER BY id'));

    // With schemas, the casts of their types come along: the view needs them.
    const limited = memory();
    await new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source), schemas: ['public'] })] }).startBackup({ to: limited }).done;
    await Database.restore({ from: limited, targets: { pg: { connection: server, database: `${source}_limited` } } });
    assert.deepEqual(await sql(`${source}_limited`, casts), await sql(source, casts));
  });

  it('keeps subscriptions as pg_dump does (connect = false: disabled, no connection, no copy) when restored as a superuser trusting the archive; refuses, before anything, otherwise', async (t) => {
    const source = await createDatabase(t, 'subscriptions');
    await sql(source, `
      CREATE TABLE items (id integer PRIMARY KEY);
      INSERT INTO items VALUES (1), (2);
      CREATE SUBSCRIPTION bk_sub_orders CONNECTION 'host=127.0.0.1 dbname=nowhere password=s3cret' PUBLICATION nothing, "Other"
        WITH (connect = false, slot_name = NONE, enabled = false, binary = true, streaming = on, disable_on_error = true, synchronous_commit = 'local');
      CREATE SUBSCRIPTION bk_sub_slot CONNECTION 'host=127.0.0.1 dbname=nowhere' PUBLICATION everything WITH (connect = false, slot_name = 'bk_slot');
      COMMENT ON SUBSCRIPTION bk_sub_slot IS 'linked to its slot by hand';`);
    // A database cannot be dropped while it holds a subscription, nor a subscription with a slot without reaching its publisher.
    const dropSubscriptions = async (database: string): Promise<void> => {
      for (const { subname } of await sql<{ subname: string }>(database, 'SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())')) {
        await sql(database, `ALTER SUBSCRIPTION ${subname} DISABLE; ALTER SUBSCRIPTION ${subname} SET (slot_name = NONE); DROP SUBSCRIPTION ${subname}`);
      }
    };
    const subscriptions = `SELECT subname, subenabled, subbinary, substream::text, subdisableonerr, subsynccommit, subslotname, subpublications, subconninfo, pg_get_userbyid(subowner) AS owner
                             FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1`;
    // Here, not in t.after: hooks run in order, and the database's is first.
    try {
      const dump = await sourceDump(source, [/CREATE SUBSCRIPTION bk_sub_orders CONNECTION .* PUBLICATION nothing, "Other" WITH \(connect = false/]);
      const backup = await backUp(source);
      await rejectsWithCode(restore(backup, source), 'RESTORE_FAILED', /only a superuser can create \(SUBSCRIPTION bk_sub_orders, SUBSCRIPTION bk_sub_slot\)/);
      const restored = await restore(backup, source, { trustArchiveSql: true });
      await assertSame(source, restored, dump);
      assert.deepEqual(await sql(restored, subscriptions), await sql(source, subscriptions));
      assert.deepEqual((await sql<{ subslotname: string | null; subconninfo: string }>(restored, subscriptions)).map((row) => [row.subslotname, row.subconninfo]), [
        [null, 'host=127.0.0.1 dbname=nowhere password=s3cret'], ['bk_slot', 'host=127.0.0.1 dbname=nowhere'],
      ]);
    } finally {
      for (const database of await databasesLike(source)) await dropSubscriptions(database);
    }
  });

  it('keeps ordered-set, hypothetical-set and moving aggregates, and grants on them', async (t) => {
    const source = await createDatabase(t, 'aggregates');
    const role = await createRole(t, 'aggregates_user');
    await sql(source, `
      CREATE FUNCTION arr_add(anyarray, anyelement) RETURNS anyarray LANGUAGE sql IMMUTABLE AS 'SELECT $1 || $2';
      CREATE FUNCTION nth_final(anyarray, integer, anyelement) RETURNS anyelement LANGUAGE sql IMMUTABLE AS 'SELECT $1[$2]';
      CREATE AGGREGATE nth(integer ORDER BY anyelement) (SFUNC = arr_add, STYPE = anyarray, FINALFUNC = nth_final, FINALFUNC_EXTRA, INITCOND = '{}');
      CREATE AGGREGATE nth_shared(integer ORDER BY anyelement) (SFUNC = arr_add, STYPE = anyarray, FINALFUNC = nth_final, FINALFUNC_EXTRA, FINALFUNC_MODIFY = READ_ONLY, INITCOND = '{}');
      CREATE FUNCTION int_add(bigint, integer) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT AS 'SELECT $1 + $2';
      CREATE FUNCTION int_sub(bigint, integer) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT AS 'SELECT $1 - $2';
      CREATE AGGREGATE msum(integer) (SFUNC = int_add, STYPE = bigint, INITCOND = '0', MSFUNC = int_add, MINVFUNC = int_sub, MSTYPE = bigint, MINITCOND = '0');
      REVOKE ALL ON FUNCTION nth(integer, anyelement) FROM PUBLIC;
      GRANT EXECUTE ON FUNCTION nth(integer, anyelement) TO ${role};
      COMMENT ON AGGREGATE nth(integer ORDER BY anyelement) IS 'the nth smallest';
      CREATE TABLE readings (id integer PRIMARY KEY, value integer NOT NULL);
      INSERT INTO readings SELECT i, (i * 7) % 11 FROM generate_series(1, 20) i;
      CREATE VIEW summary AS SELECT nth(3) WITHIN GROUP (ORDER BY value) AS third FROM readings;
      CREATE VIEW moving AS SELECT id, msum(value) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS last3 FROM readings;`);
    const aggregates = `SELECT aggfnoid::regprocedure::text, aggkind, aggnumdirectargs, aggfinalmodify, aggmtransfn::text, aggminvtransfn::text, aggmtranstype::regtype::text, aggminitval
                          FROM pg_aggregate WHERE aggfnoid >= 16384 ORDER BY 1`;
    const check = async (restored: string, dump: string): Promise<void> => {
      await assertSame(source, restored, dump);
      assert.deepEqual(await sql(restored, aggregates), await sql(source, aggregates));
      for (const query of ['SELECT * FROM summary', 'SELECT * FROM moving ORDER BY id']) assert.deepEqual(await sql(restored, query), await sql(source, query));
      assert.deepEqual(await sql(restored, `SELECT has_function_privilege('${role}', 'nth(integer, anyelement)', 'EXECUTE') AS role, has_function_privilege('public', 'nth(integer, anyelement)', 'EXECUTE') AS public`),
        [{ role: true, public: false }]);
    };
    let dump = await sourceDump(source, [/CREATE AGGREGATE public\.nth\(integer ORDER BY anyelement\)/, /MINVFUNC = public\.int_sub/]);
    await check(await restore(await backUp(source), source), dump);
    await sql('postgres', `DROP DATABASE "${source}_restored" WITH (FORCE)`);

    // A state of type internal needs a superuser: the temporary role cannot, a superuser trusting the archive can.
    await sql(source, `
      CREATE AGGREGATE my_rank(VARIADIC "any" ORDER BY VARIADIC "any") (SFUNC = ordered_set_transition_multi, STYPE = internal, FINALFUNC = rank_final, FINALFUNC_EXTRA, HYPOTHETICAL);
      CREATE VIEW ranks AS SELECT my_rank(5) WITHIN GROUP (ORDER BY value) AS rank_of_5 FROM readings;`);
    dump = await sourceDump(source, [/HYPOTHETICAL/]);
    const backup = await backUp(source);
    await rejectsWithCode(restore(backup, source), 'RESTORE_FAILED', /only a superuser can create \(AGGREGATE my_rank\(VARIADIC "any" ORDER BY VARIADIC "any"\)\)/);
    const restored = await restore(backup, source, { trustArchiveSql: true });
    await check(restored, dump);
    assert.deepEqual(await sql(restored, 'SELECT * FROM ranks'), await sql(source, 'SELECT * FROM ranks'));
  });
});
