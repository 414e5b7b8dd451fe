import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Sqlite from 'better-sqlite3';
import { Database, memory, sqlite } from '../src/index.js';
import { sqliteKind } from '../src/sources/sqlite/kind.js';
import { ownerTag } from '../src/util/leftovers.js';
import { testSource } from './conformance/source.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { bankSummary, createBank, dumpRows } from './helpers/sqlite.js';
import { stopped, stoppedItself } from './helpers/process.js';

testSource('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'backupkit-sqlite-'));
  const path = join(dir, 'bank.db');
  createBank(path, 50);
  let targets = 0;
  let changes = 0;
  return {
    source: sqlite({ name: 'bank', path }),
    kind: sqliteKind,
    async freshTarget() {
      targets += 1;
      await mkdir(join(dir, `t${targets}`));
      return { path: join(dir, `t${targets}`, 'restored.db') };
    },
    async createEmpty(target) {
      await writeFile(target.path, '');
    },
    async fill(target) {
      createBank(target.path, 1);
    },
    async describe(target) {
      return dumpRows(target?.path ?? path);
    },
    surroundings: async (target) => readdir(dirname(target.path)),
    async change() {
      changes += 1;
      const db = new Sqlite(path);
      try {
        // One table, then the other: the pages each change writes, the next leaves as they are.
        if (changes % 2 === 1) db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = 1').run(changes);
        else db.prepare("INSERT INTO transfers (src, dst, amount, at) VALUES (1, 2, ?, 'now')").run(changes);
      } finally {
        db.close();
      }
    },
    exactEstimate: true,
    async bulky() {
      // Some 12 MiB that do not compress, hashed on a worker while the archive reads them.
      const bulky = join(dir, 'bulky.db');
      const db = new Sqlite(bulky);
      db.exec('CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO blobs (data) SELECT randomblob(4096) FROM n');
      db.close();
      return sqlite({ name: 'bank', path: bulky });
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('sqlite source', () => {
  it('ten backups taken while another process commits transfers all restore consistent', async (t) => {
    const dir = await tempDir(t, 'sqlite-load');
    const path = join(dir, 'bank.db');
    createBank(path, 100, 1000);
    const writerScript = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'transfer-writer.js');
    // Stopped whatever the backups do, before the folder is removed: left running, it would keep
    // this file's process alive forever. It also ends with this process (its stdin).
    const writer = spawn(process.execPath, [writerScript, path, '100'], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await once(writer.stdout, 'data');

      const db = new Database({ sources: [sqlite({ name: 'bank', path })] });
      const destination = memory();
      const seenTransfers: number[] = [];
      for (let i = 0; i < 10; i++) {
        const result = await db.startBackup({ to: destination }).done;
        const restored = join(dir, `restored-${i}.db`);
        await Database.restore({ from: destination, backup: result.name, targets: { bank: { path: restored } } });
        const summary = bankSummary(restored);
        assert.equal(summary.integrity, 'ok');
        assert.equal(summary.total, 100 * 1000, 'money is neither created nor destroyed');
        assert.equal(summary.accounts, 100);
        seenTransfers.push(summary.transfers);
      }
      assert.equal(writer.exitCode, null, 'the writer kept running throughout');
      assert.ok((seenTransfers.at(-1) ?? 0) > (seenTransfers[0] ?? 0), `the writer committed during the backups: ${seenTransfers.join(', ')}`);
    } finally {
      await stopped(writer);
    }
  });

  it('refuses a target beside a leftover -wal file, which would corrupt the restored file', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'bank.db');
    createBank(path);
    const destination = memory();
    await new Database({ sources: [sqlite({ name: 'bank', path })] }).startBackup({ to: destination }).done;
    const target = join(dir, 'target.db');
    await writeFile(`${target}-wal`, 'stale');
    await rejectsWithCode(Database.restore({ from: destination, targets: { bank: { path: target } } }), 'TARGET_NOT_EMPTY', /-wal/);
    assert.deepEqual((await readdir(dir)).filter((name) => name.includes('target')), ['target.db-wal']);
    assert.equal(await readFile(`${target}-wal`, 'utf8'), 'stale');
  });

  it('fails with SOURCE_FAILED when the database file is missing', async (t) => {
    const dir = await tempDir(t);
    const op = new Database({ sources: [sqlite({ name: 'bank', path: join(dir, 'missing.db') })] }).startBackup({ to: memory() });
    await rejectsWithCode(op.done, 'SOURCE_FAILED', /missing\.db/);
  });

  it('refuses a file that is not a SQLite database with a clear error', async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, 'not.db'), 'this is not a database, just text that is long enough to have a header '.repeat(20));
    const op = new Database({ sources: [sqlite({ name: 'x', path: join(dir, 'not.db') })] }).startBackup({ to: memory() });
    await rejectsWithCode(op.done, 'SOURCE_FAILED');
  });

  it('copies a rollback-journal database too', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'plain.db');
    const db = new Sqlite(path);
    db.exec("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('rollback mode')");
    db.close();
    const destination = memory();
    await new Database({ sources: [sqlite({ name: 'plain', path })] }).startBackup({ to: destination }).done;
    await Database.restore({ from: destination, targets: { plain: { path: join(dir, 'out.db') } } });
    assert.deepEqual(dumpRows(join(dir, 'out.db')), dumpRows(path));
  });
});

describe('snapshot copies left by a killed backup', () => {
  const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'sqlite-backup-child.js');

  /** Runs a backup in a child process whose temporary folder is `tmp`. */
  function backupChild(db: string, backups: string, tmp: string, stop = '') {
    return spawn(process.execPath, [CHILD, db, backups, stop], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TMPDIR: tmp } });
  }

  it('are removed by the next backup, and a live process\'s are not', { timeout: 120_000 }, async (t) => {
    const dir = await tempDir(t, 'sqlite-leftovers');
    const db = join(dir, 'app.db');
    createBank(db, 2000);
    const backups = join(dir, 'backups');
    const tmp = join(dir, 'tmp');
    await mkdir(tmp);
    const live = `backupkit-sqlite-${ownerTag()}`; // this test process's, which runs
    await mkdir(join(tmp, live));

    const killed = backupChild(db, backups, tmp, 'stop');
    await stoppedItself(killed);
    killed.kill('SIGKILL');
    await once(killed, 'exit');
    const left = await readdir(tmp);
    const leftBy = (prefix: string) => left.some((name) => name.startsWith(prefix) && name.includes(`_${killed.pid}_`));
    assert.ok(leftBy('backupkit-sqlite-'), `the killed backup left its snapshot copy: ${left.join(', ')}`);
    assert.ok(leftBy('backupkit-manifest-'), `and its manifest spool: ${left.join(', ')}`);

    const next = backupChild(db, backups, tmp);
    const [code] = (await once(next, 'exit')) as [number];
    assert.equal(code, 0);
    assert.deepEqual(await readdir(tmp), [live], 'the killed backup\'s temporaries are gone, the live one stays');
  });
});
