/**
 * Incremental backups: a full, then incrementals that hold only what changed, one that writes
 * nothing because nothing did, and restores of the chain as of two points in time. Needs no server.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { Database, directory, files, listBackups, sqlite } from 'backupkit';

const work = await mkdtemp(join(tmpdir(), 'backupkit-incremental-'));
try {
  const dbPath = join(work, 'app.db');
  const uploads = join(work, 'uploads');
  await mkdir(uploads);
  const app = new Sqlite(dbPath);
  app.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)');
  const insert = app.prepare('INSERT INTO notes (text) VALUES (?)');
  for (let i = 0; i < 5000; i++) insert.run(`note ${i} `.repeat(20));
  for (let i = 0; i < 100; i++) await writeFile(join(uploads, `photo-${i}.jpg`), `photo ${i} `.repeat(1000));

  const db = new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: uploads })] });
  const backups = directory({ path: join(work, 'backups') });

  // The first incremental of a chain is a full: there is nothing to build on yet.
  const full = await db.startBackup({ to: backups, type: 'incremental' }).done;
  console.log(`${full.type} ${full.name}: ${full.size} bytes`);

  // A little changes: one row, one new photo. The incremental holds the changed pages and file.
  await new Promise((resolve) => setTimeout(resolve, 1000)); // the next backup gets a name of its own second
  insert.run('the newest note');
  await writeFile(join(uploads, 'photo-new.jpg'), 'a new photo');
  const incremental = await db.startBackup({ to: backups, type: 'incremental' }).done;
  console.log(`${incremental.type} ${incremental.name} on ${incremental.previous}: ${incremental.size} bytes`);

  // Nothing changes: nothing is written, and the result names the backup that still stands.
  const again = await db.startBackup({ to: backups, type: 'incremental' }).done;
  console.log(`unchanged: ${again.unchanged === true}, still ${again.name}`);

  for (const backup of await listBackups(backups)) console.log(`  listed ${backup.name} ${backup.type}${backup.previous ? ` on ${backup.previous}` : ''}`);

  // Restore as of each backup's time: the chain's full and every incremental up to it, verified.
  for (const [label, made] of [['full', full], ['incremental', incremental]] as const) {
    const target = join(work, `restored-${label}`);
    const restored = await Database.restore({
      from: backups,
      asOf: made.createdAt,
      targets: { app: { path: join(target, 'app.db') }, uploads: { dir: join(target, 'uploads') } },
    }).done;
    const copy = new Sqlite(join(target, 'app.db'), { readonly: true });
    const { count } = copy.prepare('SELECT count(*) AS count FROM notes').get() as { count: number };
    copy.close();
    const newPhoto = await readFile(join(target, 'uploads', 'photo-new.jpg'), 'utf8').catch(() => 'absent');
    console.log(`as of ${label}: read ${restored.chain.length} archive(s), ${count} notes, new photo ${newPhoto === 'absent' ? 'absent' : 'present'}`);
  }
  app.close();
} finally {
  await rm(work, { recursive: true, force: true });
}
