/**
 * Restoring incremental chains: a source kind that really sends only its changes (test/helpers/chain.ts),
 * registered like an application's own kind, backed up with `db.startBackup({ type: 'incremental' })`
 * into chains of several archives, restored at each point; damaged, foreign and wrongly keyed
 * pieces refused before anything is written. The cases every incremental kind passes (a chain,
 * asOf, unchanged, a missing piece) are in the source conformance suite (test/conformance/source.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Database, directory, listBackups, prune, registerSource, verifyBackup, type Destination, type ProgressEvent, type Source } from '../src/index.js';
import { prepareEncryption } from '../src/archive/encryption.js';
import { archiveName } from '../src/archive/names.js';
import { withRestoredBackup } from '../src/testing.js';
import { ALWAYS_FULL, LEGACY, RECORDS, layersSeen, readRecords, writeBackup, writeRecords, type WrittenBackup } from './helpers/chain.js';
import { rejectsWithCode } from './helpers/errors.js';
import { CRAFTED_NAME, craftArchive, headerEntry, manifestFor, store, type CraftedEntry } from './helpers/craft.js';
import { tempDir } from './helpers/fs.js';
import { stoppedItself } from './helpers/process.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'restore-child.js');

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

/** The hour of a crafted backup: names sort as the times do. */
const at = (i: number) => new Date(Date.UTC(2026, 10, 21, 12 + i, 0, 0));

interface Chain {
  readonly dir: string;
  readonly backups: string;
  readonly from: Destination;
  readonly names: string[];
  /** When each backup was made, to the second its name keeps. */
  readonly times: Date[];
  readonly db: Database;
}

/**
 * Backs up the records folder at each of `versions` through `db.startBackup({ type: 'incremental' })`:
 * a full, then incrementals. `seconds` starts each backup in a second of its own, for `asOf`.
 */
async function makeChain(
  t: TestContext,
  options: { kind?: typeof RECORDS; versions?: ReadonlyArray<Record<string, string>>; passphrase?: string; settings?: boolean; seconds?: boolean; compression?: 'none' } = {},
): Promise<Chain> {
  const dir = await tempDir(t, 'chain');
  const backups = join(dir, 'backups');
  const from = directory({ path: backups });
  const sources: Source[] = [(options.kind ?? RECORDS).source({ name: 'records', dir: join(dir, 'records') })];
  if (options.settings) {
    sources.push(ALWAYS_FULL.source({ name: 'settings', dir: join(dir, 'settings') }));
    await writeRecords(join(dir, 'settings'), SETTINGS);
  }
  const db = new Database({ sources });
  const names: string[] = [];
  const times: Date[] = [];
  for (const version of options.versions ?? VERSIONS) {
    if (options.seconds && names.length > 0) await sleep(1000 - (Date.now() % 1000)); // the next second
    await writeRecords(join(dir, 'records'), version);
    const backup = await db.startBackup({
      to: from,
      type: 'incremental',
      ...(options.passphrase ? { encrypt: { passphrase: options.passphrase } } : {}),
      ...(options.compression ? { compression: { algorithm: options.compression } } : {}),
    }).done;
    assert.equal(backup.type, names.length === 0 ? 'full' : 'incremental');
    names.push(backup.name);
    times.push(backup.createdAt);
  }
  return { dir, backups, from, names, times, db };
}

/** `backup` restored newest first: itself, then the pieces before it. */
const piecesOf = (names: readonly string[], index: number) => names.slice(0, index + 1).reverse();

/** Restoring `index` must fail with `code`, leaving its folder and everything beside it as they were. */
async function refusedUntouched(chain: Pick<Chain, 'dir' | 'from' | 'names'>, index: number, code: Parameters<typeof rejectsWithCode>[1], message: RegExp, options: { decrypt?: { passphrase: string } } = {}): Promise<void> {
  const target = join(chain.dir, 'restored');
  const before = (await readdir(chain.dir)).sort();
  await rejectsWithCode(Database.restore({ from: chain.from, backup: chain.names[index], targets: { records: { dir: target } }, ...options }).done, code, message);
  assert.deepEqual((await readdir(chain.dir)).sort(), before, 'no target, no staging copy left');
}

describe('restoring an incremental chain', () => {
  it('restores each point of a chain of five as of its time, reading the layers newest first', async (t) => {
    const chain = await makeChain(t, { settings: true, seconds: true });
    const listed = (await listBackups(chain.from)).reverse();
    assert.deepEqual(
      listed.map((b) => b.sources.find((s) => s.name === 'records')?.items),
      [4, 3, 1, 2, 4],
      'each incremental holds the key list and the records that changed, nothing more',
    );
    for (const [i, version] of VERSIONS.entries()) {
      const records = join(chain.dir, `records-${i}`);
      const settings = join(chain.dir, `settings-${i}`);
      const asOf = new Date(Math.floor(chain.times[i]!.getTime() / 1000) * 1000 + 999);
      const restore = Database.restore({ from: chain.from, asOf, targets: { records: { dir: records }, settings: { dir: settings } } });
      const progress: ProgressEvent[] = [];
      const events: string[] = [];
      restore.on('progress', (event) => progress.push(event));
      restore.on('source-start', ({ name }) => events.push(`start ${name}`));
      restore.on('source-end', ({ name }) => events.push(`end ${name}`));
      const result = await restore.done;
      assert.equal(result.name, chain.names[i]);
      const pieces = listed.slice(0, i + 1).reduce((sum, b) => sum + b.size, 0);
      assert.deepEqual([progress.at(-1)?.bytesTotal, progress.at(-1)?.bytesDone, progress.at(-1)?.percent], [pieces, pieces, 100], 'progress counts every piece read');
      const expected = i === 0 ? ['start records', 'end records', 'start settings', 'end settings'] : ['start records', 'start settings', 'end settings', 'end records'];
      assert.deepEqual(events, expected, 'each source starts with its first entry and ends after its deepest layer');
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

  it('restores an incremental whose sources are all held in full (each rejected its base) from that archive alone', async (t) => {
    const dir = await tempDir(t, 'chain-full');
    const from = directory({ path: join(dir, 'backups') });
    const source = ALWAYS_FULL.source({ name: 'records', dir: join(dir, 'records') });
    const names: string[] = [];
    let after: WrittenBackup | undefined;
    for (const [i, version] of VERSIONS.entries()) {
      await writeRecords(join(dir, 'records'), version);
      after = await writeBackup(from, [source], { at: at(i), ...(after ? { after } : {}) });
      names.push(after.name);
    }
    await rm(join(dir, 'backups', names[0]!));
    await rm(join(dir, 'backups', names[3]!));
    const target = join(dir, 'restored');
    const result = await Database.restore({ from, backup: names[4], targets: { records: { dir: target } } }).done;
    assert.deepEqual(result.chain, [names[4]]);
    assert.deepEqual(await readRecords(target), VERSIONS[4]);
    assert.deepEqual(layersSeen.get(target), [{ archive: names[4], depth: 0, mode: 'full' }]);
  });

  it('refuses a chain with a bit flipped in an older piece with CORRUPT_ARCHIVE naming it; the target stays untouched', async (t) => {
    const chain = await makeChain(t, { compression: 'none' }); // so that the flip lands in a record, not in gzip's framing
    const path = join(chain.backups, chain.names[1]!);
    const bytes = await readFile(path);
    const at = bytes.indexOf('{"n":10}'); // alpha, changed in backup 1
    assert.ok(at > 0);
    bytes[at + 5] = (bytes[at + 5] as number) ^ 0x01;
    await writeFile(path, bytes);
    await refusedUntouched(chain, 4, 'CORRUPT_ARCHIVE', new RegExp(`^${chain.names[1]}, which ${chain.names[4]} builds on: `));
    await rejectsWithCode(verifyBackup({ from: chain.from, backup: chain.names[4] }).done, 'CORRUPT_ARCHIVE', new RegExp(chain.names[1]!));
  });

  it('a chain restore of two sources killed between its two commits is finished by the next restore', async (t) => {
    const chain = await makeChain(t, { versions: VERSIONS.slice(0, 3), settings: true });
    const where = join(chain.dir, 'restored');
    const targets = { records: { dir: join(where, 'records') }, settings: { dir: join(where, 'settings') } };
    const child = spawn(process.execPath, [CHILD, chain.backups, JSON.stringify(targets), 'records', 'stop-after-commit'], { stdio: 'inherit' });
    const exited = once(child, 'exit');
    await stoppedItself(child);
    child.kill('SIGKILL');
    await exited;
    assert.deepEqual((await readdir(where)).filter((name) => !name.startsWith('.backupkit-restore-')).sort(), ['records', 'settings.staging'], 'one target committed, the other staged');

    const result = await Database.restore({ from: chain.from, targets }).done;
    assert.deepEqual(result.chain, piecesOf(chain.names, 2));
    assert.deepEqual((await readdir(where)).sort(), ['records', 'settings'], 'no staging copy or journal left');
    assert.deepEqual(await readRecords(targets.records.dir), VERSIONS[2]);
    assert.deepEqual(await readRecords(targets.settings.dir), SETTINGS);
  });

  it('restores an encrypted chain with its key, and refuses a wrong key with WRONG_KEY', async (t) => {
    const chain = await makeChain(t, { versions: VERSIONS.slice(0, 3), passphrase: 'correct horse' });
    await refusedUntouched(chain, 2, 'WRONG_KEY', /./, { decrypt: { passphrase: 'battery staple' } });
    const target = join(chain.dir, 'restored');
    const restored = await Database.restore({ from: chain.from, targets: { records: { dir: target } }, decrypt: { passphrase: 'correct horse' } }).done;
    assert.deepEqual(restored.chain, piecesOf(chain.names, 2));
    assert.deepEqual(await readRecords(target), VERSIONS[2]);
  });

  // The backup engine never writes these chains: they are crafted, as a hostile or confused storage would hold them.
  it('refuses a piece that is not the one its successor builds on (another chain, encrypted otherwise, or with another key) naming it', async (t) => {
    const dir = await tempDir(t, 'chain-foreign');
    const from = directory({ path: join(dir, 'backups') });
    const chain = { dir, backups: join(dir, 'backups'), from, names: [] as string[] };
    const source = RECORDS.source({ name: 'records', dir: join(dir, 'records') });
    await writeRecords(join(dir, 'records'), VERSIONS[0]!);
    const full = await writeBackup(from, [source], { at: at(0) });
    await writeRecords(join(dir, 'records'), VERSIONS[1]!);
    const second = await writeBackup(from, [source], { at: at(1), after: full });
    await writeRecords(join(dir, 'records'), VERSIONS[2]!);
    const otherBase = archiveName(at(-5), 0);
    const foreign = await writeBackup(from, [source], { at: at(2), after: second, header: (header) => (header.base = otherBase) });
    await refusedUntouched({ ...chain, names: [foreign.name] }, 0, 'CORRUPT_ARCHIVE', new RegExp(`${second.name}, which ${foreign.name} builds on, belongs to the chain of ${full.name}, not to that of ${otherBase}`));

    const [right, other] = await Promise.all([prepareEncryption({ passphrase: 'correct horse' }), prepareEncryption({ passphrase: 'battery staple' })]);
    const encrypted = await writeBackup(from, [source], { at: at(3), after: second, encryption: right });
    const decrypt = { passphrase: 'correct horse' };
    await refusedUntouched({ ...chain, names: [encrypted.name] }, 0, 'CORRUPT_ARCHIVE', new RegExp(`${second.name}, which ${encrypted.name} builds on, is encrypted otherwise`), { decrypt });

    const otherKey = await writeBackup(from, [source], { at: at(4), encryption: other });
    const onOtherKey = await writeBackup(from, [source], { at: at(5), after: otherKey, encryption: right });
    await refusedUntouched({ ...chain, names: [onOtherKey.name] }, 0, 'WRONG_KEY', new RegExp(`^${otherKey.name}, which ${onOtherKey.name} builds on: `), { decrypt });
  });

  it('refuses, naming the kind, a restorer without `layer` given a source held as changes; it still restores fulls', async (t) => {
    const chain = await makeChain(t, { kind: LEGACY, versions: VERSIONS.slice(0, 2) });
    await refusedUntouched(chain, 1, 'RESTORE_FAILED', /restorer of kind "records-legacy" cannot apply the layers of a chain/);
    const target = join(chain.dir, 'full');
    await Database.restore({ from: chain.from, backup: chain.names[0], targets: { records: { dir: target } } }).done;
    assert.deepEqual(await readRecords(target), VERSIONS[0]);
  });

  it('refuses a header holding a source as changes outside a version 3 incremental, or in another mode, and a meta entry of no source', async (t) => {
    const dir = await tempDir(t, 'chain-headers');
    const cases: Array<{ sources: Array<{ name: string; kind: string; mode?: string }>; formatVersion: number; entries?: CraftedEntry[]; code: 'CORRUPT_ARCHIVE' | 'UNSAFE_ARCHIVE'; message: RegExp }> = [
      { sources: [{ name: 'records', kind: 'records', mode: 'changes' }], formatVersion: 2, code: 'CORRUPT_ARCHIVE', message: /holds source "records" as changes only, but is not a version 3 incremental/ },
      { sources: [{ name: 'records', kind: 'records', mode: 'changes' }], formatVersion: 3, code: 'CORRUPT_ARCHIVE', message: /not a version 3 incremental naming its previous backup/ },
      { sources: [{ name: 'records', kind: 'records', mode: 'partial' }], formatVersion: 3, code: 'CORRUPT_ARCHIVE', message: /in mode "partial", neither "full" nor "changes"/ },
      { sources: [{ name: 'records', kind: 'records' }], formatVersion: 2, entries: [{ header: { name: 'meta/other/keys.json', type: 'file' }, body: Buffer.from('[]') }], code: 'UNSAFE_ARCHIVE', message: /not under sources\/<source>\/ or meta\/<source>\// },
    ];
    for (const [i, { sources, formatVersion, entries = [], code, message }] of cases.entries()) {
      const from = directory({ path: join(dir, `backups-${i}`) });
      const all = [headerEntry(sources, formatVersion), ...entries];
      await store(from, await craftArchive([...all, manifestFor(all)]));
      await refusedUntouched({ dir, from, names: [CRAFTED_NAME] }, 0, code, message);
    }
  });

  it('verifies a whole chain (every piece against its manifest, and restored into a scratch target), and drills it', async (t) => {
    const chain = await makeChain(t);
    const sums = await listBackups(chain.from);
    const entries = sums.reduce((sum, b) => sum + 1 + b.sources.reduce((n, s) => n + s.items, 0), 0); // header.json + each source's entries
    const checked = await verifyBackup({ from: chain.from }).done;
    assert.deepEqual([checked.name, checked.chain], [chain.names[4], piecesOf(chain.names, 4)]);
    assert.equal(checked.verifiedEntries, entries);
    const drilled = await withRestoredBackup({ from: chain.from, backup: chain.names[2], scratch: { dir: chain.dir } }, async (r) => [r.chain, await readRecords((r.sources[0]?.target as { dir: string }).dir)]);
    assert.deepEqual(drilled, [piecesOf(chain.names, 2), VERSIONS[2]], 'a restore drill restores the chain');
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
    const full = await chain.db.startBackup({ to: chain.from }).done;
    await writeRecords(join(chain.dir, 'records'), VERSIONS[3]!);
    const last = await chain.db.startBackup({ to: chain.from, type: 'incremental' }).done;
    assert.deepEqual([full.type, last.type, last.previous], ['full', 'incremental', full.name]);
    const objects = async () => (await readdir(chain.backups)).sort();
    const companions = (name: string) => [name, `${name}.json`, `${name}.state`];
    // What a prune cut short between an archive and its companions leaves: listed as nothing, left alone.
    const orphans = [`${archiveName(at(-1), 0)}.json`, `${archiveName(at(-1), 0)}.state`];
    for (const orphan of orphans) await writeFile(join(chain.backups, orphan), '{}');
    assert.deepEqual((await listBackups(chain.from)).map((b) => b.name), [last.name, full.name, ...[...chain.names].reverse()]);

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
    assert.deepEqual(await objects(), [...companions(full.name), ...companions(last.name), ...orphans].sort(), 'no .state is left without its archive but the orphans found');
  });
});
