import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Database, directory, files, sqlite, type FilesTarget, type Restorer } from '../src/index.js';
import { filesRestorer } from '../src/sources/files/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { describeTree, exists, tempDir } from './helpers/fs.js';
import { createBank, dumpRows } from './helpers/sqlite.js';
import { stopped, stoppedItself } from './helpers/process.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'restore-child.js');

/** A SQLite database and a folder, backed up together into a folder destination. */
async function backupOfTwo(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t, 'commit');
  const db = join(dir, 'source.db');
  createBank(db, 500);
  await chmod(db, 0o600);
  const tree = join(dir, 'uploads');
  await mkdir(join(tree, 'sub'), { recursive: true });
  await writeFile(join(tree, 'a.txt'), 'alpha');
  await writeFile(join(tree, 'sub', 'b.txt'), 'beta');
  const backups = join(dir, 'backups');
  await new Database({ sources: [sqlite({ name: 'db', path: db }), files({ name: 'f', dir: tree })] }).startBackup({ to: directory({ path: backups }) }).done;
  const expect = async (where: string) => {
    assert.deepEqual(dumpRows(join(where, 'app.db')), dumpRows(db), 'the database is the source');
    assert.deepEqual(await describeTree(join(where, 'uploads')), await describeTree(tree), 'the folder is the source');
  };
  return { dir, backups, expect };
}

/** Targets of both sources inside `where`. */
const targetsIn = (where: string) => ({ db: { path: join(where, 'app.db') }, f: { dir: join(where, 'uploads') } });

function startChild(backups: string, where: string, stop = ''): { child: ChildProcess; outcome: Promise<string> } {
  const child = spawn(process.execPath, [CHILD, backups, JSON.stringify(targetsIn(where)), stop], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const outcome = once(child, 'exit').then(() => (JSON.parse(out || '{"code":"no output"}') as { code: string }).code);
  return { child, outcome };
}

describe('concurrent restores into the same targets', () => {
  it('the one that commits second fails with TARGET_NOT_EMPTY and removes nothing of the winner or of the user', async (t) => {
    const { dir, backups, expect } = await backupOfTwo(t);
    const made = join(dir, 'new'); // created by the first restore, as the targets' grandparent
    const where = join(made, 'deep');
    const first = startChild(backups, where, 'stop-before-commit');
    try {
      await stoppedItself(first.child); // staged and verified, about to commit

      assert.equal(await startChild(backups, where).outcome, 'ok');
      await writeFile(join(made, 'user.txt'), 'mine');
      first.child.kill('SIGCONT');

      assert.equal(await first.outcome, 'TARGET_NOT_EMPTY');
    } finally {
      await stopped(first.child, 'SIGKILL'); // left stopped, it would keep this file's process alive forever
    }
    assert.equal(await readFile(join(made, 'user.txt'), 'utf8'), 'mine');
    assert.deepEqual((await readdir(where)).sort(), ['app.db', 'uploads'], 'no staging copy or journal left');
    await expect(where);
  });

  it('two processes racing: one wins, the other fails typed, the targets are the source', async (t) => {
    const { dir, backups, expect } = await backupOfTwo(t);
    for (let round = 0; round < 5; round += 1) {
      const where = join(dir, `race-${round}`);
      const outcomes = await Promise.all([startChild(backups, where).outcome, startChild(backups, where).outcome]);
      assert.deepEqual(outcomes.sort(), ['TARGET_NOT_EMPTY', 'ok'], `round ${round}`);
      assert.deepEqual((await readdir(where)).sort(), ['app.db', 'uploads'], `round ${round}: nothing else left`);
      await expect(where);
    }
  });
});

describe('a restore of several sources killed between two commits', () => {
  it('is finished by the next restore of the same archive into the same targets', async (t) => {
    const { dir, backups, expect } = await backupOfTwo(t);
    const where = join(dir, 'restored');
    const { child, outcome } = startChild(backups, where, 'stop-after-commit');
    await stoppedItself(child);
    child.kill('SIGKILL');
    await outcome;
    assert.ok(await exists(join(where, 'app.db')), 'the first target was committed');
    assert.ok(!(await exists(join(where, 'uploads'))), 'the second was not');

    const result = await Database.restore({ from: directory({ path: backups }), targets: targetsIn(where) });
    assert.deepEqual(result.sources.map((s) => [s.name, s.items]), [['db', 1], ['f', 4]]);
    assert.deepEqual((await readdir(where)).sort(), ['app.db', 'uploads'], 'no staging copy or journal left');
    await expect(where);
  });

  it('a failure between two commits undoes the first and leaves nothing to finish', async (t) => {
    const { dir, backups } = await backupOfTwo(t);
    const where = join(dir, 'restored');
    // Another process fills the folder target just before its commit.
    const filledFirst: Restorer = {
      ...(filesRestorer as Restorer),
      async begin(target, signal) {
        const sink = await filesRestorer.begin(target as FilesTarget, signal);
        return { ...sink, commit: async () => (await mkdir(join((target as FilesTarget).dir, 'theirs'), { recursive: true }), sink.commit()) };
      },
    };
    await rejectsWithCode(Database.restore({ from: directory({ path: backups }), targets: targetsIn(where), restorers: [filledFirst] }), 'TARGET_NOT_EMPTY');
    assert.deepEqual(await readdir(where), ['uploads'], 'the database commit was undone, no journal or staging left');
    assert.deepEqual(await readdir(join(where, 'uploads')), ['theirs']);
  });
});

describe('restore targets', () => {
  it('restores into names of 250 bytes: staging names stay within NAME_MAX', async (t) => {
    const { dir, backups, expect } = await backupOfTwo(t);
    const long = (label: string) => `${label}-${'é'.repeat(100)}${'x'.repeat(250 - label.length - 201)}`;
    const db = join(dir, long('db'));
    const tree = join(dir, long('f'));
    assert.equal(Buffer.byteLength(long('db')), 250);
    await Database.restore({ from: directory({ path: backups }), targets: { db: { path: db }, f: { dir: tree } } });
    const scratch = join(dir, 'compare');
    await mkdir(scratch);
    await Database.restore({ from: directory({ path: backups }), targets: targetsIn(scratch) });
    await expect(scratch);
    assert.deepEqual(await describeTree(tree), await describeTree(join(scratch, 'uploads')));
    assert.deepEqual(dumpRows(db), dumpRows(join(scratch, 'app.db')));
  });

  it("restores a SQLite database with the source's mode, 0600", async (t) => {
    const { dir, backups } = await backupOfTwo(t);
    const where = join(dir, 'restored');
    await Database.restore({ from: directory({ path: backups }), targets: { db: { path: join(where, 'app.db') } } });
    assert.equal((await stat(join(where, 'app.db'))).mode & 0o7777, 0o600);
  });
});
