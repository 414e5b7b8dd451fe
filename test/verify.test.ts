import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Sqlite from 'better-sqlite3';
import {
  Database,
  VerificationError,
  directory,
  files,
  sqlite,
  verifyBackup,
  type ProgressEvent,
  type Restorer,
} from '../src/index.js';
import { filesRestorer } from '../src/sources/files/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { damagingAfterCommit } from './helpers/tamper.js';
import { createBank } from './helpers/sqlite.js';

const MARKERS = ['first-marker-', 'second-marker-'].map((prefix) => `${prefix}${randomBytes(8).toString('hex')}`);

async function backedUp(t: Parameters<typeof tempDir>[0], compression: 'gzip' | 'none' = 'gzip') {
  const dir = await tempDir(t, 'verify');
  const dbPath = join(dir, 'app.db');
  const uploads = join(dir, 'uploads');
  createBank(dbPath, 50);
  await mkdir(join(uploads, 'nested'), { recursive: true });
  await writeFile(join(uploads, 'one.txt'), MARKERS[0]!.repeat(100));
  await writeFile(join(uploads, 'nested', 'two.txt'), MARKERS[1]!.repeat(100));
  await writeFile(join(uploads, 'blob.bin'), randomBytes(300_000));
  const backups = join(dir, 'backups');
  const scratchParent = join(dir, 'scratch');
  await mkdir(scratchParent);
  const db = new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: uploads })] });
  const { name } = await db.startBackup({ to: directory({ path: backups }), compression: { algorithm: compression } }).done;
  return { dir, backups, scratchParent, name, archive: join(backups, name) };
}

describe('verifyBackup', () => {
  it('checksums: reads every entry and reports figures per source', async (t) => {
    const { backups, name } = await backedUp(t);
    const phases = new Set<string>();
    const op = verifyBackup({ from: directory({ path: backups }) });
    op.on('progress', (p: ProgressEvent) => {
      assert.equal(p.operation, 'verify');
      phases.add(p.phase);
    });
    const result = await op;
    assert.equal(result.name, name);
    assert.equal(result.level, 'checksums');
    assert.deepEqual(result.problems, []);
    // header, 2 sqlite entries (root + file), 6 files entries (root, nested/, 3 files... ) and the manifest is not counted
    const byName = Object.fromEntries(result.sources.map((s) => [s.name, s]));
    assert.equal(byName['app']?.kind, 'sqlite');
    assert.ok(byName['app']!.bytes > 0);
    assert.equal(byName['uploads']?.items, 5, 'root, nested/, one.txt, two.txt, blob.bin');
    assert.equal(byName['uploads']?.bytes, 300_000 + MARKERS[0]!.length * 100 + MARKERS[1]!.length * 100);
    assert.equal(result.verifiedEntries, 1 + byName['app']!.items + 5);
    assert.deepEqual(byName['uploads']?.checks, []);
    assert.ok(phases.has('verify'));
  });

  it('restore: restores into throwaway targets, reads them back, and removes them', async (t) => {
    const { backups, scratchParent } = await backedUp(t);
    const result = await verifyBackup({ from: directory({ path: backups }), level: 'restore', scratch: { dir: scratchParent } });
    assert.deepEqual(result.problems, []);
    const app = result.sources.find((s) => s.name === 'app')!;
    const integrity = app.checks.find((c) => c.name === 'PRAGMA integrity_check')!;
    assert.deepEqual(integrity.figures, { tables: 2, rows: 50, foreignKeyViolations: 0 });
    const uploads = result.sources.find((s) => s.name === 'uploads')!;
    assert.deepEqual(uploads.checks[0]?.figures, { files: 3, folders: 2, links: 0, bytes: 300_000 + MARKERS[0]!.length * 100 + MARKERS[1]!.length * 100 });
    assert.deepEqual(await readdir(scratchParent), [], 'every throwaway target is gone');
  });

  it('names every damaged entry of an archive with flipped bits, and leaves nothing behind', async (t) => {
    const { archive, backups, scratchParent } = await backedUp(t, 'none');
    const bytes = await readFile(archive);
    for (const marker of MARKERS) {
      const at = bytes.indexOf(marker);
      assert.ok(at > 0, 'an uncompressed archive holds the file as is');
      bytes[at + 3]! ^= 0x01;
    }
    await writeFile(archive, bytes);
    for (const level of ['checksums', 'restore'] as const) {
      const error = await rejectsWithCode(verifyBackup({ from: directory({ path: backups }), level, scratch: { dir: scratchParent } }), 'CORRUPT_ARCHIVE', /2 of \d+ entries are damaged/);
      assert.match(error.message, /sources\/uploads\/one\.txt/);
      assert.match(error.message, /sources\/uploads\/nested\/two\.txt/);
      assert.deepEqual(await readdir(scratchParent), [], `${level}: nothing left behind`);
    }
  });

  it('a truncated archive is CORRUPT_ARCHIVE at both levels, with nothing left behind', async (t) => {
    const { archive, backups, scratchParent } = await backedUp(t);
    const { size } = await import('node:fs/promises').then((fs) => fs.stat(archive));
    await truncate(archive, Math.floor(size * 0.6));
    for (const level of ['checksums', 'restore'] as const) {
      await rejectsWithCode(verifyBackup({ from: directory({ path: backups }), level, scratch: { dir: scratchParent } }), 'CORRUPT_ARCHIVE');
      assert.deepEqual(await readdir(scratchParent), []);
    }
  });

  it('restored data that does not read back the same is VERIFY_FAILED, with every problem listed', async (t) => {
    const { backups, scratchParent } = await backedUp(t);
    const tampering = damagingAfterCommit(filesRestorer, async ({ dir }) => {
      await writeFile(join(dir, 'one.txt'), 'changed after the restore');
      await writeFile(join(dir, 'stray.txt'), 'not in the backup');
      // Whole seconds apart from the archived times whatever the clock, so the mtime findings are certain.
      const longAgo = new Date('2001-01-01T00:00:00Z');
      await utimes(join(dir, 'one.txt'), longAgo, longAgo);
      await utimes(dir, longAgo, longAgo);
    });
    const error = await rejectsWithCode(
      verifyBackup({ from: directory({ path: backups }), level: 'restore', scratch: { dir: scratchParent }, restorers: [tampering] }),
      'VERIFY_FAILED',
    );
    assert.ok(error instanceof VerificationError);
    assert.deepEqual(error.result.problems, [
      'uploads: files, folders and links read back: "." has another modification time than archived',
      'uploads: files, folders and links read back: "one.txt" differs from the backup (size or SHA-256)',
      'uploads: files, folders and links read back: "one.txt" has another modification time than archived',
      'uploads: files, folders and links read back: 1 entries that the backup does not hold',
    ]);
    assert.deepEqual(await readdir(scratchParent), []);
  });

  it('a SQLite database that fails integrity_check after the restore is reported', async (t) => {
    const { backups, scratchParent } = await backedUp(t);
    const { sqliteRestorer } = await import('../src/sources/sqlite/index.js');
    const breaking = damagingAfterCommit(sqliteRestorer as Restorer<{ path: string }>, async ({ path }) => {
      // Garbage over the second page (the accounts table's b-tree), as a bad disk would leave it.
      const db = new Sqlite(path);
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.close();
      const bytes = await readFile(path);
      bytes.fill(0x5a, pageSize, pageSize + 64);
      await writeFile(path, bytes);
    });
    const error = await rejectsWithCode(
      verifyBackup({ from: directory({ path: backups }), level: 'restore', scratch: { dir: scratchParent }, restorers: [breaking] }),
      'VERIFY_FAILED',
    );
    assert.ok(error instanceof VerificationError);
    assert.ok(error.result.problems.some((p) => p.startsWith('app: database file read back:')), error.message);
    assert.ok(error.result.problems.some((p) => p.startsWith('app: PRAGMA integrity_check:')), error.message);
    assert.deepEqual(await readdir(scratchParent), []);
  });

  it('an unknown backup name is NOT_FOUND and a bad level INVALID_OPTIONS', async (t) => {
    const { backups } = await backedUp(t);
    await rejectsWithCode(verifyBackup({ from: directory({ path: backups }), backup: '20000101-000000.tar.gz' }), 'NOT_FOUND');
    await rejectsWithCode(verifyBackup({ from: directory({ path: backups }), level: 'deep' as never }), 'INVALID_OPTIONS');
  });
});
