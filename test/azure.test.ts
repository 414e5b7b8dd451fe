import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import { azure, Database, withRetry, type RetryInfo, files, listBackups, memory, parseAzureUrl, prune, sqlite, type AzureOptions } from '../src/index.js';
import { testDestination } from './conformance/destination.js';
import { put } from './helpers/put.js';
import { startRecordingProxy } from './helpers/recording-proxy.js';
import { checkRetriedAcrossRestart } from './helpers/restart.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, type Azurite } from './helpers/azurite.js';
import { backUpWhileServerGoes } from './helpers/server-gone.js';
import { rejectsWithCode } from './helpers/errors.js';
import { failingAfter } from './helpers/faulty.js';
import { tempDir } from './helpers/fs.js';
import { createBank, dumpRows } from './helpers/sqlite.js';

let azurite: Azurite;
before(async () => {
  azurite = await startAzurite();
});
after(() => azurite?.stop());

const destinationOn = (container: string, extra: Partial<AzureOptions> = {}) =>
  azure({ container, connectionString: azurite.connectionString(), blockSize: 1024 * 1024, maxAttempts: 2, ...extra });

testDestination('azure', async () => ({ destination: destinationOn(await azurite.createContainer(), { prefix: 'backups/app' }), cleanup: async () => {} }), { lease: true });

/** Every blob in the container, committed or only staged. */
async function blobs(container: string): Promise<{ committed: string[]; staged: string[] }> {
  const client = azurite.client.getContainerClient(container);
  const committed: string[] = [];
  const all: string[] = [];
  for await (const blob of client.listBlobsFlat()) committed.push(blob.name);
  for await (const blob of client.listBlobsFlat({ includeUncommitedBlobs: true })) all.push(blob.name);
  return { committed: committed.sort(), staged: all.filter((name) => !committed.includes(name)).sort() };
}

/** What a writer killed mid-upload leaves: blocks staged under a name, never committed. */
async function stageOrphan(container: string, key: string): Promise<void> {
  const blob = azurite.client.getContainerClient(container).getBlockBlobClient(key);
  await blob.stageBlock(Buffer.from('killed-writer-000001').toString('base64'), Buffer.from('partial'), 7);
}

describe('azure destination', () => {
  it('backs up to and restores straight from a container, in blocks, listing from sidecars', async (t) => {
    const dir = await tempDir(t, 'azure');
    createBank(join(dir, 'app.db'), 500);
    await mkdir(join(dir, 'uploads'));
    await writeFile(join(dir, 'uploads', 'big.bin'), randomBytes(6 * 1024 * 1024)); // several blocks
    const container = await azurite.createContainer();
    const destination = destinationOn(container, { prefix: 'nightly/' });
    const db = new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') }), files({ name: 'uploads', dir: join(dir, 'uploads') })] });
    const result = await db.startBackup({ to: destination }).done;
    assert.deepEqual(await blobs(container), { committed: [`nightly/${result.name}`, `nightly/${result.name}.json`, `nightly/${result.name}.state`], staged: [] });
    const [listed] = await listBackups(destination);
    assert.equal(listed?.sha256, result.sha256);
    await Database.restore({ from: destination, targets: { app: { path: join(dir, 'restored.db') } } });
    assert.deepEqual(dumpRows(join(dir, 'restored.db')), dumpRows(join(dir, 'app.db')));
  });

  it('reads a range of an object', async () => {
    const destination = destinationOn(await azurite.createContainer());
    const bytes = randomBytes(3 * 1024 * 1024);
    await put(destination, 'a.tar.gz', bytes);
    // Ranged reads are not in the Destination contract yet: called as the engine will.
    const open = destination.open.bind(destination) as (name: string, range: { offset: number; length?: number }) => Promise<Readable>;
    const read = await buffer(await open('a.tar.gz', { offset: 1024 * 1024 - 5, length: 1000 }));
    assert.ok(read.equals(bytes.subarray(1024 * 1024 - 5, 1024 * 1024 + 995)));
    const tail = await buffer(await open('a.tar.gz', { offset: bytes.length - 10 }));
    assert.ok(tail.equals(bytes.subarray(bytes.length - 10)));
  });

  it('discards the staged blocks of an aborted upload, and of a failed backup, removing the copy on the other destination', async (t) => {
    const container = await azurite.createContainer();
    const destination = destinationOn(container);
    const upload = await put(destination, 'x.tar.gz', randomBytes(3 * 1024 * 1024), false);
    assert.equal((await blobs(container)).staged.length, 1, 'the blocks are staged, not committed');
    await upload.abort();
    assert.deepEqual(await blobs(container), { committed: [], staged: [] });

    const dir = await tempDir(t, 'azure-fail');
    await mkdir(join(dir, 'uploads'));
    await writeFile(join(dir, 'uploads', 'big.bin'), randomBytes(8 * 1024 * 1024));
    const other = memory();
    const broken = failingAfter(destination, 4 * 1024 * 1024, 'broken azure');
    const db = new Database({ sources: [files({ name: 'uploads', dir: join(dir, 'uploads') })] });
    await rejectsWithCode(db.startBackup({ to: [other, broken] }).done, 'DESTINATION_FAILED', /broken azure/);
    assert.deepEqual(await blobs(container), { committed: [], staged: [] });
    assert.deepEqual(await listBackups(other), []);
  });

  it('never lists what a killed writer staged; the next backup, or prune, discards it', async (t) => {
    const container = await azurite.createContainer();
    // abandonedUploadAge of 1 ms: the orphan counts as abandoned at once, which a live writer's blocks never would by default.
    const destination = destinationOn(container, { prefix: 'nightly', abandonedUploadAge: 1 });
    await stageOrphan(container, 'nightly/20261121-110000.tar.gz');
    await stageOrphan(container, 'elsewhere/20261121-110000.tar.gz'); // not under the prefix
    assert.deepEqual(await listBackups(destination), []);
    assert.deepEqual((await prune(destination, { keepLast: 1 }, { dryRun: true })).leftovers, ['20261121-110000.tar.gz']);
    assert.equal((await blobs(container)).staged.length, 2, 'a dry run removes nothing');
    assert.deepEqual((await prune(destination, { keepLast: 1 })).leftovers, ['20261121-110000.tar.gz']);
    assert.deepEqual(await blobs(container), { committed: [], staged: ['elsewhere/20261121-110000.tar.gz'] });

    await stageOrphan(container, 'nightly/20261121-120000.tar.gz');
    const dir = await tempDir(t, 'azure-orphan');
    createBank(join(dir, 'app.db'), 10);
    const { name } = await new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] }).startBackup({ to: destination }).done;
    assert.deepEqual(await blobs(container), { committed: [`nightly/${name}`, `nightly/${name}.json`, `nightly/${name}.state`], staged: ['elsewhere/20261121-110000.tar.gz'] });
  });

  it('fails with DESTINATION_FAILED and a hint for a wrong key, an unknown container and an unreachable host', async () => {
    const container = await azurite.createContainer();
    const wrongKey = azure({ container, connectionString: azurite.connectionString(AZURITE_KEY.replace(/^..../, 'AAAA')), maxAttempts: 1 });
    const denied = await rejectsWithCode(put(wrongKey, 'x.tar.gz', Buffer.from('x')), 'DESTINATION_FAILED', /azure:\/\//);
    assert.match(denied.hint, /credentials/);
    await rejectsWithCode(listBackups(wrongKey), 'DESTINATION_FAILED');
    const missing = destinationOn('no-such-container');
    const unknown = await rejectsWithCode(put(missing, 'x.tar.gz', Buffer.from('x')), 'DESTINATION_FAILED', /azure:\/\/no-such-container/);
    assert.match(unknown.hint, /does not exist/);
    await rejectsWithCode(listBackups(missing), 'DESTINATION_FAILED');
    const unreachable = azure({ container, connectionString: azurite.connectionString().replace(/:\d+\//, ':1/'), maxAttempts: 1 });
    await rejectsWithCode(listBackups(unreachable), 'DESTINATION_FAILED', /azure:\/\//);
  });

  it('marks a timeout transient, so withRetry lists and opens across a freeze of the server (SIGSTOP); a wrong key is tried once', async (t) => {
    const own = await startAzurite();
    t.after(() => own.stop());
    const container = await own.createContainer();
    // One attempt per request, so that each timeout reaches the retry decorator, which thaws the server.
    const options = { container, requestTimeout: 1000, maxAttempts: 1 };
    await checkRetriedAcrossRestart(
      { kill: async () => own.freeze(), restart: async () => own.thaw() },
      () => azure({ ...options, connectionString: own.connectionString() }),
      () => azure({ ...options, connectionString: own.connectionString(AZURITE_KEY.replace(/^..../, 'AAAA')) }),
    );
  });

  it('marks 503 Server Busy transient, so withRetry lists again; a wrong key (403) is not', async (t) => {
    const container = await azurite.createContainer();
    await put(destinationOn(container), 'a.tar.gz', Buffer.from('a'));
    const proxy = await startRecordingProxy(azurite.endpoint, { busyFor: 1 });
    t.after(() => proxy.stop());
    const viaProxy = (key?: string) => azurite.connectionString(key).replace(azurite.endpoint, `${proxy.endpoint}/${AZURITE_ACCOUNT}`);
    const retries: RetryInfo[] = [];
    const retry = { attempts: 2, initialDelay: 0, onRetry: (info: RetryInfo) => retries.push(info) };
    const names: string[] = [];
    for await (const object of withRetry(azure({ container, connectionString: viaProxy(), maxAttempts: 1 }), retry).list()) names.push(object.name);
    assert.deepEqual(names, ['a.tar.gz']);
    assert.deepEqual(retries.map((r) => [r.operation, r.error.code, r.error.transient]), [['list', 'DESTINATION_FAILED', true]]);
    assert.match(retries[0]!.error.message, /busy/i);

    const wrongKey = withRetry(azure({ container, connectionString: viaProxy(AZURITE_KEY.replace(/^..../, 'AAAA')), maxAttempts: 1 }), retry);
    const denied = await rejectsWithCode(listBackups(wrongKey), 'DESTINATION_FAILED');
    assert.equal(denied.transient, false);
    assert.equal(retries.length, 1, 'a refused key is not retried');
    assert.equal(proxy.requests.length, 3, 'one busy answer, the listing, one refused listing');
  });

  // The timeout only turns a hang (the defect this guards against) into a failure; it times nothing.
  it('fails a download that stops midway within requestTimeout, as transient: withRetry resumes it from the byte it reached', { timeout: 300_000 }, async (t) => {
    const own = await startAzurite();
    t.after(() => own.stop());
    const container = await own.createContainer();
    const bytes = randomBytes(32 * 1024 * 1024);
    await put(azure({ container, connectionString: own.connectionString() }), 'big.tar.gz', bytes);
    const retries: RetryInfo[] = [];
    const destination = withRetry(azure({ container, connectionString: own.connectionString(), requestTimeout: 1000, maxAttempts: 1 }), {
      attempts: 2,
      initialDelay: 0,
      onRetry: (info) => {
        retries.push(info);
        own.thaw();
      },
    });
    const chunks: Buffer[] = [];
    for await (const chunk of (await destination.open('big.tar.gz')) as AsyncIterable<Buffer>) {
      if (chunks.length === 0) own.freeze(); // the server stops sending after the first bytes
      chunks.push(chunk);
    }
    assert.ok(Buffer.concat(chunks).equals(bytes));
    assert.equal(retries.length, 1);
    assert.equal(retries[0]!.error.code, 'DESTINATION_FAILED');
    assert.equal(retries[0]!.error.transient, true);
    assert.match(retries[0]!.error.hint, /requestTimeout/);
    const resumedAt = Number(/^read big\.tar\.gz from byte (\d+)$/.exec(retries[0]!.operation)?.[1]);
    assert.ok(resumedAt > 0 && resumedAt < bytes.length, `resumed inside the object, at ${resumedAt}`);

    // Without retries the stalled download fails, instead of hanging the restore.
    const once = azure({ container, connectionString: own.connectionString(), requestTimeout: 1000, maxAttempts: 1 });
    const body = await once.open('big.tar.gz');
    own.freeze();
    try {
      await rejectsWithCode(buffer(body), 'DESTINATION_FAILED', /no bytes within 1000 ms/);
    } finally {
      own.thaw();
    }
  });

  it('fails the backup when the server goes away mid-upload, and leaves nothing on the other destination', async (t) => {
    const own = await startAzurite();
    t.after(() => own.stop());
    const container = await own.createContainer();
    const destination = azure({ container, connectionString: own.connectionString(), blockSize: 1024 * 1024, maxAttempts: 2 });
    await backUpWhileServerGoes(t, destination, () => own.stop(), /azure:\/\//);
  });

  it('fails a backup, a restore and a listing on a frozen server (SIGSTOP) with DESTINATION_FAILED, not a hang', async (t) => {
    const dir = await tempDir(t, 'azure-frozen');
    createBank(join(dir, 'app.db'), 100);
    const own = await startAzurite();
    t.after(() => own.stop());
    const destination = azure({ container: await own.createContainer(), connectionString: own.connectionString(), requestTimeout: 1000, maxAttempts: 2 });
    const database = new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] });
    const { name } = await database.startBackup({ to: destination }).done;
    own.freeze();
    try {
      const backup = await rejectsWithCode(database.startBackup({ to: destination }).done, 'DESTINATION_FAILED', /azure:\/\//);
      assert.match(backup.hint, /requestTimeout/, 'the hint names the option to raise');
      await rejectsWithCode(Database.restore({ from: destination, backup: name, targets: { app: { path: join(dir, 'restored.db') } } }), 'DESTINATION_FAILED', /azure:\/\//);
      await rejectsWithCode(listBackups(destination), 'DESTINATION_FAILED', /azure:\/\//);
    } finally {
      own.thaw();
    }
  });

  it('checks its options and parses azure:// URLs', () => {
    assert.throws(() => azure({ container: '', connectionString: 'x' }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => azure({ container: 'c' }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => azure({ container: 'c', connectionString: 'x', blockSize: 1024 }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => azure({ container: 'c', connectionString: 'x', concurrency: 0 }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => azure({ container: 'c', connectionString: 'x', requestTimeout: -1 }), { code: 'INVALID_OPTIONS' });
    assert.deepEqual(parseAzureUrl('azure://backups/app/nightly'), { container: 'backups', prefix: 'app/nightly' });
    assert.deepEqual(parseAzureUrl('azure://backups'), { container: 'backups' });
    assert.throws(() => parseAzureUrl('s3://backups'), { code: 'INVALID_OPTIONS' });
  });
});
