/**
 * `npm run bench`: backupkit against the standard tools, side by side, in one run.
 *
 *   SQLite  ~1 GB WAL database, another process committing ~1,000 transfers/s throughout:
 *           backupkit backup  vs  sqlite3 "VACUUM INTO" | pigz -1   (and | gzip -1)
 *           the same with zstd level 1 vs  "VACUUM INTO" | zstd -1 -T2  (runtimes that have zstd)
 *           backupkit restore vs  pigz -dc | tar -x
 *   Files   ~1 GB in 50,000 files:
 *           backupkit backup  vs  tar -cf - | pigz -1
 *           backupkit restore vs  pigz -dc | tar -x
 *   Files incremental  the same size of folder, 1 % of its files rewritten after a full:
 *           the incremental's bytes and time vs the full's (BENCH_ONLY=files-incremental)
 *   Both again encrypted with a passphrase, against the same pipelines ending in
 *           gpg --symmetric --compress-algo none (and gpg --decrypt at the start of restores)
 *   PostgreSQL  pgbench -i -s 60 (~1 GB) plus a table of jsonb and bytea, 2 jobs on both sides:
 *           backupkit backup  vs  pg_dump -Fc -Z1  and  pg_dump -Fd -j2 -Z1
 *           backupkit restore vs  pg_restore -j2 (from the -Fc dump)
 *   PostgreSQL incremental  ten tables of the same size, one of them changed (1 % of its rows):
 *           the incremental's archive bytes and time vs the full's, an incremental with nothing
 *           changed (hashing every table, writing nothing), and the restore of the chain (the full
 *           and the incremental) vs the restore of the full
 *   PostgreSQL schema  many small objects (BENCH_ONLY=postgres-schema): 2,000 small tables (a few
 *           rows, a primary key, an index, a comment each), and an application schema of ~16 MB
 *           (200 tables in three schemas with foreign keys, views, functions, triggers, sequences
 *           and rows); each side BENCH_PG_SCHEMA_RUNS (3) times, alternating, medians:
 *           backupkit backup  vs  pg_dump -Fc
 *           backupkit restore vs  createdb; pg_restore -j2
 *   S3      a 1 GB archive (one incompressible file, stored uncompressed) to moto_server on
 *           127.0.0.1: one S3 destination, then a local folder and S3 together
 *   Destinations  one archive of BENCH_DEST_MB (1024) MB (one incompressible file, stored
 *           uncompressed) to each destination on a server of this machine, started here: a local
 *           folder, S3 (moto_server), Azure (Azurite), SFTP (OpenSSH), FTP (vsftpd, as root)
 *   Import  `import('backupkit')` in a fresh process vs bare node: wall time and peak RSS,
 *           median of 9 runs of each (wall time, CPU time, peak RSS)
 *   SQLite incremental  an app appending to a BENCH_SQLITE_MB database, 1 % new or updated rows
 *           among the newest: the incremental's bytes and time vs the full's
 *           (BENCH_ONLY=sqlite-incremental, needs none of the tools)
 *
 * Sizes: BENCH_SQLITE_MB (1024), BENCH_FILES_MB (1024), BENCH_FILES_COUNT (50000). Work folder:
 * BENCH_DIR (a new temporary folder, removed afterwards; a given one is kept, and the data in it
 * reused). BENCH_ONLY=sqlite, sqlite-incremental, files, files-incremental, postgres, postgres-incremental, postgres-schema, s3, destinations
 * or import runs one part. BENCH_PG_SCALE (60) sizes the PostgreSQL database, BENCH_PG_INCREMENTAL_MB
 * (500) the one of ten tables whose incremental is compared with its full, on the server at
 * BENCH_PG_URL (postgres://postgres@127.0.0.1:5432). Needs
 * sqlite3, pigz, gzip, tar, gpg, moto_server, pgbench, pg_dump and pg_restore.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import Sqlite from 'better-sqlite3';
import { startAzurite } from '../test/helpers/azurite.js';
import { startMoto } from '../test/helpers/moto.js';
import { startSshd } from '../test/helpers/sshd.js';
import { startFtpd } from '../test/helpers/vsftpd.js';

const here = dirname(fileURLToPath(import.meta.url));
const only = process.env.BENCH_ONLY;
const sqliteMb = Number(process.env.BENCH_SQLITE_MB ?? 1024);
const filesMb = Number(process.env.BENCH_FILES_MB ?? 1024);
const fileCount = Number(process.env.BENCH_FILES_COUNT ?? 50_000);
const destinationMb = Number(process.env.BENCH_DEST_MB ?? 1024);

// The import cost needs none of them, the destinations bench starts its own servers; the incrementals need few.
const PART_TOOLS: Record<string, string[]> = { import: [], destinations: [], 'files-incremental': ['tar'], 'postgres-incremental': ['psql'], 'postgres-schema': ['psql', 'pg_dump', 'pg_restore'], 'sqlite-incremental': [] };
for (const tool of PART_TOOLS[only ?? ''] ?? ['sqlite3', 'pigz', 'gzip', 'zstd', 'tar', 'gpg', 'moto_server', 'pgbench', 'pg_dump', 'pg_restore', 'psql']) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    console.error(`bench needs ${tool} on the PATH (Debian: apt-get install ${tool})`);
    process.exit(2);
  }
}

const PASSPHRASE = 'bench passphrase';
/** zstd cases run on the runtimes that have it (Node.js 22.15 and later). */
const HAS_ZSTD = 'zstdCompress' in zlib;
const GPG = `gpg --batch --quiet --homedir gnupg --pinentry-mode loopback --passphrase-file passphrase`;
const GPG_ENCRYPT = `${GPG} --symmetric --cipher-algo AES256 --compress-algo none`;
const work = process.env.BENCH_DIR ?? (await mkdtemp(join(tmpdir(), 'backupkit-bench-')));
await mkdir(join(work, 'gnupg'), { recursive: true, mode: 0o700 });
await writeFile(join(work, 'passphrase'), PASSPHRASE);

interface Measured {
  seconds: number;
  peakRssMb?: number;
  maxStallMs?: number;
  /** The longest the main thread ran without a turn of its event loop, in CPU time: the stall without the machine's load. */
  maxBusyMs?: number;
  /** CPU time of the process, all its threads, user and system: less moved by other jobs than the wall time. */
  cpuSeconds?: number;
}

function timeShell(script: string): Measured {
  const started = performance.now();
  execFileSync('sh', ['-euc', script], { cwd: work, stdio: ['ignore', 'ignore', 'inherit'] });
  return { seconds: (performance.now() - started) / 1000 };
}

function runChild(encrypted: boolean, mode: string, kind: string, source: string, archives: string, target = '', s3 = '', compression = '', { type = 'full', destination = '' } = {}): Measured {
  const args = [mode, kind, source, archives, target];
  const env = {
    ...process.env,
    BENCH_TYPE: type,
    ...(encrypted ? { BENCH_PASSPHRASE: PASSPHRASE } : {}),
    ...(s3 ? { BENCH_S3: s3 } : {}),
    ...(compression ? { BENCH_COMPRESSION: compression } : {}),
    ...(destination ? { BENCH_DESTINATION: destination } : {}),
  };
  const out = execFileSync(process.execPath, [join(here, 'child.js'), ...args], { cwd: work, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').at(-1) as string) as Measured;
}

/** Text-like rows: compressible about 2:1, as application data tends to be. */
function makeDatabase(path: string, megabytes: number): void {
  const db = new Sqlite(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL); CREATE TABLE transfers (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, at TEXT)');
  db.exec('CREATE TABLE documents (id INTEGER PRIMARY KEY, title TEXT, body TEXT)');
  const account = db.prepare('INSERT INTO accounts (id, balance) VALUES (?, 1000)');
  db.transaction(() => {
    for (let id = 1; id <= 1000; id++) account.run(id);
  })();
  const insert = db.prepare('INSERT INTO documents (title, body) VALUES (?, ?)');
  const rows = Math.ceil((megabytes * 1024 * 1024) / 4200);
  for (let done = 0; done < rows; done += 10_000) {
    db.transaction(() => {
      for (let i = done; i < Math.min(rows, done + 10_000); i++) insert.run(`document ${i}`, randomBytes(2048).toString('hex'));
    })();
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

async function makeTree(root: string, megabytes: number, count: number): Promise<void> {
  const perFile = Math.floor((megabytes * 1024 * 1024) / count);
  for (let i = 0; i < count; i++) {
    const folder = join(root, String(Math.floor(i / 500)).padStart(3, '0'));
    if (i % 500 === 0) await mkdir(folder, { recursive: true });
    await writeFile(join(folder, `blob-${i}.bin`), Buffer.from(randomBytes(perFile / 2).toString('hex')));
  }
}

const rows: Array<{ case: string; backupkit: Measured; standard: Measured; tool: string; unencrypted?: Measured }> = [];
const s3Rows: Array<{ case: string; measured: Measured; throughput: number }> = [];

async function fresh(...paths: string[]): Promise<void> {
  await Promise.all(paths.map((path) => rm(join(work, path), { recursive: true, force: true })));
}

async function benchSqlite(): Promise<void> {
  const dbPath = join(work, 'bench.db');
  if (!existsSync(dbPath)) {
    console.error(`preparing a ${sqliteMb} MB SQLite database in ${work}`);
    makeDatabase(dbPath, sqliteMb);
  }
  await fresh('sqlite-archives', 'sqlite-encrypted', 'restored.db', 'untar-sqlite');
  // Both sides copy while another process commits about 1,000 transfers a second.
  const writer = spawn(process.execPath, [join(here, '..', 'test', 'helpers', 'transfer-writer.js'), dbPath, '1000', '1000'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => writer.stdout.once('data', resolve));
  const vacuum = `rm -f copy.db; sqlite3 "${dbPath}" "VACUUM INTO 'copy.db'"`;
  try {
    console.error('sqlite backup');
    const backup = runChild(false, 'backup', 'sqlite', dbPath, join(work, 'sqlite-archives'));
    rows.push({ case: 'SQLite backup (writer running)', backupkit: backup, standard: timeShell(`${vacuum}; pigz -1 < copy.db > copy.db.gz; rm copy.db`), tool: 'VACUUM INTO | pigz -1' });
    rows.push({ case: 'SQLite backup (writer running)', backupkit: backup, standard: timeShell(`${vacuum}; gzip -1 < copy.db > copy.db.gz; rm copy.db`), tool: 'VACUUM INTO | gzip -1' });
    if (HAS_ZSTD) {
      console.error('sqlite backup, zstd -1');
      const zstd = runChild(false, 'backup', 'sqlite', dbPath, join(work, 'sqlite-zstd'), '', '', 'zstd:1');
      rows.push({ case: 'SQLite backup, zstd level 1 (writer running)', backupkit: zstd, standard: backup, tool: 'backupkit gzip level 1 (above)' });
      rows.push({ case: 'SQLite backup, zstd level 1 (writer running)', backupkit: zstd, standard: timeShell(`${vacuum}; pigz -1 < copy.db > copy.db.gz; rm copy.db`), tool: 'VACUUM INTO | pigz -1' });
      rows.push({ case: 'SQLite backup, zstd level 1 (writer running)', backupkit: zstd, standard: timeShell(`${vacuum}; zstd -q -1 -T2 < copy.db > copy.db.zst; rm copy.db copy.db.zst`), tool: 'VACUUM INTO | zstd -1 -T2' });
      await fresh('sqlite-zstd');
    }
    console.error('sqlite backup, encrypted');
    const encrypted = runChild(true, 'backup', 'sqlite', dbPath, join(work, 'sqlite-encrypted'));
    const standard = timeShell(`${vacuum}; pigz -1 < copy.db | ${GPG_ENCRYPT} > copy.db.gz.gpg; rm copy.db`);
    rows.push({ case: 'SQLite backup, encrypted', backupkit: encrypted, standard, tool: 'VACUUM INTO | pigz -1 | gpg -c', unencrypted: backup });
  } finally {
    writer.kill('SIGTERM');
  }
  const [archive] = (await readdir(join(work, 'sqlite-archives'))).filter((n) => n.endsWith('.tar.gz'));
  console.error('sqlite restore');
  const restore = runChild(false, 'restore', 'sqlite', '', join(work, 'sqlite-archives'), join(work, 'restored.db'));
  rows.push({ case: 'SQLite restore', backupkit: restore, standard: timeShell(`mkdir untar-sqlite; pigz -dc "sqlite-archives/${archive}" | tar -x -C untar-sqlite`), tool: 'pigz -dc | tar -x' });
  await fresh('untar-sqlite', 'restored.db');
  const [encryptedArchive] = (await readdir(join(work, 'sqlite-encrypted'))).filter((n) => n.endsWith('.gpg'));
  const encryptedRestore = runChild(true, 'restore', 'sqlite', '', join(work, 'sqlite-encrypted'), join(work, 'restored.db'));
  const gpgUntar = timeShell(`mkdir untar-sqlite; ${GPG} --decrypt "sqlite-encrypted/${encryptedArchive}" | pigz -dc | tar -x -C untar-sqlite`);
  rows.push({ case: 'SQLite restore, encrypted', backupkit: encryptedRestore, standard: gpgUntar, tool: 'gpg -d | pigz -dc | tar -x', unencrypted: restore });
  await fresh('untar-sqlite', 'restored.db', 'copy.db.gz', 'copy.db.gz.gpg');
}

const pgServer = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const pgScale = Number(process.env.BENCH_PG_SCALE ?? 60);

async function benchPostgres(): Promise<void> {
  const database = `backupkit_bench_s${pgScale}`;
  const psql = (db: string, command: string) => execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', `${pgServer}/${db}`, '-c', command], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  const exists = psql('postgres', `SELECT 1 FROM pg_database WHERE datname = '${database}'`).includes('1');
  if (!exists) {
    console.error(`preparing PostgreSQL database ${database} (pgbench -i -s ${pgScale} plus jsonb and bytea)`);
    psql('postgres', `CREATE DATABASE ${database}`);
    execFileSync('pgbench', ['-i', '-q', '-s', String(pgScale), `${pgServer}/${database}`], { stdio: 'ignore' });
    psql(database, `CREATE TABLE documents (id bigint PRIMARY KEY, doc jsonb NOT NULL, payload bytea);
      INSERT INTO documents SELECT i, jsonb_build_object('id', i, 'name', md5(i::text), 'tags', jsonb_build_array(md5((i + 1)::text), i % 17), 'nested', jsonb_build_object('a', i * 2, 'b', repeat('x', 40))),
             decode(md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text), 'hex') FROM generate_series(1, ${pgScale * 10000}) i`);
    psql(database, 'VACUUM ANALYZE');
  }
  const restoredByUs = `${database}_restored`;
  const restoredByTool = `${database}_pg_restore`;
  const dropRestored = () => {
    for (const db of [restoredByUs, restoredByTool]) psql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  };
  dropRestored();
  await fresh('pg-archives', 'dump.fc', 'dump.dir');
  const source = `${pgServer}/${database}`;
  console.error('postgres backup');
  const backup = runChild(false, 'backup', 'postgres', source, join(work, 'pg-archives'));
  rows.push({ case: 'PostgreSQL backup (2 jobs)', backupkit: backup, standard: timeShell(`pg_dump -Fc -Z1 -f dump.fc "${source}"`), tool: 'pg_dump -Fc -Z1' });
  rows.push({ case: 'PostgreSQL backup (2 jobs)', backupkit: backup, standard: timeShell(`pg_dump -Fd -j2 -Z1 -f dump.dir "${source}"`), tool: 'pg_dump -Fd -j2 -Z1' });
  console.error('postgres restore');
  const restore = runChild(false, 'restore', 'postgres', '', join(work, 'pg-archives'), `${pgServer}/postgres ${restoredByUs}`);
  const standard = timeShell(`psql -X -q -d "${pgServer}/postgres" -c "CREATE DATABASE ${restoredByTool}"; pg_restore -j2 -d "${pgServer}/${restoredByTool}" dump.fc`);
  rows.push({ case: 'PostgreSQL restore (2 jobs)', backupkit: restore, standard, tool: 'createdb; pg_restore -j2' });
  dropRestored();
  await fresh('pg-archives', 'dump.fc', 'dump.dir');
}

/** The SQL of issue 17's schemas: many small tables, and an application's (foreign keys, views, functions, sequences, some rows). */
const PG_SCHEMA_CASES: Array<{ label: string; database: string; sql: string[] }> = [
  {
    label: '2,000 small tables',
    database: 'backupkit_bench_small_tables',
    // In transactions of 250 tables: one of 2,000 would need more locks than the server's lock table holds.
    sql: Array.from({ length: 8 }, (_, batch) => `DO $$ BEGIN
      FOR i IN ${batch * 250 + 1}..${(batch + 1) * 250} LOOP
        EXECUTE format('CREATE TABLE t%s (id integer PRIMARY KEY, name text NOT NULL, at timestamptz NOT NULL DEFAULT now())', i);
        EXECUTE format('CREATE INDEX t%s_name ON t%s (name)', i, i);
        EXECUTE format('COMMENT ON TABLE t%s IS %L', i, 'small table ' || i);
        EXECUTE format('INSERT INTO t%s (id, name) SELECT g, md5(g::text) FROM generate_series(1, 3) g', i);
      END LOOP;
    END $$`),
  },
  {
    label: 'an application schema',
    database: 'backupkit_bench_app_schema',
    // 200 tables in three schemas, each referring to the one before; a view and a sequence per two tables, functions and a trigger per five.
    sql: [`CREATE SCHEMA billing; CREATE SCHEMA catalog; CREATE TYPE public.status AS ENUM ('new', 'active', 'closed');
    DO $$ DECLARE s text; prev text; t text; BEGIN
      FOR i IN 1..200 LOOP
        s := (ARRAY['public', 'billing', 'catalog'])[1 + i % 3];
        t := format('%I.%I', s, 'entity_' || i);
        EXECUTE format('CREATE TABLE %s (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, parent_id bigint%s, code text NOT NULL UNIQUE,
          title varchar(200) NOT NULL, amount numeric(12,2) NOT NULL DEFAULT 0 CHECK (amount >= 0), state public.status NOT NULL DEFAULT ''new'',
          attributes jsonb NOT NULL DEFAULT ''{}'', created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz)', t,
          CASE WHEN prev IS NULL THEN '' ELSE format(' REFERENCES %s ON DELETE CASCADE', prev) END);
        EXECUTE format('CREATE INDEX ON %s (parent_id)', t);
        EXECUTE format('CREATE INDEX ON %s (created_at DESC) WHERE state <> ''closed''', t);
        EXECUTE format('COMMENT ON TABLE %s IS %L', t, 'entity ' || i);
        EXECUTE format('COMMENT ON COLUMN %s.code IS %L', t, 'the business key');
        EXECUTE format('INSERT INTO %s (code, title, amount, attributes) SELECT %L || g, repeat(md5(g::text), 2), g * 1.5,
          jsonb_build_object(''n'', g, ''tag'', md5((g * 7)::text)) FROM generate_series(1, 80) g', t, 'C' || i || '-');
        IF i % 2 = 0 THEN
          EXECUTE format('CREATE VIEW %I.%I AS SELECT e.id, e.code, e.amount, p.code AS parent_code FROM %s e LEFT JOIN %s p ON p.id = e.parent_id WHERE e.state <> ''closed''',
            s, 'entity_' || i || '_open', t, prev);
          EXECUTE format('CREATE SEQUENCE %I.%I START 1000', s, 'number_' || i);
        END IF;
        IF i % 5 = 0 THEN
          EXECUTE format('CREATE FUNCTION %I.%I(p_id bigint) RETURNS numeric LANGUAGE plpgsql STABLE AS %L', s, 'total_' || i,
            format('BEGIN RETURN (SELECT coalesce(sum(amount), 0) FROM %s WHERE id = p_id OR parent_id = p_id); END', t));
          EXECUTE format('CREATE FUNCTION %I.%I() RETURNS trigger LANGUAGE plpgsql AS %L', s, 'touch_' || i, 'BEGIN NEW.updated_at := now(); RETURN NEW; END');
          EXECUTE format('CREATE TRIGGER touch BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %I.%I()', t, s, 'touch_' || i);
        END IF;
        prev := t;
      END LOOP;
    END $$`],
  },
];
const pgSchemaRuns = Number(process.env.BENCH_PG_SCHEMA_RUNS ?? 3);

/** The median of the wall times over the runs; the largest peak RSS and stalls seen. */
function medianOf(runs: Measured[]): Measured {
  const seconds = runs.map((run) => run.seconds).sort((a, b) => a - b)[Math.floor(runs.length / 2)]!;
  const worst = (key: 'peakRssMb' | 'maxStallMs' | 'maxBusyMs') => Math.max(...runs.map((run) => run[key] ?? 0));
  return { seconds, peakRssMb: worst('peakRssMb'), maxStallMs: worst('maxStallMs'), maxBusyMs: worst('maxBusyMs') };
}

/**
 * Issue 17: schemas of many small objects, where the cost per object (catalog reads, statements
 * at restore) counts more than the bytes. Each side runs BENCH_PG_SCHEMA_RUNS times, alternating.
 */
async function benchPostgresSchema(): Promise<void> {
  const psql = (db: string, command: string) => execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', `${pgServer}/${db}`, '-c', command], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  for (const { label, database, sql } of PG_SCHEMA_CASES) {
    if (!psql('postgres', `SELECT 1 FROM pg_database WHERE datname = '${database}'`).includes('1')) {
      console.error(`preparing PostgreSQL database ${database} (${label})`);
      psql('postgres', `CREATE DATABASE ${database}`);
      try {
        for (const statement of sql) psql(database, statement);
      } catch (error) {
        psql('postgres', `DROP DATABASE ${database}`);
        throw error;
      }
      psql(database, 'ANALYZE');
    }
    const size = psql(database, 'SELECT pg_size_pretty(pg_database_size(current_database()))').trim().split('\n').at(-2)!.trim();
    const source = `${pgServer}/${database}`;
    const archives = join(work, 'pg-schema-archives');
    const restoredByUs = `${database}_restored`;
    const restoredByTool = `${database}_pg_restore`;
    const dropRestored = () => {
      for (const db of [restoredByUs, restoredByTool]) psql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    };
    const runs: Record<'backup' | 'dump' | 'restore' | 'pgRestore', Measured[]> = { backup: [], dump: [], restore: [], pgRestore: [] };
    for (let run = 1; run <= pgSchemaRuns; run++) {
      console.error(`postgres schema, ${label}: run ${run} of ${pgSchemaRuns}`);
      await fresh('pg-schema-archives', 'dump.fc');
      dropRestored();
      runs.backup.push(runChild(false, 'backup', 'postgres', source, archives));
      runs.dump.push(timeShell(`pg_dump -Fc -f dump.fc "${source}"`));
      runs.restore.push(runChild(false, 'restore', 'postgres', '', archives, `${pgServer}/postgres ${restoredByUs}`));
      runs.pgRestore.push(timeShell(`psql -X -q -d "${pgServer}/postgres" -c "CREATE DATABASE ${restoredByTool}"; pg_restore -j2 -d "${pgServer}/${restoredByTool}" dump.fc`));
    }
    dropRestored();
    await fresh('pg-schema-archives', 'dump.fc');
    const of = `${label} (${size}), median of ${pgSchemaRuns}`;
    rows.push({ case: `PostgreSQL backup, ${of}`, backupkit: medianOf(runs.backup), standard: medianOf(runs.dump), tool: 'pg_dump -Fc' });
    rows.push({ case: `PostgreSQL restore, ${of}`, backupkit: medianOf(runs.restore), standard: medianOf(runs.pgRestore), tool: 'createdb; pg_restore -j2' });
  }
}

const pgIncrementalMb = Number(process.env.BENCH_PG_INCREMENTAL_MB ?? 500);
const pgIncrementalRows: Array<{ case: string; full: Measured; incremental: Measured; unchanged: Measured; restoreFull: Measured; restoreChain: Measured; fullBytes: number; incrementalBytes: number }> = [];

/**
 * Ten tables of the same size; a full backup, then 1 % of one table's rows updated and an
 * incremental, then an incremental with nothing changed (the cost of hashing every table in the
 * snapshot, with nothing written).
 */
async function benchPostgresIncremental(): Promise<void> {
  const database = `backupkit_bench_inc_${pgIncrementalMb}mb`;
  const psql = (db: string, command: string) => execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', `${pgServer}/${db}`, '-c', command], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  const rowsPerTable = Math.ceil((pgIncrementalMb * 1024 * 1024) / 10 / 180);
  psql('postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  console.error(`preparing PostgreSQL database ${database} (10 tables of ${rowsPerTable} rows)`);
  psql('postgres', `CREATE DATABASE ${database}`);
  for (let i = 0; i < 10; i++) {
    psql(database, `CREATE TABLE t${i} (id bigint PRIMARY KEY, name text NOT NULL, body text NOT NULL);
      INSERT INTO t${i} SELECT g, md5((g * ${i + 1})::text), md5(g::text) || md5((g + ${i})::text) || md5((g * 3)::text) || md5((g * 7)::text) FROM generate_series(1, ${rowsPerTable}) g`);
  }
  psql(database, 'VACUUM ANALYZE');
  const source = `${pgServer}/${database}`;
  await fresh('pg-inc-archives');
  const archives = join(work, 'pg-inc-archives');
  console.error('postgres incremental: full, one table changed, nothing changed');
  const archivesIn = async () => (await readdir(archives)).filter((name) => name.endsWith('.tar.gz')).sort();
  const newestBytes = async () => (await stat(join(archives, (await archivesIn()).at(-1)!))).size;
  const full = runChild(false, 'backup', 'postgres', source, archives);
  const fullBytes = await newestBytes();
  // The full alone, for a restore of it to compare the chain's restore with.
  const fullOnly = join(work, 'pg-inc-full');
  await cp(archives, fullOnly, { recursive: true });
  psql(database, `UPDATE t3 SET name = 'changed' WHERE id % 100 = 0`);
  const incremental = runChild(false, 'backup', 'postgres', source, archives, '', '', '', { type: 'incremental' });
  const incrementalBytes = await newestBytes();
  const unchanged = runChild(false, 'backup', 'postgres', source, archives, '', '', '', { type: 'incremental' });
  if ((await archivesIn()).length !== 2) throw new Error('an incremental with nothing changed wrote a backup');
  console.error('postgres incremental: restore of the full, restore of the chain');
  const restored = [`${database}_full`, `${database}_chain`];
  const dropRestored = () => restored.forEach((db) => psql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`));
  dropRestored();
  const restoreFull = runChild(false, 'restore', 'postgres', '', fullOnly, `${pgServer}/postgres ${restored[0]}`);
  const restoreChain = runChild(false, 'restore', 'postgres', '', archives, `${pgServer}/postgres ${restored[1]}`);
  dropRestored();
  pgIncrementalRows.push({ case: `PostgreSQL, one of ten tables changed (${pgIncrementalMb} MB)`, full, incremental, unchanged, restoreFull, restoreChain, fullBytes, incrementalBytes });
  psql('postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await fresh('pg-inc-archives', 'pg-inc-full');
}

async function benchFiles(): Promise<void> {
  const tree = join(work, 'tree');
  if (!existsSync(tree)) {
    console.error(`preparing ${fileCount} files, ${filesMb} MB`);
    await makeTree(tree, filesMb, fileCount);
    execFileSync('sync');
  }
  await fresh('files-archives', 'files-encrypted', 'restored-tree', 'untar-files', 'tree.tar.gz', 'tree.tar.gz.gpg');
  console.error('files backup');
  const backup = runChild(false, 'backup', 'files', tree, join(work, 'files-archives'));
  rows.push({ case: `Files backup (${fileCount} files)`, backupkit: backup, standard: timeShell('tar -cf - tree | pigz -1 > tree.tar.gz'), tool: 'tar -c | pigz -1' });
  if (HAS_ZSTD) {
    console.error('files backup, zstd -1');
    await fresh('files-zstd', 'tree.tar.zst');
    const zstd = runChild(false, 'backup', 'files', tree, join(work, 'files-zstd'), '', '', 'zstd:1');
    rows.push({ case: 'Files backup, zstd level 1', backupkit: zstd, standard: backup, tool: 'backupkit gzip level 1 (above)' });
    rows.push({ case: 'Files backup, zstd level 1', backupkit: zstd, standard: timeShell('tar -cf - tree | pigz -1 > tree.tar.gz'), tool: 'tar -c | pigz -1' });
    rows.push({ case: 'Files backup, zstd level 1', backupkit: zstd, standard: timeShell("tar -I 'zstd -1 -T2' -cf tree.tar.zst tree"), tool: "tar -I 'zstd -1 -T2'" });
    await fresh('files-zstd', 'tree.tar.zst');
  }
  console.error('files backup, encrypted');
  const encrypted = runChild(true, 'backup', 'files', tree, join(work, 'files-encrypted'));
  const standard = timeShell(`tar -cf - tree | pigz -1 | ${GPG_ENCRYPT} > tree.tar.gz.gpg`);
  rows.push({ case: 'Files backup, encrypted', backupkit: encrypted, standard, tool: 'tar -c | pigz -1 | gpg -c', unencrypted: backup });
  console.error('files restore');
  const restore = runChild(false, 'restore', 'files', '', join(work, 'files-archives'), join(work, 'restored-tree'));
  rows.push({ case: `Files restore (${fileCount} files)`, backupkit: restore, standard: timeShell('mkdir untar-files; pigz -dc tree.tar.gz | tar -x -C untar-files'), tool: 'pigz -dc | tar -x' });
  await fresh('restored-tree', 'untar-files');
  const encryptedRestore = runChild(true, 'restore', 'files', '', join(work, 'files-encrypted'), join(work, 'restored-tree'));
  const gpgUntar = timeShell(`mkdir untar-files; ${GPG} --decrypt tree.tar.gz.gpg | pigz -dc | tar -x -C untar-files`);
  rows.push({ case: 'Files restore, encrypted', backupkit: encryptedRestore, standard: gpgUntar, tool: 'gpg -d | pigz -dc | tar -x', unencrypted: restore });
  await fresh('restored-tree', 'untar-files', 'tree.tar.gz', 'tree.tar.gz.gpg');
}

/** `stateBytes`: the incremental's `.state` beside it, when the source's state is worth showing (SQLite's page hashes). */
const incrementalRows: Array<{ case: string; full: Measured; incremental: Measured; fullBytes: number; incrementalBytes: number; stateBytes?: number }> = [];
const chainRestoreRows: Array<{ case: string; chain: Measured; full: Measured }> = [];

/** A full of a folder, 1 % of its files rewritten (same sizes, new contents), then an incremental. */
async function benchFilesIncremental(): Promise<void> {
  const tree = join(work, 'inc-tree');
  await fresh('inc-tree', 'inc-archives');
  console.error(`preparing ${fileCount} files, ${filesMb} MB, for the incremental`);
  await makeTree(tree, filesMb, fileCount);
  execFileSync('sync');
  const archives = join(work, 'inc-archives');
  const newest = async () => {
    const names = (await readdir(archives)).filter((name) => name.endsWith('.tar.gz')).sort();
    return (await stat(join(archives, names.at(-1) as string))).size;
  };
  console.error('files full, for the incremental');
  const full = runChild(false, 'backup', 'files', tree, archives);
  const fullBytes = await newest();
  const perFile = Math.floor((filesMb * 1024 * 1024) / fileCount);
  /** Rewrites 1 % of the files, a different 1 % each round. */
  const churn = async (round: number) => {
    for (let i = round; i < fileCount; i += 100) {
      const path = join(tree, String(Math.floor(i / 500)).padStart(3, '0'), `blob-${i}.bin`);
      await writeFile(path, Buffer.from(randomBytes(perFile / 2).toString('hex')));
    }
    execFileSync('sync');
  };
  await churn(0);
  console.error('files incremental, 1 % changed');
  const incremental = runChild(false, 'backup', 'files', tree, archives, '', '', '', { type: 'incremental' });
  incrementalRows.push({ case: `Files, 1 % of ${fileCount} files changed`, full, incremental, fullBytes, incrementalBytes: await newest() });

  for (let round = 1; round < 10; round++) {
    await churn(round);
    console.error(`files incremental ${round + 1} of 10`);
    runChild(false, 'backup', 'files', tree, archives, '', '', '', { type: 'incremental' });
  }
  await fresh('inc-full-archives', 'inc-restored');
  console.error('files full of the same tree, and the restores');
  runChild(false, 'backup', 'files', tree, join(work, 'inc-full-archives'));
  // Twice each, alternately, keeping the faster of each: other jobs on the machine move single runs.
  const restores: Record<'chain' | 'one', Measured[]> = { chain: [], one: [] };
  for (let round = 0; round < 2; round++) {
    for (const which of ['chain', 'one'] as const) {
      await fresh('inc-restored');
      restores[which].push(runChild(false, 'restore', 'files', '', which === 'chain' ? archives : join(work, 'inc-full-archives'), join(work, 'inc-restored')));
    }
  }
  const fastest = (runs: Measured[]) => runs.reduce((best, run) => (run.seconds < best.seconds ? run : best));
  chainRestoreRows.push({ case: `Files, ${filesMb} MB in ${fileCount} files`, chain: fastest(restores.chain), full: fastest(restores.one) });
  await fresh('inc-tree', 'inc-archives', 'inc-full-archives', 'inc-restored');
}

async function benchS3(): Promise<void> {
  const blob = join(work, 's3-source');
  if (!existsSync(blob)) {
    await mkdir(blob);
    execFileSync('sh', ['-c', `head -c ${1024 * 1024 * 1024} /dev/urandom > "${join(blob, 'archive-sized.bin')}"`]);
  }
  const port = 45_000 + Math.floor(Math.random() * 10_000);
  const moto = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  try {
    const endpoint = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if ((await fetch(endpoint).then((r) => r.ok, () => false)) || i > 100) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (const bucket of ['single', 'both']) await fetch(`${endpoint}/${bucket}`, { method: 'PUT' });
    console.error('s3 upload');
    const single = runChild(false, 'backup', 'files', blob, '-', '', `${endpoint}|single`);
    await fresh('s3-archives');
    const both = runChild(false, 'backup', 'files', blob, join(work, 's3-archives'), '', `${endpoint}|both`);
    const gb = 1024 / 1024;
    s3Rows.push({ case: '1 GB to S3', measured: single, throughput: (gb * 1024) / single.seconds });
    s3Rows.push({ case: '1 GB to a local folder and S3 together', measured: both, throughput: (gb * 1024) / both.seconds });
  } finally {
    moto.kill();
    await fresh('s3-archives');
  }
}

/**
 * Issue 13's case: an app appending to its SQLite database. A full, then 1 % of the rows changed
 * among the newest (half appended, half updated), then an incremental; both with `type: 'incremental'`.
 */
async function benchSqliteIncremental(): Promise<void> {
  const dbPath = join(work, 'bench-inc.db');
  const archives = join(work, 'sqlite-inc-archives');
  await fresh('bench-inc.db', 'bench-inc.db-wal', 'bench-inc.db-shm', 'sqlite-inc-archives');
  console.error(`preparing a ${sqliteMb} MB SQLite database for the incremental case`);
  makeDatabase(dbPath, sqliteMb);
  console.error('sqlite full, then incremental');
  const full = runChild(false, 'backup', 'sqlite', dbPath, archives, '', '', '', { type: 'incremental' });
  /** 1 % of the rows, among the newest: half appended, half of the newest rewritten. */
  const churn = () => {
    const db = new Sqlite(dbPath);
    const newest = (db.prepare('SELECT max(id) FROM documents').pluck().get() as number) ?? 0;
    const changed = Math.max(2, Math.round(newest / 100));
    const insert = db.prepare('INSERT INTO documents (title, body) VALUES (?, ?)');
    const update = db.prepare('UPDATE documents SET body = ? WHERE id = ?');
    db.transaction(() => {
      for (let i = 0; i < changed / 2; i++) insert.run(`document ${newest + i + 1}`, randomBytes(2048).toString('hex'));
      for (let i = 0; i < changed / 2; i++) update.run(randomBytes(2048).toString('hex'), newest - i);
    })();
    db.close();
    return `${changed} of ${newest}`;
  };
  const changed = churn();
  const incremental = runChild(false, 'backup', 'sqlite', dbPath, archives, '', '', '', { type: 'incremental' });
  // Archive names sort by time: the full's, then the incremental's.
  const sizes = async (suffix: string) => Promise.all((await readdir(archives)).filter((n) => n.endsWith(suffix)).sort().map(async (n) => (await stat(join(archives, n))).size));
  const [fullBytes = 0, incrementalBytes = 0] = await sizes('.tar.gz');
  const [, stateBytes = 0] = await sizes('.tar.gz.state');
  incrementalRows.push({ case: `SQLite, 1 % new or updated rows among the newest (${changed})`, full, incremental, fullBytes, incrementalBytes, stateBytes });

  for (let round = 1; round < 10; round++) {
    churn();
    console.error(`sqlite incremental ${round + 1} of 10`);
    runChild(false, 'backup', 'sqlite', dbPath, archives, '', '', '', { type: 'incremental' });
  }
  await fresh('sqlite-inc-full-archives', 'sqlite-inc-restored.db');
  console.error('sqlite full of the same database, and the restores');
  runChild(false, 'backup', 'sqlite', dbPath, join(work, 'sqlite-inc-full-archives'));
  const chain = runChild(false, 'restore', 'sqlite', '', archives, join(work, 'sqlite-inc-restored.db'));
  await fresh('sqlite-inc-restored.db');
  const one = runChild(false, 'restore', 'sqlite', '', join(work, 'sqlite-inc-full-archives'), join(work, 'sqlite-inc-restored.db'));
  chainRestoreRows.push({ case: `SQLite, ${sqliteMb} MB`, chain, full: one });
  await fresh('bench-inc.db', 'bench-inc.db-wal', 'bench-inc.db-shm', 'sqlite-inc-archives', 'sqlite-inc-full-archives', 'sqlite-inc-restored.db');
}

const destinationRows: Array<{ case: string; measured: Measured; throughput: number }> = [];

/** One archive of `destinationMb` to each destination kind, its server on this machine; the folder first, as the yardstick. */
async function benchDestinations(): Promise<void> {
  const blob = join(work, 'destination-source');
  await fresh('destination-source', 'destination-archives');
  await mkdir(blob);
  execFileSync('sh', ['-c', `head -c ${destinationMb * 1024 * 1024} /dev/urandom > "${join(blob, 'archive-sized.bin')}"`]);
  const measure = (label: string, destination: object) => {
    console.error(`destinations: ${label}`);
    const measured = runChild(false, 'backup', 'files', blob, '-', '', '', '', { destination: JSON.stringify(destination) });
    destinationRows.push({ case: label, measured, throughput: destinationMb / measured.seconds });
  };
  await mkdir(join(work, 'destination-archives'));
  measure('directory (local folder)', { kind: 'directory', path: join(work, 'destination-archives') });
  await fresh('destination-archives');
  const moto = await startMoto();
  try {
    measure('s3 (moto_server)', { kind: 's3', bucket: await moto.createBucket(), endpoint: moto.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } });
  } finally {
    await moto.stop();
  }
  const azurite = await startAzurite();
  try {
    measure('azure (Azurite)', { kind: 'azure', container: await azurite.createContainer(), connectionString: azurite.connectionString() });
  } finally {
    await azurite.stop();
  }
  const sshd = await startSshd();
  try {
    measure('sftp (OpenSSH)', { kind: 'sftp', host: sshd.host, port: sshd.port, username: sshd.username, privateKey: sshd.privateKey, hostKey: sshd.hostKey, path: await sshd.folder() });
  } finally {
    await sshd.stop();
  }
  const ftpd = await startFtpd();
  try {
    const options = { host: ftpd.host, port: ftpd.port, user: ftpd.user, password: ftpd.password };
    measure('ftp (vsftpd)', { kind: 'ftp', ...options, path: await ftpd.folder() });
    measure('ftps (vsftpd, explicit TLS)', { kind: 'ftp', ...options, secure: true, ca: ftpd.certificate, path: await ftpd.folder() });
  } finally {
    await ftpd.stop();
  }
  await fresh('destination-source');
}

const IMPORT_RUNS = 9;
const importRows: Array<{ case: string; seconds: number; cpuSeconds: number; rssMb: number }> = [];

interface ProcessCost {
  /** Wall time, from spawning to exit. */
  seconds: number;
  /** User and system CPU time: what a busy machine does not inflate as much as wall time. */
  cpuSeconds: number;
  rssMb: number;
}

/** What a fresh Node.js process running `script`, from the package's folder, costs. */
function timeNode(script: string): ProcessCost {
  const started = performance.now();
  const report = 'const { maxRSS, userCPUTime, systemCPUTime } = process.resourceUsage(); process.stdout.write(JSON.stringify([maxRSS, userCPUTime + systemCPUTime]))';
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', `${script}; ${report}`], { cwd: join(here, '..', '..'), encoding: 'utf8' });
  const [rssKb, cpuMicroseconds] = JSON.parse(out) as [number, number];
  return { seconds: (performance.now() - started) / 1000, cpuSeconds: cpuMicroseconds / 1e6, rssMb: rssKb / 1024 };
}

/** What an application pays to import backupkit (a self-reference: the package's own exports map). */
async function benchImport(): Promise<void> {
  console.error('import cost');
  const cases = { 'bare node': '', "import('backupkit')": "await import('backupkit')" };
  const runs = new Map<string, ProcessCost[]>(Object.keys(cases).map((name) => [name, []]));
  for (let i = 0; i < IMPORT_RUNS; i++) {
    // Interleaved, so that a busy moment of the machine weighs on both alike.
    for (const [name, script] of Object.entries(cases)) runs.get(name)!.push(timeNode(script));
  }
  const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  for (const [name, measured] of runs) {
    importRows.push({ case: name, seconds: median(measured.map((m) => m.seconds)), cpuSeconds: median(measured.map((m) => m.cpuSeconds)), rssMb: median(measured.map((m) => m.rssMb)) });
  }
}

if (only === undefined || only === 'import') await benchImport();
if (only === undefined || only === 'sqlite') await benchSqlite();
if (only === undefined || only === 'files') await benchFiles();
if (only === undefined || only === 'files-incremental') await benchFilesIncremental();
if (only === undefined || only === 'postgres') await benchPostgres();
if (only === undefined || only === 'postgres-incremental') await benchPostgresIncremental();
if (only === undefined || only === 'postgres-schema') await benchPostgresSchema();
if (only === undefined || only === 's3') await benchS3();
if (only === undefined || only === 'sqlite-incremental') await benchSqliteIncremental();
if (only === undefined || only === 'destinations') await benchDestinations();

const line = (cells: string[]) => `| ${cells.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`;
if (rows.length > 0) {
  console.log(`\nbackupkit vs standard tools (${sqliteMb} MB SQLite, ${filesMb} MB in ${fileCount} files; node ${process.version})\n`);
  console.log(line(['case', 'backupkit s', 'standard tool', 'tool s', 'ratio', 'encryption cost', 'peak RSS MB', 'max event-loop stall ms', 'max main-thread busy ms']));
  console.log(line(['---', '---:', '---', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const row of rows) {
    console.log(
      line([
        row.case,
        row.backupkit.seconds.toFixed(2),
        row.tool,
        row.standard.seconds.toFixed(2),
        `${(row.backupkit.seconds / row.standard.seconds).toFixed(2)}x`,
        row.unencrypted ? `${(row.backupkit.seconds / row.unencrypted.seconds).toFixed(2)}x` : '',
        (row.backupkit.peakRssMb ?? 0).toFixed(0),
        (row.backupkit.maxStallMs ?? 0).toFixed(1),
        (row.backupkit.maxBusyMs ?? 0).toFixed(1),
      ]),
    );
  }
}
if (chainRestoreRows.length > 0) {
  console.log(`\n${line(['restore of a full and ten incrementals', 'chain s', 'one full s', 'ratio (target ≤ 1.3x)', 'CPU s chain / full', 'peak RSS MB chain / full', 'max event-loop stall ms chain / full'])}`);
  console.log(line(['---', '---:', '---:', '---:', '---:', '---:', '---:']));
  const pair = (a: number | undefined, b: number | undefined, digits: number) => `${(a ?? 0).toFixed(digits)} / ${(b ?? 0).toFixed(digits)}`;
  for (const { case: name, chain, full } of chainRestoreRows) {
    console.log(
      line([name, chain.seconds.toFixed(2), full.seconds.toFixed(2), `${(chain.seconds / full.seconds).toFixed(2)}x`, pair(chain.cpuSeconds, full.cpuSeconds, 2), pair(chain.peakRssMb, full.peakRssMb, 0), pair(chain.maxStallMs, full.maxStallMs, 1)]),
    );
  }
}
if (incrementalRows.length > 0) {
  console.log(`\n${line(['incremental vs full', 'full s', 'incremental s', 'time ratio (target: files ≤ 15 %)', 'full MB', 'incremental MB', 'bytes ratio (target: files ≤ 2 %, SQLite ≤ 5 %)', 'its .state MB', 'peak RSS MB', 'max event-loop stall ms'])}`);
  console.log(line(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  const percent = (part: number, whole: number) => `${((100 * part) / whole).toFixed(1)} %`;
  for (const row of incrementalRows) {
    console.log(
      line([
        row.case,
        row.full.seconds.toFixed(2),
        row.incremental.seconds.toFixed(2),
        percent(row.incremental.seconds, row.full.seconds),
        (row.fullBytes / 1e6).toFixed(1),
        (row.incrementalBytes / 1e6).toFixed(2),
        percent(row.incrementalBytes, row.fullBytes),
        row.stateBytes === undefined ? '' : (row.stateBytes / 1e6).toFixed(2),
        (row.incremental.peakRssMb ?? 0).toFixed(0),
        (row.incremental.maxStallMs ?? 0).toFixed(1),
      ]),
    );
  }
}
if (pgIncrementalRows.length > 0) {
  console.log(
    '\n' +
      line(['PostgreSQL incremental vs full', 'full MB', 'full s', 'incremental MB', 'incremental s', 'bytes ratio', 'time ratio', 'nothing changed s', 'restore full s', 'restore chain s', 'peak RSS MB']),
  );
  console.log(line(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
  for (const row of pgIncrementalRows) {
    console.log(
      line([
        row.case,
        mb(row.fullBytes),
        row.full.seconds.toFixed(2),
        mb(row.incrementalBytes),
        row.incremental.seconds.toFixed(2),
        `${((100 * row.incrementalBytes) / row.fullBytes).toFixed(1)} %`,
        `${((100 * row.incremental.seconds) / row.full.seconds).toFixed(0)} %`,
        row.unchanged.seconds.toFixed(2),
        row.restoreFull.seconds.toFixed(2),
        row.restoreChain.seconds.toFixed(2),
        Math.max(...[row.full, row.incremental, row.restoreFull, row.restoreChain].map((m) => m.peakRssMb ?? 0)).toFixed(0),
      ]),
    );
  }
}
if (s3Rows.length > 0) {
  console.log('\n' + line(['S3 (moto_server on 127.0.0.1)', 'seconds', 'MB/s', 'peak RSS MB', 'max event-loop stall ms']));
  console.log(line(['---', '---:', '---:', '---:', '---:']));
  for (const row of s3Rows) {
    console.log(line([row.case, row.measured.seconds.toFixed(2), row.throughput.toFixed(0), (row.measured.peakRssMb ?? 0).toFixed(0), (row.measured.maxStallMs ?? 0).toFixed(1)]));
  }
}
if (destinationRows.length > 0) {
  console.log(`\n${line([`One ${destinationMb} MB archive to each destination (server on 127.0.0.1)`, 'seconds', 'MB/s', 'peak RSS MB', 'max event-loop stall ms'])}`);
  console.log(line(['---', '---:', '---:', '---:', '---:']));
  for (const row of destinationRows) {
    console.log(line([row.case, row.measured.seconds.toFixed(2), row.throughput.toFixed(0), (row.measured.peakRssMb ?? 0).toFixed(0), (row.measured.maxStallMs ?? 0).toFixed(1)]));
  }
}
if (importRows.length > 0) {
  const [bare, imported] = importRows as [(typeof importRows)[0], (typeof importRows)[0]];
  console.log(`\n${line([`Import cost (median of ${IMPORT_RUNS} fresh processes)`, 'wall s', 'CPU s', 'peak RSS MB'])}`);
  console.log(line(['---', '---:', '---:', '---:']));
  for (const row of importRows) console.log(line([row.case, row.seconds.toFixed(3), row.cpuSeconds.toFixed(3), row.rssMb.toFixed(1)]));
  const more = (a: number, b: number, digits: number) => `+${(a - b).toFixed(digits)}`;
  console.log(line(['backupkit over bare node', more(imported.seconds, bare.seconds, 3), more(imported.cpuSeconds, bare.cpuSeconds, 3), more(imported.rssMb, bare.rssMb, 1)]));
}
if (!process.env.BENCH_DIR) await rm(work, { recursive: true, force: true });
