import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as openpgp from 'openpgp';
import { FORMAT_VERSION, MAX_MANIFEST_LINE_BYTES, manifestLines } from '../src/archive/format.js';
import { archiveName, dateFromArchiveName, isArchiveName } from '../src/archive/names.js';
import { Database, directory, verifyBackup, type VerifySignatureOptions } from '../src/index.js';
import { BACKUPKIT_VERSION } from '../src/version.js';
import { rejectsWithCode } from './helpers/errors.js';
import { describeTree, tempDir, type TreeItem } from './helpers/fs.js';
import { bankSummary, dumpRows } from './helpers/sqlite.js';

const repository = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = join(repository, 'test', 'fixtures');
/** The committed key pair test/fixtures/make-fixtures.ts signed with: published, test-only. */
const TEST_PUBLIC_KEY = join(FIXTURES, 'TEST-ONLY-signing-key.public.asc');

/** One fixture folder of format 2 or later: its archive and the source it was made of (make-fixtures.ts). */
async function fixtureOf(folder: string): Promise<{ dir: string; archive: string; source: { tree: Record<string, TreeItem>; rows: Record<string, unknown[]> } }> {
  const dir = join(FIXTURES, folder);
  const [archive, ...others] = (await readdir(dir)).filter((name) => isArchiveName(name));
  assert.ok(archive !== undefined && others.length === 0, `${folder} holds one archive`);
  return { dir, archive, source: JSON.parse(await readFile(join(dir, 'source.json'), 'utf8')) as never };
}

/** Restores a fixture's archive, copied to a fresh folder, into `<temp>/restored/`. */
async function restoreFixture(t: Parameters<typeof tempDir>[0], folder: string, verifySignature?: VerifySignatureOptions) {
  const { dir, archive, source } = await fixtureOf(folder);
  const work = await tempDir(t, 'fixture');
  await mkdir(join(work, 'backups'));
  await copyFile(join(dir, archive), join(work, 'backups', archive));
  const from = directory({ path: join(work, 'backups') });
  const restored = join(work, 'restored');
  await mkdir(restored);
  const targets = { app: { path: join(restored, 'app.db') }, uploads: { dir: join(restored, 'uploads') } };
  return { from, restored, source, restore: Database.restore({ from, targets, ...(verifySignature ? { verifySignature } : {}) }) };
}

/** Exactly the source: every file's bytes, every mode, mtime and link target, every row. */
async function assertSameAsSource(restored: string, source: { tree: Record<string, TreeItem>; rows: Record<string, unknown[]> }) {
  assert.deepEqual(await describeTree(join(restored, 'uploads')), source.tree);
  assert.deepEqual(dumpRows(join(restored, 'app.db')), source.rows);
  assert.equal((await stat(join(restored, 'app.db'))).mode & 0o7777, 0o640, 'a SQLite database keeps its mode');
}

async function anotherKey(): Promise<string> {
  const { publicKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'Not the fixtures key' }], format: 'armored' });
  return publicKey;
}

describe('archive format', () => {
  it('writes the package version into headers', async () => {
    const pkg = JSON.parse(await readFile(join(repository, 'package.json'), 'utf8')) as { version: string };
    assert.equal(BACKUPKIT_VERSION, pkg.version);
  });

  it('names archives so that string order is time order', () => {
    const at = new Date('2026-11-21T09:05:03.999Z');
    assert.equal(archiveName(at, 0), '20261121-090503.tar.gz');
    assert.equal(archiveName(at, 1), '20261121-090503_01.tar.gz');
    const names = [archiveName(new Date('2026-11-21T09:05:04Z'), 0), archiveName(at, 2), archiveName(at, 0), archiveName(at, 1)];
    assert.deepEqual([...names].sort(), [archiveName(at, 0), archiveName(at, 1), archiveName(at, 2), archiveName(new Date('2026-11-21T09:05:04Z'), 0)]);
    assert.ok(isArchiveName('20261121-090503_01.tar.gz') && !isArchiveName('20261121-090503.tar.gz.json'));
    assert.equal(dateFromArchiveName('20261121-090503_01.tar.gz')?.toISOString(), '2026-11-21T09:05:03.000Z');
  });

  // Archives written by every released format version must restore forever.
  it('restores the committed format v1 fixture', async (t) => {
    const dir = await tempDir(t, 'fixture');
    const fixture = join(repository, 'test', 'fixtures', '20261121-000000.tar.gz');
    await copyFile(fixture, join(dir, '20261121-000000.tar.gz'));
    const result = await Database.restore({ from: directory({ path: dir }), targets: { app: { path: join(dir, 'app.db') }, uploads: { dir: join(dir, 'uploads') } } });
    assert.equal(result.verifiedEntries, 7); // header, database, and the tree: root, docs, docs/readme.txt, empty, link
    const summary = bankSummary(join(dir, 'app.db'));
    assert.deepEqual(summary, { integrity: 'ok', total: 10 * 1000, accounts: 10, transfers: 0 });
    const tree = await describeTree(join(dir, 'uploads'));
    assert.deepEqual(Object.keys(tree).sort(), ['', 'docs', 'docs/readme.txt', 'empty', 'link']);
    assert.equal(tree['link']?.target, 'docs/readme.txt');
    assert.equal(await readFile(join(dir, 'uploads', 'docs', 'readme.txt'), 'utf8'), 'format v1 fixture\n');
  });

  it('holds a fixture of every format version from 2 to the current one', async () => {
    const folders = await readdir(FIXTURES);
    for (let version = 2; version <= FORMAT_VERSION; version++) {
      assert.ok(folders.includes(`format-${version}`), `test/fixtures/format-${version}: run test/fixtures/make-fixtures.ts after bumping FORMAT_VERSION`);
    }
  });

  it('restores the committed format v2 fixture exactly: contents, modes, mtimes, link targets, a name that is not ASCII', async (t) => {
    const { restored, source, restore } = await restoreFixture(t, 'format-2');
    const result = await restore;
    assert.equal(result.verifiedEntries, 12); // header, database, and the tree: root, 3 folders, 4 files, 2 links
    assert.equal(result.signedBy, undefined);
    await assertSameAsSource(restored, source);
    // What the comparison covers, lest source.json be thinner than the archive.
    assert.equal(source.tree['latest']?.target, 'docs/readme.txt');
    assert.equal(source.tree['dangling']?.target, '../outside/nowhere');
    assert.equal(source.tree['private/token.txt']?.mode, 0o600);
    assert.equal(source.tree['bin/run.sh']?.mode, 0o755);
    assert.equal(source.tree['docs/café.txt']?.mode, 0o444);
    assert.equal(source.tree['private']?.mode, 0o700);
    assert.equal(source.tree['docs/readme.txt']?.mtimeSeconds, Date.parse('2026-11-21T12:01:00Z') / 1000);
  });

  it('restores the committed signed fixture, verified with the test-only public key, and refuses it with another key', async (t) => {
    const publicKey = await readFile(TEST_PUBLIC_KEY, 'utf8');
    const fingerprint = (await openpgp.readKey({ armoredKey: publicKey })).getFingerprint();
    const { restored, source, restore, from } = await restoreFixture(t, 'format-2-signed', { publicKeys: [publicKey] });
    const result = await restore;
    assert.equal(result.signedBy, fingerprint);
    await assertSameAsSource(restored, source);
    assert.equal((await verifyBackup({ from, verifySignature: { publicKeys: [publicKey] } })).signedBy, fingerprint);

    const refused = await restoreFixture(t, 'format-2-signed', { publicKeys: [await anotherKey()] });
    await rejectsWithCode(refused.restore, 'SIGNATURE_INVALID', /not one of the keys given/);
    assert.deepEqual(await readdir(refused.restored), [], 'nothing written');
    await rejectsWithCode(verifyBackup({ from: refused.from, verifySignature: { publicKeys: [await anotherKey()] } }), 'SIGNATURE_INVALID');
  });
});

describe('manifest lines', () => {
  const linesOf = async (chunks: Array<string | Buffer>) => {
    const lines: string[] = [];
    for await (const line of manifestLines(Readable.from(chunks.map((chunk) => Buffer.from(chunk))))) lines.push(line);
    return lines;
  };

  it('splits on \\n and \\r\\n, across chunks and inside a multi-byte character, with a last line lacking its newline', async () => {
    const euro = Buffer.from('€'); // three bytes, cut between two chunks below
    const chunks = [Buffer.from('{"a":1}\r\n{"b":"'), euro.subarray(0, 1), Buffer.concat([euro.subarray(1), Buffer.from('"}\n\n{"c"')]), Buffer.from(':3}')];
    assert.deepEqual(await linesOf(chunks), ['{"a":1}', '{"b":"€"}', '', '{"c":3}']);
  });

  it(`accepts a line of ${MAX_MANIFEST_LINE_BYTES} bytes and refuses one more, with or without a newline`, async () => {
    const longest = 'x'.repeat(MAX_MANIFEST_LINE_BYTES);
    assert.deepEqual((await linesOf([`${longest}\n`, 'y'])).map((line) => line.length), [MAX_MANIFEST_LINE_BYTES, 1]);
    await rejectsWithCode(linesOf([longest, 'x\n']), 'CORRUPT_ARCHIVE', /longer than/);
    await rejectsWithCode(linesOf([`${longest}x`]), 'CORRUPT_ARCHIVE', /longer than/);
  });
});
