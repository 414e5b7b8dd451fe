/**
 * Is the backup restorable? (`node build/examples/verify.js`) Checks the newest backup twice: by
 * its checksums, then by restoring it into throwaway targets and reading them back.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { BackupError, Database, VerificationError, directory, files, sqlite, verifyBackup } from 'backupkit';

const work = await mkdtemp(join(tmpdir(), 'backupkit-verify-example-'));
try {
  const dbPath = join(work, 'app.db');
  const app = new Sqlite(dbPath);
  app.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada'), ('grace')");
  app.close();
  await mkdir(join(work, 'uploads'));
  await writeFile(join(work, 'uploads', 'logo.svg'), '<svg/>');
  const backups = directory({ path: join(work, 'backups') });
  await new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: join(work, 'uploads') })] }).startBackup({ to: backups }).done;

  const quick = await verifyBackup({ from: backups }); // level 'checksums': reads the archive once
  console.log(`${quick.name}: ${quick.verifiedEntries} entries match their SHA-256`);

  const deep = await verifyBackup({ from: backups, level: 'restore' });
  for (const source of deep.sources) {
    for (const check of source.checks) console.log(`${source.name}: ${check.name}: ${JSON.stringify(check.figures)}`);
  }
} catch (error) {
  if (error instanceof VerificationError) console.error(error.result.problems.join('\n'));
  else if (error instanceof BackupError) console.error(`${error.code}: ${error.message}\n${error.hint}`);
  process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
