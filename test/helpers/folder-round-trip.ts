import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Database, files, listBackups, sqlite, type Destination } from '../../src/index.js';
import { tempDir } from './fs.js';
import { put } from './put.js';
import { createBank, dumpRows } from './sqlite.js';

/**
 * For a destination that writes into a folder the test reads directly (SFTP, FTP): a backup of a
 * SQLite database and a folder lands as archive, sidecar and state, the archive owner-only; it lists
 * and restores; an upload in progress is one hidden temporary named after its owner, and nothing
 * hidden is left once it is committed.
 */
export async function checkFolderRoundTrip(t: TestContext, destination: Destination, folder: string): Promise<void> {
  const dir = await tempDir(t, destination.kind);
  createBank(join(dir, 'app.db'), 500);
  await mkdir(join(dir, 'uploads'));
  await writeFile(join(dir, 'uploads', 'big.bin'), randomBytes(4 * 1024 * 1024));
  const db = new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') }), files({ name: 'uploads', dir: join(dir, 'uploads') })] });
  const result = await db.startBackup({ to: destination }).done;
  assert.deepEqual((await readdir(folder)).sort(), [result.name, `${result.name}.json`, `${result.name}.state`]);
  assert.equal((await stat(join(folder, result.name))).mode & 0o777, 0o600);
  const [listed] = await listBackups(destination);
  assert.equal(listed?.sha256, result.sha256);
  await Database.restore({ from: destination, targets: { app: { path: join(dir, 'restored.db') } } });
  assert.deepEqual(dumpRows(join(dir, 'restored.db')), dumpRows(join(dir, 'app.db')));

  const upload = await put(destination, 'x.tar.gz', randomBytes(100), false);
  const during = (await readdir(folder)).filter((name) => name.startsWith('.'));
  assert.equal(during.length, 1);
  assert.match(during[0] as string, new RegExp(`^\\.x\\.tar\\.gz\\.[A-Za-z0-9-]+_${process.pid}_[0-9a-f]+\\.partial$`), 'named after its owner');
  await upload.commit();
  assert.deepEqual((await readdir(folder)).filter((name) => name.startsWith('.')), [], 'neither the temporary nor a commit lock is left');
}
