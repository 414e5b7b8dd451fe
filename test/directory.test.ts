import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Database, directory, files, listBackups } from '../src/index.js';
import { testDestination } from './conformance/destination.js';
import { put } from './helpers/put.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { raceTwoBackups } from './helpers/race.js';

const execFileAsync = promisify(execFile);

testDestination('directory', async () => {
  const path = await mkdtemp(join(tmpdir(), 'backupkit-dest-'));
  return { destination: directory({ path: join(path, 'created-on-demand') }), cleanup: () => rm(path, { recursive: true, force: true }) };
}, { lease: true });

describe('directory destination', () => {
  it('writes under a hidden temporary name and renames on commit', async (t) => {
    const path = await tempDir(t);
    const destination = directory({ path });
    const upload = await put(destination, 'x.tar.gz', randomBytes(100), false);
    const during = await readdir(path);
    assert.equal(during.length, 1);
    assert.match(during[0] as string, new RegExp(`^\\.x\\.tar\\.gz\\.[A-Za-z0-9-]+_${process.pid}_[0-9a-f]+\\.partial$`), 'named after its owner');
    await upload.commit();
    assert.deepEqual(await readdir(path), ['x.tar.gz']);
  });

  it('removes the temporary file on abort', async (t) => {
    const path = await tempDir(t);
    const upload = await put(directory({ path }), 'x.tar.gz', randomBytes(100), false);
    await upload.abort();
    assert.deepEqual(await readdir(path), []);
  });

  it('ignores stray temporary files when listing', async (t) => {
    const path = await tempDir(t);
    const destination = directory({ path });
    const crashed = await put(destination, 'x.tar.gz', randomBytes(100), false); // never committed, as if its writer crashed
    const listed = [];
    for await (const object of destination.list()) listed.push(object);
    assert.deepEqual(listed, []);
    await crashed.abort(); // closes its file handle
  });

  it('needs a path', () => {
    assert.throws(() => directory({ path: '' }), { code: 'INVALID_OPTIONS' });
  });

  it('fails with DESTINATION_FAILED when the folder cannot be created', async (t) => {
    const path = await tempDir(t);
    await put(directory({ path }), 'file', Buffer.from('x'));
    await rejectsWithCode(directory({ path: join(path, 'file', 'sub') }).create('a.tar.gz'), 'DESTINATION_FAILED');
  });
});

/** A folder of 64 MiB in 8 random blobs: enough data that a child is caught midway. */
async function blobTree(dir: string): Promise<string> {
  const tree = join(dir, 'tree');
  await mkdir(tree);
  for (let i = 0; i < 8; i++) await writeFile(join(tree, `blob-${i}`), randomBytes(8 * 1024 * 1024));
  return tree;
}

/** Runs a helper script in a child process and SIGKILLs it as soon as it says data flows. */
async function killOnceStarted(helper: string, ...args: string[]): Promise<void> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'helpers', helper);
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  await once(child.stdout, 'data');
  child.kill('SIGKILL');
  await once(child, 'exit');
}

describe('a backup process killed mid-way', () => {
  it('leaves no archive listed, and the next backup succeeds', async (t) => {
    const dir = await tempDir(t, 'killed');
    const tree = await blobTree(dir);
    const backups = join(dir, 'backups');
    await killOnceStarted('backup-child.js', tree, backups);
    const destination = directory({ path: backups });
    assert.deepEqual(await listBackups(destination), []);
    const stray = (await readdir(backups)).filter((name) => name.startsWith('.'));
    assert.equal(stray.length, 1, 'the temporary file of the killed writer is left, hidden');
    const result = await new Database({ sources: [files({ name: 'f', dir: tree })] }).startBackup({ to: destination }).done;
    assert.deepEqual((await listBackups(destination)).map((b) => b.name), [result.name]);
  });
});

describe('a restore process killed mid-way', () => {
  it('leaves the target absent, and the next restore succeeds', async (t) => {
    const dir = await tempDir(t, 'killed-restore');
    const tree = await blobTree(dir);
    const backups = join(dir, 'backups');
    await new Database({ sources: [files({ name: 'f', dir: tree })] }).startBackup({ to: directory({ path: backups }) }).done;
    const area = join(dir, 'area');
    await mkdir(area);
    const target = join(area, 'restored');
    await killOnceStarted('restore-child.js', backups, JSON.stringify({ f: { dir: target } }), 'announce');
    const left = await readdir(area);
    assert.ok(!left.includes('restored'), 'the target was never created');
    assert.ok(left.every((name) => name.startsWith('.restored.backupkit-')), `only the hidden staging folder is left: ${left.join(', ')}`);
    await Database.restore({ from: directory({ path: backups }), targets: { f: { dir: target } } });
    assert.equal((await readdir(target)).length, 8);
  });
});

describe('two processes backing up in the same second', () => {
  it('both succeed, with distinct archives that match their sidecars', async (t) => {
    const dir = await tempDir(t, 'race');
    const path = join(dir, 'backups');
    await raceTwoBackups(dir, directory({ path }), { path });
  });
});

describe('file modes whatever the umask', () => {
  for (const umask of ['022', '077']) {
    it(`under umask ${umask}: archive, sidecar and state 0600, a restored SQLite database keeps its source's 0640`, async (t) => {
      const dir = await tempDir(t, `umask-${umask}`);
      const child = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'umask-child.js');
      // The umask is set by a shell, as a service manager or a login would, before node starts.
      const { stdout } = await execFileAsync('sh', ['-c', `umask ${umask} && exec "$0" "$@"`, process.execPath, child, dir]);
      assert.deepEqual(JSON.parse(stdout), { '<name>.tar.gz': '600', '<name>.tar.gz.json': '600', '<name>.tar.gz.state': '600', 'restored app.db': '640' });
    });
  }
});
