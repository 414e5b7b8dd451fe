import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as openpgp from 'openpgp';
import { BackupError, Database, directory, listBackups, type Destination, type Source } from '../src/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { kvSource } from './helpers/kv-source.js';

const run = promisify(execFile);

async function tarList(archive: string): Promise<string[]> {
  return (await run('tar', ['-tzf', archive])).stdout.trim().split('\n');
}

async function tarRead(archive: string, entry: string): Promise<string> {
  return (await run('tar', ['-xzOf', archive, entry])).stdout;
}

describe('incremental backups: the engine', () => {
  it('stores each backup state beside its archive, hands it to the next incremental, and writes only what changed', async (t) => {
    const dir = await tempDir(t, 'inc-engine');
    const data = new Map([
      ['a', 'one'],
      ['b', 'two'],
    ]);
    const source = kvSource('kv', data);
    const to = directory({ path: dir });
    const db = new Database({ sources: [source] });
    const full = await db.startBackup({ to }).done;
    assert.equal(full.type, 'full');
    assert.deepEqual((await readdir(dir)).sort(), [full.name, `${full.name}.json`, `${full.name}.state`].sort());
    assert.deepEqual(await run('tar', ['-tzf', join(dir, `${full.name}.state`)]).then((r) => r.stdout.trim()), 'kv', 'the state opens with tar: one entry per source');
    const sidecar = JSON.parse(await readFile(join(dir, `${full.name}.json`), 'utf8')) as { state: { size: number } };
    assert.equal(sidecar.state.size, (await readFile(join(dir, `${full.name}.state`))).length);
    assert.equal(JSON.parse(await tarRead(join(dir, full.name), 'header.json')).formatVersion, 2, 'a full stays format 2');

    data.set('b', 'TWO');
    data.set('c', 'three');
    const inc = await db.startBackup({ to, type: 'incremental' }).done;
    assert.deepEqual([inc.type, inc.previous, inc.unchanged], ['incremental', full.name, undefined]);
    assert.equal(source.opened.at(-1)?.archive, full.name, 'the source was given the previous state');
    assert.deepEqual(await tarList(join(dir, inc.name)), ['header.json', 'sources/kv/b', 'sources/kv/c', 'meta/kv/keys.json', 'manifest.ndjson']);
    const header = JSON.parse(await tarRead(join(dir, inc.name), 'header.json')) as { formatVersion: number; sources: Array<{ mode: string }> };
    assert.deepEqual([header.formatVersion, header.sources[0]?.mode], [3, 'changes']);
    assert.equal((await listBackups(to)).length, 2);
  });

  it('makes a full, saying why, when the previous state is damaged, unreadable to the source, or encrypted with another passphrase', async (t) => {
    const dir = await tempDir(t, 'inc-engine');
    const data = new Map([['a', 'one']]);
    const to = directory({ path: dir });
    const db = new Database({ sources: [kvSource('kv', data)] });
    const first = await db.startBackup({ to }).done;
    await writeFile(join(dir, `${first.name}.state`), 'not the state');
    data.set('a', 'ONE');
    const damaged = await db.startBackup({ to, type: 'incremental' }).done;
    assert.equal(damaged.type, 'full');
    assert.deepEqual(damaged.warnings.map((w) => w.code), ['INCREMENTAL_BASE_REJECTED']);
    assert.match(damaged.warnings[0]?.message ?? '', /has a state that cannot be used/);

    const garbled = new Database({ sources: [kvSource('kv', data, { unreadableState: true })] });
    await garbled.startBackup({ to }).done;
    data.set('a', 'uno');
    const unreadable = await db.startBackup({ to, type: 'incremental' }).done;
    assert.equal(unreadable.type, 'incremental', 'the chain links; the source alone is held in full');
    assert.deepEqual(unreadable.warnings.map((w) => [w.code, w.source]), [['INCREMENTAL_BASE_REJECTED', 'kv']]);
    const header = JSON.parse(await tarRead(join(dir, unreadable.name), 'header.json')) as { formatVersion: number; sources: Array<{ mode: string }> };
    assert.deepEqual([header.formatVersion, header.sources[0]?.mode], [2, 'full']);

    const secret = await db.startBackup({ to, encrypt: { passphrase: 'correct horse' } }).done;
    const wrongKey = await db.startBackup({ to, type: 'incremental', encrypt: { passphrase: 'battery staple' } }).done;
    assert.equal(wrongKey.type, 'full');
    assert.match(wrongKey.warnings[0]?.message ?? '', new RegExp(`${secret.name.replaceAll('.', '\\.')} is encrypted with another passphrase`));
    data.set('a', 'eins');
    const rightKey = await db.startBackup({ to, type: 'incremental', encrypt: { passphrase: 'battery staple' } }).done;
    assert.deepEqual([rightKey.type, rightKey.previous, rightKey.warnings], ['incremental', wrongKey.name, []]);

    const { publicKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'ops' }], format: 'armored' });
    await db.startBackup({ to, encrypt: { recipients: [publicKey] } }).done;
    const keysOnly = await db.startBackup({ to, type: 'incremental', encrypt: { recipients: [publicKey] } }).done;
    assert.equal(keysOnly.type, 'full');
    assert.match(keysOnly.warnings[0]?.message ?? '', /no passphrase to read it/);
  });

  it('a backup whose state cannot be saved or committed fails and leaves nothing behind', async (t) => {
    const dir = await tempDir(t, 'inc-engine');
    const source = kvSource('kv', new Map([['a', 'one']]));
    const to = directory({ path: dir });
    await new Database({ sources: [source] }).startBackup({ to }).done;
    const before = (await readdir(dir)).sort();
    const stateFails: Source = {
      ...source,
      async open(context) {
        const snapshot = await source.open(context);
        return { ...snapshot, state: async function* () { yield* []; throw new Error('disk on fire'); } };
      },
    };
    await rejectsWithCode(new Database({ sources: [stateFails] }).startBackup({ to }).done, 'SOURCE_FAILED', /Saving the state of source "kv" failed/);
    assert.deepEqual((await readdir(dir)).sort(), before);
    const refusesState: Destination = {
      ...to,
      create: async (name) => {
        const upload = await to.create(name);
        return name.endsWith('.state') ? { ...upload, commit: () => Promise.reject(new BackupError('DESTINATION_FAILED', 'no room for state')) } : upload;
      },
    };
    await rejectsWithCode(new Database({ sources: [source] }).startBackup({ to: refusesState }).done, 'DESTINATION_FAILED', /no room for state/);
    assert.deepEqual((await readdir(dir)).sort(), before, 'the archive committed first is removed again');
  });

  it("tells each entry the SHA-256 its body was stored with, the manifest's, cut or padded to its size", async (t) => {
    const dir = await tempDir(t, 'inc-engine');
    const told = new Map<string, string>();
    const bodies = { exact: 'four', short: 'ab', long: 'abcdefgh' };
    const source: Source = {
      kind: 'archived-test',
      name: 'told',
      role: 'files',
      open: async () => ({
        estimate: async () => ({ bytes: 12, items: 3 }),
        async *entries() {
          for (const [path, text] of Object.entries(bodies)) {
            const body = async function* () {
              yield Buffer.from(text);
            };
            yield { path, type: 'file', mode: 0o644, mtime: new Date(0), size: 4, body, archived: (sha256: string) => void told.set(path, sha256) };
          }
        },
        close: async () => {},
      }),
    };
    const done = await new Database({ sources: [source] }).startBackup({ to: directory({ path: dir }) }).done;
    const manifest = (await tarRead(join(dir, done.name), 'manifest.ndjson')).trim().split('\n').map((line) => JSON.parse(line) as { path?: string; sha256?: string });
    const stored = Object.fromEntries(Object.keys(bodies).map((path) => [path, manifest.find((line) => line.path === `sources/told/${path}`)?.sha256]));
    assert.deepEqual(Object.fromEntries(told), stored);
    const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
    assert.deepEqual(stored, { exact: sha256('four'), short: sha256('ab\0\0'), long: sha256('abcd') });
  });
});
