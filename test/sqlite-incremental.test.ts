import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Sqlite from 'better-sqlite3';
import { Database, directory, sqlite, verifyBackup, type ArchivedEntry, type BackupResult, type BackupWarning, type Entry, type RestoreSink, type SnapshotChanges } from '../src/index.js';
import { sqliteRestorer } from '../src/sources/sqlite/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { stopped } from './helpers/process.js';
import { bankSummary, createBank, dumpRows } from './helpers/sqlite.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

/** One source's part of an archive, as the adapter produced it. */
interface Taken {
  archive: string;
  changes: SnapshotChanges;
  entries: Array<Omit<Entry, 'body'> & { bytes: Buffer }>;
  state: Buffer;
  warnings: Array<Omit<BackupWarning, 'source'>>;
  /** The database as it was when the snapshot was taken, row by row. */
  rows: Record<string, unknown[]>;
}

let archives = 0;

/** Takes a snapshot as the backup engine does: open, `changes()` when there is a previous state, entries, state. */
async function take(path: string, previous?: Taken): Promise<Taken> {
  const archive = `a${++archives}`;
  const warnings: Taken['warnings'] = [];
  const snapshot = await sqlite({ name: 'app', path }).open({
    signal: new AbortController().signal,
    warn: (warning) => warnings.push(warning),
    archive,
    ...(previous
      ? {
          previous: {
            archive: previous.archive,
            async *read() {
              // Odd chunk sizes: the reader must not depend on where chunks end.
              for (let at = 0; at < previous.state.length; at += 1000) yield previous.state.subarray(at, at + 1000);
            },
          },
        }
      : {}),
  });
  try {
    const changes = previous ? await snapshot.changes!() : { mode: 'full' as const, unchanged: false };
    const entries: Taken['entries'] = [];
    for await (const { body, ...entry } of snapshot.entries()) entries.push({ ...entry, bytes: body ? Buffer.concat(await collect(body())) : Buffer.alloc(0) });
    const state = Buffer.concat(await collect(snapshot.state!()));
    return { archive, changes, entries, state, warnings, rows: dumpRows(path) };
  } finally {
    await snapshot.close();
  }
}

async function collect(iterable: AsyncIterable<Uint8Array>): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of iterable) chunks.push(Buffer.from(chunk));
  return chunks;
}

/** Restores `chain` (oldest first) up to and including `upTo` as the restore engine does: newest layer first. */
async function restore(chain: Taken[], upTo: number, target: string): Promise<RestoreSink> {
  const layers: Taken[] = [];
  for (let i = upTo; i >= 0; i--) {
    layers.push(chain[i]!);
    if (chain[i]!.changes.mode === 'full') break;
  }
  const sink = await sqliteRestorer.begin({ path: target }, new AbortController().signal);
  try {
    for (const [depth, layer] of layers.entries()) {
      await sink.layer!({ archive: layer.archive, mode: layer.changes.mode, depth });
      for (const entry of layer.entries) {
        await sink.write({
          ...entry,
          // 3000-byte chunks: pages arrive split across chunks.
          body: (async function* () {
            for (let at = 0; at < entry.bytes.length; at += 3000) yield entry.bytes.subarray(at, at + 3000);
          })(),
        });
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

function journalOf(taken: Taken): { pageSize: number; pageCount: number; bytes: number; sha256: string; runs: Array<[number, number]> } {
  const json = taken.entries.find((entry) => entry.path === 'pages.json');
  assert.ok(json, `${taken.archive} has a pages.json`);
  return JSON.parse(json.bytes.toString('utf8')) as ReturnType<typeof journalOf>;
}

const archivedBytes = (taken: Taken) => taken.entries.reduce((sum, entry) => sum + entry.bytes.length, 0);
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** An application's database: notes with a text body, appended to and edited over time. */
function createApp(path: string, notes: number): Sqlite.Database {
  const db = new Sqlite(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
  addNotes(db, notes);
  return db;
}

function addNotes(db: Sqlite.Database, count: number): void {
  const insert = db.prepare('INSERT INTO notes (body) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < count; i++) insert.run(`note ${i} ${randomBytes(150).toString('base64')}`); // compresses as real text barely does
  })();
}

describe('sqlite incrementals, through the adapter', () => {
  it('inserts, updates, deletes and a VACUUM: each point of the chain restores to the database as it was', async (t) => {
    const dir = await tempDir(t, 'sqlite-inc');
    const path = join(dir, 'app.db');
    const db = createApp(path, 2000);
    t.after(() => db.close());
    const chain = [await take(path)];
    const step = async () => chain.push(await take(path, chain.at(-1)));

    addNotes(db, 20);
    await step();
    db.exec("UPDATE notes SET body = 'edited' WHERE id % 400 = 0");
    await step();
    db.exec('DELETE FROM notes WHERE id BETWEEN 100 AND 900');
    await step();
    db.exec('VACUUM'); // rewrites most pages and gives the freed ones back: fewer pages
    await step();
    addNotes(db, 5);
    await step();

    assert.deepEqual(
      chain.map((taken) => taken.changes),
      [{ mode: 'full', unchanged: false }, ...Array.from({ length: 5 }, () => ({ mode: 'changes', unchanged: false }))],
    );
    assert.deepEqual(chain.flatMap((taken) => taken.warnings), []);
    const full = archivedBytes(chain[0]!);
    assert.ok(archivedBytes(chain[1]!) < full / 10, `20 notes appended to 2000 send ${archivedBytes(chain[1]!)} bytes, the full ${full}`);
    assert.ok(journalOf(chain[4]!).pageCount < journalOf(chain[3]!).pageCount, 'the VACUUM shrank the file');

    for (let i = 0; i < chain.length; i++) {
      const target = join(dir, `restored-${i}.db`);
      await restore(chain, i, target);
      assert.deepEqual(dumpRows(target), chain[i]!.rows, `point ${i} restores the rows it had`);
      if (i > 0) {
        const journal = journalOf(chain[i]!);
        const file = await readFile(target);
        assert.equal(file.length, journal.bytes);
        assert.equal(sha256(file), journal.sha256, `point ${i} is the snapshot copy, byte for byte`);
      }
    }
  });

  it('says unchanged when nothing was written, and sends only its pages.json', async (t) => {
    const dir = await tempDir(t, 'sqlite-inc');
    const path = join(dir, 'app.db');
    createApp(path, 100).close();
    const first = await take(path);
    const second = await take(path, first);
    assert.deepEqual(second.changes, { mode: 'changes', unchanged: true });
    assert.deepEqual(second.entries.map((entry) => entry.path), ['pages.json']);
    assert.deepEqual(journalOf(second).runs, []);
    assert.deepEqual(second.state, first.state);
    const target = join(dir, 'restored.db');
    await restore([first, second], 1, target);
    assert.deepEqual(dumpRows(target), first.rows);
  });

  it('names each run of changed pages by its first page, holding those pages exactly', async (t) => {
    const dir = await tempDir(t, 'sqlite-inc');
    const path = join(dir, 'app.db');
    const db = createApp(path, 1000);
    t.after(() => db.close());
    const first = await take(path);
    db.exec("UPDATE notes SET body = 'changed' WHERE id IN (1, 500, 1000)");
    db.pragma('wal_checkpoint(TRUNCATE)');
    const second = await take(path, first);
    const { pageSize, runs } = journalOf(second);
    assert.deepEqual(
      second.entries.map((entry) => entry.path).slice(1),
      runs.map(([page]) => `pages/${String(page).padStart(10, '0')}.bin`),
    );
    assert.ok(runs.length >= 2, `the three rows are far apart: ${JSON.stringify(runs)}`);
    const file = await readFile(path);
    for (const [index, [page, count]] of runs.entries()) {
      assert.deepEqual(second.entries[index + 1]!.bytes, file.subarray((page - 1) * pageSize, (page - 1 + count) * pageSize), `run ${page}`);
    }
  });

  it('starts over in full, with INCREMENTAL_BASE_REJECTED, on another page size or a state it cannot read', async (t) => {
    const dir = await tempDir(t, 'sqlite-inc');
    const path = join(dir, 'app.db');
    const db = createApp(path, 200);
    t.after(() => db.close());
    const first = await take(path);
    const damaged = (state: Buffer): Taken => ({ ...first, state });
    const cases: Array<[string, Taken, RegExp]> = [
      ['garbage', damaged(Buffer.from('not a state')), /not in a format/],
      ['cut short', damaged(first.state.subarray(0, first.state.length - 7)), /end before page/],
      ['too long', damaged(Buffer.concat([first.state, Buffer.alloc(16)])), /run past page/],
    ];
    for (const [label, previous, message] of cases) {
      const taken = await take(path, previous);
      assert.deepEqual(taken.changes, { mode: 'full', unchanged: false }, label);
      assert.deepEqual(taken.entries.map((entry) => entry.path), ['database.sqlite'], label);
      assert.deepEqual(taken.warnings.map((w) => w.code), ['INCREMENTAL_BASE_REJECTED'], label);
      assert.match(taken.warnings[0]!.message, message, label);
      assert.match(taken.warnings[0]!.message, new RegExp(first.archive), label);
    }

    db.pragma('journal_mode = DELETE'); // the page size of a WAL database cannot change
    db.pragma('page_size = 8192');
    db.exec('VACUUM');
    const resized = await take(path, first);
    assert.deepEqual(resized.changes, { mode: 'full', unchanged: false });
    assert.match(resized.warnings[0]?.message ?? '', /page size was 4096 bytes and is now 8192/);
    const next = await take(path, resized);
    assert.deepEqual(next.changes, { mode: 'changes', unchanged: true }, 'the new full is built on again');
  });

  it('a state that fails to read is a reason for a full, an abort is not', async (t) => {
    const dir = await tempDir(t, 'sqlite-inc');
    const path = join(dir, 'app.db');
    createApp(path, 10).close();
    const failing = (error: Error) =>
      sqlite({ name: 'app', path }).open({
        signal: new AbortController().signal,
        warn: (warning) => warnings.push(warning),
        archive: 'b',
        previous: {
          archive: 'a',
          // eslint-disable-next-line require-yield -- fails before its first chunk
          async *read() {
            throw error;
          },
        },
      });
    const warnings: Array<Omit<BackupWarning, 'source'>> = [];
    const snapshot = await failing(new Error('the disk went away'));
    t.after(() => snapshot.close());
    assert.deepEqual(await snapshot.changes!(), { mode: 'full', unchanged: false });
    assert.match(warnings[0]?.message ?? '', /cannot be read \(the disk went away\)/);
    const aborted = await failing(Object.assign(new Error('stop'), { code: 'ABORTED' }));
    t.after(() => aborted.close());
    await assert.rejects(aborted.changes!(), /stop/);
  });

  it('refuses a chain missing its older pages, or with a piece from another database, writing nothing', async (t) => {
    const dir = await tempDir(t, 'sqlite-inc');
    const path = join(dir, 'app.db');
    const db = createApp(path, 500);
    t.after(() => db.close());
    const chain = [await take(path)];
    addNotes(db, 10);
    chain.push(await take(path, chain[0]));
    addNotes(db, 10);
    chain.push(await take(path, chain[1]));

    const other = join(dir, 'other.db');
    createApp(other, 500).close();
    const stranger = await take(other);

    const target = join(dir, 'restored.db');
    // Only the newest: the pages the incremental does not hold stay unwritten.
    await rejectsWithCode(restore([chain[2]!], 0, target), 'CORRUPT_ARCHIVE', /pages unwritten/);
    // Another database's full under the incrementals: every page is written, but the file is not the one backed up.
    await rejectsWithCode(restore([stranger, chain[1]!, chain[2]!], 2, target), 'CORRUPT_ARCHIVE', /SHA-256/);
    assert.deepEqual((await readdir(dir)).filter((name) => name.includes('restored')), [], 'no target, no staging file');
    const sink = await restore(chain, 2, target);
    assert.deepEqual(dumpRows(target), chain[2]!.rows);
    // verifyBackup's check of a restored chain: it lists every layer's entries, newest first (the full's
    // database.sqlite last); the file is compared with the newest pages.json's SHA-256.
    const archived = async function* (): AsyncGenerator<ArchivedEntry> {
      for (const taken of chain.toReversed()) {
        for (const entry of taken.entries) yield { path: entry.path, type: entry.type, size: entry.size, sha256: sha256(entry.bytes) };
      }
    };
    assert.deepEqual((await sink.verify!(archived())).flatMap((check) => check.problems), []);
    const file = await readFile(target);
    file.writeUInt8(file.at(-1)! ^ 1, file.length - 1);
    await writeFile(target, file);
    assert.match((await sink.verify!(archived()))[0]!.problems.join(), /differs from the database the backup holds/);
    assert.equal((await stat(target)).mode & 0o777, (await stat(path)).mode & 0o777, 'the database keeps its permission bits');
  });
});

/** The README's by-hand recipe for a SQLite chain, as written there. */
async function readmeRecipe(): Promise<string> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### A SQLite source in a chain of incrementals'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block, 'the README has the recipe');
  return block;
}

/**
 * Runs the README's recipe with the system tools in a new folder, over the full `chain[0]` and the
 * incrementals after it: only the two lines naming the archives are replaced. Returns the file it made.
 */
async function restoreByHand(recipe: string, backups: string, chain: readonly BackupResult[], workdir: string): Promise<string> {
  const [full, ...incrementals] = chain.map((result) => join(backups, result.name));
  const script = recipe
    .replace(/^full=.*$/m, `full='${full}'`)
    .replace(/^incrementals=.*$/m, `incrementals='${incrementals.join(' ')}'`);
  assert.notEqual(script, recipe);
  await mkdir(workdir);
  const { stdout } = await run('sh', ['-euc', script], { cwd: workdir });
  assert.deepEqual(stdout.trim().split('\n'), ['app.db: OK', 'ok'], 'sha256sum and integrity_check pass');
  return join(workdir, 'app.db');
}

describe('sqlite incrementals, through the backup engine', () => {
  it('a chain of ten: inserts, updates, deletes, a VACUUM; each point restored as of its time, and by hand with the README\'s recipe, is the database as it was', async (t) => {
    const dir = await tempDir(t, 'sqlite-chain');
    const path = join(dir, 'app.db');
    const app = createApp(path, 3000);
    t.after(() => app.close());
    const backups = join(dir, 'backups');
    const to = directory({ path: backups });
    const database = new Database({ sources: [sqlite({ name: 'app', path })] });
    const points: Array<{ result: BackupResult; rows: Record<string, unknown[]> }> = [];
    const backup = async () => {
      // Each backup in a second of its own: names, and so `asOf`, keep the second.
      if (points.length > 0) await sleep(1000 - (Date.now() % 1000));
      const result = await database.startBackup({ to, type: 'incremental' }).done;
      points.push({ result, rows: dumpRows(path) });
      return result;
    };
    const changes: Array<() => void> = [
      () => addNotes(app, 30), // an app appending: 1 % new rows
      () => app.exec("UPDATE notes SET body = 'edited' WHERE id % 300 = 0"),
      () => app.exec('DELETE FROM notes WHERE id BETWEEN 1000 AND 1500'),
      () => app.exec('VACUUM'),
      () => app.exec('CREATE TABLE tags (note INTEGER, tag TEXT); INSERT INTO tags SELECT id, \'t\' || (id % 7) FROM notes WHERE id % 5 = 0'),
      () => addNotes(app, 1),
      () => app.exec('DROP TABLE tags'),
      () => app.exec("UPDATE notes SET body = body || ' again' WHERE id > 2900"),
      () => addNotes(app, 500),
    ];
    const first = await backup();
    assert.deepEqual([first.type, first.warnings.map((w) => w.code)], ['full', ['INCREMENTAL_BASE_MISSING']]);
    for (const change of changes) {
      change();
      const result = await backup();
      assert.deepEqual([result.type, result.unchanged, result.warnings], ['incremental', undefined, []]);
    }
    const appended = points[1]!.result;
    assert.ok(appended.size < first.size * 0.05, `30 rows appended to 3000: the incremental is ${appended.size} bytes, the full ${first.size}`);

    const recipe = await readmeRecipe();
    for (const [i, { result, rows }] of points.entries()) {
      const restored = join(dir, `restored-${i}.db`);
      const asOf = new Date(Math.floor(result.createdAt.getTime() / 1000) * 1000 + 999);
      const done = await Database.restore({ from: to, asOf, targets: { app: { path: restored } } }).done;
      assert.deepEqual(done.chain, points.slice(0, i + 1).map((point) => point.result.name).reverse(), `point ${i} reads its chain`);
      assert.deepEqual(dumpRows(restored), rows, `point ${i} restored as of its time holds the rows it had`);
      if (i === 0) continue;
      const byHand = await restoreByHand(recipe, backups, points.slice(0, i + 1).map((point) => point.result), join(dir, `by-hand-${i}`));
      assert.ok((await readFile(byHand)).equals(await readFile(restored)), `point ${i}: the recipe and backupkit restore the same bytes`);
    }
    const verified = await verifyBackup({ from: to, level: 'restore', scratch: { dir } }).done;
    assert.deepEqual([verified.chain?.length, verified.problems], [points.length, []], 'verifyBackup restores the whole chain and finds it sound');
  });

  it('backups taken while another process commits transfers all restore consistent', async (t) => {
    const dir = await tempDir(t, 'sqlite-chain-load');
    const path = join(dir, 'app.db');
    createBank(path, 100, 1000);
    const writerScript = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'transfer-writer.js');
    // Stopped whatever the backups do, before the folder is removed: left running, it would keep
    // this file's process alive forever. It also ends with this process (its stdin).
    const writer = spawn(process.execPath, [writerScript, path, '100'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const backups = join(dir, 'backups');
    const chain: BackupResult[] = [];
    try {
      await once(writer.stdout, 'data');
      const database = new Database({ sources: [sqlite({ name: 'app', path })] });
      for (let i = 0; i < 5; i++) chain.push(await database.startBackup({ to: directory({ path: backups }), type: 'incremental' }).done);
      assert.deepEqual(chain.map((result) => result.type), ['full', 'incremental', 'incremental', 'incremental', 'incremental']);
      assert.equal(writer.exitCode, null, 'the writer kept running throughout');
    } finally {
      await stopped(writer);
    }

    const recipe = await readmeRecipe();
    const transfers: number[] = [];
    for (let i = 1; i < chain.length; i++) {
      const byHand = await restoreByHand(recipe, backups, chain.slice(0, i + 1), join(dir, `by-hand-${i}`));
      const restored = join(dir, `restored-${i}.db`);
      await Database.restore({ from: directory({ path: backups }), backup: chain[i]!.name, targets: { app: { path: restored } } }).done;
      assert.ok((await readFile(byHand)).equals(await readFile(restored)), `point ${i}: the recipe and backupkit restore the same bytes`);
      const summary = bankSummary(restored);
      assert.deepEqual([summary.integrity, summary.total, summary.accounts], ['ok', 100 * 1000, 100], 'money is neither created nor destroyed');
      transfers.push(summary.transfers);
    }
    assert.ok(transfers.at(-1)! > transfers[0]!, `the writer committed during the backups: ${transfers.join(', ')}`);
  });
});
