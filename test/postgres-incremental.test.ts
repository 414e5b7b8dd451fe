/**
 * Incremental backups of a PostgreSQL source, through the adapter: snapshots opened with a
 * hand-made context (the previous state as the last snapshot's state() gave it), their entries held
 * in memory as an archive would hold them, restored by feeding the sink its layers newest first.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Database, directory, postgres, verifyBackup, type BackupWarning, type SnapshotChanges, type Source } from '../src/index.js';
import { postgresRestorer } from '../src/sources/postgres/index.js';
import type { EntryType, RestoreIntent, RestoreSink, SourceMode } from '../src/types.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { createDatabase, databasesLike, dataFingerprint, extractArchive, pgUrl, runRestoreSql, schemaDump, sql } from './helpers/postgres.js';

const run = promisify(execFile);
const server = pgUrl('postgres');

/** Ten tables (t0 large enough for several COPY chunks of 4 MiB, t9 empty) and two large objects. */
const TEN_TABLES = `
  CREATE TABLE t0 (id integer PRIMARY KEY, payload text NOT NULL);
  INSERT INTO t0 SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 70000) g;
  ${[1, 2, 3, 4, 5, 6, 7, 8]
    .map((i) => `CREATE TABLE t${i} (id serial PRIMARY KEY, ref integer REFERENCES t0, note text); INSERT INTO t${i} (ref, note) SELECT g, 'row ' || g FROM generate_series(1, ${100 * i}) g;`)
    .join('\n')}
  CREATE TABLE t9 (id integer);
  SELECT lo_from_bytea(0, decode(repeat('ab', 3000), 'hex')), lo_from_bytea(0, decode(repeat('cd', 5000), 'hex'));`;
/** Changes the first large object's first byte. */
const CHANGE_LARGE_OBJECT = "SELECT lo_put((SELECT min(oid) FROM pg_largeobject_metadata), 0, '\\x00')";

interface HeldEntry {
  readonly path: string;
  readonly type: EntryType;
  readonly mode: number;
  readonly mtime: Date;
  readonly data: Buffer;
}

interface Backup {
  readonly archive: string;
  readonly mode: SourceMode;
  readonly changes: SnapshotChanges | undefined;
  readonly entries: HeldEntry[];
  readonly state: Buffer;
  readonly warnings: Array<Omit<BackupWarning, 'source'>>;
}

/** One backup of the source, as the engine runs it: open, changes() when there is a previous state, entries, state. */
async function backUp(source: Source, archive: string, previous?: Backup, previousState?: Buffer): Promise<Backup> {
  const warnings: Array<Omit<BackupWarning, 'source'>> = [];
  const state = previousState ?? previous?.state;
  const snapshot = await source.open({
    signal: new AbortController().signal,
    warn: (warning) => void warnings.push(warning),
    archive,
    ...(previous && state ? { previous: { archive: previous.archive, read: async function* () { yield state; } } } : {}),
  });
  try {
    const changes = previous ? await snapshot.changes!() : undefined;
    const entries: HeldEntry[] = [];
    for await (const entry of snapshot.entries()) {
      const pieces: Uint8Array[] = [];
      if (entry.body) for await (const piece of entry.body()) pieces.push(piece);
      entries.push({ path: entry.path, type: entry.type, mode: entry.mode, mtime: entry.mtime, data: Buffer.concat(pieces) });
    }
    const saved: Uint8Array[] = [];
    for await (const piece of snapshot.state!()) saved.push(piece);
    return { archive, mode: changes?.mode ?? 'full', changes, entries, state: Buffer.concat(saved), warnings };
  } finally {
    await snapshot.close();
  }
}

/** Restores a chain into `database`, newest layer first, as the restore engine feeds a sink. */
async function restoreChain(
  database: string,
  layers: readonly Backup[],
  damage?: (entry: HeldEntry, depth: number) => Buffer | undefined,
  { intent, jobs }: { intent?: RestoreIntent; jobs?: number } = {},
): Promise<RestoreSink> {
  const target = postgresRestorer.parseTarget({ connection: server, database, jobs }, 'pg');
  await postgresRestorer.check(target);
  const sink = await postgresRestorer.begin(target, new AbortController().signal, intent);
  try {
    for (const [depth, backup] of layers.entries()) {
      await sink.layer!({ archive: backup.archive, mode: backup.mode, depth });
      for (const entry of backup.entries) {
        const data = damage?.(entry, depth) ?? entry.data;
        await sink.write({ path: entry.path, type: entry.type, mode: entry.mode, mtime: entry.mtime, size: data.length, body: (async function* () { yield data; })() });
      }
    }
    await sink.prepare();
    await sink.commit();
    return sink;
  } catch (error) {
    await sink.abort();
    throw error;
  }
}

async function describeDatabase(database: string): Promise<unknown> {
  return { schema: await schemaDump(database), data: await dataFingerprint(database) };
}

/** What `mkdir <archive> && tar -xzf <archive> -C <archive>` leaves in `dir`, for each archive of a chain. */
async function writeChain(dir: string, backups: readonly Backup[]): Promise<void> {
  for (const backup of backups) {
    for (const entry of backup.entries) {
      const path = join(dir, backup.archive, 'sources', 'pg', entry.path);
      if (entry.type === 'directory') await mkdir(path, { recursive: true });
      else {
        await mkdir(dirname(path), { recursive: true });
        await writeFile(path, entry.data);
      }
    }
  }
}

/** How many rows of t0 lie after one with a greater id, in page order: none when loaded as TEN_TABLES inserted them. */
async function outOfPageOrder(database: string): Promise<number> {
  const [row] = await sql<{ n: string }>(database, 'SELECT count(*) FILTER (WHERE id < previous)::text AS n FROM (SELECT id, lag(id) OVER (ORDER BY ctid) AS previous FROM t0) rows');
  return Number(row?.n);
}

function paths(backup: Backup, pattern: RegExp): string[] {
  return backup.entries.filter((entry) => pattern.test(entry.path)).map((entry) => entry.path);
}

function bytesOf(backup: Backup): number {
  return backup.entries.reduce((sum, entry) => sum + entry.data.length, 0);
}

describe('postgres incremental', () => {
  it('sends only the tables whose rows changed, refers to the others, and restores every point of a chain', async (t) => {
    const database = await createDatabase(t, 'inc');
    await sql(database, TEN_TABLES);
    const source = postgres({ name: 'pg', connection: pgUrl(database) });
    const expected: unknown[] = [];

    const full = await backUp(source, '20261203-080000.tar.gz');
    expected.push(await describeDatabase(database));
    const t0Chunks = paths(full, /^data\/[^/]+-public\.t0\/\d+\.copy$/);
    assert.ok(t0Chunks.length >= 2, 't0 spans several chunks');

    // One table of ten changed.
    await sql(database, `UPDATE t1 SET note = 'changed' WHERE id <= 10; ${CHANGE_LARGE_OBJECT}`);
    const one = await backUp(source, '20261203-090000.tar.gz', full);
    expected.push(await describeDatabase(database));
    assert.deepEqual(one.changes, { mode: 'changes', unchanged: false });
    assert.deepEqual(paths(one, /\.copy$/).map((path) => path.replace(/^data\/\d+-/, '')), ['public.t1/000001.copy']);
    // Every other table with rows is a ref; the empty one has neither chunks nor a ref, as in a full.
    assert.deepEqual(paths(one, /^data\/.*\.ref$/).map((path) => path.replace(/^data\/\d+-/, '')).sort(), [0, 2, 3, 4, 5, 6, 7, 8].map((i) => `public.t${i}.ref`));
    const t0Ref = JSON.parse(one.entries.find((entry) => /-public\.t0\.ref$/.test(entry.path))!.data.toString()) as Record<string, unknown>;
    assert.equal(t0Ref['archive'], full.archive);
    assert.equal(t0Ref['chunks'], t0Chunks.length);
    assert.ok(bytesOf(one) < bytesOf(full) / 10, `the incremental holds ${bytesOf(one)} bytes, the full ${bytesOf(full)}`);
    assert.ok(one.entries.some((entry) => entry.path === 'schema.sql'), 'the schema is always sent in full');
    const [first, second] = (await sql<{ oid: string }>(database, 'SELECT oid::text FROM pg_largeobject_metadata ORDER BY oid')).map((row) => row.oid);
    assert.deepEqual(paths(one, /^blobs\//), [`blobs/${first}`, `blobs/${second}.ref`], 'the large object that changed is sent, the other one referred to');

    // A table dropped, one added, one with a new column (its rows change), an index added (schema only),
    // a column's type changed without a change in its text (t5's rows are still referred to).
    await sql(database, `DROP TABLE t2; CREATE TABLE t10 (id integer PRIMARY KEY, v text); INSERT INTO t10 SELECT g, 'new ' || g FROM generate_series(1, 50) g;
      ALTER TABLE t3 ADD COLUMN extra integer DEFAULT 7; CREATE INDEX t4_note ON t4 (note); ALTER TABLE t5 ALTER COLUMN note TYPE varchar(100);`);
    const two = await backUp(source, '20261203-100000.tar.gz', one);
    expected.push(await describeDatabase(database));
    assert.deepEqual(two.changes, { mode: 'changes', unchanged: false });
    assert.deepEqual(paths(two, /\.copy$/).map((path) => path.replace(/^data\/\d+-/, '').replace(/\/.*/, '')).sort(), ['public.t10', 'public.t3']);
    const refsOfTwo = two.entries.filter((entry) => entry.path.endsWith('.ref')).map((entry) => JSON.parse(entry.data.toString()) as { archive: string; path: string });
    assert.deepEqual(
      refsOfTwo.filter((ref) => ref.path.startsWith('blobs/')).map(({ archive, path }) => ({ archive, path })),
      [{ archive: one.archive, path: `blobs/${first}` }, { archive: full.archive, path: `blobs/${second}` }],
      'each large object is referred to where its bytes are',
    );
    assert.deepEqual(refsOfTwo.filter((ref) => ref.path.endsWith('public.t1')).map((ref) => ref.archive), [one.archive], 't1 is held by the first incremental');
    assert.ok(refsOfTwo.filter((ref) => ref.path.startsWith('data/') && !ref.path.endsWith('public.t1')).every((ref) => ref.archive === full.archive), 'the others by the full');

    // Nothing changed.
    const three = await backUp(source, '20261203-110000.tar.gz', two);
    assert.deepEqual(three.changes, { mode: 'changes', unchanged: true });
    // A sequence that moved is a change, though no row did.
    await sql(database, "SELECT nextval('t5_id_seq')");
    const four = await backUp(source, '20261203-120000.tar.gz', two);
    assert.deepEqual(four.changes, { mode: 'changes', unchanged: false });
    assert.deepEqual(paths(four, /\.copy$/), []);
    expected.push(await describeDatabase(database));

    const chain = [full, one, two, four];
    for (let point = 0; point < chain.length; point++) {
      const restored = `${database}_r${point}`;
      const sink = await restoreChain(restored, chain.slice(0, point + 1).reverse());
      assert.deepEqual(await describeDatabase(restored), expected[point], `point ${point} restores as the database was then`);
      const checks = await sink.verify!((async function* () {})());
      assert.deepEqual(checks.flatMap((check) => check.problems), [], `point ${point}: every table reads back as data.json says`);
    }
    assert.deepEqual(await databasesLike(`${database}_r3_`), [], 'no staging database is left');
  });

  it('restore.sql of an incremental restores by hand from the archives extracted side by side', async (t) => {
    const database = await createDatabase(t, 'inchand');
    await sql(database, TEN_TABLES);
    const source = postgres({ name: 'pg', connection: pgUrl(database) });
    const full = await backUp(source, '20261203-080000.tar.gz');
    await sql(database, `DELETE FROM t6 WHERE id % 2 = 0; INSERT INTO t7 (ref, note) VALUES (1, 'late'); ${CHANGE_LARGE_OBJECT}`);
    const one = await backUp(source, '20261203-090000.tar.gz', full);
    await sql(database, 'DROP TABLE t8');
    const two = await backUp(source, '20261203-100000.tar.gz', one);
    const expected = await describeDatabase(database);

    const dir = await tempDir(t, 'pg-inc-hand');
    await writeChain(dir, [full, one, two]);
    const byHand = await runRestoreSql(join(dir, two.archive, 'sources', 'pg'), `${database}_byhand`);
    assert.deepEqual(await describeDatabase(byHand), expected);
  });

  it('a table above pieceBytes is copied in page-range pieces side by side, restores and verifies exactly, is referred to whole, and restores by hand', async (t) => {
    const database = await createDatabase(t, 'incsplit');
    await sql(database, TEN_TABLES);
    const whole = await backUp(postgres({ name: 'pg', connection: pgUrl(database) }), '20261203-070000.tar.gz');
    const source = postgres({ name: 'pg', connection: pgUrl(database), pieceBytes: 2 * 1024 * 1024 });
    const expected: unknown[] = [];
    const full = await backUp(source, '20261203-080000.tar.gz');
    expected.push(await describeDatabase(database));

    const toc = JSON.parse(full.entries.find((entry) => entry.path === 'toc.json')!.data.toString()) as { formatVersion: number; tables: Array<{ qualifiedName: string; pieces?: number[] }> };
    assert.equal(toc.formatVersion, 2, 'a split table makes format version 2');
    const pieces = toc.tables.find((table) => table.qualifiedName === 'public.t0')!.pieces!;
    assert.ok(pieces.length >= 4 && pieces[0] === 0, JSON.stringify(pieces));
    assert.ok(toc.tables.filter((table) => table.qualifiedName !== 'public.t0').every((table) => table.pieces === undefined), 'small tables are not split');
    const t0Paths = paths(full, /-public\.t0\/\d{4}\/\d{6}\.copy$/);
    assert.deepEqual(new Set(t0Paths.map((path) => path.replace(/^.*\/(\d{4})\/.*$/, '$1'))).size, pieces.length, 'every piece has chunks of its own');
    assert.deepEqual(paths(full, /-public\.t1\/.*/), paths(whole, /-public\.t1\/.*/), 'a small table keeps its layout');
    // The pieces, in page order, hold exactly the text of the table copied whole.
    const textOf = (backup: Backup, pattern: RegExp): Buffer => Buffer.concat(backup.entries.filter((entry) => pattern.test(entry.path)).sort((a, b) => (a.path < b.path ? -1 : 1)).map((entry) => entry.data));
    assert.ok(textOf(full, /-public\.t0\/.*\.copy$/).equals(textOf(whole, /-public\.t0\/.*\.copy$/)), 'the pieces hold the table as copied whole');
    const summary = (JSON.parse(full.entries.find((entry) => entry.path === 'data.json')!.data.toString()) as { tables: Array<{ sha256: string; rows: number; pieces?: Array<{ sha256: string; rows: number }> }> }).tables.find((table) => table.pieces)!;
    assert.equal(summary.rows, 70000);
    assert.equal(summary.pieces!.length, pieces.length);
    assert.equal(summary.sha256, createHash('sha256').update(summary.pieces!.map((piece) => piece.sha256).join('')).digest('hex'), "the table's SHA-256 is of its pieces' in order");

    // t0 unchanged: referred to whole, its pieces named in the ref.
    await sql(database, "UPDATE t1 SET note = 'changed' WHERE id <= 10");
    const one = await backUp(source, '20261203-090000.tar.gz', full);
    expected.push(await describeDatabase(database));
    assert.deepEqual(paths(one, /\.copy$/).map((path) => path.replace(/^data\/\d+-/, '')), ['public.t1/000001.copy']);
    const t0Ref = JSON.parse(one.entries.find((entry) => /-public\.t0\.ref$/.test(entry.path))!.data.toString()) as { archive: string; pieces?: unknown[] };
    assert.equal(t0Ref.archive, full.archive);
    assert.equal(t0Ref.pieces?.length, pieces.length);
    // One row of t0 changed: t0 is sent again, in pieces.
    await sql(database, "UPDATE t0 SET payload = 'changed' WHERE id = 7");
    const two = await backUp(source, '20261203-100000.tar.gz', one);
    expected.push(await describeDatabase(database));
    assert.ok(paths(two, /-public\.t0\/\d{4}\/\d{6}\.copy$/).length >= pieces.length);

    const chain = [full, one, two];
    for (let point = 0; point < chain.length; point++) {
      const restored = `${database}_r${point}`;
      const sink = await restoreChain(restored, chain.slice(0, point + 1).reverse());
      assert.deepEqual(await describeDatabase(restored), expected[point], `point ${point} restores as the database was then`);
      assert.deepEqual((await sink.verify!((async function* () {})())).flatMap((check) => check.problems), [], `point ${point} verifies`);
      if (point !== 1) continue;
      // The verification of a split table compares its text piece by piece: one row that differs is found.
      await sql(restored, "UPDATE t0 SET payload = upper(payload) WHERE id = 60000");
      assert.deepEqual((await sink.verify!((async function* () {})())).flatMap((check) => check.problems), ['public.t0 differs from the backup (SHA-256 of its COPY text)']);
    }

    // By hand: restore.sql of the first incremental loads t0's pieces from the full, in page order.
    const dir = await tempDir(t, 'pg-split-hand');
    await writeChain(dir, [full, one]);
    const byHand = await runRestoreSql(join(dir, one.archive, 'sources', 'pg'), `${database}_byhand`);
    assert.deepEqual(await describeDatabase(byHand), expected[1]);
    assert.ok(textOf(one, /^restore\.sql$/).toString().includes(`${full.archive}/sources/pg/${t0Paths[0]}`), 'restore.sql names the pieces where the full holds them');
  });

  it("a split table's pieces load side by side on several sessions unless the restore is verified, which loads them in page order and passes", async (t) => {
    const database = await createDatabase(t, 'splitpar');
    await sql(database, TEN_TABLES);
    const expected = await describeDatabase(database);
    const source = postgres({ name: 'pg', connection: pgUrl(database), pieceBytes: 1024 * 1024 });
    const full = await backUp(source, '20261203-080000.tar.gz');
    assert.ok(paths(full, /-public\.t0\/0004\/000001\.copy$/).length === 1, 't0 is split in four pieces at least');

    const unordered = await restoreChain(`${database}_side`, [full], undefined, { intent: { verified: false }, jobs: 4 });
    assert.deepEqual(await describeDatabase(`${database}_side`), expected, 'the same rows as the source');
    assert.ok((await outOfPageOrder(`${database}_side`)) > 0, "t0's pieces did not load one after the other in page order");
    await rejectsWithCode(unordered.verify!((async function* () {})()), 'VERIFY_FAILED', /public\.t0 was restored in pieces side by side/);

    const ordered = await restoreChain(`${database}_ordered`, [full], undefined, { intent: { verified: true }, jobs: 4 });
    assert.deepEqual(await describeDatabase(`${database}_ordered`), expected);
    assert.equal(await outOfPageOrder(`${database}_ordered`), 0, 'a restore to be verified loads the pieces in page order');
    assert.deepEqual((await ordered.verify!((async function* () {})())).flatMap((check) => check.problems), []);

    // Through the engine: Database.restore is not verified, verifyBackup is.
    const dir = await tempDir(t, 'pg-split-side');
    const to = directory({ path: dir });
    await new Database({ sources: [source] }).startBackup({ to }).done;
    await Database.restore({ from: to, targets: { pg: { connection: server, database: `${database}_engine`, jobs: 4 } } });
    assert.deepEqual(await describeDatabase(`${database}_engine`), expected);
    assert.ok((await outOfPageOrder(`${database}_engine`)) > 0, 'Database.restore loads the pieces side by side');
    const verified = await verifyBackup({ from: to, level: 'restore', scratch: { postgres: server, dir } });
    assert.deepEqual(verified.problems, []);
  });

  it('a referred table whose rows differ in the older archive, or an older archive missing, fails the restore with nothing left', async (t) => {
    const database = await createDatabase(t, 'incbad');
    await sql(database, TEN_TABLES);
    const source = postgres({ name: 'pg', connection: pgUrl(database) });
    const full = await backUp(source, '20261203-080000.tar.gz');
    await sql(database, "UPDATE t1 SET note = 'changed'");
    const one = await backUp(source, '20261203-090000.tar.gz', full);

    // The full's second chunk of t0, with one row changed: same size, other bytes.
    const damaged = (entry: HeldEntry, depth: number): Buffer | undefined => {
      if (depth !== 1 || !/-public\.t0\/000002\.copy$/.test(entry.path)) return undefined;
      const copy = Buffer.from(entry.data);
      const last = copy.indexOf(0x0a) - 1;
      copy[last] = copy[last]! ^ 0x01;
      return copy;
    };
    await rejectsWithCode(restoreChain(`${database}_bad`, [one, full], damaged), 'CORRUPT_ARCHIVE', /20261203-080000\.tar\.gz.*public"?\."?t0/);
    const blob = (entry: HeldEntry, depth: number): Buffer | undefined => (depth === 1 && /^blobs\/\d+$/.test(entry.path) ? Buffer.alloc(entry.data.length) : undefined);
    await rejectsWithCode(restoreChain(`${database}_badblob`, [one, full], blob), 'CORRUPT_ARCHIVE', /20261203-080000\.tar\.gz.*large object/);
    await rejectsWithCode(restoreChain(`${database}_short`, [one]), 'CORRUPT_ARCHIVE', /20261203-080000\.tar\.gz/);
    assert.deepEqual(await databasesLike(`${database}_`), [], 'no database is left');
  });

  it('a previous state it cannot build on makes a full backup, and says why', async (t) => {
    const database = await createDatabase(t, 'increj');
    await sql(database, TEN_TABLES);
    const source = postgres({ name: 'pg', connection: pgUrl(database) });
    const full = await backUp(source, '20261203-080000.tar.gz');
    const saved = JSON.parse(full.state.toString()) as Record<string, unknown>;
    const otherVersion = Buffer.from(JSON.stringify({ ...saved, version: 99 }));
    const otherEncoding = Buffer.from(JSON.stringify({ ...saved, encoding: 'LATIN1' }));
    for (const state of [Buffer.from('not json'), otherVersion, otherEncoding]) {
      const again = await backUp(source, '20261203-090000.tar.gz', full, state);
      assert.deepEqual(again.changes, { mode: 'full', unchanged: false });
      assert.deepEqual(again.warnings.map((warning) => warning.code), ['INCREMENTAL_BASE_REJECTED']);
      assert.equal(paths(again, /\.ref$/).length, 0);
      assert.deepEqual(paths(again, /\.copy$/).sort(), paths(full, /\.copy$/).sort());
    }
  });

  it('by default a table above 64 MiB stays whole with one job, or with no more cores than jobs: its pieces would cost the server more than they save', async (t) => {
    const database = await createDatabase(t, 'incwhole');
    // 48,000 rows of 1.5 kB, five to a page: about 78 MB of heap, above the 64 MiB of a piece.
    await sql(database, "CREATE TABLE big AS SELECT g, repeat('x', 1500) AS v FROM generate_series(1, 48000) g");
    for (const jobs of [1, availableParallelism()]) {
      const snapshot = await postgres({ name: 'pg', connection: pgUrl(database), jobs }).open({ signal: new AbortController().signal, warn: () => {}, archive: '20261203-110000.tar.gz' });
      try {
        // toc.json comes first: the tables are not copied.
        const entries = snapshot.entries()[Symbol.asyncIterator]();
        const first = (await entries.next()).value!;
        const pieces: Uint8Array[] = [];
        for await (const piece of first.body!()) pieces.push(piece);
        await entries.return?.(undefined);
        const toc = JSON.parse(Buffer.concat(pieces).toString()) as { formatVersion: number; tables: Array<{ qualifiedName: string; estimatedBytes: number; pieces?: number[] }> };
        assert.equal(first.path, 'toc.json');
        assert.ok(toc.tables[0]!.estimatedBytes > 64 * 1024 * 1024, `${toc.tables[0]!.estimatedBytes} bytes`);
        assert.deepEqual([toc.formatVersion, toc.tables[0]!.pieces], [1, undefined], `${jobs} jobs on ${availableParallelism()} cores`);
      } finally {
        await snapshot.close();
      }
    }
  });
});

describe('postgres incremental, through the engine', () => {
  it('a chain of a full and an incremental: .ref entries in the archives, state beside them, restored by hand with tar and psql', async (t) => {
    const database = await createDatabase(t, 'inceng');
    await sql(database, TEN_TABLES);
    const dir = await tempDir(t, 'pg-inc-engine');
    const to = directory({ path: dir });
    const db = new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(database) })] });

    const full = await db.startBackup({ to, type: 'incremental' }).done;
    assert.equal(full.type, 'full', 'the first backup of a chain is a full');
    await sql(database, `UPDATE t1 SET note = 'changed' WHERE id <= 10; DROP TABLE t2; CREATE TABLE t10 (id integer PRIMARY KEY, v text);
      INSERT INTO t10 SELECT g, 'new ' || g FROM generate_series(1, 50) g; ALTER TABLE t3 ADD COLUMN extra integer DEFAULT 7; ${CHANGE_LARGE_OBJECT}`);
    const one = await db.startBackup({ to, type: 'incremental' }).done;
    assert.deepEqual([one.type, one.previous, one.base], ['incremental', full.name, full.name]);
    assert.ok(one.size < full.size / 5, `the incremental is ${one.size} bytes, the full ${full.size}`);
    const listed = (await run('tar', ['-tzf', join(dir, one.name)])).stdout.trim().split('\n');
    assert.deepEqual(listed.filter((path) => path.endsWith('.copy')).map((path) => path.replace(/^sources\/pg\/data\/\d+-/, '').replace(/\/.*/, '')).sort(), ['public.t1', 'public.t10', 'public.t3']);
    assert.equal(listed.filter((path) => /^sources\/pg\/data\/.*\.ref$/.test(path)).length, 6, 't0 and t4 to t8 are referred to (t9 is empty)');
    const header = JSON.parse((await run('tar', ['-xzOf', join(dir, one.name), 'header.json'])).stdout) as { formatVersion: number; sources: Array<{ mode: string }> };
    assert.deepEqual([header.formatVersion, header.sources[0]?.mode], [3, 'changes']);
    const state = JSON.parse((await run('tar', ['-xzOf', join(dir, `${one.name}.state`), 'pg'])).stdout) as { tables: Array<{ table: string; archive: string }> };
    assert.deepEqual(state.tables.filter((table) => table.archive === one.name).map((table) => table.table).sort(), ['public.t1', 'public.t10', 'public.t3']);
    const expected = await describeDatabase(database);

    // By hand, as docs/POSTGRES.md says: each archive into a folder named as it, side by side; the newest's restore.sql.
    const chain = join(dir, 'chain');
    for (const name of [full.name, one.name]) await extractArchive(join(dir, name), join(chain, name));
    const byHand = await runRestoreSql(join(chain, one.name, 'sources', 'pg'), `${database}_byhand`);
    assert.deepEqual(await describeDatabase(byHand), expected);
  });
  it('every point of a chain with schema changes restores as the database was then; verifyBackup at level restore', async (t) => {
    const database = await createDatabase(t, 'incchain');
    await sql(database, TEN_TABLES);
    const dir = await tempDir(t, 'pg-inc-chain');
    const to = directory({ path: dir });
    const db = new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(database) })] });
    const steps = [
      '',
      "UPDATE t1 SET note = 'changed' WHERE id <= 10",
      'DROP TABLE t2; CREATE TABLE t10 (id integer PRIMARY KEY, v text); INSERT INTO t10 SELECT g, g::text FROM generate_series(1, 50) g',
      `ALTER TABLE t3 ADD COLUMN extra integer DEFAULT 7; CREATE INDEX t4_note ON t4 (note); ${CHANGE_LARGE_OBJECT}`,
      "SELECT nextval('t5_id_seq'); DELETE FROM t0 WHERE id > 60000",
    ];
    const points: Array<{ name: string; expected: unknown }> = [];
    for (const step of steps) {
      if (step) await sql(database, step);
      const result = await db.startBackup({ to, type: 'incremental' }).done;
      assert.equal(result.type, points.length === 0 ? 'full' : 'incremental');
      points.push({ name: result.name, expected: await describeDatabase(database) });
    }
    for (const [i, point] of points.entries()) {
      const restored = `${database}_p${i}`;
      const result = await Database.restore({ from: to, backup: point.name, targets: { pg: { connection: server, database: restored } } });
      assert.equal(result.chain.length, i + 1, `point ${i} reads its chain back to the full`);
      assert.deepEqual(await describeDatabase(restored), point.expected, `point ${i} restores as the database was then`);
    }
    const verified = await verifyBackup({ from: to, level: 'restore', scratch: { postgres: server, dir } });
    assert.deepEqual(verified.chain, points.map((point) => point.name).reverse());
    assert.deepEqual(verified.sources.flatMap((source) => source.checks.flatMap((check) => check.problems)), []);
    assert.ok(verified.sources[0]!.checks.some((check) => check.figures['tables'] === 10), 'every table was read back');
  });

  it('reads the catalog on jobs connections side by side into the same TOC as on one: entry ids, scripts and fingerprint', async (t) => {
    const database = await createDatabase(t, 'incjobs');
    await sql(database, `${TEN_TABLES}
      CREATE SCHEMA app; CREATE TYPE app.state AS ENUM ('new', 'done'); CREATE SEQUENCE app.numbers START 7;
      CREATE FUNCTION app.total(p integer) RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM public.t1 WHERE ref = p';
      CREATE TABLE app.orders (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ref integer REFERENCES t0, state app.state NOT NULL DEFAULT 'new',
                               code text UNIQUE CHECK (code <> ''), n bigint DEFAULT nextval('app.numbers'));
      CREATE INDEX ON app.orders (state) WHERE state <> 'done';
      CREATE VIEW app.open_orders AS SELECT o.id, t.payload FROM app.orders o JOIN t0 t ON t.id = o.ref WHERE o.state = 'new';
      CREATE MATERIALIZED VIEW app.totals AS SELECT ref, app.total(ref) AS n FROM t1 GROUP BY ref;
      CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN NEW.code := lower(NEW.code); RETURN NEW; END';
      CREATE TRIGGER touch BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch();
      COMMENT ON TABLE app.orders IS 'orders'; COMMENT ON COLUMN app.orders.code IS 'the key'; GRANT SELECT ON app.open_orders TO PUBLIC;`);
    const scripts = (backup: Backup): string[] => ['toc.json', 'schema.sql', 'restore.sql'].map((path) => backup.entries.find((entry) => entry.path === path)!.data.toString());
    const fingerprint = (backup: Backup): string => (JSON.parse(backup.state.toString()) as { schema: string }).schema;
    const one = await backUp(postgres({ name: 'pg', connection: pgUrl(database), jobs: 1 }), '20261203-080000.tar.gz');
    const four = await backUp(postgres({ name: 'pg', connection: pgUrl(database), jobs: 4 }), '20261203-080000.tar.gz');
    assert.ok(scripts(one)[1]!.includes('CREATE MATERIALIZED VIEW app.totals'), 'the fixture is in the TOC');
    assert.deepEqual(scripts(four), scripts(one));
    assert.equal(fingerprint(four), fingerprint(one));
    assert.deepEqual(four.warnings, one.warnings);
    // With `schemas`, readers of objects of no schema end at once, before their turn.
    const limited = await Promise.all([1, 4].map((jobs) => backUp(postgres({ name: 'pg', connection: pgUrl(database), jobs, schemas: ['app', 'public'] }), '20261203-080000.tar.gz')));
    assert.deepEqual(scripts(limited[1]!), scripts(limited[0]!));
  });
});
