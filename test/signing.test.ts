/**
 * Signed archives: a signature made at backup, checked with GnuPG by hand, and required at restore
 * when keys are given: unsigned, foreign, re-crafted, stripped or renamed archives are refused
 * with `SIGNATURE_INVALID` and nothing is written to the targets.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buffer } from 'node:stream/consumers';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import * as openpgp from 'openpgp';
import tar from 'tar-stream';
import { Database, directory, files, listBackups, sqlite, verifyBackup, type BackupErrorCode, type CompressionAlgorithm, type RestoreOptions } from '../src/index.js';
import { craftArchive, type CraftedEntry } from './helpers/craft.js';
import { rejectsWithCode } from './helpers/errors.js';
import { describeTree, tempDir } from './helpers/fs.js';
import { createBank, dumpRows } from './helpers/sqlite.js';

const run = promisify(execFile);
const sh = async (script: string, cwd: string, env: NodeJS.ProcessEnv = {}) => (await run('sh', ['-euc', script], { cwd, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 })).stdout;
const KEY_PASSPHRASE = 'signing key passphrase 🔑';
const HAS_ZSTD = typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function';

interface Keys {
  publicKey: string;
  privateKey: string;
  fingerprint: string;
}

async function signingKey(name: string, passphrase?: string): Promise<Keys> {
  const { publicKey, privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name, email: `${name.toLowerCase()}@example.com` }],
    ...(passphrase === undefined ? {} : { passphrase }),
    format: 'armored',
  });
  return { publicKey, privateKey, fingerprint: (await openpgp.readKey({ armoredKey: publicKey })).getFingerprint() };
}

// Keys are made once: generating them is the slow part.
const ours = signingKey('Backups', KEY_PASSPHRASE);
const theirs = signingKey('Mallory');

async function fixture(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t, 'sign');
  const dbPath = join(dir, 'app.db');
  const uploads = join(dir, 'uploads');
  createBank(dbPath, 200);
  await mkdir(join(uploads, 'nested'), { recursive: true });
  await writeFile(join(uploads, 'nested', 'big.bin'), Buffer.alloc(2 * 1024 * 1024, 7));
  await writeFile(join(uploads, 'small.txt'), 'hello');
  const db = new Database({ sources: [sqlite({ name: 'app', path: dbPath }), files({ name: 'uploads', dir: uploads })] });
  const backups = join(dir, 'backups');
  return { dir, dbPath, uploads, db, backups, destination: directory({ path: backups }) };
}

async function signedBackup(db: Database, destination: ReturnType<typeof directory>, extra: Partial<Parameters<Database['startBackup']>[0]> = {}) {
  const { privateKey } = await ours;
  return db.startBackup({ to: destination, sign: { privateKey, passphrase: KEY_PASSPHRASE }, ...extra }).done;
}

/** Restores into `<dir>/<label>/…`; when a code is expected, checks that nothing was written. */
async function restoreInto(dir: string, label: string, options: Omit<RestoreOptions, 'targets'>, code?: BackupErrorCode, message?: RegExp) {
  const area = join(dir, label);
  await mkdir(area);
  const restore = Database.restore({ ...options, targets: { app: { path: join(area, 'app.db') }, uploads: { dir: join(area, 'uploads') } } });
  if (code) {
    await rejectsWithCode(restore, code, message);
    assert.deepEqual(await readdir(area), [], `${label}: nothing written`);
    return { area, result: undefined };
  }
  return { area, result: await restore };
}

async function sameData(area: string, dbPath: string, uploads: string) {
  assert.deepEqual(dumpRows(join(area, 'app.db')), dumpRows(dbPath));
  const [original, restored] = [await describeTree(uploads), await describeTree(join(area, 'uploads'))];
  delete original[''];
  delete restored[''];
  assert.deepEqual(restored, original);
}

/** Every entry of a gzipped archive, bodies in memory: the archives here are a few MiB. */
async function unpack(bytes: Buffer): Promise<CraftedEntry[]> {
  const extract = tar.extract();
  Readable.from([zlib.gunzipSync(bytes)]).pipe(extract as unknown as NodeJS.WritableStream);
  const entries: CraftedEntry[] = [];
  for await (const entry of extract) {
    const { name, type, mode, mtime, linkname } = entry.header;
    entries.push({ header: { name, type, mode, mtime, ...(linkname ? { linkname } : {}) }, body: await buffer(entry as AsyncIterable<Uint8Array>) });
  }
  return entries;
}

/** A manifest listing `entries` with their true hashes, as an attacker with write access would make it. */
function manifestOf(entries: CraftedEntry[], original: Buffer): CraftedEntry {
  const summary = original.toString('utf8').split('\n')[0];
  const lines = entries.map(({ header, body }) =>
    JSON.stringify({
      type: 'entry',
      path: header.name.replace(/\/$/, ''),
      entryType: header.type,
      size: header.type === 'file' ? (body?.length ?? 0) : 0,
      sha256: createHash('sha256').update(header.type === 'file' ? (body ?? Buffer.alloc(0)) : Buffer.alloc(0)).digest('hex'),
      mode: (header.mode ?? 0) & 0o7777,
      mtime: Math.trunc((header.mtime ?? new Date(0)).getTime() / 1000),
      ...(header.type === 'symlink' ? { linkTarget: header.linkname ?? '' } : {}),
    }),
  );
  return { header: { name: 'manifest.ndjson', type: 'file' }, body: Buffer.from(`${[summary, ...lines].join('\n')}\n`) };
}

const byName = (entries: CraftedEntry[], name: string) => entries.find((e) => e.header.name === name) as CraftedEntry;

describe('signed archives', () => {
  const variants: Array<{ label: string; compression: CompressionAlgorithm; encrypt?: boolean }> = [
    { label: 'gzip', compression: 'gzip' },
    { label: 'no compression', compression: 'none' },
    { label: 'zstd', compression: 'zstd' },
    { label: 'gzip, encrypted', compression: 'gzip', encrypt: true },
  ];
  for (const { label, compression, encrypt } of variants) {
    it(`signs and verifies: ${label}`, { skip: compression === 'zstd' && !HAS_ZSTD ? 'zstd needs Node.js 22.15' : false }, async (t) => {
      const { dir, dbPath, uploads, db, destination } = await fixture(t);
      const { publicKey, fingerprint } = await ours;
      const result = await signedBackup(db, destination, { compression: { algorithm: compression }, ...(encrypt ? { encrypt: { passphrase: 'archive passphrase' } } : {}) });
      assert.equal(result.signedBy, fingerprint);
      const [listed] = await listBackups(destination);
      assert.equal(listed?.signedBy, fingerprint);
      const decrypt = encrypt ? { decrypt: { passphrase: 'archive passphrase' } } : {};
      const { area, result: restored } = await restoreInto(dir, 'restored', { from: destination, verifySignature: { publicKeys: [publicKey] }, ...decrypt });
      assert.equal(restored?.signedBy, fingerprint);
      await sameData(area, dbPath, uploads);
      const verified = await verifyBackup({ from: destination, verifySignature: { publicKeys: [(await theirs).publicKey, publicKey] }, ...decrypt });
      assert.equal(verified.signedBy, fingerprint, 'any one of the keys given will do');
    });
  }

  it('gpg verifies the signature by hand, and sha256sum the entries against the signed manifest', async (t) => {
    const { dir, db, destination } = await fixture(t);
    const { publicKey } = await ours;
    const { name } = await signedBackup(db, destination);
    await writeFile(join(dir, 'public.asc'), publicKey);
    await mkdir(join(dir, 'gnupg'), { mode: 0o700 });
    const gpgOutput = await sh(
      [
        'mkdir x && tar -xzf "backups/$NAME" -C x',
        'gpg --batch --quiet --homedir gnupg --import public.asc',
        'gpg --batch --homedir gnupg --status-fd 1 --verify x/manifest.ndjson.sig x/manifest.ndjson',
      ].join('\n'),
      dir,
      { NAME: name },
    );
    assert.match(gpgOutput, /\[GNUPG:\] GOODSIG /);
    assert.match(gpgOutput, /\[GNUPG:\] VALIDSIG /);
    // Files listed by the signed manifest, in sha256sum's format: `sha256sum -c` checks each one.
    const manifest = (await readFile(join(dir, 'x', 'manifest.ndjson'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { type: string; path: string; entryType: string; sha256: string });
    const sums = manifest.filter((l) => l.type === 'entry' && l.entryType === 'file').map((l) => `${l.sha256}  ${l.path}`);
    assert.ok(sums.some((line) => line.endsWith('  header.json')), 'the header, with the archive name and time, is under the signature');
    await writeFile(join(dir, 'x', 'SHA256SUMS'), `${sums.join('\n')}\n`);
    const checked = await sh('cd x && sha256sum -c SHA256SUMS', dir);
    assert.equal(checked.trim().split('\n').length, sums.length);

    // gpg itself rejects a manifest changed by one byte.
    await sh(`sed -i 's/"warnings":0/"warnings":1/' x/manifest.ndjson`, dir);
    await assert.rejects(sh('gpg --batch --homedir gnupg --verify x/manifest.ndjson.sig x/manifest.ndjson', dir), /BAD signature/);
  });

  it('refuses an unsigned archive when a signature is required, and restores it when not', async (t) => {
    const { dir, db, destination } = await fixture(t);
    await db.startBackup({ to: destination }).done;
    const [listed] = await listBackups(destination);
    assert.equal(listed?.signedBy, undefined);
    await restoreInto(dir, 'required', { from: destination, verifySignature: { publicKeys: [(await ours).publicKey] } }, 'SIGNATURE_INVALID', /is not signed/);
    await rejectsWithCode(verifyBackup({ from: destination, verifySignature: { publicKeys: [(await ours).publicKey] } }), 'SIGNATURE_INVALID');
    const { result } = await restoreInto(dir, 'not-required', { from: destination });
    assert.equal(result?.signedBy, undefined);
  });

  it('refuses an archive signed by another key', async (t) => {
    const { dir, db, destination } = await fixture(t);
    const mallory = await theirs;
    await db.startBackup({ to: destination, sign: { privateKey: mallory.privateKey } }).done;
    await restoreInto(dir, 'restored', { from: destination, verifySignature: { publicKeys: [(await ours).publicKey] } }, 'SIGNATURE_INVALID', /not one of the keys given/);
  });

  it('refuses a re-crafted archive whose manifest lists the changed entries with their true hashes', async (t) => {
    const { dir, db, destination, backups } = await fixture(t);
    const { publicKey } = await ours;
    const { name } = await signedBackup(db, destination);
    const entries = await unpack(await readFile(join(backups, name)));
    const sources = entries.filter((e) => e.header.name.startsWith('sources/'));
    byName(sources, 'sources/uploads/small.txt').body = Buffer.from('planted');
    const originalManifest = byName(entries, 'manifest.ndjson').body as Buffer;
    const recrafted = [byName(entries, 'header.json'), ...sources];
    await writeFile(join(backups, name), await craftArchive([...recrafted, manifestOf(recrafted, originalManifest), byName(entries, 'manifest.ndjson.sig')]));

    await restoreInto(dir, 'restored', { from: destination, verifySignature: { publicKeys: [publicKey] } }, 'SIGNATURE_INVALID', /does not match the manifest/);
    await rejectsWithCode(verifyBackup({ from: destination, verifySignature: { publicKeys: [publicKey] } }), 'SIGNATURE_INVALID');
    // The same archive passes every checksum: only the signature tells it from ours.
    await verifyBackup({ from: destination });
  });

  it('refuses an archive whose signature is stripped, or replaced by garbage', async (t) => {
    const { dir, db, destination, backups } = await fixture(t);
    const { publicKey } = await ours;
    const { name } = await signedBackup(db, destination);
    const entries = await unpack(await readFile(join(backups, name)));
    const withoutSignature = entries.filter((e) => e.header.name !== 'manifest.ndjson.sig');
    const verifySignature = { publicKeys: [publicKey] };

    await writeFile(join(backups, name), await craftArchive(withoutSignature));
    await restoreInto(dir, 'stripped', { from: destination, verifySignature }, 'SIGNATURE_INVALID', /is not signed/);
    // Its header says it is signed: even without keys, the missing signature is damage.
    await restoreInto(dir, 'stripped-no-keys', { from: destination }, 'CORRUPT_ARCHIVE', /holds no manifest\.ndjson\.sig/);

    const garbage = { header: { name: 'manifest.ndjson.sig', type: 'file' as const }, body: Buffer.from('-----BEGIN PGP SIGNATURE-----\n\nnot a signature\n-----END PGP SIGNATURE-----\n') };
    await writeFile(join(backups, name), await craftArchive([...withoutSignature, garbage]));
    await restoreInto(dir, 'garbage', { from: destination, verifySignature }, 'SIGNATURE_INVALID', /is not an OpenPGP signature/);
  });

  it('refuses a signed archive stored under another backup name, which would pass for a newer backup', async (t) => {
    const { dir, db, destination, backups } = await fixture(t);
    const { publicKey } = await ours;
    const { name } = await signedBackup(db, destination);
    const newer = '29991231-235959.tar.gz';
    await rename(join(backups, name), join(backups, newer));
    await restoreInto(dir, 'restored', { from: destination, backup: newer, verifySignature: { publicKeys: [publicKey] } }, 'SIGNATURE_INVALID', /its name was changed/);
  });

  it('refuses a locked signing key without its passphrase, or with a wrong one, before writing anything', async (t) => {
    const { db, destination, backups } = await fixture(t);
    const { privateKey } = await ours;
    await rejectsWithCode(db.startBackup({ to: destination, sign: { privateKey } }).done, 'WRONG_KEY', /protected by a passphrase/);
    const wrong = await rejectsWithCode(db.startBackup({ to: destination, sign: { privateKey, passphrase: 'not it' } }).done, 'WRONG_KEY', /does not unlock/);
    assert.doesNotMatch(`${wrong.message} ${wrong.hint}`, /not it/, 'no secret in an error');
    await rejectsWithCode(db.startBackup({ to: destination, sign: { privateKey: (await ours).publicKey } }).done, 'INVALID_OPTIONS');
    await assert.rejects(readdir(backups), { code: 'ENOENT' }, 'nothing written');
  });

  it('never writes a secret to the sidecar or the header', async (t) => {
    const { db, destination, backups } = await fixture(t);
    const { name } = await signedBackup(db, destination);
    const sidecar = await readFile(join(backups, `${name}.json`), 'utf8');
    assert.match(sidecar, /"signature": \{\s+"method": "openpgp",\s+"fingerprint": "[0-9a-f]{40}"/);
    assert.doesNotMatch(sidecar, /PRIVATE KEY|signing key passphrase/);
  });
});

describe('signed archives, from the command line', () => {
  const BIN = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');
  const cli = async (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) => {
    try {
      const { stdout } = await run(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...env } });
      return { code: 0, stdout };
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string };
      return { code: failed.code, stdout: `${failed.stdout}${failed.stderr}` };
    }
  };

  it('backs up with --sign-key-file, lists it as signed, and restores and verifies with --verify-key-file', async (t) => {
    const { dir, dbPath, uploads } = await fixture(t);
    const { publicKey, privateKey, fingerprint } = await ours;
    await writeFile(join(dir, 'private.asc'), privateKey, { mode: 0o600 });
    await writeFile(join(dir, 'public.asc'), publicKey);
    await writeFile(join(dir, 'other.asc'), (await theirs).publicKey);
    const env = { BACKUPKIT_SIGN_KEY_PASSPHRASE: KEY_PASSPHRASE };

    const backup = await cli(['backup', '--sqlite', 'app=app.db', '--files', 'uploads=uploads', '--to', 'backups', '--sign-key-file', 'private.asc'], dir, env);
    assert.equal(backup.code, 0, backup.stdout);
    // Not on a terminal, the CLI writes JSON lines.
    assert.match(backup.stdout, new RegExp(`"type":"result".*"signedBy":"${fingerprint}"`));
    assert.match((await cli(['list', '--from', 'backups'], dir)).stdout, new RegExp(`"type":"backup".*"signedBy":"${fingerprint}"`));

    const refused = await cli(['restore', '--from', 'backups', '--sqlite', 'app=r1/app.db', '--files', 'uploads=r1/uploads', '--verify-key-file', 'other.asc'], dir);
    assert.equal(refused.code, 3, refused.stdout);
    assert.match(refused.stdout, /SIGNATURE_INVALID/);
    await assert.rejects(readdir(join(dir, 'r1')), { code: 'ENOENT' }, 'nothing written');

    const restored = await cli(['restore', '--from', 'backups', '--sqlite', 'app=r2/app.db', '--files', 'uploads=r2/uploads', '--verify-key-file', 'other.asc', '--verify-key-file', 'public.asc'], dir);
    assert.equal(restored.code, 0, restored.stdout);
    assert.match(restored.stdout, new RegExp(`"type":"result".*"signedBy":"${fingerprint}"`));
    await sameData(join(dir, 'r2'), dbPath, uploads);

    const verified = await cli(['verify', '--from', 'backups', '--verify-key-file', 'public.asc'], dir);
    assert.equal(verified.code, 0, verified.stdout);
    assert.match(verified.stdout, new RegExp(`"signedBy":"${fingerprint}"`));

    const wrongPassphrase = await cli(['backup', '--sqlite', 'app=app.db', '--to', 'backups', '--sign-key-file', 'private.asc'], dir, { BACKUPKIT_SIGN_KEY_PASSPHRASE: 'wrong' });
    assert.equal(wrongPassphrase.code, 1, wrongPassphrase.stdout);
    assert.match(wrongPassphrase.stdout, /WRONG_KEY/);
  });
});
