/**
 * The main example (`npm run example`): a small SQLite database and a folder of uploads, backed up
 * into one archive in a local folder while a writer keeps committing, then restored into fresh
 * folders and checked. Needs no server.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { Database, directory, files, listBackups, sqlite } from 'backupkit';

const work = await mkdtemp(join(tmpdir(), 'backupkit-example-'));
try {
  // The application's data: a database and the files it references.
  const dbPath = join(work, 'app.db');
  const uploads = join(work, 'uploads');
  await mkdir(join(uploads, 'avatars'), { recursive: true });
  const app = new Sqlite(dbPath);
  app.pragma('journal_mode = WAL');
  app.exec('CREATE TABLE uploads (id INTEGER PRIMARY KEY, file TEXT NOT NULL, sha256 TEXT NOT NULL)');
  for (let i = 0; i < 200; i++) {
    const file = `avatars/user-${i}.png`;
    const body = createHash('sha512').update(String(i)).digest();
    await writeFile(join(uploads, file), body);
    app.prepare('INSERT INTO uploads (file, sha256) VALUES (?, ?)').run(file, createHash('sha256').update(body).digest('hex'));
  }

  // The application keeps writing while the backup runs.
  const writer = setInterval(() => app.prepare('INSERT INTO uploads (file, sha256) VALUES (?, ?)').run('pending', '-'), 5);

  const db = new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: uploads })] });
  const backups = directory({ path: join(work, 'backups') });
  const op = db.startBackup({ to: backups });
  op.on('source-start', ({ name, kind }) => console.log(`backing up ${kind} source "${name}"`));
  let shown = '';
  op.on('progress', (p) => {
    const line = `  ${p.phase.padEnd(8)} ${p.source ?? ''} ${String(Math.floor(p.percent / 10) * 10).padStart(3)}%`;
    if (line === shown) return; // one line per phase, source and 10 %
    shown = line;
    console.log(`${line}  ${p.bytesDone}/${p.bytesTotal} bytes, ${p.itemsDone}/${p.itemsTotal} items`);
  });
  op.on('warning', (w) => console.warn(`  warning: ${w.message}`));
  const result = await op.done;
  clearInterval(writer);
  app.close();
  console.log(`wrote ${result.name}: ${result.size} bytes, sha256 ${result.sha256}`);
  for (const s of result.sources) console.log(`  ${s.name} (${s.kind}): ${s.bytes} bytes, ${s.items} items`);

  const [newest] = await listBackups(backups);
  console.log(`newest backup on ${backups.description}: ${newest?.name}`);

  // Restore into places that do not exist yet, then check what came back.
  const restoredDb = join(work, 'restored', 'app.db');
  const restoredUploads = join(work, 'restored', 'uploads');
  const restore = Database.restore({ from: backups, targets: { app: { path: restoredDb }, uploads: { dir: restoredUploads } } });
  let restoreShown = '';
  restore.on('progress', (p) => {
    const line = `  restore ${p.phase.padEnd(6)} ${p.source ?? ''}`;
    if (line !== restoreShown) console.log((restoreShown = line));
  });
  const restored = await restore;
  console.log(`restored ${restored.name}, ${restored.verifiedEntries} entries verified against the manifest`);

  const copy = new Sqlite(restoredDb, { readonly: true });
  const integrity = copy.pragma('integrity_check', { simple: true });
  const rows = copy.prepare("SELECT file, sha256 FROM uploads WHERE file <> 'pending'").all() as Array<{ file: string; sha256: string }>;
  copy.close();
  let matching = 0;
  for (const row of rows) {
    const body = await readFile(join(restoredUploads, row.file));
    if (createHash('sha256').update(body).digest('hex') === row.sha256) matching++;
  }
  console.log(`integrity_check: ${String(integrity)}; ${matching}/${rows.length} referenced files present and intact`);
  console.log(`restored uploads folder holds ${(await readdir(join(restoredUploads, 'avatars'))).length} files`);
  if (integrity !== 'ok' || matching !== rows.length) process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
