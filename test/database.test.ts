import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  BackupError,
  Database,
  directory,
  files,
  listBackups,
  memory,
  sqlite,
  verifyBackup,
  type BackupResult,
  type Destination,
  type ProgressEvent,
} from '../src/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { failingAfter } from './helpers/faulty.js';
import { describeTree, exists, listOrUndefined, tempDir } from './helpers/fs.js';
import { createBank, dumpRows } from './helpers/sqlite.js';

interface Fixture {
  dir: string;
  dbPath: string;
  uploads: string;
  db: Database;
}

async function fixture(t: Parameters<typeof tempDir>[0], uploadBytes = 64 * 1024): Promise<Fixture> {
  const dir = await tempDir(t, 'db');
  const dbPath = join(dir, 'app.db');
  const uploads = join(dir, 'uploads');
  createBank(dbPath);
  await mkdir(join(uploads, 'a', 'b'), { recursive: true });
  await writeFile(join(uploads, 'a', 'b', 'blob.bin'), randomBytes(uploadBytes));
  await writeFile(join(uploads, 'readme.txt'), 'hello');
  // Listed files-first on purpose: databases are captured first anyway.
  const db = new Database({ sources: [files({ name: 'uploads', dir: uploads }), sqlite({ name: 'app', path: dbPath })] });
  return { dir, dbPath, uploads, db };
}

describe('Database options', () => {
  it('rejects bad sources at construction with INVALID_OPTIONS', () => {
    const bad: unknown[] = [
      {},
      { sources: [] },
      { sources: [{ name: 'x' }] },
      { sources: [files({ name: '../x', dir: '.' })] },
      { sources: [files({ name: 'a/b', dir: '.' })] },
      { sources: [files({ name: '', dir: '.' })] },
      { sources: [files({ name: 'same', dir: '.' }), sqlite({ name: 'same', path: 'x.db' })] },
    ];
    for (const options of bad) {
      assert.throws(() => new Database(options as never), (e: unknown) => e instanceof BackupError && e.code === 'INVALID_OPTIONS', JSON.stringify(options));
    }
    assert.throws(() => sqlite({ name: 'x', path: '' }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => files({ name: 'x', dir: '' }), { code: 'INVALID_OPTIONS' });
  });

  it('rejects bad backup options with INVALID_OPTIONS', async (t) => {
    const { db } = await fixture(t);
    await rejectsWithCode(db.startBackup({ to: [] }).done, 'INVALID_OPTIONS');
    await rejectsWithCode(db.startBackup({ to: memory(), compression: { level: 0 } }).done, 'INVALID_OPTIONS');
    await rejectsWithCode(db.startBackup({ to: memory(), compression: { algorithm: 'lz4' as never } }).done, 'INVALID_OPTIONS');
  });
});

describe('backup and restore', () => {
  it('round-trips a SQLite database and a folder, with typed events in order', async (t) => {
    const { dir, dbPath, uploads, db } = await fixture(t, 3 * 1024 * 1024);
    const destination = directory({ path: join(dir, 'backups') });
    const op = db.startBackup({ to: destination, compression: { level: 6 } });
    const events: string[] = [];
    const progress: ProgressEvent[] = [];
    for (const name of ['start', 'source-start', 'source-end', 'end', 'error', 'warning'] as const) {
      op.on(name, (arg: unknown) => events.push(name === 'source-start' || name === 'source-end' ? `${name}:${(arg as { name: string }).name}` : name));
    }
    op.on('progress', (p) => progress.push(p));
    const result = await op.done;

    assert.deepEqual(events, ['start', 'source-start:app', 'source-end:app', 'source-start:uploads', 'source-end:uploads', 'end']);
    assert.match(result.name, /^\d{8}-\d{6}\.tar\.gz$/);
    const archive = await readFile(join(dir, 'backups', result.name));
    assert.equal(result.size, archive.length);
    assert.equal(result.sha256, createHash('sha256').update(archive).digest('hex'));
    assert.ok(Math.abs(result.createdAt.getTime() - Date.now()) < 60_000);
    assert.ok(result.durationMs >= 0);
    assert.deepEqual(result.sources.map((s) => [s.name, s.kind, s.items]), [['app', 'sqlite', 1], ['uploads', 'files', 5]]);
    assert.equal(result.sources[1]?.bytes, 3 * 1024 * 1024 + 5);

    assert.ok(progress.length >= 3);
    for (let i = 1; i < progress.length; i++) {
      assert.ok((progress[i]?.bytesDone ?? 0) >= (progress[i - 1]?.bytesDone ?? 0), 'bytesDone never goes back');
    }
    assert.ok(progress.every((p) => p.operation === 'backup' && p.percent >= 0 && p.percent <= 100));
    assert.ok(progress.some((p) => p.phase === 'snapshot') && progress.some((p) => p.phase === 'archive' && p.source === 'uploads'));
    const last = progress.at(-1) as ProgressEvent;
    assert.equal(last.percent, 100);
    assert.equal(last.itemsDone, last.itemsTotal);

    const restoredDb = join(dir, 'restored', 'nested', 'app.db');
    const restoredUploads = join(dir, 'restored', 'uploads');
    const restore = Database.restore({ from: destination, targets: { app: { path: restoredDb }, uploads: { dir: restoredUploads } } });
    const restoreEvents: string[] = [];
    restore.on('start', () => restoreEvents.push('start'));
    restore.on('progress', (p) => assert.equal(p.operation, 'restore'));
    restore.on('end', () => restoreEvents.push('end'));
    const restored = await restore;
    assert.deepEqual(restoreEvents, ['start', 'end']);
    assert.equal(restored.name, result.name);
    assert.equal(restored.verifiedEntries, 1 + 1 + 5); // header, database, tree
    assert.deepEqual(dumpRows(restoredDb), dumpRows(dbPath));
    assert.deepEqual(await describeTree(restoredUploads), await describeTree(uploads));
  });

  it('allows one backup at a time per Database', async (t) => {
    const { db } = await fixture(t);
    const first = db.startBackup({ to: memory() });
    const second = db.startBackup({ to: memory() });
    await rejectsWithCode(second.done, 'BACKUP_IN_PROGRESS');
    await first.done;
    await db.startBackup({ to: memory() }).done;
  });

  it('cancel() stops the backup and leaves nothing on the destination', async (t) => {
    const { dir, db } = await fixture(t, 64 * 1024 * 1024);
    const backups = join(dir, 'backups');
    const op = db.startBackup({ to: directory({ path: backups }) });
    let errorEvent: BackupError | undefined;
    op.on('error', (e) => (errorEvent = e));
    op.on('progress', (p) => {
      if (p.phase === 'archive' && p.source === 'uploads' && p.bytesDone > 0) op.cancel();
    });
    await rejectsWithCode(op.done, 'ABORTED');
    assert.equal(errorEvent?.code, 'ABORTED');
    assert.deepEqual(await listOrUndefined(backups), []);
  });

  it('an aborted signal stops the backup before it writes anything', async (t) => {
    const { db } = await fixture(t);
    const destination = memory();
    await rejectsWithCode(db.startBackup({ to: destination, signal: AbortSignal.abort() }).done, 'ABORTED');
    assert.deepEqual(await listBackups(destination), []);
  });

  it('names backups by UTC start time, unique and sortable within one second', async (t) => {
    const { db } = await fixture(t, 10);
    const destination = memory();
    const results: BackupResult[] = [];
    for (let i = 0; i < 3; i++) results.push(await db.startBackup({ to: destination }).done);
    const names = results.map((r) => r.name);
    assert.equal(new Set(names).size, 3);
    assert.deepEqual([...names].sort(), names, 'string order is creation order');
    const listed = await listBackups(destination);
    assert.deepEqual(listed.map((b) => b.name), [...names].reverse(), 'newest first');
    assert.equal(listed[0]?.sha256, results[2]?.sha256);
    assert.equal(listed[0]?.encrypted, false);
    assert.deepEqual(listed[0]?.sources.map((s) => s.name), ['app', 'uploads']);
  });

  it('fails the whole backup when one destination fails, and removes the other copy', async (t) => {
    const { db } = await fixture(t, 4 * 1024 * 1024);
    const good = memory();
    const bad = failingAfter(memory(), 100_000, 'flaky disk');
    const error = await rejectsWithCode(db.startBackup({ to: [good, bad] }).done, 'DESTINATION_FAILED', /flaky disk/);
    assert.match(error.message, new RegExp(`${good.description}: nothing left`), 'the error says what became of every destination');
    assert.match(String((error.cause as Error)?.message), /injected failure/);
    assert.deepEqual(await listBackups(good), []);
    const leftovers = [];
    for await (const object of good.list()) leftovers.push(object.name);
    assert.deepEqual(leftovers, []);
  });

  it('commits a destination whose copy is visible already first: when it fails, the deferred one never shows a copy', async (t) => {
    const { db } = await fixture(t);
    const deferred = memory();
    const committed: string[] = [];
    const counted: Destination = {
      ...deferred,
      create: async (name) => {
        const upload = await deferred.create(name);
        return {
          ...upload,
          commit: () => {
            committed.push(name);
            return upload.commit();
          },
        };
      },
    };
    const inner = memory();
    const visible: Destination = {
      ...inner,
      description: 'visible at end of stream',
      capabilities: { deferredCommit: false },
      create: async (name) => {
        const upload = await inner.create(name);
        if (!name.endsWith('.tar.gz')) return upload; // the name claim and the sidecar
        return { ...upload, commit: () => Promise.reject(new BackupError('DESTINATION_FAILED', 'completing the upload failed')) };
      },
    };
    await rejectsWithCode(db.startBackup({ to: [counted, visible] }), 'DESTINATION_FAILED', /completing the upload failed/);
    assert.deepEqual(committed.filter((name) => name.endsWith('.tar.gz')), [], 'listed first, yet never committed: the visible copy failed first');
    assert.deepEqual(await listBackups(deferred), []);
  });

  it('awaits every operation the same way: backup, restore and verification', async (t) => {
    const { dir, db } = await fixture(t);
    const destination = directory({ path: join(dir, 'backups') });
    const backup: BackupResult = await db.startBackup({ to: destination });
    const verified = await verifyBackup({ from: destination });
    assert.equal(verified.name, backup.name);
    const restored = await Database.restore({ from: destination, targets: { app: { path: join(dir, 'r.db') } } });
    assert.equal(restored.name, backup.name);
  });

  it('restores from an archive whose sidecar is gone', async (t) => {
    const { dir, db } = await fixture(t);
    const destination = directory({ path: join(dir, 'backups') });
    const { name } = await db.startBackup({ to: destination }).done;
    await destination.remove(`${name}.json`);
    const [listed] = await listBackups(destination);
    assert.equal(listed?.name, name);
    assert.equal(listed?.sha256, undefined);
    await Database.restore({ from: destination, targets: { app: { path: join(dir, 'r.db') } } });
    assert.deepEqual(dumpRows(join(dir, 'r.db')), dumpRows(join(dir, 'app.db')));
  });
});

describe('restore safety', () => {
  it('refuses a non-empty target and touches no target at all', async (t) => {
    const { dir, db } = await fixture(t);
    const destination = memory();
    await db.startBackup({ to: destination }).done;
    const busy = join(dir, 'busy');
    await mkdir(busy);
    await writeFile(join(busy, 'precious'), 'do not touch');
    const freshDb = join(dir, 'fresh', 'app.db');
    await rejectsWithCode(Database.restore({ from: destination, targets: { app: { path: freshDb }, uploads: { dir: busy } } }), 'TARGET_NOT_EMPTY', /busy/);
    assert.deepEqual(await readdir(busy), ['precious']);
    assert.equal(await readFile(join(busy, 'precious'), 'utf8'), 'do not touch');
    assert.equal(await exists(join(dir, 'fresh')), false);
    await rejectsWithCode(Database.restore({ from: destination, targets: { app: { path: join(dir, 'app.db') } } }), 'TARGET_NOT_EMPTY');
  });

  it('restores only the sources named, verifying the rest', async (t) => {
    const { dir, db, uploads } = await fixture(t);
    const destination = memory();
    await db.startBackup({ to: destination }).done;
    const result = await Database.restore({ from: destination, targets: { uploads: { dir: join(dir, 'only-uploads') } } });
    assert.deepEqual(result.skipped, ['app']);
    assert.deepEqual(result.sources.map((s) => s.name), ['uploads']);
    assert.deepEqual(await describeTree(join(dir, 'only-uploads')), await describeTree(uploads));
  });

  it('says which backups and sources exist when asked for missing ones', async (t) => {
    const { dir, db } = await fixture(t);
    const destination = memory();
    await rejectsWithCode(Database.restore({ from: destination, targets: { app: { path: join(dir, 'x.db') } } }), 'NOT_FOUND');
    await db.startBackup({ to: destination }).done;
    await rejectsWithCode(Database.restore({ from: destination, backup: '20000101-000000.tar.gz', targets: { app: { path: join(dir, 'x.db') } } }), 'NOT_FOUND');
    await rejectsWithCode(Database.restore({ from: destination, targets: { nope: { path: join(dir, 'x.db') } } }), 'INVALID_OPTIONS', /app, uploads/);
    await rejectsWithCode(Database.restore({ from: destination, targets: {} }), 'INVALID_OPTIONS');
    await rejectsWithCode(Database.restore({ from: destination, targets: { app: { dir: join(dir, 'x') } as never } }), 'INVALID_OPTIONS');
    assert.equal(await exists(join(dir, 'x.db')), false);
  });

  it('cancel() during a restore leaves the targets absent', async (t) => {
    const { dir, db } = await fixture(t, 64 * 1024 * 1024);
    const destination = memory();
    await db.startBackup({ to: destination }).done;
    const target = join(dir, 'restored');
    const restore = Database.restore({ from: destination, targets: { uploads: { dir: join(target, 'uploads') }, app: { path: join(target, 'app.db') } } });
    restore.on('progress', (p) => {
      if (p.source === 'uploads' && p.bytesDone > 0) restore.cancel();
    });
    await rejectsWithCode(restore, 'ABORTED');
    assert.equal(await exists(target), false, 'the parent folder the restore created is gone too');
  });
});
