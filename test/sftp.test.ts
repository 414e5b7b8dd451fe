import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import { Database, files, listBackups, memory, parseSftpUrl, prune, sftp, sqlite, withRetry, type RetryInfo, type SftpOptions } from '../src/index.js';
import { testDestination } from './conformance/destination.js';
import { checkFolderRoundTrip } from './helpers/folder-round-trip.js';
import { put } from './helpers/put.js';
import { checkRetriedAcrossRestart } from './helpers/restart.js';
import { backUpWhileServerGoes } from './helpers/server-gone.js';
import { rejectsWithCode } from './helpers/errors.js';
import { failingAfter } from './helpers/faulty.js';
import { tempDir } from './helpers/fs.js';
import { startSshd, type Sshd } from './helpers/sshd.js';
import { createBank } from './helpers/sqlite.js';

let sshd: Sshd;
before(async () => {
  sshd = await startSshd();
});
after(() => sshd?.stop());

const destinationIn = (path: string, extra: Partial<SftpOptions> = {}) =>
  sftp({ host: sshd.host, port: sshd.port, username: sshd.username, privateKey: sshd.privateKey, hostKey: sshd.hostKey, path, ...extra });

testDestination('sftp', async () => ({ destination: destinationIn(await sshd.folder()), cleanup: async () => {} }));

describe('sftp destination', () => {
  it('backs up to and restores from an OpenSSH server, writing under a hidden temporary name, owner-only', async (t) => {
    const folder = await sshd.folder();
    await checkFolderRoundTrip(t, destinationIn(folder), folder);
  });

  it('reads a range of an object', async () => {
    const destination = destinationIn(await sshd.folder());
    const bytes = randomBytes(1024 * 1024);
    await put(destination, 'a.tar.gz', bytes);
    // Ranged reads are not in the Destination contract yet: called as the engine will.
    const open = destination.open.bind(destination) as (name: string, range: { offset: number; length?: number }) => Promise<Readable>;
    assert.ok((await buffer(await open('a.tar.gz', { offset: 300_000, length: 500_000 }))).equals(bytes.subarray(300_000, 800_000)));
    assert.ok((await buffer(await open('a.tar.gz', { offset: bytes.length - 10 }))).equals(bytes.subarray(bytes.length - 10)));
    // A reader left midway, with reads in flight, releases the connection: the suite would not end otherwise.
    const left = await open('a.tar.gz', { offset: 0 });
    const [first] = (await left.take(1).toArray()) as Buffer[];
    assert.ok(first?.equals(bytes.subarray(0, first.length)));
    left.destroy();
    assert.deepEqual((await listBackups(destination)).length, 0, 'the destination still answers');
  });

  it('removes the temporary of a failed backup, and the copy on the other destination', async (t) => {
    const dir = await tempDir(t, 'sftp-fail');
    await mkdir(join(dir, 'uploads'));
    await writeFile(join(dir, 'uploads', 'big.bin'), randomBytes(8 * 1024 * 1024));
    const folder = await sshd.folder();
    const other = memory();
    const broken = failingAfter(destinationIn(folder), 4 * 1024 * 1024, 'broken sftp');
    const db = new Database({ sources: [files({ name: 'uploads', dir: join(dir, 'uploads') })] });
    await rejectsWithCode(db.startBackup({ to: [other, broken] }).done, 'DESTINATION_FAILED', /broken sftp/);
    assert.deepEqual(await readdir(folder), []);
    assert.deepEqual(await listBackups(other), []);
  });

  it("never lists a killed writer's temporary; the next backup, or prune, removes it", async (t) => {
    const folder = await sshd.folder();
    const destination = destinationIn(folder);
    // A process of this host that is gone (pid 2^22 + 1 is above Linux's pid_max), and a stranger's name.
    const orphan = `.20261121-110000.tar.gz.${hostname().replace(/[^A-Za-z0-9-]/g, '-')}_4194305_0123456789ab.partial`;
    await writeFile(join(folder, orphan), 'partial');
    await writeFile(join(folder, '.unrelated'), 'not ours');
    assert.deepEqual(await listBackups(destination), []);
    assert.deepEqual((await prune(destination, { keepLast: 1 }, { dryRun: true })).leftovers, [orphan]);
    assert.deepEqual((await prune(destination, { keepLast: 1 })).leftovers, [orphan]);
    assert.deepEqual(await readdir(folder), ['.unrelated']);

    // Another host's temporary goes once untouched for a day.
    const stranger = '.20261121-120000.tar.gz.otherhost_123_0123456789ab.partial';
    await writeFile(join(folder, stranger), 'partial');
    await writeFile(join(folder, orphan), 'partial');
    const old = new Date(Date.now() - 25 * 3_600_000);
    await utimes(join(folder, stranger), old, old);
    const dir = await tempDir(t, 'sftp-orphan');
    createBank(join(dir, 'app.db'), 10);
    const { name } = await new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] }).startBackup({ to: destination }).done;
    assert.deepEqual((await readdir(folder)).sort(), ['.unrelated', name, `${name}.json`, `${name}.state`].sort());
  });

  it('refuses a changed or unknown host key with DESTINATION_FAILED, sending nothing', async (t) => {
    const folder = await sshd.folder();
    const otherHostKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ';
    const changed = await rejectsWithCode(put(destinationIn(folder, { hostKey: otherHostKey }), 'x.tar.gz', Buffer.from('x')), 'DESTINATION_FAILED', /host key SHA256:\S+ is not the one expected/);
    assert.match(changed.hint, /update hostKey/);
    const dir = await tempDir(t, 'sftp-known');
    const elsewhere = join(dir, 'known_hosts');
    await writeFile(elsewhere, `[127.0.0.1]:${sshd.port + 1} ${sshd.hostKey}\n`); // the same key on another port: another host
    const unknown = sftp({ host: sshd.host, port: sshd.port, username: sshd.username, privateKey: sshd.privateKey, path: folder, knownHosts: elsewhere });
    await rejectsWithCode(listBackups(unknown), 'DESTINATION_FAILED', /not the one expected/);
    assert.deepEqual(await readdir(folder), []);

    // The right key, from a known_hosts file or as a fingerprint, is accepted.
    const options = { host: sshd.host, port: sshd.port, username: sshd.username, privateKey: sshd.privateKey, path: folder };
    await put(sftp({ ...options, knownHosts: sshd.knownHosts }), 'a.tar.gz', Buffer.from('a'));
    const fingerprint = `SHA256:${createHash('sha256').update(Buffer.from(sshd.hostKey.split(' ')[1] as string, 'base64')).digest('base64').replace(/=+$/, '')}`;
    await put(sftp({ ...options, hostKey: fingerprint }), 'b.tar.gz', Buffer.from('b'));
    assert.deepEqual((await readdir(folder)).sort(), ['a.tar.gz', 'b.tar.gz']);
  });

  it('fails with DESTINATION_FAILED and a hint for a wrong key, a missing folder and an unreachable host', async () => {
    const folder = await sshd.folder();
    const wrongKey = await rejectsWithCode(listBackups(destinationIn(folder, { privateKey: await sshd.otherKey() })), 'DESTINATION_FAILED', /sftp:\/\//);
    assert.match(wrongKey.hint, /refused the login/);
    const missing = await rejectsWithCode(put(destinationIn(join(folder, 'nope')), 'x.tar.gz', Buffer.from('x')), 'DESTINATION_FAILED');
    assert.match(missing.hint, /does not exist/);
    await rejectsWithCode(listBackups(destinationIn(join(folder, 'nope'))), 'NOT_FOUND');
    const unreachable = await rejectsWithCode(listBackups(destinationIn(folder, { port: 1 })), 'DESTINATION_FAILED', /sftp:\/\//);
    assert.match(unreachable.hint, /could not be reached/);
  });

  it('marks a dropped connection transient, so withRetry lists and opens across a restart of the server; a refused key is tried once', async (t) => {
    const own = await startSshd();
    t.after(() => own.stop());
    const options = { host: own.host, port: own.port, username: own.username, privateKey: own.privateKey, hostKey: own.hostKey, path: await own.folder() };
    await checkRetriedAcrossRestart(own, () => sftp(options), () => sftp({ ...options, privateKey: sshd.privateKey }));
  });

  it('fails a download on a frozen server (SIGSTOP) once its keepalives go unanswered, as transient: withRetry resumes it', async (t) => {
    const own = await startSshd();
    t.after(async () => {
      await own.thaw();
      await own.stop();
    });
    const options = { host: own.host, port: own.port, username: own.username, privateKey: own.privateKey, hostKey: own.hostKey, path: await own.folder() };
    const bytes = randomBytes(16 * 1024 * 1024);
    await put(sftp(options), 'big.tar.gz', bytes);
    const retries: RetryInfo[] = [];
    const destination = withRetry(sftp(options), {
      attempts: 2,
      initialDelay: 0,
      onRetry: (info) => {
        retries.push(info);
        void own.thaw();
      },
    });
    const chunks: Buffer[] = [];
    for await (const chunk of (await destination.open('big.tar.gz')) as AsyncIterable<Buffer>) {
      if (chunks.length === 0) await own.freeze(); // the server stops answering after the first bytes
      chunks.push(chunk);
    }
    assert.ok(Buffer.concat(chunks).equals(bytes));
    assert.deepEqual(retries.map((r) => [r.error.code, r.error.transient]), [['DESTINATION_FAILED', true]]);
    assert.match(retries[0]!.operation, /^read big\.tar\.gz from byte \d+$/);
  });

  it('fails the backup when the server dies mid-upload, and lists nothing partial', async (t) => {
    const own = await startSshd();
    t.after(() => own.stop());
    const folder = await own.folder();
    const destination = sftp({ host: own.host, port: own.port, username: own.username, privateKey: own.privateKey, hostKey: own.hostKey, path: folder });
    await backUpWhileServerGoes(t, destination, () => own.kill(), /sftp:\/\//);
    // The name claim stays too (the server is gone): prune removes it a day later, as for any killed backup.
    assert.deepEqual((await readdir(folder)).filter((name) => !name.startsWith('.') && !name.endsWith('.claim')), [], 'no archive under a real name');
    await rm(folder, { recursive: true });
  });

  it('checks its options and parses sftp:// URLs', () => {
    const base = { host: 'h', username: 'u', privateKey: 'k', path: '/p' };
    assert.throws(() => sftp({ ...base, host: '' }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => sftp({ host: 'h', username: 'u', path: '/p' }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => sftp({ ...base, port: 70_000 }), { code: 'INVALID_OPTIONS' });
    assert.deepEqual(parseSftpUrl('sftp://backup@example.com:2222/srv/backups'), { host: 'example.com', port: 2222, username: 'backup', path: '/srv/backups' });
    assert.deepEqual(parseSftpUrl('sftp://backup@example.com/~/backups'), { host: 'example.com', username: 'backup', path: 'backups' });
    assert.throws(() => parseSftpUrl('sftp://example.com/srv'), { code: 'INVALID_OPTIONS' });
    assert.throws(() => parseSftpUrl('ftp://u@example.com/srv'), { code: 'INVALID_OPTIONS' });
  });
});
