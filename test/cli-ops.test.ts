/**
 * Operating backups from the command line, as real processes of the built CLI: `backup --lease`
 * against a lease another process holds.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { directory, listBackups } from '../src/index.js';
import { cli } from './helpers/cli.js';
import { tempDir } from './helpers/fs.js';

/** An application folder with a small `uploads` folder and an empty `backups` folder. */
async function application(t: TestContext): Promise<string> {
  const dir = await tempDir(t, 'cli-ops');
  await mkdir(join(dir, 'uploads'));
  await mkdir(join(dir, 'backups'));
  await writeFile(join(dir, 'uploads', 'a.txt'), 'hello');
  return dir;
}

describe('backupkit backup --lease', () => {
  it('writes nothing and exits 4 while another process holds the lease, from the flag or the config; once it is released, backs up under a lease of --lease-ttl', async (t) => {
    const dir = await application(t);
    const backups = directory({ path: join(dir, 'backups') });
    const other = await backups.lease!('backupkit.lease', { ttlMs: 60_000, holder: 'host elsewhere, pid 1' });

    const flagged = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--lease'], { cwd: dir });
    assert.equal(flagged.code, 4, flagged.stderr);
    assert.match(flagged.stderr, /^backupkit: LEASE_HELD: .* is held by host elsewhere, pid 1 \(token 1\) until /m);
    assert.match(flagged.stderr, /hint: Another process \(host elsewhere, pid 1\) is backing up to this destination/);

    await writeFile(join(dir, 'backupkit.config.json'), JSON.stringify({ sources: [{ kind: 'files', name: 'uploads', dir: 'uploads' }], to: 'backups', lease: true }));
    const configured = await cli(['backup', '--json'], { cwd: dir });
    assert.equal(configured.code, 4, configured.stderr);
    assert.match(configured.stdout, /"code":"LEASE_HELD"/);
    assert.deepEqual(await listBackups(backups), [], 'nothing was written');

    await other.release();
    const made = await cli(['backup', '--lease-ttl', '2s'], { cwd: dir });
    assert.equal(made.code, 0, made.stderr);
    assert.equal((await listBackups(backups)).length, 1);
    // The lease is never deleted: its newest take is this backup's, released, with the flag's ttl.
    const takes = (await readdir(join(dir, 'backups'))).filter((name) => /^\.backupkit\.lease\.\d+$/.test(name));
    assert.deepEqual(takes, ['.backupkit.lease.2'], 'the backup took the lease after the other holder');
    const record = JSON.parse(await readFile(join(dir, 'backups', takes[0]!), 'utf8')) as { ttlMs: number; released: boolean; holder: string };
    assert.deepEqual([record.ttlMs, record.released], [2_000, true]);
    assert.doesNotMatch(record.holder, /elsewhere/);
  });

  it('refuses a --lease-ttl that is not a duration, or shorter than a lease can be renewed in, with exit code 2', async (t) => {
    const dir = await application(t);
    const unitless = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--lease-ttl', '30'], { cwd: dir });
    assert.equal(unitless.code, 2);
    assert.match(unitless.stderr, /--lease-ttl takes a duration, as 500ms, 30s, 2m or 1h, not "30"/);
    const short = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--lease-ttl', '100ms'], { cwd: dir });
    assert.equal(short.code, 2, short.stderr);
    assert.match(short.stderr, /INVALID_OPTIONS: `lease` must be/);
    assert.deepEqual(await listBackups(directory({ path: join(dir, 'backups') })), []);
  });
});
