import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import * as openpgp from 'openpgp';
import { FORMAT_VERSION } from '../src/archive/format.js';
import { isArchiveName } from '../src/archive/names.js';
import { Database, directory, verifyBackup, type RestoreOptions } from '../src/index.js';
import { BACKUPKIT_VERSION } from '../src/version.js';
import { rejectsWithCode } from './helpers/errors.js';
import { TEST_ONLY_PASSPHRASE } from './fixtures/test-only-passphrase.js';
import { describeTree, tempDir, type TreeItem } from './helpers/fs.js';
import { createDatabase, dataFingerprint, pgUrl, schemaDump, sql } from './helpers/postgres.js';
import { bankSummary, dumpRows } from './helpers/sqlite.js';

const repository = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = join(repository, 'test', 'fixtures');
/** The fixture folders make-fixtures.ts makes for every format version from 2 on. */
const VARIANTS = ['', '-signed', '-zstd', '-encrypted', '-postgres'];
/** The committed key pair test/fixtures/make-fixtures.ts signed with: published, test-only. */
const TEST_PUBLIC_KEY = join(FIXTURES, 'TEST-ONLY-signing-key.public.asc');

/** One fixture folder of format 2 or later, its archive copied to a fresh folder of backups. */
async function fixtureOf(t: Parameters<typeof tempDir>[0], folder: string): Promise<{ dir: string; archive: string; work: string; from: ReturnType<typeof directory> }> {
  const dir = join(FIXTURES, folder);
  const [archive, ...others] = (await readdir(dir)).filter((name) => isArchiveName(name));
  assert.ok(archive !== undefined && others.length === 0, `${folder} holds one archive`);
  const work = await tempDir(t, 'fixture');
  await mkdir(join(work, 'backups'));
  await copyFile(join(dir, archive), join(work, 'backups', archive));
  return { dir, archive, work, from: directory({ path: join(work, 'backups') }) };
}

/** Restores a fixture of the SQLite database and folder into `<temp>/restored/`; `source` is what it was made of. */
/** zstd came with Node.js 22.15; older runtimes refuse zstd archives with a typed error. */
const HAS_ZSTD = typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function';

async function restoreFixture(t: Parameters<typeof tempDir>[0], folder: string, options: Pick<RestoreOptions, 'verifySignature' | 'decrypt'> = {}) {
  const { dir, archive, work, from } = await fixtureOf(t, folder);
  const source = JSON.parse(await readFile(join(dir, 'source.json'), 'utf8')) as { tree: Record<string, TreeItem>; rows: Record<string, unknown[]> };
  const restored = join(work, 'restored');
  await mkdir(restored);
  const targets = { app: { path: join(restored, 'app.db') }, uploads: { dir: join(restored, 'uploads') } };
  return { from, archive: join(dir, archive), restored, source, restore: Database.restore({ from, targets, ...options }) };
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

  it('holds a fixture of every format version from 2 to the current one, and every variant of the current one', async () => {
    const folders = await readdir(FIXTURES);
    for (let version = 2; version <= FORMAT_VERSION; version++) {
      assert.ok(folders.includes(`format-${version}`), `test/fixtures/format-${version}: run test/fixtures/make-fixtures.ts after bumping FORMAT_VERSION`);
    }
    for (const variant of VARIANTS) assert.ok(folders.includes(`format-${FORMAT_VERSION}${variant}`), `test/fixtures/format-${FORMAT_VERSION}${variant}: run test/fixtures/make-fixtures.ts`);
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
    const { restored, source, restore, from } = await restoreFixture(t, 'format-2-signed', { verifySignature: { publicKeys: [publicKey] } });
    const result = await restore;
    assert.equal(result.signedBy, fingerprint);
    await assertSameAsSource(restored, source);
    assert.equal((await verifyBackup({ from, verifySignature: { publicKeys: [publicKey] } })).signedBy, fingerprint);

    const refused = await restoreFixture(t, 'format-2-signed', { verifySignature: { publicKeys: [await anotherKey()] } });
    await rejectsWithCode(refused.restore, 'SIGNATURE_INVALID', /not one of the keys given/);
    assert.deepEqual(await readdir(refused.restored), [], 'nothing written');
    await rejectsWithCode(verifyBackup({ from: refused.from, verifySignature: { publicKeys: [await anotherKey()] } }), 'SIGNATURE_INVALID');
  });

  it('restores the committed zstd fixture exactly (refuses it, writing nothing, where Node.js has no zstd)', async (t) => {
    const { restored, source, restore, archive } = await restoreFixture(t, `format-${FORMAT_VERSION}-zstd`);
    assert.equal((await readFile(archive)).readUInt32LE(0), 0xfd2fb528, 'a zstd frame, not gzip');
    if (!HAS_ZSTD) {
      await rejectsWithCode(restore, 'UNSUPPORTED_FORMAT');
      assert.deepEqual(await readdir(restored), []);
      return;
    }
    await restore;
    await assertSameAsSource(restored, source);
  });

  it('restores the committed encrypted fixture exactly with its TEST-ONLY passphrase, and refuses a wrong one', async (t) => {
    const { restored, source, restore, archive } = await restoreFixture(t, `format-${FORMAT_VERSION}-encrypted`, { decrypt: { passphrase: TEST_ONLY_PASSPHRASE } });
    assert.doesNotMatch((await readFile(archive)).toString('latin1'), /header\.json|readme\.txt/, 'nothing readable without the passphrase');
    await restore;
    await assertSameAsSource(restored, source);
    const wrong = await restoreFixture(t, `format-${FORMAT_VERSION}-encrypted`, { decrypt: { passphrase: 'not it' } });
    await rejectsWithCode(wrong.restore, 'WRONG_KEY');
    assert.deepEqual(await readdir(wrong.restored), [], 'nothing written');
  });

  it('restores the committed PostgreSQL fixture into a new database: the schema and data of its source.sql', async (t) => {
    const { dir, from } = await fixtureOf(t, `format-${FORMAT_VERSION}-postgres`);
    const expected = await createDatabase(t, 'fixture', `${basename(dir)}/source.sql`);
    const restored = `${expected}_restored`; // dropped with it
    await Database.restore({ from, targets: { pg: { connection: pgUrl('postgres'), database: restored } } });
    assert.deepEqual(await sql(restored, 'SELECT (SELECT count(*) FROM shop.customers)::int AS customers, (SELECT count(*) FROM shop.orders)::int AS orders'), [{ customers: 3, orders: 200 }]);
    assert.deepEqual(await dataFingerprint(restored), await dataFingerprint(expected));
    assert.equal(await schemaDump(restored), await schemaDump(expected));
  });
});
