/**
 * Restoring incremental chains: a source kind that really sends only its changes (test/helpers/chain.ts),
 * registered like an application's own kind, backed up into chains of several archives, restored at
 * each point; missing, damaged, foreign and wrongly keyed pieces refused before anything is written.
 */
import assert from 'node:assert/strict';
import { open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { Database, directory, listBackups, prune, registerSource, verifyBackup, type Destination, type Source } from '../src/index.js';
import { prepareEncryption, type Encryption } from '../src/archive/encryption.js';
import { archiveName } from '../src/archive/names.js';
import { layersSeen, readRecords, recordsKind, writeBackup, writeRecords, type WrittenBackup } from './helpers/chain.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';

const RECORDS = recordsKind('records', { incremental: true, layers: true });
const ALWAYS_FULL = recordsKind('records-full', { incremental: false, layers: true });
const LEGACY = recordsKind('records-legacy', { incremental: true, layers: false });
for (const kind of [RECORDS, ALWAYS_FULL, LEGACY]) registerSource(kind);

/** The records folder at each backup: additions, changes, deletions and a rename between them. */
const VERSIONS: ReadonlyArray<Record<string, string>> = [
  { alpha: '{"n":1}', beta: '{"n":2}', gamma: '{"n":3}' },
  { alpha: '{"n":10}', beta: '{"n":2}', gamma: '{"n":3}', delta: '{"n":4}' },
  { alpha: '{"n":10}', gamma: '{"n":3}', delta: '{"n":4}' },
  { alpha: '{"n":10}', epsilon: '{"n":3}', delta: '{"n":4}' },
  { alpha: '{"n":11}', epsilon: '{"n":3}', delta: '{"n":40}', zeta: '{}' },
];
const SETTINGS = { theme: '"dark"' };

/** The hour of backup `i` of a chain: names sort as the times do. */
const at = (i: number) => new Date(Date.UTC(2026, 10, 21, 12 + i, 0, 0));

interface Chain {
  readonly dir: string;
  readonly backups: string;
  readonly from: Destination;
  readonly names: string[];
}

/** Writes one backup per version of `versions`, each an incremental of the one before but the first. */
async function makeChain(t: TestContext, options: { kind?: typeof RECORDS; versions?: ReadonlyArray<Record<string, string>>; encryption?: (i: number) => Encryption | undefined; settings?: boolean } = {}): Promise<Chain> {
  const dir = await tempDir(t, 'chain');
  const backups = join(dir, 'backups');
  const from = directory({ path: backups });
  const sources: Source[] = [(options.kind ?? RECORDS).source({ name: 'records', dir: join(dir, 'records') })];
  if (options.settings) {
    sources.push(ALWAYS_FULL.source({ name: 'settings', dir: join(dir, 'settings') }));
    await writeRecords(join(dir, 'settings'), SETTINGS);
  }
  const names: string[] = [];
  let after: WrittenBackup | undefined;
  for (const [i, version] of (options.versions ?? VERSIONS).entries()) {
    await writeRecords(join(dir, 'records'), version);
    const encryption = options.encryption?.(i);
    after = await writeBackup(from, sources, { at: at(i), ...(after ? { after } : {}), ...(encryption ? { encryption } : {}) });
    names.push(after.name);
  }
  return { dir, backups, from, names };
}

/** `backup` restored newest first: itself, then the pieces before it. */
const piecesOf = (names: readonly string[], index: number) => names.slice(0, index + 1).reverse();

/** Restoring `index` must fail with `code`, leaving its folder and everything beside it as they were. */
async function refusedUntouched(chain: Chain, index: number, code: Parameters<typeof rejectsWithCode>[1], message: RegExp, options: { decrypt?: { passphrase: string } } = {}): Promise<void> {
  const target = join(chain.dir, 'restored');
  const before = (await readdir(chain.dir)).sort();
  await rejectsWithCode(Database.restore({ from: chain.from, backup: chain.names[index], targets: { records: { dir: target } }, ...options }).done, code, message);
  assert.deepEqual((await readdir(chain.dir)).sort(), before, 'no target, no staging copy left');
}

describe('restoring an incremental chain', () => {
  it('restores each point of a chain of five as of its time, reading the layers newest first', async (t) => {
    const chain = await makeChain(t, { settings: true });
    const listed = (await listBackups(chain.from)).reverse();
    assert.deepEqual(
      listed.map((b) => b.sources.find((s) => s.name === 'records')?.items),
      [4, 3, 1, 2, 4],
      'each incremental holds the key list and the records that changed, nothing more',
    );
    for (const [i, version] of VERSIONS.entries()) {
      const records = join(chain.dir, `records-${i}`);
      const settings = join(chain.dir, `settings-${i}`);
      const asOf = new Date(at(i).getTime() + 30 * 60_000);
      const result = await Database.restore({ from: chain.from, asOf, targets: { records: { dir: records }, settings: { dir: settings } } }).done;
      assert.equal(result.name, chain.names[i]);
      assert.deepEqual(result.chain, piecesOf(chain.names, i));
      assert.deepEqual(await readRecords(records), version, `the records as they were at backup ${i}`);
      assert.deepEqual(await readRecords(settings), SETTINGS);
      assert.deepEqual(
        layersSeen.get(records),
        piecesOf(chain.names, i).map((archive, depth) => ({ archive, depth, mode: depth === i ? 'full' : 'changes' })),
      );
      assert.deepEqual(layersSeen.get(settings), [{ archive: chain.names[i], depth: 0, mode: 'full' }], 'a source held in full is read from the backup restored only');
      assert.deepEqual(result.sources.find((s) => s.name === 'settings')?.items, 2);
    }
  });

  it('restores an incremental whose sources are all held in full from that archive alone', async (t) => {
    const chain = await makeChain(t, { kind: ALWAYS_FULL });
    await rm(join(chain.backups, chain.names[0]!));
    await rm(join(chain.backups, chain.names[3]!));
    const target = join(chain.dir, 'restored');
    const result = await Database.restore({ from: chain.from, backup: chain.names[4], targets: { records: { dir: target } } }).done;
    assert.deepEqual(result.chain, [chain.names[4]]);
    assert.deepEqual(await readRecords(target), VERSIONS[4]);
    assert.deepEqual(layersSeen.get(target), [{ archive: chain.names[4], depth: 0, mode: 'full' }]);
  });

  it('refuses a chain missing a piece with NOT_FOUND naming it, before writing anything', async (t) => {
    const chain = await makeChain(t);
    await rm(join(chain.backups, chain.names[1]!));
    await refusedUntouched(chain, 3, 'NOT_FOUND', new RegExp(`has no ${chain.names[1]}, which ${chain.names[2]} builds on`));
    const target = join(chain.dir, 'full');
    await Database.restore({ from: chain.from, backup: chain.names[0], targets: { records: { dir: target } } }).done;
    assert.deepEqual(await readRecords(target), VERSIONS[0], 'what does not need the missing piece still restores');
  });

  it('refuses a chain with a bit flipped in an older piece with CORRUPT_ARCHIVE naming it; the target stays untouched', async (t) => {
    const chain = await makeChain(t);
    const path = join(chain.backups, chain.names[1]!);
    const handle = await open(path, 'r+');
    try {
      const { size } = await handle.stat();
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, Math.floor(size / 2));
      byte[0] = (byte[0] as number) ^ 0x10;
      await handle.write(byte, 0, 1, Math.floor(size / 2));
    } finally {
      await handle.close();
    }
    await refusedUntouched(chain, 4, 'CORRUPT_ARCHIVE', new RegExp(`^${chain.names[1]}, which ${chain.names[4]} builds on: `));
    await rejectsWithCode(verifyBackup({ from: chain.from, backup: chain.names[4] }).done, 'CORRUPT_ARCHIVE', new RegExp(chain.names[1]!));
  });

  it('refuses a piece that is not the one its successor builds on: another chain, or encrypted otherwise', async (t) => {
    const dir = await tempDir(t, 'chain-foreign');
    const from = directory({ path: join(dir, 'backups') });
    const source = RECORDS.source({ name: 'records', dir: join(dir, 'records') });
    await writeRecords(join(dir, 'records'), VERSIONS[0]!);
    const full = await writeBackup(from, [source], { at: at(0) });
    const second = await writeBackup(from, [source], { at: at(1), after: full });
    await writeRecords(join(dir, 'records'), VERSIONS[1]!);
    const otherBase = archiveName(at(-5), 0);
    const foreign = await writeBackup(from, [source], { at: at(2), after: second, header: (header) => (header.base = otherBase) });
    const chain = { dir, backups: join(dir, 'backups'), from, names: [full.name, second.name, foreign.name] };
    await refusedUntouched(chain, 2, 'CORRUPT_ARCHIVE', new RegExp(`${second.name}, which ${foreign.name} builds on, belongs to the chain of ${full.name}, not to that of ${otherBase}`));

    const encryption = await prepareEncryption({ passphrase: 'correct horse' });
    const encrypted = await writeBackup(from, [source], { at: at(3), after: second, encryption });
    await refusedUntouched({ ...chain, names: [encrypted.name] }, 0, 'CORRUPT_ARCHIVE', new RegExp(`${second.name}, which ${encrypted.name} builds on, is encrypted otherwise`), {
      decrypt: { passphrase: 'correct horse' },
    });
  });

  it('restores an encrypted chain with its key, and refuses a wrong key, or a piece encrypted with another key, with WRONG_KEY', async (t) => {
    const [right, other] = await Promise.all([prepareEncryption({ passphrase: 'correct horse' }), prepareEncryption({ passphrase: 'battery staple' })]);
    const chain = await makeChain(t, { versions: VERSIONS.slice(0, 3), encryption: (i) => (i === 1 ? other : right) });
    await refusedUntouched(chain, 0, 'WRONG_KEY', /./, { decrypt: { passphrase: 'battery staple' } });
    await refusedUntouched(chain, 2, 'WRONG_KEY', new RegExp(`^${chain.names[1]}, which ${chain.names[2]} builds on: `), { decrypt: { passphrase: 'correct horse' } });
    const target = join(chain.dir, 'restored');
    await Database.restore({ from: chain.from, backup: chain.names[0], targets: { records: { dir: target } }, decrypt: { passphrase: 'correct horse' } }).done;
    assert.deepEqual(await readRecords(target), VERSIONS[0]);
  });

  it('refuses, naming the kind, a restorer without `layer` given a source held as changes; it still restores fulls', async (t) => {
    const chain = await makeChain(t, { kind: LEGACY, versions: VERSIONS.slice(0, 2) });
    await refusedUntouched(chain, 1, 'RESTORE_FAILED', /restorer of kind "records-legacy" cannot apply the layers of a chain/);
    const target = join(chain.dir, 'full');
    await Database.restore({ from: chain.from, backup: chain.names[0], targets: { records: { dir: target } } }).done;
    assert.deepEqual(await readRecords(target), VERSIONS[0]);
  });

  it('verifies a whole chain: every piece against its manifest, and restored into a scratch target', async (t) => {
    const chain = await makeChain(t);
    const sums = await listBackups(chain.from);
    const entries = sums.reduce((sum, b) => sum + 1 + b.sources.reduce((n, s) => n + s.items, 0), 0); // header.json + each source's entries
    const checked = await verifyBackup({ from: chain.from }).done;
    assert.deepEqual([checked.name, checked.chain], [chain.names[4], piecesOf(chain.names, 4)]);
    assert.equal(checked.verifiedEntries, entries);
    const restored = await verifyBackup({ from: chain.from, backup: chain.names[3], level: 'restore', scratch: { dir: chain.dir } }).done;
    assert.deepEqual(restored.chain, piecesOf(chain.names, 3));
    assert.deepEqual(restored.problems, []);
    assert.deepEqual(
      restored.sources[0]?.checks.map((c) => [c.name, c.figures]),
      [['records', { records: Object.keys(VERSIONS[3]!).length }]],
    );
  });

  it('prune keeps every piece a kept incremental builds on, and removes each archive with its sidecar and state', async (t) => {
    const chain = await makeChain(t, { versions: VERSIONS.slice(0, 3) });
    const source = RECORDS.source({ name: 'records', dir: join(chain.dir, 'records') });
    const full = await writeBackup(chain.from, [source], { at: at(5) });
    const last = await writeBackup(chain.from, [source], { at: at(6), after: full });
    const objects = async () => (await readdir(chain.backups)).sort();
    const companions = (name: string) => [name, `${name}.json`, `${name}.state`];

    const kept = await prune(chain.from, { keepLast: 3 });
    assert.deepEqual(
      kept.kept.map((b) => [b.name, b.reasons]),
      [
        [last.name, ['newest', 'last']],
        [full.name, ['last', 'chain']],
        [chain.names[2], ['last']],
        [chain.names[1], ['chain']],
        [chain.names[0], ['chain']],
      ],
    );
    assert.deepEqual(kept.removed, []);
    const target = join(chain.dir, 'restored');
    await Database.restore({ from: chain.from, backup: chain.names[2], targets: { records: { dir: target } } }).done;
    assert.deepEqual(await readRecords(target), VERSIONS[2]);

    const pruned = await prune(chain.from, { keepLast: 1 });
    assert.deepEqual(
      pruned.removed.map((b) => b.name),
      [...chain.names].reverse(),
    );
    assert.deepEqual(await objects(), [...companions(full.name), ...companions(last.name)].sort(), 'no .state is left without its archive');
  });
});
