/**
 * A source kind defined outside backupkit (examples/custom-source.ts, a key-value JSON store),
 * registered through the public API: it passes the source conformance suite, and is backed up,
 * restored, verified, drilled and run from a CLI config file like a built-in kind. Everything is
 * imported from the built package, as an application would, so that the registry the example,
 * the library and the command line use is one.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Database, directory, memory, registerDestination, registerSource, sqlite, verifyBackup, type SourceKind } from 'backupkit';
import { withRestoredBackup } from 'backupkit/testing';
import { kvStore, kvStoreKind, kvStoreRestorer, readStore, writeStore } from '../examples/custom-source.js';
import { testSource } from './conformance/source.js';
import { cli, records, ROOT } from './helpers/cli.js';
import { rejectsWithCode } from './helpers/errors.js';
import { listOrUndefined, tempDir } from './helpers/fs.js';

const STORE = { theme: 'dark', 'max-upload-mb': 25, admins: ['ada', 'grace'], nested: { a: [1, 2, { b: null }] } };

registerSource(kvStoreKind);

testSource('custom kind: key-value store', async () => {
  const dir = await tempDir({ after: () => {} }, 'kv-conformance');
  const path = join(dir, 'source', 'store.json');
  await mkdir(join(dir, 'source'));
  await writeStore(path, STORE);
  let made = 0;
  return {
    source: kvStore({ name: 'settings', path }),
    kind: kvStoreKind,
    freshTarget: async () => {
      const folder = join(dir, `target-${++made}`);
      await mkdir(folder);
      return { path: join(folder, 'store.json') };
    },
    createEmpty: (target) => writeFile(target.path, '{}'),
    fill: (target) => writeStore(target.path, { someone: 'else' }),
    describe: async (target) => readStore(target?.path ?? path),
    surroundings: async (target) => listOrUndefined(join(target.path, '..')),
    exactEstimate: true,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

/**
 * A folder holding the store and a backupkit.config.mjs that registers the example's kind with the
 * built package the command runs, then goes on with `rest` (which may import from `node:` too).
 */
async function withConfig(t: Parameters<typeof tempDir>[0], rest: string): Promise<string> {
  const dir = await tempDir(t, 'kv-cli');
  await writeStore(join(dir, 'settings.json'), STORE);
  const library = pathToFileURL(join(ROOT, 'dist', 'index.js')).href;
  const example = pathToFileURL(join(ROOT, 'build', 'examples', 'custom-source.js')).href;
  await writeFile(
    join(dir, 'backupkit.config.mjs'),
    `import { directory, registerDestination, registerSource } from ${JSON.stringify(library)};\n` +
      `import { kvStore, kvStoreKind } from ${JSON.stringify(example)};\n` +
      `registerSource(kvStoreKind);\n${rest}`,
  );
  return dir;
}

describe('a source kind registered by the application', () => {
  it('is backed up, restored into an empty store, refused over a full one, verified and drilled', async (t) => {
    const dir = await tempDir(t, 'kv');
    const path = join(dir, 'settings.json');
    await writeStore(path, STORE);
    const from = directory({ path: join(dir, 'backups') });
    const backup = await new Database({ sources: [kvStore({ name: 'settings', path })] }).startBackup({ to: from }).done;
    assert.deepEqual(backup.sources.map((s) => [s.name, s.kind, s.items]), [['settings', 'kv-store', 1]]);

    const restoredPath = join(dir, 'restored', 'settings.json');
    const restored = await Database.restore({ from, targets: { settings: { path: restoredPath } } }).done;
    assert.deepEqual(await readStore(restoredPath), STORE);
    assert.deepEqual(restored.sources.map((s) => s.target), [{ path: restoredPath }]);

    await writeStore(join(dir, 'full.json'), { someone: 'else' });
    await rejectsWithCode(Database.restore({ from, targets: { settings: { path: join(dir, 'full.json') } } }).done, 'TARGET_NOT_EMPTY');
    assert.deepEqual(await readStore(join(dir, 'full.json')), { someone: 'else' }, 'the full store is untouched');

    const scratch = join(dir, 'scratch');
    await mkdir(scratch);
    const verified = await verifyBackup({ from, level: 'restore', scratch: { dir: scratch } });
    assert.deepEqual(verified.problems, []);
    assert.deepEqual(verified.sources[0]?.checks, [{ name: 'store contents', figures: { keys: 4 }, problems: [] }]);

    let drilled = '';
    const keys = await withRestoredBackup({ from, scratch: { dir: scratch } }, async (drill) => {
      drilled = drill.target('settings', 'kv-store').path;
      assert.throws(() => drill.target('settings', 'sqlite'), { code: 'INVALID_OPTIONS' });
      return Object.keys((await readStore(drilled)) ?? {});
    });
    assert.deepEqual(keys, Object.keys(STORE));
    assert.notEqual(drilled, '');
    assert.deepEqual(await readdir(scratch), [], 'verify and the drill removed their throwaway stores');
  });

  it('refuses a second descriptor for a known kind, a name that is not a flag, a scheme or plain paths taken; the same descriptor again is a no-op', () => {
    registerSource(kvStoreKind);
    assert.throws(() => registerSource({ ...kvStoreKind }), { code: 'INVALID_OPTIONS', message: /"kv-store" is registered already/ });
    const impostor: SourceKind = { kind: 'sqlite', restorer: { ...kvStoreRestorer, kind: 'sqlite' }, source: () => sqlite({ name: 'x', path: 'x' }), describeTarget: () => '' };
    assert.throws(() => registerSource(impostor), { code: 'INVALID_OPTIONS' });
    assert.throws(() => registerSource({ ...kvStoreKind, kind: 'Key Value' }), { code: 'INVALID_OPTIONS', message: /lower-case letters/ });
    assert.throws(() => registerSource({ ...kvStoreKind, kind: 'other' }), { code: 'INVALID_OPTIONS', message: /needs a restorer of kind "other"/ });
    assert.throws(() => registerDestination({ kind: 'bucket', schemes: ['s3:'], create: memory, fromSpec: memory }), { code: 'INVALID_OPTIONS', message: /the scheme s3: is the one of kind "s3"/ });
    assert.throws(() => registerDestination({ kind: 'folder', schemes: [], paths: true, create: memory, fromSpec: memory }), { code: 'INVALID_OPTIONS', message: /plain paths already name folders/ });
  });

  it('a destination kind registered by a config file names its destinations by URL in --to and --from', async (t) => {
    // shelf://name is the folder shelves/name: a stand-in for a remote store's URLs.
    const dir = await withConfig(
      t,
      `import { join } from 'node:path';\n` +
        `registerDestination({ kind: 'shelf', schemes: ['shelf:'], urlForm: 'shelf://name', create: directory,\n` +
        `  fromSpec: (spec, cwd) => directory({ path: join(cwd, 'shelves', new URL(spec).hostname) }) });\n` +
        `export default { sources: [kvStore({ name: 'settings', path: 'settings.json' })] };\n`,
    );
    const backup = await cli(['backup', '--json', '--to', 'shelf://north'], { cwd: dir });
    assert.equal(backup.code, 0, backup.stderr);
    assert.deepEqual(records(backup.stdout).at(-1)?.['destinations'], [`directory ${join(dir, 'shelves', 'north')}`]);
    const list = await cli(['list', '--json', '--from', 'shelf://north'], { cwd: dir });
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(records(list.stdout).map((r) => r['name']), [records(backup.stdout).at(-1)?.['name']]);

    await rm(join(dir, 'backupkit.config.mjs'));
    const unknown = await cli(['list', '--from', 'shelf://north'], { cwd: dir });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /shelf:\/\/north: a destination is a folder, file:\/\/\/path, s3:\/\/bucket.*, azure:\/\/container\/prefix, sftp:\/\/user@host.*, ftp\[s\]:\/\/user@host.* or gs:\/\/bucket/);
  });

  it('runs from a JavaScript CLI config file that registers it: backup, list, restore and verify', async (t) => {
    const dir = await withConfig(
      t,
      `export default { sources: [kvStore({ name: 'settings', path: 'settings.json' })], to: directory({ path: 'backups' }),\n` +
        `  targets: { settings: { path: 'restored/settings.json' } } };\n`,
    );
    const backup = await cli(['backup', '--json'], { cwd: dir });
    assert.equal(backup.code, 0, backup.stderr);
    const list = await cli(['list', '--json'], { cwd: dir });
    assert.deepEqual((records(list.stdout)[0]?.['sources'] as Array<{ kind: string }>).map((s) => s.kind), ['kv-store']);
    const restore = await cli(['restore'], { cwd: dir, env: { FORCE_COLOR: '0' } });
    assert.equal(restore.code, 0, restore.stderr);
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'restored', 'settings.json'), 'utf8')), STORE);
    const verify = await cli(['verify', '--json', '--level', 'restore', '--scratch-dir', '.'], { cwd: dir });
    assert.equal(verify.code, 0, verify.stderr);
    assert.deepEqual((records(verify.stdout).at(-1)?.['sources'] as Array<{ checks: unknown }>)[0]?.checks, [{ name: 'store contents', figures: { keys: 4 }, problems: [] }]);

    // A file:// URL names the same folder as its path.
    const byUrl = await cli(['list', '--json', '--from', pathToFileURL(join(dir, 'backups')).href], { cwd: dir });
    assert.deepEqual(records(byUrl.stdout).map((r) => r['name']), records(list.stdout).map((r) => r['name']));

    // Without the config that registers it, the command line knows no such kind.
    await rm(join(dir, 'backupkit.config.mjs'));
    const unknown = await cli(['verify', '--from', 'backups', '--level', 'restore'], { cwd: dir });
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /UNSUPPORTED_FORMAT: Source "settings" is of kind "kv-store"/);
    assert.match(unknown.stderr, /hint: Register that kind with `registerSource`/);
  });
});
