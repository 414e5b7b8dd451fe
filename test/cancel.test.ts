/**
 * Every cancelled or failed backup settles: `done` rejects with a typed code, roll-back runs,
 * snapshots close, and nothing is left on any destination, hidden temporary files included.
 * Cancels are placed deterministically (by body bytes read, archive bytes written, or in a
 * destination's commit), never by time; node:test's `timeout` only detects a hang.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import Sqlite from 'better-sqlite3';
import { Database, directory, files, memory, s3, sqlite, type BackupOperation, type BackupOptions, type Destination, type Source } from '../src/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { faultySource, interceptingWrites, withBody } from './helpers/faulty.js';
import { mountSmallDisk, tempDir } from './helpers/fs.js';
import { MOTO_CREDENTIALS, startMoto, type Moto } from './helpers/moto.js';
import { createBank } from './helpers/sqlite.js';
import { assertNoThreadLeft, workerThreads } from './helpers/threads.js';

const execFileAsync = promisify(execFile);
/** Only a hang detector: a settled backup of these few MiB takes a fraction of it. */
const HANG = { timeout: 120_000 };

/** Something the test sets once the operation exists: sources and destinations call it. */
interface CancelSwitch {
  op?: BackupOperation;
  fired: boolean;
}

function fire(state: CancelSwitch): void {
  if (state.fired) return;
  state.fired = true;
  state.op?.cancel();
}

/** A SQLite database and a folder of small (read by the walker) and large (streamed) files. */
async function application(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t, 'cancel');
  createBank(join(dir, 'app.db'), 20_000);
  const uploads = join(dir, 'uploads');
  await mkdir(join(uploads, 'nested'), { recursive: true });
  for (let i = 0; i < 12; i++) await writeFile(join(uploads, `small-${i}.bin`), randomBytes(64 * 1024 * (i + 1)));
  for (let i = 0; i < 3; i++) await writeFile(join(uploads, 'nested', `large-${i}.bin`), randomBytes((2 + i) * 1024 * 1024));
  const spool = join(dir, 'spool');
  await mkdir(spool);
  // The manifest spool goes to the OS temp folder: a private one shows what a backup leaves there.
  const tmp = join(dir, 'tmp');
  await mkdir(tmp);
  const previous = process.env['TMPDIR'];
  process.env['TMPDIR'] = tmp;
  t.after(async () => {
    if (previous === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = previous;
  });
  return { dir, uploads, spool, tmp, backups: join(dir, 'backups'), db: join(dir, 'app.db') };
}

type App = Awaited<ReturnType<typeof application>>;

function sourcesOf(app: App): Source[] {
  return [sqlite({ name: 'app', path: app.db, tempDir: app.spool }), files({ name: 'uploads', dir: app.uploads })];
}

/** Wraps a source so that the switch fires once `limit` body bytes of all sources have been read. */
function cancelAtBodyBytes(source: Source, state: CancelSwitch, counter: { bytes: number; limit: number }): Source {
  return faultySource(source, {
    async *entries(entries) {
      for await (const entry of entries) {
        yield withBody(entry, async function* (body) {
          for await (const chunk of body) {
            counter.bytes += chunk.length;
            if (counter.bytes >= counter.limit) fire(state);
            yield chunk;
          }
        });
      }
    },
  }).source;
}

/**
 * Wraps a destination: `onWrite` sees the archive bytes written so far and may hold that write
 * until the upload is aborted (a stalled server); `onCommit` sees each commit.
 */
function watched(inner: Destination, hooks: { onWrite?: (bytes: number) => 'hold' | undefined; onCommit?: (name: string) => void }): Destination {
  return interceptingWrites(inner, (written) => hooks.onWrite?.(written) ?? 'pass', { highWaterMark: 64 * 1024, ...(hooks.onCommit ? { onCommit: hooks.onCommit } : {}) });
}

/** Everything in a folder, hidden names included; a missing folder is empty. */
async function everything(dir: string): Promise<string[]> {
  return readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
}

/** Whether a SQLite snapshot copy has begun writing pages in `spool` (its file is created empty first). */
async function copyStarted(spool: string): Promise<boolean> {
  for (const folder of await everything(spool)) {
    for (const name of await everything(join(spool, folder))) if (((await stat(join(spool, folder, name)).catch(() => undefined))?.size ?? 0) > 0) return true;
  }
  return false;
}

async function assertNothingLeft(app: App, label: string): Promise<void> {
  assert.deepEqual(await everything(app.backups), [], `${label}: the destination folder is empty`);
  assert.deepEqual(await everything(app.spool), [], `${label}: no SQLite spool copy is left`);
  assert.deepEqual(await everything(app.tmp), [], `${label}: no manifest spool is left`);
}

/** No more worker threads run when `done` settles than `threadsBefore`, before the backup. */
async function expectCancelled(op: BackupOperation, state: CancelSwitch, app: App, label: string, threadsBefore: number): Promise<void> {
  let errorEvents = 0;
  op.on('error', () => (errorEvents += 1));
  await rejectsWithCode(op.done, 'ABORTED');
  assertNoThreadLeft(threadsBefore, label);
  assert.ok(state.fired, `${label}: the cancel point was reached`);
  assert.equal(errorEvents, 1, `${label}: one 'error' event`);
  await assertNothingLeft(app, label);
}

describe('a cancelled backup settles and leaves nothing', () => {
  it('cancelled before any snapshot is taken', HANG, async (t) => {
    const app = await application(t);
    const threadsBefore = workerThreads();
    const op = new Database({ sources: sourcesOf(app) }).startBackup({ to: directory({ path: app.backups }) });
    const state: CancelSwitch = { op, fired: false };
    op.on('start', () => fire(state));
    await expectCancelled(op, state, app, 'before snapshots', threadsBefore);
  });

  it('cancelled while SQLite copies the database', HANG, async (t) => {
    const app = await application(t);
    // Some 48 MiB: the copy's one native step, which a stopped thread runs to its end, is under way when the cancel lands.
    const db = new Sqlite(app.db);
    db.exec('CREATE TABLE blobs (data BLOB NOT NULL); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) INSERT INTO blobs (data) SELECT randomblob(4096) FROM n');
    db.close();
    const state: CancelSwitch = { fired: false };
    let settled = false;
    const [database, folder] = sourcesOf(app) as [Source, Source];
    const copying: Source = {
      ...database,
      open(context) {
        const opening = database.open(context);
        void (async () => {
          // The look ends with the backup, whatever it does.
          while (!settled && !(await copyStarted(app.spool))) await sleep(2);
          fire(state);
        })();
        return opening;
      },
    };
    const threadsBefore = workerThreads();
    const op = new Database({ sources: [copying, folder] }).startBackup({ to: directory({ path: app.backups }) });
    state.op = op;
    void op.done.catch(() => {}).finally(() => (settled = true));
    await expectCancelled(op, state, app, 'during the SQLite copy', threadsBefore);
  });

  it('cancelled at 20 points across the archive, by bytes read, with every compression and encryption', HANG, async (t) => {
    const app = await application(t);
    const reference = await new Database({ sources: sourcesOf(app) }).startBackup({ to: directory({ path: join(app.dir, 'reference') }) }).done;
    const total = reference.sources.reduce((sum, s) => sum + s.bytes, 0);
    const variants: Array<Omit<BackupOptions, 'to'>> = [{}, { compression: { algorithm: 'none' } }, { compression: { algorithm: 'gzip', level: 6 } }, { encrypt: { passphrase: 'cancel me' } }];
    for (let point = 0; point < 20; point++) {
      const limit = Math.floor((total * (point + 0.5)) / 20);
      const variant = variants[point % variants.length] as Omit<BackupOptions, 'to'>;
      const state: CancelSwitch = { fired: false };
      const counter = { bytes: 0, limit };
      const sources = sourcesOf(app).map((source) => cancelAtBodyBytes(source, state, counter));
      const threadsBefore = workerThreads();
      const op = new Database({ sources }).startBackup({ ...variant, to: directory({ path: app.backups }) });
      state.op = op;
      await expectCancelled(op, state, app, `at ${limit} of ${total} bytes read (${JSON.stringify(variant)})`, threadsBefore);
    }
  });

  it('cancelled at 10 points by archive bytes written, the destination holding its write while the cancel lands', HANG, async (t) => {
    const app = await application(t);
    const reference = await new Database({ sources: sourcesOf(app) }).startBackup({ to: directory({ path: join(app.dir, 'reference') }) }).done;
    for (let point = 0; point < 10; point++) {
      const limit = Math.floor((reference.size * (point + 0.5)) / 10);
      const state: CancelSwitch = { fired: false };
      const destination = watched(directory({ path: app.backups }), {
        onWrite: (bytes) => {
          if (bytes < limit) return undefined;
          fire(state);
          return 'hold';
        },
      });
      const threadsBefore = workerThreads();
      const op = new Database({ sources: sourcesOf(app) }).startBackup({ to: destination });
      state.op = op;
      await expectCancelled(op, state, app, `at ${limit} of ${reference.size} archive bytes`, threadsBefore);
    }
  });

  it('cancelled during the commit, after one destination committed, and while sidecars are written', HANG, async (t) => {
    const app = await application(t);
    const second = join(app.dir, 'second');
    for (const [label, when] of [
      ['first archive commit', (name: string, which: number) => which === 0 && !name.endsWith('.json')],
      ['second archive commit', (name: string, which: number) => which === 1 && !name.endsWith('.json')],
      ['first sidecar commit', (name: string, which: number) => which === 0 && name.endsWith('.json')],
      ['second sidecar commit', (name: string, which: number) => which === 1 && name.endsWith('.json')],
    ] as const) {
      const state: CancelSwitch = { fired: false };
      const destinations = [app.backups, second].map((path, which) => watched(directory({ path }), { onCommit: (name) => when(name, which) && fire(state) }));
      const threadsBefore = workerThreads();
      const op = new Database({ sources: sourcesOf(app) }).startBackup({ to: destinations });
      state.op = op;
      await expectCancelled(op, state, app, label, threadsBefore);
      assert.deepEqual(await everything(second), [], `${label}: the second destination is empty`);
    }
  });
});

describe('a cancel does not wait for a source that waits', () => {
  for (const where of ['its next entry', "a body's next chunk"] as const) {
    it(`cancelled while a source that ignores the signal waits for ${where}`, HANG, async () => {
      const state: CancelSwitch = { fired: false };
      let closes = 0;
      const chunk = Buffer.alloc(64 * 1024, 1);
      const stalling = async () => {
        fire(state);
        await new Promise(() => {}); // a lock or a disk that never answers
      };
      const source: Source = {
        kind: 'stalling',
        name: 'stalling',
        role: 'database',
        async open() {
          return {
            estimate: async () => ({ bytes: 0, items: 1 }),
            close: async () => void (closes += 1),
            async *entries() {
              if (where === 'its next entry') await stalling();
              yield {
                path: 'data',
                type: 'file',
                mode: 0o644,
                mtime: new Date(0),
                size: 10 * chunk.length,
                body: async function* () {
                  yield chunk;
                  await stalling();
                },
              };
            },
          };
        },
      };
      const destination = memory();
      const op = new Database({ sources: [source] }).startBackup({ to: destination });
      state.op = op;
      await rejectsWithCode(op.done, 'ABORTED');
      assert.ok(state.fired);
      assert.equal(closes, 1, 'the snapshot is closed');
      for await (const object of destination.list()) assert.fail(`${object.name} is left`);
    });
  }
});

describe('a failed backup settles and leaves nothing', () => {
  it('a source whose entries() throws midway fails the backup, never a short archive, and closes every snapshot', HANG, async (t) => {
    const app = await application(t);
    const [database, folder] = sourcesOf(app) as [Source, Source];
    for (const after of [0, 1, 5, 14]) {
      const failing = faultySource(folder, {
        async *entries(entries) {
          let n = 0;
          for await (const entry of entries) {
            if (n++ === after) throw new Error('the disk under the source went away');
            yield entry;
          }
        },
      });
      const threadsBefore = workerThreads();
      const op = new Database({ sources: [database, failing.source] }).startBackup({ to: directory({ path: app.backups }) });
      await rejectsWithCode(op.done, 'SOURCE_FAILED', /went away/);
      assertNoThreadLeft(threadsBefore, `after ${after} entries`);
      assert.equal(failing.closes(), 1, `after ${after} entries: the failing snapshot is closed`);
      await assertNothingLeft(app, `after ${after} entries`);
    }
  });

  it('a destination on a full disk fails with DESTINATION_FAILED and leaves nothing on the other destination', HANG, async (t) => {
    const app = await application(t);
    const small = join(app.dir, 'small-disk');
    if (!(await mountSmallDisk(t, small))) return;
    try {
      for (const order of ['full disk first', 'full disk second'] as const) {
        const full = directory({ path: small });
        const other = directory({ path: app.backups });
        const threadsBefore = workerThreads();
        const op = new Database({ sources: sourcesOf(app) }).startBackup({ to: order === 'full disk first' ? [full, other] : [other, full] });
        await rejectsWithCode(op.done, 'DESTINATION_FAILED', /ENOSPC|no space/i);
        assertNoThreadLeft(threadsBefore, order);
        await assertNothingLeft(app, order);
        assert.deepEqual(await everything(small), [], `${order}: nothing left on the full disk`);
      }
    } finally {
      await execFileAsync('umount', [small]); // before the test's folder is removed
    }
  });
});

describe('an S3 server killed mid-backup', () => {
  let moto: Moto;
  before(async () => (moto = await startMoto()));
  after(() => moto?.stop());

  it('fails the backup with DESTINATION_FAILED, removes the folder copy beside it, and leaks no file handle', HANG, async (t) => {
    const dir = await tempDir(t, 's3-killed');
    const uploads = join(dir, 'uploads');
    await mkdir(uploads);
    for (let i = 0; i < 4; i++) await writeFile(join(uploads, `big-${i}.bin`), randomBytes(8 * 1024 * 1024));
    const backups = join(dir, 'backups');
    const own = await startMoto();
    t.after(() => own.stop());
    const bucket = await own.createBucket();
    const child = spawn(process.execPath, ['--expose-gc', join(import.meta.dirname, 'helpers', 's3-dies-child.js'), uploads, backups, own.endpoint, bucket], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' }, // so that stderr holds only what backupkit caused
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const started = new Promise<void>((resolve) =>
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('started\n')) resolve();
      }),
    );
    await started;
    await own.stop(); // the server is gone before the backup reads on
    child.stdin.end('go\n');
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 0, stderr);
    const outcome = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as { code: string; message: string; openFiles: string[] };
    assert.equal(outcome.code, 'DESTINATION_FAILED', outcome.message);
    assert.deepEqual(outcome.openFiles, [], 'no file of the source or the folder destination is left open');
    assert.match(outcome.message, /s3:\/\//);
    assert.deepEqual(await everything(backups), [], 'the folder copy and its temporary file are removed');
    assert.doesNotMatch(stderr, /Closing file descriptor/, 'every FileHandle was closed explicitly');
    assert.equal(stderr, '', 'no warning at all, such as one of listeners left behind');
  });

  it('a backup to S3 and a folder cancelled mid-upload aborts the multipart upload', HANG, async (t) => {
    const app = await application(t);
    const bucket = await moto.createBucket();
    const state: CancelSwitch = { fired: false };
    const counter = { bytes: 0, limit: 6 * 1024 * 1024 };
    const sources = sourcesOf(app).map((source) => cancelAtBodyBytes(source, state, counter));
    const bucketDestination = s3({ bucket, endpoint: moto.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS, partSize: 5 * 1024 * 1024 });
    const threadsBefore = workerThreads();
    const op = new Database({ sources }).startBackup({ to: [directory({ path: app.backups }), bucketDestination] });
    state.op = op;
    await expectCancelled(op, state, app, 'S3 beside a folder', threadsBefore);
    const objects = await moto.client.send(new ListObjectsV2Command({ Bucket: bucket }));
    const multipart = await moto.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual({ objects: objects.Contents ?? [], uploads: multipart.Uploads ?? [] }, { objects: [], uploads: [] });
  });
});
