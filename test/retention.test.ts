import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Database, files, listBackups, memory, prune, type Destination, type RetentionPolicy } from '../src/index.js';
import { put } from './conformance/destination.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';

/** Backups at known UTC times, newest first: letter -> archive name. */
const BACKUPS: Record<string, string> = {
  A: '20261121-100000.tar.gz', // Sat, ISO week 47, November
  B: '20261121-020000.tar.gz',
  C: '20261120-230000.tar.gz', // Fri
  D: '20261119-120000.tar.gz', // Thu
  E: '20261116-080000.tar.gz', // Mon, week 47
  F: '20261115-200000.tar.gz', // Sun, week 46
  G: '20261109-090000.tar.gz', // Mon, week 46
  H: '20261031-230000.tar.gz', // Sat, week 44, October
  I: '20261001-000000.tar.gz', // October
  J: '20260915-120000.tar.gz', // September
  K: '20251231-235900.tar.gz', // December 2025
};
const NOW = new Date('2026-11-21T12:00:00Z');

async function destinationWithBackups(): Promise<Destination> {
  const destination = memory();
  for (const name of Object.values(BACKUPS)) {
    await put(destination, name, Buffer.from(name));
    await put(destination, `${name}.json`, Buffer.from('{}')); // a sidecar without the fields: ignored, but deleted with its archive
  }
  return destination;
}

const letters = (names: readonly string[]) =>
  names.map((name) => Object.keys(BACKUPS).find((letter) => BACKUPS[letter] === name)).sort().join('');

describe('retention against a fixed clock', () => {
  const cases: Array<[string, RetentionPolicy, string]> = [
    ['keepLast', { keepLast: 3 }, 'ABC'],
    ['keepDaily', { keepDaily: 3 }, 'ACD'],
    ['keepWeekly', { keepWeekly: 3 }, 'AFH'],
    ['keepMonthly', { keepMonthly: 3 }, 'AHJ'],
    ['maxAge', { maxAge: '3d' }, 'ABCD'],
    ['maxAge in milliseconds', { maxAge: 36 * 3_600_000 }, 'ABC'],
    ['rules combined', { keepLast: 1, keepMonthly: 12 }, 'AHJK'],
    ['the newest backup, whatever the rules say', { maxAge: '1h' }, 'A'],
    ['a year of monthly, a month of weekly and a week of daily', { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }, 'ACDEFGHIJK'],
  ];
  for (const [label, policy, expected] of cases) {
    it(`keeps exactly the expected backups: ${label}`, async () => {
      const destination = await destinationWithBackups();
      const result = await prune(destination, policy, { now: NOW });
      assert.equal(letters(result.kept.map((b) => b.name)), expected);
      assert.equal(letters((await listBackups(destination)).map((b) => b.name)), expected);
      assert.equal(result.kept.length + result.removed.length, Object.keys(BACKUPS).length);
      const remaining = [];
      for await (const object of destination.list()) remaining.push(object.name);
      assert.equal(remaining.length, 2 * expected.length, 'each deleted archive took its sidecar with it');
    });
  }

  it('deletes nothing on a dry run, and says what it would delete', async () => {
    const destination = await destinationWithBackups();
    const result = await prune(destination, { keepLast: 2 }, { dryRun: true, now: NOW });
    assert.equal(result.dryRun, true);
    assert.equal(letters(result.removed.map((b) => b.name)), 'CDEFGHIJK');
    assert.equal((await listBackups(destination)).length, Object.keys(BACKUPS).length);
    assert.deepEqual(result.kept.find((b) => b.name === BACKUPS.A)?.reasons, ['newest', 'last']);
  });

  it('refuses a policy that would keep nothing or is malformed', async () => {
    const destination = await destinationWithBackups();
    for (const policy of [{}, { keepLast: -1 }, { keepDaily: 1.5 }, { maxAge: 'a week' }, { keepLast: 0 }] as RetentionPolicy[]) {
      await rejectsWithCode(prune(destination, policy), 'INVALID_OPTIONS');
    }
    assert.equal((await listBackups(destination)).length, Object.keys(BACKUPS).length);
  });

  it('is applied to every destination after a successful backup', async (t) => {
    const dir = await tempDir(t, 'retention');
    await mkdir(join(dir, 'f'));
    await writeFile(join(dir, 'f', 'x'), 'x');
    const [first, second] = [await destinationWithBackups(), await destinationWithBackups()];
    const db = new Database({ sources: [files({ name: 'f', dir: join(dir, 'f') })] });
    const result = await db.startBackup({ to: [first, second], retention: { keepLast: 2 } }).done;
    for (const destination of [first, second]) {
      assert.deepEqual((await listBackups(destination)).map((b) => b.name), [result.name, BACKUPS.A]);
    }
    assert.equal(result.pruned.length, 2);
    assert.equal(letters(result.pruned[0]?.removed ?? []), 'BCDEFGHIJK');
    await rejectsWithCode(db.startBackup({ to: first, retention: {} }).done, 'INVALID_OPTIONS');
  });
});
