/**
 * Failures a new user met that were silent or baffling: each now fails loudly, with a code and a
 * message that say what is wrong.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Database, directory, listBackups, memory, postgres, prune, sqlite, verifyBackup } from '../src/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { createDatabase, PG_HOST, PG_USER, pgUrl, sql } from './helpers/postgres.js';
import { createBank } from './helpers/sqlite.js';

const execFileAsync = promisify(execFile);

async function runChild(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [join(import.meta.dirname, 'helpers', 'unobserved-child.js'), ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe('failures that were silent', () => {
  it('a failed backup nobody awaits or listens to is an unhandled rejection: printed, exit code 1', async (t) => {
    const dir = await tempDir(t, 'unobserved');
    const unobserved = await runChild([join(dir, 'missing.db'), join(dir, 'backups')]);
    assert.equal(unobserved.code, 1, 'the process fails instead of exiting 0');
    assert.match(unobserved.stderr, /SOURCE_FAILED|Copying SQLite database/);
    assert.match(unobserved.stderr, /missing\.db/);

    const listened = await runChild([join(dir, 'missing.db'), join(dir, 'backups'), 'listen']);
    assert.equal(listened.code, 0, `an error listener is enough: ${listened.stderr}`);
    assert.equal(listened.stdout, 'error event: SOURCE_FAILED\n');
  });

  it('listing a folder that does not exist is NOT_FOUND; an empty one holds no backups; a backup creates it', async (t) => {
    const dir = await tempDir(t, 'missing-folder');
    await rejectsWithCode(listBackups(directory({ path: join(dir, 'nowhere') })), 'NOT_FOUND', /nowhere does not exist/);
    await rejectsWithCode(prune(directory({ path: join(dir, 'nowhere') }), { keepLast: 1 }), 'NOT_FOUND');
    await rejectsWithCode(Database.restore({ from: directory({ path: join(dir, 'nowhere') }), targets: { app: { path: join(dir, 'r.db') } } }), 'NOT_FOUND');
    await mkdir(join(dir, 'empty'));
    assert.deepEqual(await listBackups(directory({ path: join(dir, 'empty') })), []);
    createBank(join(dir, 'app.db'), 5, 5);
    const fresh = directory({ path: join(dir, 'made', 'by', 'backup') });
    const result = await new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] }).startBackup({ to: fresh }).done;
    assert.deepEqual((await listBackups(fresh)).map((b) => b.name), [result.name]);
  });
});

describe('messages that say what is wrong', () => {
  it("a PostgreSQL source's connection given as a bare database name is INVALID_OPTIONS, not getaddrinfo ENOTFOUND base", () => {
    assert.throws(() => postgres({ name: 'pg', connection: 'app' }), (error: Error & { code?: string; hint?: string }) => {
      assert.equal(error.code, 'INVALID_OPTIONS');
      assert.match(error.message, /must be a URL, not "app"/);
      assert.match(error.hint ?? '', /postgres:\/\//);
      return true;
    });
    assert.doesNotThrow(() => postgres({ name: 'pg', connection: pgUrl('app') }));
    assert.doesNotThrow(() => postgres({ name: 'pg', connection: '/var/run/postgresql' }));
  });

  it('a file that is not SQLite is named so, not "check that the source is readable"', async (t) => {
    const dir = await tempDir(t, 'not-sqlite');
    await writeFile(join(dir, 'notes.txt'), 'plain text, not a database '.repeat(200));
    const error = await rejectsWithCode(new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'notes.txt') })] }).startBackup({ to: memory() }).done, 'SOURCE_FAILED');
    assert.match(error.hint, /notes\.txt is not a SQLite database/);
  });

  it('a passphrase, a compression level or a retention rule of the wrong type or name says which and why', async (t) => {
    const dir = await tempDir(t, 'messages');
    createBank(join(dir, 'app.db'), 5, 5);
    const db = new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] });
    const passphrase = await rejectsWithCode(db.startBackup({ to: memory(), encrypt: { passphrase: 1234 as never } }).done, 'INVALID_OPTIONS');
    assert.match(passphrase.message, /must be a string, not a number/);
    assert.doesNotMatch(passphrase.message, /1234/, 'a passphrase is not quoted, even a wrong one');
    await rejectsWithCode(db.startBackup({ to: memory(), encrypt: { passphrase: '' } }).done, 'INVALID_OPTIONS', /empty/);
    await rejectsWithCode(db.startBackup({ to: memory(), compression: { level: '5' as never } }).done, 'INVALID_OPTIONS', /from 1 to 9, not string "5"/);
    await rejectsWithCode(db.startBackup({ to: memory(), compression: { level: 12 } }).done, 'INVALID_OPTIONS', /from 1 to 9, not 12$/);
    const retention = await rejectsWithCode(db.startBackup({ to: memory(), retention: { keeplast: 3 } as never }).done, 'INVALID_OPTIONS', /retention\.keeplast is not a retention rule; did you mean keepLast\?/);
    assert.match(retention.hint, /keepLast, keepDaily, keepWeekly, keepMonthly, maxAge/);
    await rejectsWithCode(db.startBackup({ to: memory(), retention: { keepLast: '3' as never } }).done, 'INVALID_OPTIONS', /keepLast must be a whole number, not string "3"/);
  });

  it('a restore target named by a bare database name is INVALID_OPTIONS; an unreachable scratch server in verify is SOURCE_FAILED, not RESTORE_FAILED', async (t) => {
    const database = await createDatabase(t, 'scratchdown');
    await sql(database, 'CREATE TABLE t (id integer PRIMARY KEY)');
    const destination = memory();
    await new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(database) })] }).startBackup({ to: destination }).done;
    await rejectsWithCode(Database.restore({ from: destination, targets: { pg: { connection: 'app', database: `${database}_r` } } }), 'INVALID_OPTIONS', /must be a URL, not "app"/);
    const error = await rejectsWithCode(verifyBackup({ from: destination, level: 'restore', scratch: { postgres: `postgres://${PG_USER}@${PG_HOST}:1/postgres` } }), 'SOURCE_FAILED');
    assert.match(error.message, /Connecting to PostgreSQL/);
    assert.match(error.hint, /server is running/);
  });
});
