import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Database, files, listBackups, memory, type BackupResult } from '../src/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';

describe('incremental backups: chain metadata', () => {
  it('starts a chain with a full when nothing stands before it, then links each incremental to its full and its predecessor', async (t) => {
    const dir = await tempDir(t, 'inc');
    await writeFile(join(dir, 'a.txt'), 'a');
    const to = memory();
    const db = new Database({ sources: [files({ name: 'uploads', dir })] });
    const first = await db.startBackup({ to, type: 'incremental' }).done;
    assert.deepEqual(chainOf(first), ['full', undefined, undefined]);
    assert.deepEqual(
      first.warnings.map((w) => w.code),
      ['INCREMENTAL_BASE_MISSING'],
      'the first run says it is a full',
    );
    const second = await db.startBackup({ to, type: 'incremental' }).done;
    const third = await db.startBackup({ to, type: 'incremental' }).done;
    assert.deepEqual(chainOf(second), ['incremental', first.name, first.name]);
    assert.deepEqual(chainOf(third), ['incremental', first.name, second.name]);
    assert.deepEqual([second.warnings, third.warnings], [[], []]);
    const full = await db.startBackup({ to }).done;
    assert.deepEqual(chainOf(full), ['full', undefined, undefined], 'the default is a full');
    const after = await db.startBackup({ to, type: 'incremental' }).done;
    assert.deepEqual(chainOf(after), ['incremental', full.name, full.name], 'a new full starts a new chain');

    const listed = await listBackups(to);
    assert.deepEqual(
      listed.map((b) => [b.name, b.type, b.base, b.previous]),
      [after, full, third, second, first].map((r) => [r.name, ...chainOf(r)]),
    );
  });

  it('never builds on a backup of other sources, nor on one encrypted differently', async (t) => {
    const dir = await tempDir(t, 'inc');
    await writeFile(join(dir, 'a.txt'), 'a');
    const to = memory();
    const uploads = files({ name: 'uploads', dir });
    await new Database({ sources: [uploads, files({ name: 'more', dir })] }).startBackup({ to }).done;
    await new Database({ sources: [files({ name: 'other', dir })] }).startBackup({ to }).done;
    const db = new Database({ sources: [uploads] });
    const alone = await db.startBackup({ to, type: 'incremental' }).done;
    assert.deepEqual(chainOf(alone), ['full', undefined, undefined]);
    assert.match(alone.warnings[0]?.message ?? '', /no earlier backup of these sources \(uploads:files\)/);

    const encrypted = await db.startBackup({ to, type: 'incremental', encrypt: { passphrase: 'correct horse' } }).done;
    assert.deepEqual(chainOf(encrypted), ['full', undefined, undefined]);
    assert.deepEqual(encrypted.warnings.map((w) => w.code), ['INCREMENTAL_BASE_REJECTED']);
    assert.match(encrypted.warnings[0]?.message ?? '', new RegExp(`${alone.name.replaceAll('.', '\\.')} is not encrypted`));
    const next = await db.startBackup({ to, type: 'incremental', encrypt: { passphrase: 'correct horse' } }).done;
    assert.deepEqual(chainOf(next), ['incremental', encrypted.name, encrypted.name]);
  });

  it('refuses a type that is neither full nor incremental', async () => {
    const db = new Database({ sources: [files({ name: 'uploads', dir: '.' })] });
    await rejectsWithCode(db.startBackup({ to: memory(), type: 'differential' as 'full' }).done, 'INVALID_OPTIONS');
  });
});

function chainOf(result: Pick<BackupResult, 'type' | 'base' | 'previous'>): [string, string | undefined, string | undefined] {
  return [result.type, result.base, result.previous];
}
