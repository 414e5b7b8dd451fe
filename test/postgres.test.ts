import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Database, VerificationError, directory, files, memory, postgres, sqlite, verifyBackup, type Restorer } from '../src/index.js';
import { postgresRestorer } from '../src/sources/postgres/index.js';
import { postgresKind } from '../src/sources/postgres/kind.js';
import { withRestoredBackup } from '../src/testing.js';
import { damagingAfterCommit } from './helpers/tamper.js';
import { consistentArchive, store } from './helpers/craft.js';
import { testSource } from './conformance/source.js';
import { rejectsWithCode } from './helpers/errors.js';
import { faultySource } from './helpers/faulty.js';
import { describeTree, tempDir } from './helpers/fs.js';
import { createDatabase, databasesLike, dataFingerprint, dropDatabasesLike, extractArchive, pgUrl, PG_HOST, PG_PORT, runRestoreSql, schemaDump, sql, uniqueName } from './helpers/postgres.js';
import { createBank, dumpRows } from './helpers/sqlite.js';

const server = pgUrl('postgres');

const BANK = `
  CREATE TABLE accounts (id integer PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL CHECK (balance >= 0));
  CREATE TABLE transfers (id bigserial PRIMARY KEY, from_id integer REFERENCES accounts, to_id integer REFERENCES accounts, amount numeric NOT NULL);
  CREATE VIEW totals AS SELECT sum(balance) AS total FROM accounts;
  INSERT INTO accounts SELECT i, 'owner ' || i, 1000 FROM generate_series(1, 2000) i;
  INSERT INTO transfers (from_id, to_id, amount) SELECT i, i + 1, i % 7 FROM generate_series(1, 1999) i;`;

async function describeDatabase(database: string): Promise<unknown> {
  return { schema: await schemaDump(database), data: await dataFingerprint(database) };
}

testSource('postgres', async () => {
  const prefix = uniqueName('conformance');
  await sql('postgres', `CREATE DATABASE "${prefix}"`);
  await sql(prefix, BANK);
  let targets = 0;
  let changes = 0;
  return {
    source: postgres({ name: 'pg', connection: pgUrl(prefix) }),
    kind: postgresKind,
    async freshTarget() {
      targets += 1;
      return { connection: server, database: `${prefix}_t${targets}` };
    },
    async createEmpty(target) {
      await sql('postgres', `CREATE DATABASE "${target.database}"`);
    },
    async fill(target) {
      const { database } = target;
      await sql('postgres', `CREATE DATABASE "${database}"`);
      await sql(database, 'CREATE TABLE precious (id integer); INSERT INTO precious VALUES (1)');
    },
    describe: (target) => describeDatabase(target?.database ?? prefix),
    surroundings: () => databasesLike(prefix),
    async change() {
      changes += 1;
      // One table, then the other: a table each change sends, the next refers to.
      await sql(prefix, changes % 2 === 1 ? `UPDATE accounts SET balance = balance + ${changes} WHERE id = 1` : `INSERT INTO transfers (from_id, to_id, amount) VALUES (1, 2, ${changes})`);
    },
    exactEstimate: false,
    servers: { postgres: server },
    async bulky() {
      // Three tables of some 8 MiB of COPY text each: more chunks than the COPY threads and the queue hold.
      const bulky = `${prefix}_bulky`;
      await sql('postgres', `CREATE DATABASE "${bulky}"`);
      for (let t = 0; t < 3; t++) await sql(bulky, `CREATE TABLE t${t} AS SELECT i, md5(i::text) || md5(random()::text) AS s FROM generate_series(1, 110000) i`);
      return postgres({ name: 'pg', connection: pgUrl(bulky), jobs: 2 });
    },
    cleanup: () => dropDatabasesLike(prefix),
  };
});

/** Waits until a query of `database` starting with `query` waits for a lock. */
async function waitingForLock(database: string, query: string): Promise<void> {
  const waiting = `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '${query}%'`;
  while ((await sql(database, waiting)).length === 0) await sleep(20);
}

/**
 * A source over a table `busy` that an ALTER TABLE asks for as soon as the backup's snapshot holds
 * its ACCESS SHARE lock: the ALTER queues behind the snapshot, and the snapshot's COPY of `busy`
 * on a COPY thread (which `copyThreadsFromBytes` 0 asks for) then queues behind the ALTER. `altered()` waits for the ALTER, which goes through once the
 * backup has let go, and closes its connection.
 */
async function alterQueuedBehindSnapshot(t: Parameters<typeof createDatabase>[0], label: string, lockTimeoutMs: number, copyThreadsFromBytes = 0) {
  const database = await createDatabase(t, label);
  await sql(database, 'CREATE TABLE busy (id integer); INSERT INTO busy SELECT generate_series(1, 1000)');
  const altering = new pg.Client({ connectionString: pgUrl(database) });
  await altering.connect();
  altering.on('error', () => {}); // a test that failed leaves it to the database's drop (WITH FORCE)
  let alter: Promise<unknown> | undefined;
  const { source } = faultySource(postgres({ name: 'pg', connection: pgUrl(database), lockTimeoutMs, copyThreadsFromBytes }), {
    async opened() {
      alter = altering.query('ALTER TABLE busy ADD COLUMN note text');
      alter.catch(() => {}); // awaited by altered()
      await waitingForLock(database, 'ALTER TABLE busy');
    },
  });
  return {
    database,
    source,
    async altered() {
      await alter;
      await altering.end();
    },
  };
}

describe('postgres source', () => {
  it("fails after lockTimeoutMs when an ALTER TABLE queued behind the snapshot's lock holds up a COPY, never both waiting for ever", { timeout: 60_000 }, async (t) => {
    // `busy` has no statistics yet (relpages 0): the threads start once the catalogs give its size on disk.
    const { source, altered } = await alterQueuedBehindSnapshot(t, 'lockqueue', 1000, 1);
    await rejectsWithCode(new Database({ sources: [source] }).startBackup({ to: memory() }).done, 'SOURCE_FAILED', /lock timeout/);
    await altered(); // and the schema change goes through once the backup let go
  });

  it("copies a small database on the snapshot's own connection, which holds every table's lock: an ALTER TABLE queued behind it holds nothing up", { timeout: 60_000 }, async (t) => {
    const { source, altered } = await alterQueuedBehindSnapshot(t, 'lockinline', 1000, 1024 * 1024);
    const result = await new Database({ sources: [source] }).startBackup({ to: memory() }).done;
    assert.ok(result.size > 0);
    await altered();
  });

  it('a cancel ends a COPY waiting for its lock at once, not when the lock comes', { timeout: 60_000 }, async (t) => {
    const { database, source, altered } = await alterQueuedBehindSnapshot(t, 'lockcancel', 3_600_000);
    const op = new Database({ sources: [source] }).startBackup({ to: memory() });
    await waitingForLock(database, 'COPY ');
    op.cancel();
    await rejectsWithCode(op.done, 'ABORTED');
    await altered();
  });

  it('round trip of every covered object kind: pg_dump --schema-only and every row hash the same; restore.sql does the same by hand', async (t) => {
    const source = await createDatabase(t, 'rich', 'postgres-rich.sql');
    const dir = await tempDir(t, 'pg-rich');
    // COPY threads, as for a database of 32 MiB or more of data.
    const db = new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source), jobs: 3, copyThreadsFromBytes: 0 })] });
    const result = await db.startBackup({ to: directory({ path: dir }) }).done;
    const expected = await describeDatabase(source);

    const restored = `${source}_restored`;
    await Database.restore({ from: directory({ path: dir }), targets: { pg: { connection: server, database: restored, jobs: 3 } } });
    assert.deepEqual(await describeDatabase(restored), expected);
    assert.deepEqual(await databasesLike(`${source}_restored_`), [], 'no staging database is left');

    // By hand, with the standard tools only: tar, then psql on the script stored beside the data.
    const byHand = await runRestoreSql(await extractArchive(join(dir, result.name), join(dir, 'extracted')), `${source}_byhand`);
    assert.deepEqual(await describeDatabase(byHand), expected);
  });

  it("gives every table chunk and large object the SHA-256 of its bytes, hashed where it was read, so the archive does not hash it again", async (t) => {
    const database = await createDatabase(t, 'hashes');
    // Over 4 MiB of COPY text (two chunks), a small table, and a large object of two pieces.
    await sql(database, `
      CREATE TABLE wide AS SELECT g, repeat('w', 100) AS v FROM generate_series(1, 50000) g;
      CREATE TABLE small AS SELECT g FROM generate_series(1, 10) g;
      SELECT lo_from_bytea(0, decode(repeat('ab', 1500000), 'hex'));`);
    const snapshot = await postgres({ name: 'pg', connection: pgUrl(database) }).open({ signal: new AbortController().signal, warn: () => {}, archive: 'a' });
    const vouched: string[] = [];
    try {
      for await (const entry of snapshot.entries()) {
        if (entry.type !== 'file' || !/\.copy$|^blobs\/\d+$/.test(entry.path)) continue;
        const hash = createHash('sha256');
        let size = 0;
        for await (const piece of entry.body!()) {
          hash.update(piece);
          size += piece.length;
        }
        assert.equal(size, entry.size, entry.path);
        assert.ok(entry.bodySha256, `${entry.path} carries its hash`);
        assert.equal(await entry.bodySha256(), hash.digest('hex'), entry.path);
        vouched.push(entry.path.replace(/^data\/\d+-public\./, ''));
      }
    } finally {
      await snapshot.close();
    }
    assert.deepEqual(vouched.map((path) => path.replace(/\d+/g, 'N')).sort(), ['blobs/N', 'small/N.copy', 'wide/N.copy', 'wide/N.copy']);
  });

  it('verifyBackup restores into a throwaway database, reads every table back byte for byte, and drops it', async (t) => {
    const source = await createDatabase(t, 'verify', 'postgres-rich.sql');
    // Big enough for several COPY chunks: their order in the restored table is what the hash checks,
    // and past the first few, each is filled in the buffer of one the archive was done with.
    await sql(source, "CREATE TABLE public.big AS SELECT g AS id, repeat(md5(g::text), 4) AS payload FROM generate_series(1, 150000) g");
    const dir = await tempDir(t, 'pg-verify');
    const db = new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source) })] });
    await db.startBackup({ to: directory({ path: dir }) }).done;
    const scratch = { postgres: server, dir };
    // The throwaway databases this verification made, by name: other tests may make theirs meanwhile.
    const throwaways: string[] = [];
    const recording = damagingAfterCommit(postgresRestorer as unknown as Restorer<{ database: string }>, async ({ database }) => {
      throwaways.push(database);
    });
    const gone = async () => {
      for (const database of throwaways) assert.deepEqual(await databasesLike(database), [], `${database} and its staging databases are dropped`);
    };

    const result = await verifyBackup({ from: directory({ path: dir }), level: 'restore', scratch, restorers: [recording] });
    assert.deepEqual(result.problems, []);
    const [tables, largeObjects] = result.sources[0]!.checks;
    const expectedRows = await sql<{ n: string }>(source, "SELECT sum(n_live_tup)::text AS n FROM pg_stat_user_tables");
    assert.equal(tables?.name, 'table rows and contents');
    assert.ok((tables?.figures['tables'] ?? 0) >= 10, JSON.stringify(tables));
    assert.ok((tables?.figures['rows'] ?? 0) >= 60000, `${JSON.stringify(tables)} vs ${expectedRows[0]?.n}`);
    assert.equal(largeObjects?.name, 'large objects');
    assert.equal(throwaways.length, 1);
    assert.match(throwaways[0]!, /^backupkit_scratch_/);
    await gone();

    // A restore that lands different rows than the archive holds is caught and named.
    const tampering = damagingAfterCommit(postgresRestorer as unknown as Restorer<{ database: string }>, async ({ database }) => {
      throwaways.push(database);
      await sql(database, 'UPDATE public.big SET payload = upper(payload) WHERE id = 31337');
    });
    const error = await rejectsWithCode(
      verifyBackup({ from: directory({ path: dir }), level: 'restore', scratch, restorers: [tampering] }),
      'VERIFY_FAILED',
    );
    assert.ok(error instanceof VerificationError);
    assert.deepEqual(error.result.problems, ['pg: table rows and contents: public.big differs from the backup (SHA-256 of its COPY text)']);
    assert.equal(throwaways.length, 2);
    await gone(); // after a failure too
  });

  it('backupkit/testing restores into a temporary database, hands over a pg config, and drops it', async (t) => {
    const source = await createDatabase(t, 'drill');
    await sql(source, BANK);
    const dir = await tempDir(t, 'pg-drill');
    await new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source) })] }).startBackup({ to: directory({ path: dir }) }).done;
    let database = '';
    const total = await withRestoredBackup({ from: directory({ path: dir }), scratch: { postgres: server, dir } }, async (restored) => {
      const config = restored.postgres('pg');
      database = config.database ?? '';
      const client = new pg.Client(config);
      await client.connect();
      try {
        return (await client.query<{ total: string }>('SELECT sum(balance)::text AS total FROM accounts')).rows[0]?.total;
      } finally {
        await client.end();
      }
    });
    assert.equal(total, (await sql<{ total: string }>(source, 'SELECT sum(balance)::text AS total FROM accounts'))[0]?.total);
    assert.match(database, /^backupkit_scratch_/);
    assert.deepEqual(await databasesLike(database), [], 'the temporary database and its staging databases are dropped');
  });

  it('a backup under a write load restores with the invariant across tables copied by different workers', async (t) => {
    const source = await createDatabase(t, 'load');
    // Each transaction moves money between two tables; only a snapshot shared by both workers keeps the sums equal.
    await sql(source, `
      CREATE TABLE debits (id bigserial PRIMARY KEY, amount integer NOT NULL, note text);
      CREATE TABLE credits (id bigserial PRIMARY KEY, amount integer NOT NULL, note text);
      INSERT INTO debits (amount, note) SELECT 1, repeat('d', 60) FROM generate_series(1, 150000);
      INSERT INTO credits (amount, note) SELECT 1, repeat('c', 60) FROM generate_series(1, 150000);`);
    const writer = new pg.Client({ connectionString: pgUrl(source) });
    await writer.connect();
    let writing = true;
    let committed = 0;
    const load = (async () => {
      while (writing) {
        const amount = 1 + (committed % 9);
        await writer.query(`BEGIN; INSERT INTO debits (amount) VALUES (${amount}); INSERT INTO credits (amount) VALUES (${amount}); COMMIT;`);
        committed += 1;
      }
    })();
    const destination = memory();
    const db = new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source), jobs: 2 })] });
    // Stopped here, not in t.after: the database is dropped by an earlier-registered hook.
    const stopWriter = async () => {
      writing = false;
      await load;
      await writer.end();
    };
    try {
      await backupThrice();
    } finally {
      await stopWriter();
    }

    async function backupThrice(): Promise<void> {
      for (let i = 0; i < 3; i++) {
        const before = committed;
        const result = await db.startBackup({ to: destination }).done;
        assert.ok(committed > before, 'the writer kept committing during the backup');
        const restored = `${source}_r${i}`;
        await Database.restore({ from: destination, backup: result.name, targets: { pg: { connection: server, database: restored } } });
        const [sums] = await sql<{ d: string; c: string; nd: string; nc: string }>(restored,
          'SELECT (SELECT sum(amount) FROM debits) AS d, (SELECT sum(amount) FROM credits) AS c, (SELECT count(*) FROM debits) AS nd, (SELECT count(*) FROM credits) AS nc');
        assert.equal(sums?.d, sums?.c);
        assert.equal(sums?.nd, sums?.nc);
        assert.ok(Number(sums?.nd) >= 150000);
      }
    }
  });

  it('backs up PostgreSQL, SQLite and a blob folder into one archive and restores all three', async (t) => {
    const source = await createDatabase(t, 'mixed');
    await sql(source, BANK);
    const dir = await tempDir(t, 'pg-mixed');
    const sqlitePath = join(dir, 'app.db');
    createBank(sqlitePath, 20);
    const uploads = join(dir, 'uploads');
    await mkdir(join(uploads, 'a'), { recursive: true });
    await writeFile(join(uploads, 'a', 'photo.jpg'), 'not really a photo');
    const db = new Database({
      sources: [postgres({ name: 'pg', connection: pgUrl(source) }), sqlite({ name: 'app', path: sqlitePath }), files({ name: 'uploads', dir: uploads })],
    });
    const destination = memory();
    const progress: string[] = [];
    const op = db.startBackup({ to: destination });
    op.on('progress', (p) => progress.push(p.source ?? ''));
    const result = await op.done;
    assert.deepEqual(result.sources.map((s) => s.name), ['pg', 'app', 'uploads']);
    assert.ok(progress.includes('pg'));

    const out = join(dir, 'out');
    const restored = `${source}_restored`;
    await Database.restore({
      from: destination,
      targets: { pg: { connection: server, database: restored }, app: { path: join(out, 'app.db') }, uploads: { dir: join(out, 'uploads') } },
    });
    assert.deepEqual(await describeDatabase(restored), await describeDatabase(source));
    assert.deepEqual(dumpRows(join(out, 'app.db')), dumpRows(sqlitePath));
    assert.deepEqual(Object.keys(await describeTree(join(out, 'uploads'))).sort(), ['', 'a', 'a/photo.jpg']);
  });

  it('a damaged archive fails the restore with no database left behind', async (t) => {
    const source = await createDatabase(t, 'damaged');
    await sql(source, BANK);
    const dir = await tempDir(t, 'pg-damaged');
    const result = await new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source) })] }).startBackup({ to: directory({ path: dir }) }).done;
    const archive = join(dir, result.name);
    await truncate(archive, Math.floor((await stat(archive)).size * 0.8));
    const restored = `${source}_restored`;
    await rejectsWithCode(Database.restore({ from: directory({ path: dir }), targets: { pg: { connection: server, database: restored } } }), 'CORRUPT_ARCHIVE');
    assert.deepEqual(await databasesLike(restored), []);
  });

  it('a schema entry that fails in the middle of a batch fails the restore naming it, with no database left behind', async (t) => {
    const target = uniqueName('batch');
    t.after(() => dropDatabasesLike(target));
    // Entries are sent 64 to a query: s30 fails inside the first batch, which is rolled back and run again one entry at a time.
    const statements = Array.from({ length: 100 }, (_, i) => ({ sql: i === 30 ? 'CREATE TABLE public.broken (c public.no_such_type);' : `CREATE SCHEMA s${i};` }));
    const destination = memory();
    await store(destination, await consistentArchive(statements));
    for (const trustArchiveSql of [false, true]) {
      const error = await rejectsWithCode(
        Database.restore({ from: destination, targets: { pg: { connection: server, database: target, trustArchiveSql } } }),
        'RESTORE_FAILED',
        /Restoring SCHEMA s30 into .*: type "public\.no_such_type" does not exist/,
      );
      assert.equal((error.cause as { code?: string } | undefined)?.code, '42704', 'the server\'s own error is the cause');
      assert.deepEqual(await databasesLike(target), [], `trustArchiveSql: ${trustArchiveSql}`);
    }
  });

  it('an owner missing on the target, in the middle of a batch of owners, fails the restore naming its object, with no database left behind', async (t) => {
    const target = uniqueName('owners');
    t.after(() => dropDatabasesLike(target));
    const missing = uniqueName('norole');
    // Owners are given 64 to a query too (by the superuser after the archive's SQL, or with each batch of it when trusted).
    const statements = Array.from({ length: 100 }, (_, i) => ({ sql: `CREATE SCHEMA s${i};`, owner: `ALTER SCHEMA s${i} OWNER TO ${i === 30 ? missing : 'postgres'};` }));
    const destination = memory();
    await store(destination, await consistentArchive(statements));
    for (const trustArchiveSql of [false, true]) {
      await rejectsWithCode(
        Database.restore({ from: destination, targets: { pg: { connection: server, database: target, trustArchiveSql } } }),
        'RESTORE_FAILED',
        new RegExp(`the owner of SCHEMA s30 into .*: role "${missing}" does not exist`),
      );
      assert.deepEqual(await databasesLike(target), [], `trustArchiveSql: ${trustArchiveSql}`);
    }
  });

  it('refuses, before writing anything, a database with object kinds it does not cover', async (t) => {
    const source = await createDatabase(t, 'uncovered');
    await sql(source, 'CREATE ACCESS METHOD mine TYPE TABLE HANDLER heap_tableam_handler; CREATE TABLE t (id integer)');
    const destination = memory();
    await rejectsWithCode(new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(source) })] }).startBackup({ to: destination }).done, 'SOURCE_FAILED', /access methods/);
    assert.deepEqual(await readdirOf(destination), []);
  });

  it('fails early and clearly on a lock it cannot get, a table it cannot read, rows it cannot see', async (t) => {
    const source = await createDatabase(t, 'preflight');
    await sql(source, BANK);
    const backup = (connection: string | pg.ClientConfig, lockTimeoutMs?: number) =>
      new Database({ sources: [postgres({ name: 'pg', connection, ...(lockTimeoutMs ? { lockTimeoutMs } : {}) })] }).startBackup({ to: memory() }).done;

    const holder = new pg.Client({ connectionString: pgUrl(source) });
    await holder.connect();
    await holder.query('BEGIN; LOCK TABLE transfers IN ACCESS EXCLUSIVE MODE');
    try {
      await rejectsWithCode(backup(pgUrl(source), 300), 'SOURCE_FAILED', /Could not lock the tables within 300 ms/);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }

    await sql(source, `DO $$ BEGIN CREATE ROLE backupkit_test_login LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
      GRANT SELECT ON accounts TO backupkit_test_login`);
    const limited = { host: PG_HOST, port: PG_PORT, user: 'backupkit_test_login', database: source };
    await rejectsWithCode(backup(limited), 'SOURCE_FAILED', /cannot read public\.transfers/);
    await sql(source, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO backupkit_test_login; GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO backupkit_test_login;
      ALTER TABLE accounts ENABLE ROW LEVEL SECURITY; CREATE POLICY mine ON accounts USING (owner = current_user)`);
    await rejectsWithCode(backup(limited), 'SOURCE_FAILED', /Row-level security would hide rows of public\.accounts/);
  });
});

async function readdirOf(destination: ReturnType<typeof memory>): Promise<string[]> {
  const names: string[] = [];
  for await (const object of destination.list()) names.push(object.name);
  return names;
}
