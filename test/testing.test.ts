import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Database, directory, files, sqlite } from '../src/index.js';
import { withRestoredBackup } from '../src/testing.js';
import { rejectsWithCode } from './helpers/errors.js';
import { exists, tempDir } from './helpers/fs.js';
import { bankSummary, createBank } from './helpers/sqlite.js';

const run = promisify(execFile);

async function backedUp(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t, 'drill');
  const dbPath = join(dir, 'app.db');
  const uploads = join(dir, 'uploads');
  createBank(dbPath, 30, 10);
  await mkdir(uploads);
  await writeFile(join(uploads, 'a.txt'), 'A');
  const scratch = join(dir, 'scratch');
  await mkdir(scratch);
  const from = directory({ path: join(dir, 'backups') });
  await new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: uploads })] }).startBackup({ to: from }).done;
  return { from, scratch };
}

describe('backupkit/testing: withRestoredBackup', () => {
  it('hands the restored targets to the callback, returns its value, then removes them', async (t) => {
    const { from, scratch } = await backedUp(t);
    let seen: { path: string; dir: string } | undefined;
    const value = await withRestoredBackup({ from, scratch: { dir: scratch } }, async (restored) => {
      seen = { path: restored.sqlitePath('app'), dir: restored.filesDir('uploads') };
      assert.ok(restored.createdAt.getTime() > Date.now() - 60_000);
      assert.deepEqual(restored.sources.map((s) => s.kind).sort(), ['files', 'sqlite']);
      assert.equal(bankSummary(seen.path).total, 300);
      assert.equal(await readFile(join(seen.dir, 'a.txt'), 'utf8'), 'A');
      assert.throws(() => restored.filesDir('app'), { code: 'INVALID_OPTIONS' });
      assert.throws(() => restored.postgres('nope'), { code: 'INVALID_OPTIONS' });
      return 42;
    });
    assert.equal(value, 42);
    assert.equal(await exists(seen!.path), false);
    assert.equal(await exists(seen!.dir), false);
    assert.deepEqual(await readdir(scratch), []);
  });

  it('removes everything when the callback throws, and rethrows its error', async (t) => {
    const { from, scratch } = await backedUp(t);
    const failure = new Error('assertion in the user test');
    await assert.rejects(
      withRestoredBackup({ from, scratch: { dir: scratch } }, () => {
        throw failure;
      }),
      (error) => error === failure,
    );
    assert.deepEqual(await readdir(scratch), []);
  });

  it('a backup that cannot be restored rejects with its code, with nothing left behind', async (t) => {
    const { scratch } = await backedUp(t);
    const empty = directory({ path: join(scratch, '..', 'no-backups') });
    await rejectsWithCode(withRestoredBackup({ from: empty, scratch: { dir: scratch } }, () => assert.fail('not called')), 'NOT_FOUND');
    assert.deepEqual(await readdir(scratch), []);
  });

  it('the example in examples/ runs green with node --test', async () => {
    // Not as a subtest of this runner: a child that inherits NODE_TEST_CONTEXT reports in its binary protocol.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    // TAP whatever the runtime's default reporter (Node 24 prints spec to a pipe too).
    const { stdout } = await run(process.execPath, ['--test', '--test-reporter=tap', join(import.meta.dirname, '..', 'examples', 'restore-drill.js')], { env });
    assert.match(stdout, /# pass 1/);
    assert.match(stdout, /# fail 0/);
  });
});
