/**
 * Encrypted archives open with GnuPG, archives GnuPG encrypted open with backupkit, and every
 * wrong key or damaged byte gives its own clear error with the targets untouched.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import * as openpgp from 'openpgp';
import tar from 'tar-stream';
import { decrypt, encryptor, prepareEncryption } from '../src/archive/encryption.js';
import { openArchive } from '../src/archive/reader.js';
import { BackupError, Database, directory, files, listBackups, sqlite, type BackupErrorCode, type DecryptOptions } from '../src/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { describeTree, tempDir } from './helpers/fs.js';
import { createBank, dumpRows } from './helpers/sqlite.js';
import { assertNoThreadLeft, workerThreads } from './helpers/threads.js';

const run = promisify(execFile);
const sh = async (script: string, cwd: string) => (await run('sh', ['-euc', script], { cwd, maxBuffer: 64 * 1024 * 1024 })).stdout;
const PASSPHRASE = 'correct horse battery staple 🐴';

async function v4Key(): Promise<{ publicKey: string; privateKey: string }> {
  return openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'Backups', email: 'backups@example.com' }], format: 'armored' });
}

async function fixture(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t, 'crypt');
  const dbPath = join(dir, 'app.db');
  const uploads = join(dir, 'uploads');
  createBank(dbPath, 300);
  await mkdir(join(uploads, 'nested'), { recursive: true });
  await writeFile(join(uploads, 'nested', 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 9));
  await writeFile(join(uploads, 'small.txt'), 'hello');
  const db = new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: uploads })] });
  const backups = join(dir, 'backups');
  return { dir, dbPath, uploads, db, backups, destination: directory({ path: backups }) };
}

/** Restores into `<dir>/<label>/…` and checks the data, or the error and that nothing was written; either way, that no thread is left. */
async function restoreExpecting(dir: string, label: string, from: ReturnType<typeof directory>, decrypt: DecryptOptions | undefined, code?: BackupErrorCode, backup?: string) {
  const area = join(dir, label);
  await mkdir(area);
  const threadsBefore = workerThreads();
  const restore = Database.restore({ from, ...(backup ? { backup } : {}), ...(decrypt ? { decrypt } : {}), targets: { app: { path: join(area, 'app.db') }, uploads: { dir: join(area, 'uploads') } } });
  if (code) {
    await rejectsWithCode(restore, code);
    assertNoThreadLeft(threadsBefore, label);
    assert.deepEqual(await readdir(area), [], `${label}: nothing written`);
  } else {
    await restore;
    assertNoThreadLeft(threadsBefore, label);
  }
  return area;
}

describe('OpenPGP encryption', () => {
  it('encrypts with a passphrase; gpg decrypts it and tar extracts it; backupkit restores it', async (t) => {
    const { dir, dbPath, uploads, db, destination } = await fixture(t);
    const result = await db.startBackup({ to: destination, encrypt: { passphrase: PASSPHRASE } }).done;
    assert.match(result.name, /^\d{8}-\d{6}\.tar\.gz\.gpg$/);
    const [listed] = await listBackups(destination);
    assert.equal(listed?.encrypted, true);

    await writeFile(join(dir, 'pass'), PASSPHRASE);
    await sh(`mkdir by-hand && gpg --batch --quiet --homedir "$PWD" --pinentry-mode loopback --passphrase-file pass --decrypt "backups/${result.name}" | tar -xzf - -C by-hand`, dir);
    const header = JSON.parse(await readFile(join(dir, 'by-hand', 'header.json'), 'utf8')) as { encryption: unknown };
    assert.deepEqual(header.encryption, { method: 'openpgp', passphrase: true, recipients: [] });
    assert.deepEqual(dumpRows(join(dir, 'by-hand', 'sources', 'app', 'database.sqlite')), dumpRows(dbPath));

    const area = await restoreExpecting(dir, 'restored', destination, { passphrase: PASSPHRASE });
    assert.deepEqual(dumpRows(join(area, 'app.db')), dumpRows(dbPath));
    const [original, restored] = [await describeTree(uploads), await describeTree(join(area, 'uploads'))];
    delete original[''];
    delete restored[''];
    assert.deepEqual(restored, original);
  });

  it('encrypts to a public key that gpg decrypts with its private key', async (t) => {
    const { dir, dbPath, db, destination } = await fixture(t);
    const { publicKey, privateKey } = await v4Key();
    const result = await db.startBackup({ to: destination, encrypt: { recipients: [publicKey] } }).done;
    await writeFile(join(dir, 'private.asc'), privateKey);
    await sh(
      [
        'mkdir gnupg && chmod 700 gnupg',
        'gpg --batch --quiet --homedir gnupg --import private.asc',
        `mkdir by-hand && gpg --batch --quiet --homedir gnupg --decrypt "backups/${result.name}" | tar -xzf - -C by-hand`,
      ].join('\n'),
      dir,
    );
    assert.deepEqual(dumpRows(join(dir, 'by-hand', 'sources', 'app', 'database.sqlite')), dumpRows(dbPath));
    const area = await restoreExpecting(dir, 'restored', destination, { privateKey });
    assert.deepEqual(dumpRows(join(area, 'app.db')), dumpRows(dbPath));
  });

  it('encrypts any length, in chunks of any size, into a message that gpg and backupkit decrypt', { timeout: 300_000 }, async (t) => {
    const dir = await tempDir(t, 'chunks');
    const { publicKey, privateKey } = await v4Key();
    await writeFile(join(dir, 'pass'), PASSPHRASE);
    await writeFile(join(dir, 'private.asc'), privateKey);
    await sh('mkdir gnupg && chmod 700 gnupg && gpg --batch --quiet --homedir gnupg --import private.asc', dir);
    const encryption = await prepareEncryption({ passphrase: PASSPHRASE, recipients: [publicKey] });
    // Around the 512 octets of the first partial length (the literal packet's header takes 6), and
    // odd sizes after it: every length header form, parts of every power of two.
    const cases = [[], [505], [506], [100, 300, 200, 7000, 9000], [0, 511, 1, 0, 3 * 1024 * 1024 + 7, 1, 12_345]];
    for (const [index, sizes] of cases.entries()) {
      const chunks = sizes.map((size) => randomBytes(size));
      const parts: Buffer[] = [];
      for await (const part of Readable.from(chunks).pipe(encryptor(encryption))) parts.push(part as Buffer);
      const message = Buffer.concat(parts);
      const expected = Buffer.concat(chunks);
      // gpg with one of the two, backupkit with the other: each opens every other case.
      const byKey = index % 2 === 0;
      await writeFile(join(dir, `${index}.gpg`), message);
      const gpg = byKey ? 'gpg --batch --quiet --homedir gnupg' : 'gpg --batch --quiet --homedir "$PWD" --pinentry-mode loopback --passphrase-file pass';
      await sh(`${gpg} --decrypt ${index}.gpg > ${index}.out`, dir);
      assert.ok((await readFile(join(dir, `${index}.out`))).equals(expected), `gpg, sizes ${sizes.join(' ')}`);
      const read: Buffer[] = [];
      for await (const part of await decrypt(Readable.from([message]), message.subarray(0, 64), byKey ? { passphrase: PASSPHRASE } : { privateKey })) read.push(part as Buffer);
      assert.ok(Buffer.concat(read).equals(expected), `backupkit, sizes ${sizes.join(' ')}`);
    }
  });

  it('restores archives that gpg encrypted, with a passphrase or to a key', async (t) => {
    const { dir, dbPath, db, backups } = await fixture(t);
    const plain = await db.startBackup({ to: directory({ path: join(dir, 'plain') }) }).done;
    const { publicKey, privateKey } = await v4Key();
    await writeFile(join(dir, 'pass'), PASSPHRASE);
    await writeFile(join(dir, 'public.asc'), publicKey);
    // A tar made by hand from the extracted archive, entries in the manifest's order, then gpg.
    await sh(
      [
        `mkdir x && tar -xzf "plain/${plain.name}" -C x`,
        `(cd x && tail -n +2 manifest.ndjson | sed 's/.*"path":"\\([^"]*\\)".*/\\1/' > ../members && echo manifest.ndjson >> ../members)`,
        'tar -C x --no-recursion -czf hand.tar.gz -T members',
        `mkdir -p "${backups}"`,
        `gpg --batch --quiet --homedir "$PWD" --pinentry-mode loopback --passphrase-file pass --symmetric --cipher-algo AES256 -o "${backups}/20260101-000000.tar.gz.gpg" hand.tar.gz`,
        'mkdir gnupg && chmod 700 gnupg && gpg --batch --quiet --homedir gnupg --import public.asc',
        `gpg --batch --quiet --homedir gnupg --trust-model always --recipient backups@example.com --encrypt -o "${backups}/20260102-000000.tar.gz.gpg" hand.tar.gz`,
      ].join('\n'),
      dir,
    );
    const destination = directory({ path: backups });
    const symmetric = await restoreExpecting(dir, 'symmetric', destination, { passphrase: PASSPHRASE }, undefined, '20260101-000000.tar.gz.gpg');
    assert.deepEqual(dumpRows(join(symmetric, 'app.db')), dumpRows(dbPath));
    const toKey = await restoreExpecting(dir, 'to-key', destination, { privateKey }, undefined, '20260102-000000.tar.gz.gpg');
    assert.deepEqual(dumpRows(join(toKey, 'app.db')), dumpRows(dbPath));
  });

  it('tells a wrong key, a missing key, a flipped byte and a truncation apart, touching nothing', async (t) => {
    const { dir, db, destination, backups } = await fixture(t);
    const { name } = await db.startBackup({ to: destination, encrypt: { passphrase: PASSPHRASE } }).done;
    const other = await v4Key();
    await restoreExpecting(dir, 'wrong-passphrase', destination, { passphrase: 'not it' }, 'WRONG_KEY');
    await restoreExpecting(dir, 'wrong-key', destination, { privateKey: other.privateKey }, 'WRONG_KEY');
    await restoreExpecting(dir, 'no-key', destination, undefined, 'INVALID_OPTIONS');

    const bytes = await readFile(join(backups, name));
    const flipped = Buffer.from(bytes);
    flipped[Math.floor(flipped.length / 2)] = (flipped[Math.floor(flipped.length / 2)] as number) ^ 0x01;
    await writeFile(join(backups, '20260101-000000.tar.gz.gpg'), flipped);
    await restoreExpecting(dir, 'flipped', destination, { passphrase: PASSPHRASE }, 'CORRUPT_ARCHIVE', '20260101-000000.tar.gz.gpg');
    await writeFile(join(backups, '20260102-000000.tar.gz.gpg'), bytes.subarray(0, bytes.length - 4096));
    await restoreExpecting(dir, 'truncated', destination, { passphrase: PASSPHRASE }, 'CORRUPT_ARCHIVE', '20260102-000000.tar.gz.gpg');
  });

  it('tells a wrong passphrase from damage every time, also in an archive of one chunk', async (t) => {
    const dir = await tempDir(t, 'crypt-tiny');
    await writeFile(join(dir, 'note.txt'), 'hello');
    const plain = directory({ path: join(dir, 'plain') });
    const { name } = await new Database({ sources: [files({ name: 'notes', dir })] }).startBackup({ to: plain }).done;
    const archive = await readFile(join(dir, 'plain', name));
    // Encrypted as backupkit does, with a cheap S2K so that a thousand passphrases take a second.
    const config = { preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256, preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed, aeadProtect: false, s2kIterationCountByte: 0 };
    const bytes = Buffer.from(await openpgp.encrypt({ message: await openpgp.createMessage({ binary: archive }), passwords: [PASSPHRASE], format: 'binary', config }));
    assert.ok(bytes.length < 16 * 1024, 'the whole ciphertext is one chunk');
    assert.equal(await readOutcome(bytes, { passphrase: PASSPHRASE }), 'read');

    // About 2 wrong passphrases in 256 decrypt the session key packet into a plausible key, of a
    // cipher OpenSSL has (AES-256) or lacks (Twofish): the ones that used to decrypt noise.
    const slipping: Record<string, string[]> = {};
    for (let tries = 0; (slipping['aes256']?.length ?? 0) < 3 || (slipping['twofish']?.length ?? 0) < 3; tries++) {
      assert.ok(tries < 20_000, `plausible session keys are rarer than measured: ${JSON.stringify(slipping)}`);
      const passphrase = `wrong ${tries}`;
      const keys = await openpgp.decryptSessionKeys({ message: await openpgp.readMessage({ binaryMessage: bytes }), passwords: [passphrase] }).catch(() => []);
      for (const { algorithm } of keys) (slipping[String(algorithm)] ??= []).push(passphrase);
    }
    for (const passphrase of [...Object.values(slipping).flat(), 'wrong', 'not it either']) {
      assert.equal(await readOutcome(bytes, { passphrase }), 'WRONG_KEY', `passphrase "${passphrase}"`);
    }

    const middle = Math.floor(bytes.length / 2);
    const flipped = Buffer.from(bytes);
    flipped[middle] = (flipped[middle] as number) ^ 0x01;
    assert.equal(await readOutcome(flipped, { passphrase: PASSPHRASE }), 'CORRUPT_ARCHIVE');
    assert.equal(await readOutcome(bytes.subarray(0, middle), { passphrase: PASSPHRASE }), 'CORRUPT_ARCHIVE');
    assert.equal(await readOutcome(bytes.subarray(0, bytes.length - 1), { passphrase: PASSPHRASE }), 'CORRUPT_ARCHIVE');
  });

  it('fails with WRONG_KEY, never hangs, on a wrong passphrase that opens a Twofish key openpgp.js never finishes decrypting with', { timeout: 60_000 }, async () => {
    const bytes = await readFile(new URL('../../test/fixtures/wrong-key-twofish/archive.tar.gz.gpg', import.meta.url));
    const keys = await openpgp.decryptSessionKeys({ message: await openpgp.readMessage({ binaryMessage: bytes }), passwords: ['wrong 1425'] });
    assert.deepEqual(keys.map((key) => key.algorithm), ['twofish'], 'the fixture still slips a Twofish key past the session key packet');
    assert.equal(await readOutcome(bytes, { passphrase: 'wrong 1425' }), 'WRONG_KEY');
    // A right key of that cipher still reads, small archive or not.
    for (const size of [10, 3 * 1024 * 1024]) {
      const message = await openpgp.createMessage({ binary: await tinyArchive(size) });
      const config = { preferredSymmetricAlgorithm: openpgp.enums.symmetric.twofish, preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed, aeadProtect: false, s2kIterationCountByte: 0 };
      const twofish = Buffer.from(await openpgp.encrypt({ message, passwords: [PASSPHRASE], format: 'binary', config }));
      assert.equal(await readOutcome(twofish, { passphrase: PASSPHRASE }), 'read', `${size} bytes`);
      assert.equal(await readOutcome(twofish, { passphrase: 'wrong' }), 'WRONG_KEY', `${size} bytes`);
    }
  });

  it('refuses bad keys and empty passphrases before writing a byte', async (t) => {
    const { db, backups, destination } = await fixture(t);
    const v6 = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ email: 'v6@example.com' }], format: 'armored', config: { v6Keys: true } });
    const aead = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email: 'aead@example.com' }], format: 'armored', config: { aeadProtect: true } });
    const bad: Array<[string, Parameters<Database['startBackup']>[0]['encrypt'], RegExp]> = [
      ['an empty passphrase', { passphrase: '' }, /empty/],
      ['nothing to encrypt with', {}, /passphrase or at least one recipient/],
      ['a key that is not a key', { recipients: ['-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n-----END PGP PUBLIC KEY BLOCK-----'] }, /not an armored OpenPGP key/],
      ['a v6 key', { recipients: [v6.publicKey] }, /v6 key/],
      ['a key that asks for AEAD', { recipients: [aead.publicKey] }, /AEAD/],
    ];
    for (const [label, encrypt, message] of bad) {
      await rejectsWithCode(db.startBackup({ to: destination, encrypt }).done, 'INVALID_OPTIONS', message);
      assert.deepEqual(await readdir(backups).catch(() => []), [], `${label}: nothing written`);
    }
  });

  it('never lets a secret reach the archive, the sidecar, events or errors', async (t) => {
    const { dir, db, destination, backups } = await fixture(t);
    const { publicKey, privateKey } = await v4Key();
    const seen: string[] = [];
    const op = db.startBackup({ to: destination, encrypt: { passphrase: PASSPHRASE, recipients: [publicKey] } });
    for (const event of ['start', 'source-start', 'progress', 'source-end', 'warning', 'end', 'error'] as const) {
      op.on(event, (value: unknown) => seen.push(JSON.stringify(value)));
    }
    const { name } = await op.done;
    const failed = Database.restore({ from: destination, decrypt: { passphrase: `${PASSPHRASE}!` }, targets: { app: { path: join(dir, 'x.db') } } });
    failed.on('error', (error) => seen.push(JSON.stringify({ message: error.message, hint: error.hint, cause: String(error.cause) })));
    await rejectsWithCode(failed, 'WRONG_KEY');
    await writeFile(join(dir, 'pass'), PASSPHRASE);
    await sh(`mkdir plain && gpg --batch --quiet --homedir "$PWD" --pinentry-mode loopback --passphrase-file pass --decrypt "backups/${name}" | gzip -dc > plain/archive.tar`, dir);
    const everything = [
      ...seen,
      await readFile(join(backups, `${name}.json`), 'utf8'),
      await readFile(join(dir, 'plain', 'archive.tar'), 'latin1'),
    ].join('\n');
    const privateBody = privateKey.split('\n').filter((line) => line.length > 40)[1] as string;
    for (const secret of [PASSPHRASE, `${PASSPHRASE}!`, privateBody]) assert.equal(everything.includes(secret), false, 'a secret leaked');
    assert.ok(everything.includes('"encrypted": true'));
  });
});

describe('compression choice', () => {
  it("writes a plain .tar with compression 'none' that tar reads", async (t) => {
    const { dir, dbPath, db, destination } = await fixture(t);
    const result = await db.startBackup({ to: destination, compression: { algorithm: 'none' } }).done;
    assert.match(result.name, /\.tar$/);
    await sh(`mkdir x && tar -xf "backups/${result.name}" -C x`, dir);
    assert.deepEqual(dumpRows(join(dir, 'x', 'sources', 'app', 'database.sqlite')), dumpRows(dbPath));
    const area = await restoreExpecting(dir, 'restored', destination, undefined);
    assert.deepEqual(dumpRows(join(area, 'app.db')), dumpRows(dbPath));
  });

  it('uses zstd where the runtime has it, and says which Node.js it needs where not', async (t) => {
    const { dir, dbPath, db, destination } = await fixture(t);
    const op = db.startBackup({ to: destination, compression: { algorithm: 'zstd' } });
    if (typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress !== 'function') {
      await rejectsWithCode(op.done, 'INVALID_OPTIONS', /Node\.js 22\.15/);
      return;
    }
    const result = await op.done;
    assert.match(result.name, /\.tar\.zst$/);
    await sh(`mkdir x && zstd -dc "backups/${result.name}" | tar -xf - -C x`, dir);
    assert.deepEqual(dumpRows(join(dir, 'x', 'sources', 'app', 'database.sqlite')), dumpRows(dbPath));
    const area = await restoreExpecting(dir, 'restored', destination, undefined);
    assert.deepEqual(dumpRows(join(area, 'app.db')), dumpRows(dbPath));
  });
});

/** A gzipped tar of one file of `size` random bytes: what an archive looks like once decrypted. */
async function tinyArchive(size: number): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name: 'data' }, randomBytes(size));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return zlib.gzipSync(Buffer.concat(chunks));
}

/** Reads an archive from end to end: `read`, or the code of the error it fails with; either way, no thread is left. */
async function readOutcome(bytes: Buffer, decrypt: DecryptOptions): Promise<string> {
  const threadsBefore = workerThreads();
  try {
    const reader = await openArchive(Readable.from([bytes]), 'the test archive', new AbortController().signal, () => {}, decrypt);
    try {
      for await (const entry of reader.entries) for await (const chunk of entry.body) void chunk;
    } catch (error) {
      throw reader.explain(error);
    }
    return 'read';
  } catch (error) {
    if (error instanceof BackupError) return error.code;
    throw error;
  } finally {
    assertNoThreadLeft(threadsBefore, 'the reader');
  }
}
