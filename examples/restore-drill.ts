/**
 * A restore drill in an application's own test suite (`node build/examples/restore-drill.js`, or
 * the same test in Vitest, Jest or Mocha): back up, restore the newest backup into throwaway
 * targets, and assert on the restored data as the application would read it. Everything the drill
 * restores is removed afterwards, also when an assertion fails.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Sqlite from 'better-sqlite3';
import { Database, directory, files, sqlite } from 'backupkit';
import { withRestoredBackup } from 'backupkit/testing';

const work = await mkdtemp(join(tmpdir(), 'backupkit-drill-example-'));
const backups = directory({ path: join(work, 'backups') });

before(async () => {
  // In a real suite the backup is the one production made (an S3 bucket, a mounted folder);
  // here a small application makes one.
  const dbPath = join(work, 'app.db');
  const uploads = join(work, 'uploads');
  await mkdir(uploads);
  const app = new Sqlite(dbPath);
  app.exec('CREATE TABLE invoices (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, pdf TEXT NOT NULL)');
  for (let id = 1; id <= 20; id++) {
    await writeFile(join(uploads, `invoice-${id}.pdf`), `%PDF invoice ${id}`);
    app.prepare('INSERT INTO invoices (id, customer, pdf) VALUES (?, ?, ?)').run(id, `customer ${id}`, `invoice-${id}.pdf`);
  }
  app.close();
  const db = new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: uploads })] });
  await db.startBackup({ to: backups }).done;
});

after(() => rm(work, { recursive: true, force: true }));

test('the newest backup restores, and every invoice row has its PDF', async () => {
  await withRestoredBackup({ from: backups }, async (restored) => {
    const db = new Sqlite(restored.sqlitePath('app'), { readonly: true });
    try {
      const invoices = db.prepare('SELECT id, pdf FROM invoices ORDER BY id').all() as Array<{ id: number; pdf: string }>;
      assert.equal(invoices.length, 20);
      for (const { id, pdf } of invoices) {
        assert.equal(await readFile(join(restored.filesDir('uploads'), pdf), 'utf8'), `%PDF invoice ${id}`);
      }
    } finally {
      db.close();
    }
  });
});
