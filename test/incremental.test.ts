import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Database, directory, files, listBackups, memory, verifyBackup, type BackupResult } from '../src/index.js';
import { withRestoredBackup } from '../src/testing.js';
import { cli, records } from './helpers/cli.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { kvSource } from './helpers/kv-source.js';

describe('incremental backups: chain metadata', () => {
  it('starts a chain with a full when nothing stands before it, then links each incremental to its full and its predecessor', async () => {
    const data = new Map([['a', 'a']]);
    const to = memory();
    const db = new Database({ sources: [kvSource('kv', data)] });
    const backup = async (type: 'full' | 'incremental') => {
      data.set('a', `${data.get('a')}+`); // something to send every time
      return db.startBackup({ to, type }).done;
    };
    const first = await backup('incremental');
    assert.deepEqual(chainOf(first), ['full', undefined, undefined]);
    assert.deepEqual(
      first.warnings.map((w) => w.code),
      ['INCREMENTAL_BASE_MISSING'],
      'the first run says it is a full',
    );
    const second = await backup('incremental');
    const third = await backup('incremental');
    assert.deepEqual(chainOf(second), ['incremental', first.name, first.name]);
    assert.deepEqual(chainOf(third), ['incremental', first.name, second.name]);
    assert.deepEqual([second.warnings, third.warnings], [[], []]);
    const full = await backup('full');
    assert.deepEqual(chainOf(full), ['full', undefined, undefined], 'the default is a full');
    const after = await backup('incremental');
    assert.deepEqual(chainOf(after), ['incremental', full.name, full.name], 'a new full starts a new chain');

    const listed = await listBackups(to);
    assert.deepEqual(
      listed.map((b) => [b.name, b.type, b.base, b.previous]),
      [after, full, third, second, first].map((r) => [r.name, ...chainOf(r)]),
    );
  });

  it('never builds on a backup of other sources, nor on one encrypted differently', async () => {
    const data = new Map([['a', 'a']]);
    const to = memory();
    const kv = kvSource('kv', data);
    await new Database({ sources: [kv, kvSource('more', data)] }).startBackup({ to }).done;
    await new Database({ sources: [kvSource('other', data)] }).startBackup({ to }).done;
    const db = new Database({ sources: [kv] });
    const alone = await db.startBackup({ to, type: 'incremental' }).done;
    assert.deepEqual(chainOf(alone), ['full', undefined, undefined]);
    assert.match(alone.warnings[0]?.message ?? '', /no earlier backup of these sources \(kv:kv-test\)/);

    const encrypted = await db.startBackup({ to, type: 'incremental', encrypt: { passphrase: 'correct horse' } }).done;
    assert.deepEqual(chainOf(encrypted), ['full', undefined, undefined]);
    assert.deepEqual(encrypted.warnings.map((w) => w.code), ['INCREMENTAL_BASE_REJECTED']);
    assert.match(encrypted.warnings[0]?.message ?? '', new RegExp(`${alone.name.replaceAll('.', '\\.')} is not encrypted`));
    data.set('a', 'b');
    const next = await db.startBackup({ to, type: 'incremental', encrypt: { passphrase: 'correct horse' } }).done;
    assert.deepEqual(chainOf(next), ['incremental', encrypted.name, encrypted.name]);
  });

  it('backupkit backup --incremental, and list, say where each backup stands in its chain', async (t) => {
    const dir = await tempDir(t, 'inc-cli');
    await mkdir(join(dir, 'data'));
    await writeFile(join(dir, 'data', 'a.txt'), 'a');
    const backup = async () => {
      const run = await cli(['backup', '--files', 'uploads=data', '--to', 'backups', '--incremental'], { cwd: dir });
      assert.equal(run.code, 0, run.stderr);
      const result = records(run.stdout).at(-1);
      assert.ok(result);
      return result;
    };
    const first = await backup();
    await writeFile(join(dir, 'data', 'b.txt'), 'b'); // with nothing changed, no backup would be written
    const second = await backup();
    assert.deepEqual([first['backupType'], first['previous']], ['full', undefined]);
    assert.deepEqual([second['backupType'], second['base'], second['previous']], ['incremental', first['name'], first['name']]);
    const listed = records((await cli(['list', '--from', 'backups'], { cwd: dir })).stdout);
    assert.deepEqual(listed.map((b) => [b['name'], b['backupType']]), [[second['name'], 'incremental'], [first['name'], 'full']]);
  });

  it('refuses a type that is neither full nor incremental', async () => {
    const db = new Database({ sources: [files({ name: 'uploads', dir: '.' })] });
    await rejectsWithCode(db.startBackup({ to: memory(), type: 'differential' as 'full' }).done, 'INVALID_OPTIONS');
  });
});

describe('restore as of a point in time', () => {
  it('restores, verifies and drills the newest backup made at or before asOf, and names the oldest when there is none', async (t) => {
    const dir = await tempDir(t, 'asof');
    const data = join(dir, 'data');
    const to = directory({ path: join(dir, 'backups') });
    const db = new Database({ sources: [files({ name: 'uploads', dir: data })] });
    await mkdir(data);
    const made: Array<{ name: string; at: Date; text: string }> = [];
    for (const text of ['one', 'two', 'three']) {
      await writeFile(join(data, 'note.txt'), text);
      const { name, createdAt } = await db.startBackup({ to }).done;
      made.push({ name, at: new Date(Math.floor(createdAt.getTime() / 1000) * 1000), text });
      await sleep(1000 - (Date.now() % 1000)); // the next backup starts in the next second, so each has a time of its own
    }
    const [one, two, three] = made as [(typeof made)[0], (typeof made)[0], (typeof made)[0]];
    const points = [
      { asOf: one.at, expected: one },
      { asOf: new Date(two.at.getTime() - 1), expected: one },
      { asOf: new Date(two.at.getTime() + 999), expected: two },
      { asOf: new Date(three.at.getTime() + 86_400_000), expected: three },
    ];
    for (const [i, { asOf, expected }] of points.entries()) {
      const target = join(dir, `restored-${i}`);
      const restored = await Database.restore({ from: to, asOf, targets: { uploads: { dir: target } } }).done;
      assert.equal(restored.name, expected.name, `as of ${asOf.toISOString()}`);
      assert.equal(await readFile(join(target, 'note.txt'), 'utf8'), expected.text);
      assert.equal((await verifyBackup({ from: to, asOf }).done).name, expected.name);
      assert.equal(await withRestoredBackup({ from: to, asOf }, async (r) => `${r.name} ${await readFile(join(r.filesDir('uploads'), 'note.txt'), 'utf8')}`), `${expected.name} ${expected.text}`);
    }
    const before = new Date(one.at.getTime() - 1);
    await rejectsWithCode(Database.restore({ from: to, asOf: before, targets: { uploads: { dir: join(dir, 'never') } } }).done, 'NOT_FOUND', new RegExp(`oldest backup is ${one.name.replaceAll('.', '\\.')}`));
    await rejectsWithCode(verifyBackup({ from: to, asOf: new Date('garbage') }).done, 'INVALID_OPTIONS');
    await rejectsWithCode(verifyBackup({ from: to, asOf: two.at, backup: two.name }).done, 'INVALID_OPTIONS');

    const verified = await cli(['verify', '--from', 'backups', '--as-of', two.at.toISOString()], { cwd: dir });
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal(records(verified.stdout).at(-1)?.['name'], two.name);
    const none = await cli(['restore', '--from', 'backups', '--as-of', before.toISOString(), '--files', 'uploads=never'], { cwd: dir });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /NOT_FOUND: .* oldest backup is/);
    assert.equal((await cli(['verify', '--from', 'backups', '--as-of', 'last tuesday'], { cwd: dir })).code, 2);
  });
});

function chainOf(result: Pick<BackupResult, 'type' | 'base' | 'previous'>): [string, string | undefined, string | undefined] {
  return [result.type, result.base, result.previous];
}
