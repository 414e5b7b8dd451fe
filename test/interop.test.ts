/**
 * Archives open with the standard tools, exactly as the README tells users to do it by hand.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Database, directory, files, sqlite } from '../src/index.js';
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
});
