import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import { CreateMultipartUploadCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, RestoreObjectCommand } from '@aws-sdk/client-s3';
import { Database, files, listBackups, memory, prune, s3, sqlite, type RetryInfo } from '../src/index.js';
import { destinationFromSpec, loadConfig } from '../src/cli/config.js';
import { testDestination } from './conformance/destination.js';
import { put } from './helpers/put.js';
import { backUpWhileServerGoes } from './helpers/server-gone.js';
import { rejectsWithCode } from './helpers/errors.js';
import { failingAfter } from './helpers/faulty.js';
import { tempDir } from './helpers/fs.js';
import { MOTO_CREDENTIALS, startMoto, type Moto } from './helpers/moto.js';
import { raceTwoBackups } from './helpers/race.js';
import { createBank, dumpRows } from './helpers/sqlite.js';

let moto: Moto;
before(async () => {
  moto = await startMoto();
});
after(() => moto?.stop());

const destinationOn = (bucket: string, extra: Partial<Parameters<typeof s3>[0]> = {}) =>
  s3({ bucket, endpoint: moto.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS, partSize: 5 * 1024 * 1024, ...extra });

testDestination('s3', async () => ({ destination: destinationOn(await moto.createBucket(), { prefix: 'backups/app' }), cleanup: async () => {} }), { fakeUploadStartTimes: true, lease: true });

async function leftovers(bucket: string): Promise<{ objects: string[]; uploads: string[] }> {
  const objects = await moto.client.send(new ListObjectsV2Command({ Bucket: bucket }));
  const uploads = await moto.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return { objects: (objects.Contents ?? []).map((o) => o.Key ?? ''), uploads: (uploads.Uploads ?? []).map((u) => u.Key ?? '') };
}

describe('s3 destination', () => {
  it('backs up to and restores straight from a bucket, listing from sidecars', async (t) => {
    const dir = await tempDir(t, 's3');
    createBank(join(dir, 'app.db'), 500);
    await mkdir(join(dir, 'uploads'));
    await writeFile(join(dir, 'uploads', 'big.bin'), randomBytes(12 * 1024 * 1024)); // several parts
    const bucket = await moto.createBucket();
    const destination = destinationOn(bucket, { prefix: 'nightly/' });
    const db = new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') }), files({ name: 'uploads', dir: join(dir, 'uploads') })] });
    const result = await db.startBackup({ to: destination }).done;
    assert.deepEqual((await leftovers(bucket)).objects.sort(), [`nightly/${result.name}`, `nightly/${result.name}.json`, `nightly/${result.name}.state`]);
    const [listed] = await listBackups(destination);
    assert.equal(listed?.sha256, result.sha256);
    await Database.restore({ from: destination, targets: { app: { path: join(dir, 'restored.db') } } });
    assert.deepEqual(dumpRows(join(dir, 'restored.db')), dumpRows(join(dir, 'app.db')));
  });

  it('prune aborts the multipart upload a killed backup left; a dry run only names it', async () => {
    const bucket = await moto.createBucket();
    const destination = destinationOn(bucket, { prefix: 'nightly/' });
    await put(destination, '20261121-100000.tar.gz', Buffer.from('archive'));
    await moto.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'nightly/20261121-110000.tar.gz' })); // never completed
    await moto.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'elsewhere/20261121-110000.tar.gz' })); // not under the prefix
    const planned = await prune(destination, { keepLast: 1 }, { dryRun: true });
    assert.deepEqual(planned.leftovers, ['20261121-110000.tar.gz']);
    assert.deepEqual((await leftovers(bucket)).uploads.sort(), ['elsewhere/20261121-110000.tar.gz', 'nightly/20261121-110000.tar.gz']);
    assert.deepEqual((await prune(destination, { keepLast: 1 })).leftovers, ['20261121-110000.tar.gz']);
    assert.deepEqual(await leftovers(bucket), { objects: ['nightly/20261121-100000.tar.gz'], uploads: ['elsewhere/20261121-110000.tar.gz'] });
  });

  it('lists past one page of results', async () => {
    const bucket = await moto.createBucket();
    const destination = destinationOn(bucket);
    const names = Array.from({ length: 1100 }, (_, i) => `20260101-${String(i).padStart(6, '0')}.tar.gz`);
    for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((name) => put(destination, name, Buffer.from(name))));
    const listed = [];
    for await (const object of destination.list()) listed.push(object.name);
    assert.equal(listed.length, 1100);
  });

  it('aborts the multipart upload of a failed backup and removes the copy on the other destination', async (t) => {
    const dir = await tempDir(t, 's3-fail');
    await mkdir(join(dir, 'uploads'));
    await writeFile(join(dir, 'uploads', 'big.bin'), randomBytes(24 * 1024 * 1024));
    const bucket = await moto.createBucket();
    const other = memory();
    const broken = failingAfter(destinationOn(bucket), 12 * 1024 * 1024, 'broken s3');
    const db = new Database({ sources: [files({ name: 'uploads', dir: join(dir, 'uploads') })] });
    await rejectsWithCode(db.startBackup({ to: [other, broken] }).done, 'DESTINATION_FAILED', /broken s3/);
    assert.deepEqual(await leftovers(bucket), { objects: [], uploads: [] });
    assert.deepEqual(await listBackups(other), []);
  });

  it('fails the backup when the server goes away mid-upload, and leaves nothing on the other destination', async (t) => {
    const own = await startMoto();
    t.after(() => own.stop());
    const bucket = await own.createBucket();
    const destination = s3({ bucket, endpoint: own.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS, partSize: 5 * 1024 * 1024, maxAttempts: 2 });
    await backUpWhileServerGoes(t, destination, () => own.stop(), /s3:\/\//);
  });

  it('retries a read on a frozen server, and resumes a download that stalls midway from the byte it reached', async (t) => {
    const own = await startMoto();
    t.after(() => own.stop());
    const bucket = await own.createBucket();
    const retries: RetryInfo[] = [];
    // The SDK makes one attempt per request, so that each timeout reaches the retry decorator;
    // the server is thawed when the decorator decides to retry, never after a guessed delay.
    const retry = { attempts: 2, initialDelay: 0, onRetry: (info: RetryInfo) => {
        retries.push(info);
        own.thaw();
      },
    };
    const bytes = randomBytes(32 * 1024 * 1024);
    await put(s3({ bucket, endpoint: own.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS, partSize: 5 * 1024 * 1024 }), 'big.tar.gz', bytes);
    const destination = s3({ bucket, endpoint: own.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS, maxAttempts: 1, socketTimeout: 2000, retry });

    own.freeze();
    const whole = await buffer(await destination.open('big.tar.gz', { offset: 7 }));
    assert.ok(whole.equals(bytes.subarray(7)));
    assert.deepEqual(retries.map((r) => [r.operation, r.error.code, r.error.transient]), [['open big.tar.gz', 'DESTINATION_FAILED', true]]);

    const body = await destination.open('big.tar.gz');
    const chunks: Buffer[] = [];
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (chunks.length === 0) own.freeze(); // the server stops sending after the first bytes
      chunks.push(chunk);
    }
    assert.ok(Buffer.concat(chunks).equals(bytes));
    assert.equal(retries.length, 2);
    const resumedAt = Number(/^read big\.tar\.gz from byte (\d+)$/.exec(retries[1]!.operation)?.[1]);
    assert.ok(resumedAt > 0 && resumedAt < bytes.length, `resumed inside the object, at ${resumedAt}`);

    await rejectsWithCode(destination.open('missing.tar.gz'), 'NOT_FOUND');
    assert.equal(retries.length, 2, 'a missing object is not retried');
  });

  it('gives two processes backing up in the same second distinct archives that match their sidecars', async (t) => {
    const dir = await tempDir(t, 's3-race');
    const bucket = await moto.createBucket();
    await raceTwoBackups(dir, destinationOn(bucket), { endpoint: moto.endpoint, bucket });
  });

  it('puts archives in storageClass and sidecars in STANDARD; a frozen archive fails its restore with how to thaw it', async (t) => {
    const dir = await tempDir(t, 's3-glacier');
    createBank(join(dir, 'app.db'), 100);
    const bucket = await moto.createBucket();
    const destination = destinationOn(bucket, { prefix: 'cold/', storageClass: 'GLACIER' });
    const { name, sha256 } = await new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] }).startBackup({ to: destination }).done;
    const storageClass = async (object: string) => (await moto.client.send(new HeadObjectCommand({ Bucket: bucket, Key: `cold/${object}` }))).StorageClass ?? 'STANDARD';
    assert.equal(await storageClass(name), 'GLACIER');
    assert.equal(await storageClass(`${name}.json`), 'STANDARD');
    const [listed] = await listBackups(destination);
    assert.deepEqual([listed?.name, listed?.sha256, listed?.trust], [name, sha256, 'trusted'], 'listed from its sidecar, without reading the archive');

    const target = { app: { path: join(dir, 'restored.db') } };
    const frozen = await rejectsWithCode(Database.restore({ from: destination, targets: target }), 'DESTINATION_FAILED', /cold storage class/);
    assert.match(frozen.hint, new RegExp(`restore-object --bucket ${bucket} --key cold/${name.replaceAll('.', '\\.')}`));
    await moto.client.send(new RestoreObjectCommand({ Bucket: bucket, Key: `cold/${name}`, RestoreRequest: { Days: 1 } }));
    await Database.restore({ from: destination, targets: target });
    assert.deepEqual(dumpRows(join(dir, 'restored.db')), dumpRows(join(dir, 'app.db')));
  });

  it('takes storageClass from s3:// URLs and JSON config files, checked against the classes the AWS SDK knows', async (t) => {
    const dir = await tempDir(t, 's3-class-url');
    const bucket = await moto.createBucket();
    // A URL carries no credentials: they come from the AWS environment, as on the command line.
    const saved = { id: process.env['AWS_ACCESS_KEY_ID'], secret: process.env['AWS_SECRET_ACCESS_KEY'] };
    t.after(() => {
      for (const [name, value] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    });
    process.env['AWS_ACCESS_KEY_ID'] = MOTO_CREDENTIALS.accessKeyId;
    process.env['AWS_SECRET_ACCESS_KEY'] = MOTO_CREDENTIALS.secretAccessKey;
    const url = (prefix: string, storageClass: string) => `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(moto.endpoint)}&path-style=true&storage-class=${storageClass}`;
    const classOf = async (key: string) => (await moto.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).StorageClass ?? 'STANDARD';

    await put(destinationFromSpec(url('url', 'GLACIER_IR'), dir), 'a.tar.gz', Buffer.from('a'));
    assert.equal(await classOf('url/a.tar.gz'), 'GLACIER_IR');

    const config = join(dir, 'backupkit.json');
    const inJson = { kind: 's3', bucket, prefix: 'json', endpoint: moto.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS, storageClass: 'STANDARD_IA' };
    await writeFile(config, JSON.stringify({ to: [inJson, url('typo', 'GLACIR')] }));
    const [fromJson, typo] = [(await loadConfig(config, dir)).to ?? []].flat();
    await put(fromJson!, 'b.tar.gz', Buffer.from('b'));
    assert.equal(await classOf('json/b.tar.gz'), 'STANDARD_IA');

    const unknown = await rejectsWithCode(put(typo!, 'c.tar.gz', Buffer.from('c')), 'INVALID_OPTIONS', /storageClass "GLACIR" is not an S3 storage class/);
    assert.match(unknown.hint, /GLACIER_IR/);
    await rejectsWithCode(listBackups(typo!), 'INVALID_OPTIONS');
    const { Contents = [] } = await moto.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'typo/' }));
    assert.deepEqual(Contents, [], 'nothing written with an unknown class');
  });

  it('needs a bucket and a valid part size', () => {
    assert.throws(() => s3({ bucket: '' }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => s3({ bucket: 'b', partSize: 1024 }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => s3({ bucket: 'b', storageClass: '' as 'GLACIER' }), { code: 'INVALID_OPTIONS' });
  });
});

describe('a frozen S3 server (SIGSTOP: connections accepted, nothing answered)', () => {
  it('fails a backup, a restore and a listing with DESTINATION_FAILED, not a hang', { timeout: 300_000 }, async (t) => {
    const dir = await tempDir(t, 's3-frozen');
    const db = join(dir, 'app.db');
    createBank(db, 500);
    const own = await startMoto();
    t.after(() => own.stop());
    const timeouts = { connectionTimeout: 1000, socketTimeout: 1000, maxAttempts: 2 };
    const destination = s3({ bucket: await own.createBucket(), endpoint: own.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS, ...timeouts });
    const database = new Database({ sources: [sqlite({ name: 'db', path: db })] });
    const { name } = await database.startBackup({ to: destination }).done; // the connections are open and kept alive

    own.freeze();
    try {
      const backup = await rejectsWithCode(database.startBackup({ to: destination }).done, 'DESTINATION_FAILED', /s3:\/\//);
      assert.match(backup.hint, /socketTimeout/, 'the hint names the option to raise');
      await rejectsWithCode(Database.restore({ from: destination, backup: name, targets: { db: { path: join(dir, 'restored.db') } } }), 'DESTINATION_FAILED', /s3:\/\//);
      await rejectsWithCode(listBackups(destination), 'DESTINATION_FAILED', /s3:\/\//);
    } finally {
      own.thaw();
    }
    assert.deepEqual(await readdir(dir), ['app.db'], 'no restored database or staging copy');
  });
});
