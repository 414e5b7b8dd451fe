import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer, connect as connectTcp } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { once } from 'node:events';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Database, ftp, listBackups, parseFtpUrl, prune, sqlite, type BackupError, type FtpOptions } from '../src/index.js';
import { listedDate } from '../src/destinations/ftp/list-date.js';
import { testDestination } from './conformance/destination.js';
import { checkFolderRoundTrip } from './helpers/folder-round-trip.js';
import { put } from './helpers/put.js';
import { checkRetriedAcrossRestart } from './helpers/restart.js';
import { sidecarFor } from './helpers/sidecar.js';
import { backUpWhileServerGoes } from './helpers/server-gone.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { startFtpd, type Ftpd } from './helpers/vsftpd.js';
import { createBank } from './helpers/sqlite.js';

let ftpd: Ftpd;
before(async () => {
  ftpd = await startFtpd();
});
after(() => ftpd?.stop());

const destinationIn = (path: string, extra: Partial<FtpOptions> = {}) => ftp({ host: ftpd.host, port: ftpd.port, user: ftpd.user, password: ftpd.password, path, ...extra });

testDestination('ftp', async () => ({ destination: destinationIn(await ftpd.folder()), cleanup: async () => {} }));
testDestination('ftps', async () => ({ destination: destinationIn(await ftpd.folder(), { secure: true, ca: ftpd.certificate }), cleanup: async () => {} }));

/** A TCP forwarder in front of the server's control port, counting the connections made through it (data connections go around it). */
async function countingForwarder(t: TestContext, port: number): Promise<{ port: number; count(): number }> {
  let count = 0;
  const server = createServer((socket) => {
    count++;
    const upstream = connectTcp(port, '127.0.0.1');
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.close();
  });
  return { port: (server.address() as { port: number }).port, count: () => count };
}

describe('ftp destination', () => {
  it('backs up to and restores from vsftpd over FTPS, writing under a hidden temporary name, owner-only', async (t) => {
    const folder = await ftpd.folder();
    const destination = destinationIn(folder, { secure: true, ca: ftpd.certificate });
    assert.equal(destination.description, `ftps://${ftpd.user}@${ftpd.host}:${ftpd.port}${folder}`);
    await checkFolderRoundTrip(t, destination, folder);
  });

  it('lists what it stores with the date of the listing, to the minute', async () => {
    const folder = await ftpd.folder();
    const destination = destinationIn(folder);
    await put(destination, 'a.tar.gz', Buffer.from('a'));
    const old = new Date(Date.UTC(2024, 1, 29, 12, 0, 0));
    await utimes(join(folder, 'a.tar.gz'), old, old);
    const objects = [];
    for await (const object of destination.list()) objects.push(object);
    assert.deepEqual(objects, [{ name: 'a.tar.gz', size: 1, modifiedAt: new Date(Date.UTC(2024, 1, 29)) }], 'an old file: to the day');
    const now = new Date(Date.UTC(2026, 11, 3, 7, 30));
    assert.deepEqual(listedDate({ rawModifiedAt: 'Dec 03 07:20' }, now), new Date(Date.UTC(2026, 11, 3, 7, 20)));
    assert.deepEqual(listedDate({ rawModifiedAt: 'Dec 31 23:59' }, new Date(Date.UTC(2027, 0, 1, 0, 5))), new Date(Date.UTC(2026, 11, 31, 23, 59)), 'last year');
    assert.deepEqual(listedDate({ rawModifiedAt: 'Feb 29  2024' }, now), new Date(Date.UTC(2024, 1, 29)));
    assert.deepEqual(listedDate({ rawModifiedAt: '12-03-26 07:20AM' }, now), new Date(0), 'a date it does not read');
    assert.deepEqual(listedDate({ rawModifiedAt: '', modifiedAt: now }, now), now, 'MLSD gives it exactly');
  });

  it("never lists a killed writer's temporary or a stale commit lock; the next backup, or prune, removes them", async (t) => {
    const folder = await ftpd.folder();
    const destination = destinationIn(folder);
    // A process of this host that is gone (pid 2^22 + 1 is above Linux's pid_max), and a stranger's name.
    const orphan = `.20261121-110000.tar.gz.${hostname().replace(/[^A-Za-z0-9-]/g, '-')}_4194305_0123456789ab.partial`;
    await writeFile(join(folder, orphan), 'partial');
    await writeFile(join(folder, '.unrelated'), 'not ours');
    const staleLock = '.20261121-100000.tar.gz.lock';
    await mkdir(join(folder, staleLock));
    const liveLock = '.20261121-120000.tar.gz.lock';
    await mkdir(join(folder, liveLock));
    const old = new Date(Date.now() - 25 * 3_600_000);
    await utimes(join(folder, staleLock), old, old);
    assert.deepEqual(await listBackups(destination), []);
    assert.deepEqual((await prune(destination, { keepLast: 1 }, { dryRun: true })).leftovers.toSorted(), [orphan, staleLock].sort());
    assert.deepEqual((await prune(destination, { keepLast: 1 })).leftovers.toSorted(), [orphan, staleLock].sort());
    assert.deepEqual((await readdir(folder)).sort(), ['.unrelated', liveLock].sort());

    // Another host's temporary goes once untouched for a day; the next backup removes it.
    const stranger = '.20261121-120000.tar.gz.otherhost_123_0123456789ab.partial';
    await writeFile(join(folder, stranger), 'partial');
    await writeFile(join(folder, orphan), 'partial');
    await utimes(join(folder, stranger), old, old);
    const dir = await tempDir(t, 'ftp-orphan');
    createBank(join(dir, 'app.db'), 10);
    const { name } = await new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] }).startBackup({ to: destination }).done;
    assert.deepEqual((await readdir(folder)).sort(), ['.unrelated', liveLock, name, `${name}.json`, `${name}.state`].sort());
  });

  it('keeps to maxConnections and reuses connections: a backup, then listing 12 backups, on 2 connections', async (t) => {
    const folder = await ftpd.folder();
    const direct = destinationIn(folder);
    const bytes = randomBytes(1000);
    const names = Array.from({ length: 12 }, (_, i) => `20261121-1000${String(i).padStart(2, '0')}.tar.gz`);
    for (const name of names) {
      await put(direct, name, bytes);
      await put(direct, `${name}.json`, Buffer.from(JSON.stringify(sidecarFor(name, bytes))));
    }
    const forwarder = await countingForwarder(t, ftpd.port);
    const destination = ftp({ host: ftpd.host, port: forwarder.port, user: ftpd.user, password: ftpd.password, path: folder, maxConnections: 2 });
    const dir = await tempDir(t, 'ftp-connections');
    createBank(join(dir, 'app.db'), 10);
    const { name } = await new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] }).startBackup({ to: destination }).done;
    const listed = await listBackups(destination);
    assert.deepEqual(listed.map((b) => [b.name, b.trust]).sort(), [...names, name].map((n) => [n, 'trusted']).sort());
    assert.ok(forwarder.count() <= 2, `logged in ${forwarder.count()} times`);
    assert.throws(() => destinationIn(folder, { maxConnections: 1 }), { code: 'INVALID_OPTIONS' });
  });

  it('refuses to commit a name another writer is committing (its lock is there)', async () => {
    const folder = await ftpd.folder();
    await mkdir(join(folder, '.busy.tar.gz.lock'));
    await rejectsWithCode(put(destinationIn(folder), 'busy.tar.gz', Buffer.from('x')), 'ALREADY_EXISTS', /another writer is committing/);
    assert.deepEqual(await readdir(folder), ['.busy.tar.gz.lock'], 'its temporary removed, the lock left to its owner');
  });

  it('fails with DESTINATION_FAILED and a hint for a wrong password, a missing folder, an untrusted certificate and an unreachable host; no password in any message', async (t) => {
    const folder = await ftpd.folder();
    const wrong = `wrong-${randomBytes(6).toString('hex')}`;
    const seen: string[] = [];
    const record = (error: BackupError) => {
      seen.push(error.message, error.hint, inspect(error, { depth: 5 }));
      return error;
    };
    const refused = record(await rejectsWithCode(listBackups(destinationIn(folder, { password: wrong })), 'DESTINATION_FAILED', /ftp:\/\//));
    assert.match(refused.hint, /refused the login/);
    // A backup with the wrong password: its events and its error hold no password either.
    const dir = await tempDir(t, 'ftp-wrong');
    createBank(join(dir, 'app.db'), 10);
    const op = new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] }).startBackup({ to: destinationIn(folder, { password: wrong }) });
    op.on('error', (error) => seen.push(inspect(error, { depth: 5 })));
    op.on('progress', (progress) => seen.push(JSON.stringify(progress)));
    record(await rejectsWithCode(op.done, 'DESTINATION_FAILED', /refused|530/));
    seen.push(inspect(destinationIn(folder, { password: wrong }), { depth: 5 }));
    for (const text of seen) {
      assert.ok(!text.includes(wrong), `no password in: ${text.slice(0, 200)}`);
      assert.ok(!text.includes(ftpd.password), `no password in: ${text.slice(0, 200)}`);
    }

    const missing = await rejectsWithCode(put(destinationIn(join(folder, 'nope')), 'x.tar.gz', Buffer.from('x')), 'DESTINATION_FAILED');
    assert.match(missing.hint, /does not exist/);
    await rejectsWithCode(listBackups(destinationIn(join(folder, 'nope'))), 'NOT_FOUND');
    const untrusted = await rejectsWithCode(listBackups(destinationIn(folder, { secure: true })), 'DESTINATION_FAILED', /ftps:\/\//);
    assert.match(untrusted.hint, /certificate is not trusted/);
    const unreachable = await rejectsWithCode(listBackups(destinationIn(folder, { port: 1 })), 'DESTINATION_FAILED', /ftp:\/\//);
    assert.match(unreachable.hint, /could not be reached/);
    assert.equal(unreachable.transient, true);
    assert.deepEqual(await readdir(folder), []);
  });

  it('refuses to log in to a server without FTPS when `secure` is set, before sending the password; and says to set it for a server that requires it', async (t) => {
    const [plain, tlsOnly] = await Promise.all([startFtpd({ tls: false }), startFtpd({ tlsOnly: true })]);
    t.after(() => Promise.all([plain.stop(), tlsOnly.stop()]));
    const insecure = await rejectsWithCode(listBackups(ftp({ host: tlsOnly.host, port: tlsOnly.port, user: tlsOnly.user, password: tlsOnly.password, path: await tlsOnly.folder() })), 'DESTINATION_FAILED');
    assert.match(insecure.hint, /FTPS only: set `secure: true`/);
    const folder = await plain.folder();
    const options = { host: plain.host, port: plain.port, user: plain.user, password: plain.password, path: folder };
    const refused = await rejectsWithCode(listBackups(ftp({ ...options, secure: true })), 'DESTINATION_FAILED', /ftps:\/\//);
    assert.match(refused.hint, /does not offer explicit FTPS/);
    assert.deepEqual(await listBackups(ftp(options)), [], 'the same server, without TLS');
  });

  it('marks a dropped connection transient, so withRetry lists and opens across a restart of the server; a wrong password is tried once', async (t) => {
    const own = await startFtpd();
    t.after(() => own.stop());
    const options = { host: own.host, port: own.port, user: own.user, password: own.password, path: await own.folder() };
    await checkRetriedAcrossRestart(own, () => ftp(options), () => ftp({ ...options, password: `${own.password}-wrong` }));
  });

  it('fails the backup when the server dies mid-upload, and lists nothing partial', async (t) => {
    // 8 MiB/s: the 32 MiB upload lasts long enough for the server to die under it, not after it.
    const own = await startFtpd({ maxRate: 8 * 1024 * 1024 });
    t.after(() => own.stop());
    const folder = await own.folder();
    const destination = ftp({ host: own.host, port: own.port, user: own.user, password: own.password, path: folder });
    await backUpWhileServerGoes(t, destination, () => own.kill(), /ftp:\/\//);
    // The temporary stays (the server is gone): the next backup or prune removes it, as for any killed backup.
    assert.deepEqual((await readdir(folder)).filter((name) => !name.startsWith('.') && !name.endsWith('.claim')), [], 'no archive under a real name');
    await rm(folder, { recursive: true });
  });

  it('checks its options and parses ftp:// and ftps:// URLs', () => {
    const base = { host: 'h', user: 'u', password: 'p', path: '/p' };
    assert.throws(() => ftp({ ...base, host: '' }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => ftp({ host: 'h', user: 'u', path: '/p' } as FtpOptions), { code: 'INVALID_OPTIONS' });
    assert.throws(() => ftp({ ...base, port: 70_000 }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => ftp({ ...base, ca: 'PEM' }), { code: 'INVALID_OPTIONS' }, 'a CA without TLS checks nothing');
    assert.deepEqual(parseFtpUrl('ftps://backup@example.com:2121/srv/backups'), { host: 'example.com', port: 2121, user: 'backup', path: '/srv/backups', secure: true });
    assert.deepEqual(parseFtpUrl('ftp://backup@example.com/~/backups'), { host: 'example.com', user: 'backup', path: 'backups', secure: false });
    assert.throws(() => parseFtpUrl('ftp://example.com/srv'), { code: 'INVALID_OPTIONS' });
    assert.throws(() => parseFtpUrl('sftp://u@example.com/srv'), { code: 'INVALID_OPTIONS' });
    const withPassword = (() => {
      try {
        parseFtpUrl('ftp://u:hunter2@example.com/srv');
      } catch (error) {
        return error as BackupError;
      }
      return assert.fail('a URL with a password is refused');
    })();
    assert.equal(withPassword.code, 'INVALID_OPTIONS');
    assert.ok(!withPassword.message.includes('hunter2'));
    assert.match(withPassword.hint, /BACKUPKIT_FTP_PASSWORD/);
  });
});
