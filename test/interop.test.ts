/**
 * Archives open with the standard tools, exactly as the README tells users to do it by hand.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { Database, directory, files, sqlite } from '../src/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { describeTree, tempDir } from './helpers/fs.js';
import { createBank, dumpRows } from './helpers/sqlite.js';

const run = promisify(execFile);
const sh = async (script: string, cwd: string) => (await run('sh', ['-euc', script], { cwd })).stdout;

describe('interoperability with tar, gzip, sqlite3 and sha256sum', () => {
  it('restores by hand with tar, sqlite3 and cp, as the README shows', async (t) => {
    const dir = await tempDir(t, 'interop');
    const dbPath = join(dir, 'app.db');
    const uploads = join(dir, 'uploads');
    createBank(dbPath, 500);
    await mkdir(join(uploads, 'nested', 'empty'), { recursive: true });
    await writeFile(join(uploads, 'nested', 'photo.jpg'), Buffer.alloc(6 * 1024 * 1024, 3)); // spans several gzip members
    await writeFile(join(uploads, 'ünïcödé.txt'), 'names survive');
    await writeFile(join(uploads, `${'x'.repeat(150)}.txt`), 'so do long ones');
    await chmod(join(uploads, 'ünïcödé.txt'), 0o640);
    await symlink('nested/photo.jpg', join(uploads, 'latest.jpg'));

    const db = new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: uploads })] });
    const result = await db.startBackup({ to: directory({ path: join(dir, 'backups') }) }).done;
    const archive = join(dir, 'backups', result.name);

    await sh(`gzip -t "${archive}"`, dir);
    const listing = (await sh(`tar -tzf "${archive}"`, dir)).trim().split('\n');
    assert.equal(listing[0], 'header.json');
    assert.equal(listing.at(-1), 'manifest.ndjson');
    assert.ok(listing.includes('sources/app/database.sqlite'));
    assert.equal((await sh(`sha256sum "${archive}"`, dir)).split(' ')[0], result.sha256);

    // The README's steps, verbatim but for the paths.
    await sh(
      [
        'mkdir restore',
        `tar -xzf "${archive}" -C restore`,
        "sqlite3 restore/sources/app/database.sqlite 'PRAGMA integrity_check' > integrity.txt",
        'mkdir -p srv/uploads',
        'cp restore/sources/app/database.sqlite srv/app.db',
        'cp -a restore/sources/uploads/. srv/uploads/',
      ].join('\n'),
      dir,
    );
    assert.equal((await readFile(join(dir, 'integrity.txt'), 'utf8')).trim(), 'ok');
    assert.deepEqual(dumpRows(join(dir, 'srv', 'app.db')), dumpRows(dbPath));
    const original = await describeTree(uploads);
    const byHand = await describeTree(join(dir, 'srv', 'uploads'));
    delete original[''];
    delete byHand[''];
    assert.deepEqual(byHand, original);

    // The manifest's hashes are the ones sha256sum computes.
    const manifest = (await readFile(join(dir, 'restore', 'manifest.ndjson'), 'utf8')).trim().split('\n').slice(1);
    const photo = manifest.map((line) => JSON.parse(line) as { path: string; sha256: string }).find((e) => e.path === 'sources/uploads/nested/photo.jpg');
    assert.equal((await sh('sha256sum restore/sources/uploads/nested/photo.jpg', dir)).split(' ')[0], photo?.sha256);
  });

  it('a zstd archive opens with tar --zstd and the zstd tool, and restores; before Node.js 22.15 both sides refuse with a typed error', async (t) => {
    const dir = await tempDir(t, 'interop-zstd');
    const dbPath = join(dir, 'app.db');
    const uploads = join(dir, 'uploads');
    createBank(dbPath, 200);
    await mkdir(join(uploads, 'nested'), { recursive: true });
    await writeFile(join(uploads, 'nested', 'photo.jpg'), Buffer.alloc(9 * 1024 * 1024, 7)); // spans several zstd frames
    const db = new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: uploads })] });
    const backups = join(dir, 'backups');
    const hasZstd = typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function';
    if (!hasZstd) {
      await rejectsWithCode(db.startBackup({ to: directory({ path: backups }), compression: { algorithm: 'zstd' } }).done, 'INVALID_OPTIONS', /Node\.js 22\.15/);
      // An archive made by the zstd tool still gets a clear refusal, not garbage.
      await mkdir(backups);
      await sh(`mkdir src && echo '{}' > src/header.json && tar -cf - -C src header.json | zstd -q -o "${backups}/20260101-000000.tar.zst"`, dir);
      await rejectsWithCode(Database.restore({ from: directory({ path: backups }), targets: { app: { path: join(dir, 'r', 'app.db') } } }).done, 'UNSUPPORTED_FORMAT', /zstd/);
      return;
    }
    const result = await db.startBackup({ to: directory({ path: backups }), compression: { algorithm: 'zstd', level: 5 } }).done;
    assert.match(result.name, /\.tar\.zst$/);
    const archive = join(backups, result.name);
    await sh(`zstd -q -t "${archive}"`, dir);
    await sh(`mkdir by-hand && tar --zstd -xf "${archive}" -C by-hand`, dir);
    assert.equal((await sh("sqlite3 by-hand/sources/app/database.sqlite 'PRAGMA integrity_check'", dir)).trim(), 'ok');
    assert.deepEqual(dumpRows(join(dir, 'by-hand', 'sources', 'app', 'database.sqlite')), dumpRows(dbPath));
    assert.deepEqual(await describeTree(join(dir, 'by-hand', 'sources', 'uploads')), await describeTree(uploads));
    await Database.restore({ from: directory({ path: backups }), targets: { app: { path: join(dir, 'r', 'app.db') }, uploads: { dir: join(dir, 'r', 'uploads') } } }).done;
    assert.deepEqual(dumpRows(join(dir, 'r', 'app.db')), dumpRows(dbPath));
    assert.deepEqual(await describeTree(join(dir, 'r', 'uploads')), await describeTree(uploads));
  });
});
