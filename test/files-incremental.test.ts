import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, chmod, cp, lstat, mkdir, readFile, readdir, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Database, directory, files, type BackupWarning, type Entry, type RestoreSink, type SnapshotChanges } from '../src/index.js';
import { filesRestorer } from '../src/sources/files/index.js';
import { tellArchived } from './helpers/archived.js';
import { restoreFilesChainByHand } from './helpers/by-hand.js';
import { rejectsWithCode } from './helpers/errors.js';
import { describeTree, tempDir, type TreeItem } from './helpers/fs.js';

/** One backup of a folder through the adapter alone, as the engine drives it. */
interface Taken {
  archive: string;
  changes: SnapshotChanges | undefined;
  entries: Array<Omit<Entry, 'body'> & { data: Buffer }>;
  state: Buffer;
  warnings: Array<Omit<BackupWarning, 'source'>>;
}

let archives = 0;

async function take(root: string, previous?: Taken): Promise<Taken> {
  archives += 1;
  const archive = `2026120${Math.floor(archives / 10)}-00000${archives % 10}.tar.gz`;
  const warnings: Taken['warnings'] = [];
  const context = {
    signal: new AbortController().signal,
    warn: (warning: Omit<BackupWarning, 'source'>) => void warnings.push(warning),
    archive,
    ...(previous ? { previous: { archive: previous.archive, read: async function* () { yield previous.state; } } } : {}),
  };
  const snapshot = await files({ name: 'uploads', dir: root }).open(context);
  try {
    const changes = previous ? await snapshot.changes?.() : undefined;
    // Nothing changed: no archive is written, and the backup before still stands for the next one.
    if (previous && changes?.unchanged) return { ...previous, changes, warnings };
    const entries: Taken['entries'] = [];
    for await (const { body, ...entry } of snapshot.entries()) {
      const chunks: Buffer[] = [];
      if (body) for await (const chunk of body()) chunks.push(Buffer.from(chunk));
      const data = Buffer.concat(chunks);
      tellArchived(entry, data);
      entries.push({ ...entry, data });
    }
    const state: Buffer[] = [];
    for await (const chunk of snapshot.state?.() ?? []) state.push(Buffer.from(chunk));
    return { archive, changes, entries, state: Buffer.concat(state), warnings };
  } finally {
    await snapshot.close();
  }
}

/** Restores a chain newest first, as the restore engine does: `layers[0]` is the backup restored. */
async function restoreChain(target: string, layers: Taken[], edit?: (sink: RestoreSink) => RestoreSink): Promise<void> {
  const signal = new AbortController().signal;
  const parsed = filesRestorer.parseTarget({ dir: target }, 'uploads');
  let sink = await filesRestorer.begin(parsed, signal);
  if (edit) sink = edit(sink);
  try {
    for (const [depth, taken] of layers.entries()) {
      await sink.layer?.({ archive: taken.archive, mode: taken.changes?.mode ?? 'full', depth });
      for (const { data, ...entry } of taken.entries) await sink.write({ ...entry, body: once(data) });
    }
    await sink.prepare();
    await sink.commit();
  } catch (error) {
    await sink.abort();
    throw error;
  }
}

/** The chain a restore of `taken` reads: it, then the ones before it while they hold changes. */
function chainOf(history: Taken[], index: number): Taken[] {
  const chain: Taken[] = [];
  for (let at = index; at >= 0; at -= 1) {
    if (history[at]?.changes?.unchanged) continue;
    chain.push(history[at] as Taken);
    if (history[at]?.changes?.mode !== 'changes') break;
  }
  return chain;
}

async function* once(data: Buffer): AsyncGenerator<Uint8Array> {
  yield data;
}

function sentFiles(taken: Taken): string[] {
  return taken.entries.filter((entry) => entry.type === 'file' && !entry.meta).map((entry) => entry.path);
}

const at = (seconds: number) => new Date(Date.UTC(2020, 0, 1) + seconds * 1000);

describe('files source, incremental', () => {
  it('sends only new and changed files, and a chain restored at each point equals the tree as it was then', async (t) => {
    const dir = await tempDir(t, 'files-inc');
    const root = join(dir, 'source');
    await mkdir(join(root, 'docs', 'old'), { recursive: true });
    await writeFile(join(root, 'docs', 'a.txt'), 'alpha');
    await writeFile(join(root, 'docs', 'old', 'b.txt'), 'bravo');
    await writeFile(join(root, 'big.bin'), Buffer.alloc(2 * 1024 * 1024 + 5, 1)); // streamed, not read by the walker
    await writeFile(join(root, 'mode.sh'), 'echo');
    await writeFile(join(root, 'gone'), 'deleted later');
    await writeFile(join(root, 'was-file'), 'becomes a folder');
    await symlink('docs/a.txt', join(root, 'link'));
    await utimes(join(root, 'docs', 'a.txt'), at(1), at(1));
    const history: Taken[] = [];
    const trees: Array<Record<string, TreeItem>> = [];
    const backup = async () => {
      trees.push(await describeTree(root));
      history.push(await take(root, history.at(-1)));
      return history.at(-1) as Taken;
    };

    const full = await backup();
    assert.equal(full.changes, undefined);
    assert.deepEqual(sentFiles(full), ['big.bin', 'docs/a.txt', 'docs/old/b.txt', 'gone', 'mode.sh', 'was-file']);
    assert.equal(full.entries.filter((entry) => entry.meta).length, 0, 'a full holds no listing');

    await writeFile(join(root, 'docs', 'new.txt'), 'added');
    await appendFile(join(root, 'docs', 'old', 'b.txt'), ' changed');
    await rm(join(root, 'gone'));
    await rename(join(root, 'docs', 'a.txt'), join(root, 'docs', 'renamed.txt'));
    await chmod(join(root, 'mode.sh'), 0o755);
    await rm(join(root, 'was-file'));
    await mkdir(join(root, 'was-file', 'empty'), { recursive: true });
    await rm(join(root, 'link'));
    await symlink('docs/renamed.txt', join(root, 'link'));
    const first = await backup();
    assert.deepEqual(first.changes, { mode: 'changes', unchanged: false });
    assert.deepEqual(sentFiles(first), ['docs/new.txt', 'docs/old/b.txt', 'docs/renamed.txt', 'mode.sh']);
    assert.deepEqual(
      first.entries.filter((entry) => entry.meta).map((entry) => entry.path),
      ['listing.ndjson', 'tree.nul'],
    );
    assert.ok(!first.entries.some((entry) => entry.path === 'big.bin'), 'the unchanged large file is not sent again');
    assert.ok(first.entries.some((entry) => entry.path === 'was-file/empty' && entry.type === 'directory'), 'a new folder travels');
    assert.ok(first.entries.some((entry) => entry.path === 'link' && entry.type === 'symlink'), 'a changed link travels');

    const same = await backup();
    assert.deepEqual(same.changes, { mode: 'changes', unchanged: true }, 'nothing changed at all');

    await writeFile(join(root, 'big.bin'), Buffer.alloc(2 * 1024 * 1024 + 5, 2));
    await rm(join(root, 'docs', 'new.txt'));
    const third = await backup();
    assert.deepEqual(sentFiles(third), ['big.bin']);
    assert.deepEqual(
      third.entries.filter((entry) => entry.type !== 'file').map((entry) => entry.path),
      ['docs', ''],
      'only the folders that lost or got an item travel, each after what it holds; unchanged folders and links do not',
    );
    for (let step = 0; step < 7; step += 1) {
      await writeFile(join(root, `step-${step}`), `step ${step}`);
      if (step % 2 === 1) await rm(join(root, `step-${step - 1}`));
      await backup();
    }

    for (const [index, expected] of trees.entries()) {
      const target = join(dir, `restored-${index}`);
      await restoreChain(target, chainOf(history, index));
      assert.deepEqual(await describeTree(target), expected, `the tree as of backup ${index}`);
    }
  });

  it('trusts metadata away from the previous walk, and decides by contents where a change could hide in the same second', async (t) => {
    const dir = await tempDir(t, 'files-inc');
    const root = join(dir, 'source');
    await mkdir(root);
    await writeFile(join(root, 'recent'), 'same size');
    await writeFile(join(root, 'settled'), 'same size');
    await utimes(join(root, 'settled'), at(0), at(0));
    // Modified at the walk's time or after, as a write racing the walk leaves it: far enough ahead
    // that the walk never starts in a later second than this mtime, however loaded the machine.
    const later = new Date(Date.now() + 3_600_000 + 123);
    await utimes(join(root, 'recent'), later, later);
    const full = await take(root);
    // Doctor the state as if both files' contents had been other bytes of the same size: what a
    // write right after the walk, within the same tick, would leave.
    const state = full.state
      .toString('utf8')
      .split('\n')
      .map((line) => line.replace(/"sha256":"[0-9a-f]{64}"/, `"sha256":"${'0'.repeat(64)}"`))
      .join('\n');
    const next = await take(root, { ...full, state: Buffer.from(state) });
    assert.deepEqual(sentFiles(next), ['recent'], 'the file modified when the previous walk ran is hashed and found changed; the settled one is trusted');
  });

  it('widens that window to 2 s for times in whole seconds, as a coarse filesystem keeps them', async (t) => {
    const dir = await tempDir(t, 'files-inc');
    const root = join(dir, 'source');
    await mkdir(root);
    await writeFile(join(root, 'coarse'), 'same size');
    await writeFile(join(root, 'fine'), 'same size');
    await utimes(join(root, 'coarse'), at(100), at(100));
    await utimes(join(root, 'fine'), new Date(at(100).getTime() + 300), new Date(at(100).getTime() + 300));
    const full = await take(root);
    // As if the previous walk had started 1.5 s after both times, and both files had other contents then.
    const startedNs = (BigInt(at(101).getTime() + 500) * 1_000_000n).toString();
    const state = full.state
      .toString('utf8')
      .replace(/"startedNs":"\d+"/, `"startedNs":"${startedNs}"`)
      .replaceAll(/"sha256":"[0-9a-f]{64}"/g, `"sha256":"${'0'.repeat(64)}"`);
    const next = await take(root, { ...full, state: Buffer.from(state) });
    assert.deepEqual(sentFiles(next), ['coarse'], 'a time in whole seconds within 2 s of the walk is checked by contents; a fine one 1.5 s before is trusted');
  });

  it('holds the folder in full, saying why, when the previous state cannot be read', async (t) => {
    const dir = await tempDir(t, 'files-inc');
    const root = join(dir, 'source');
    await mkdir(root);
    await writeFile(join(root, 'a'), 'a');
    await run('mkfifo', [join(root, 'pipe')]); // skipped, and reported once per backup
    const full = await take(root);
    assert.deepEqual(full.warnings.map((w) => w.code), ['SKIPPED']);
    await writeFile(join(root, 'b'), 'b');
    const valid = await take(root, full);
    assert.deepEqual([valid.changes?.mode, valid.warnings.map((w) => w.code)], ['changes', ['SKIPPED']]);
    const lines = full.state.toString('utf8').split('\n');
    const variants: Record<string, string> = {
      garbage: 'not a listing at all',
      'other version': [lines[0]?.replace('"version":2', '"version":3'), ...lines.slice(1)].join('\n'),
      'truncated line': `${lines.slice(0, 2).join('\n')}\n{"path":"b","type":"file"`,
      'out of order': [lines[0], lines[2], lines[1]].join('\n'),
    };
    for (const [what, state] of Object.entries(variants)) {
      const next = await take(root, { ...full, state: Buffer.from(state) });
      assert.deepEqual(next.changes, { mode: 'full', unchanged: false }, what);
      assert.deepEqual(next.warnings.map((w) => w.code), ['INCREMENTAL_BASE_REJECTED', 'SKIPPED'], what);
      assert.deepEqual(sentFiles(next), ['a', 'b'], what);
    }
    const other = await take(root, { ...full, archive: 'another.tar.gz' });
    assert.match(other.warnings[0]?.message ?? '', /made for/);
  });

  it('refuses an older layer whose file is not the one the listing names, restoring nothing', async (t) => {
    const dir = await tempDir(t, 'files-inc');
    const root = join(dir, 'source');
    await mkdir(root);
    await writeFile(join(root, 'kept'), 'from the full');
    await writeFile(join(root, 'deleted'), 'deleted before the incremental');
    const full = await take(root);
    await rm(join(root, 'deleted'));
    await writeFile(join(root, 'added'), 'new');
    const inc = await take(root, full);

    const tampered = { ...full, entries: full.entries.map((entry) => (entry.path === 'kept' ? { ...entry, data: Buffer.from('FROM THE FULL') } : entry)) };
    await rejectsWithCode(restoreChain(join(dir, 't1'), [inc, tampered]), 'CORRUPT_ARCHIVE');
    assert.deepEqual((await readdir(dir)).sort(), ['source']);

    // A listing naming a path outside the tree, or beneath one of its links.
    const listingOf = (taken: Taken) => taken.entries.find((entry) => entry.meta && entry.path === 'listing.ndjson')?.data.toString('utf8') ?? '';
    const [header = '', rootLine = '', ...rest] = listingOf(inc).split('\n');
    const item = (path: string, extra: object) => JSON.stringify({ mode: 493, mtime: 0, size: 0, mtimeNs: '0', ctimeNs: '0', ino: '1', ...extra, path });
    const kept = JSON.parse(rest.find((line) => line.includes('"kept"')) ?? '{}') as Record<string, unknown>;
    const hostile: Array<[RegExp, string[]]> = [
      [/"\.\.\/escape": it is not a normalised relative path/, [item('../escape', { type: 'directory' })]],
      [/"a-link\/kept": it lies beneath the symbolic link "a-link"/, [item('a-link', { type: 'symlink', linkTarget: '/tmp' }), item('a-link/kept', { ...kept, type: 'file' })]],
    ];
    for (const [what, lines] of hostile) {
      const listing = Buffer.from([header, rootLine, ...lines, ...rest].join('\n'));
      const doctored = { ...inc, entries: inc.entries.map((entry) => (entry.path === 'listing.ndjson' ? { ...entry, size: listing.length, data: listing } : entry)) };
      await rejectsWithCode(restoreChain(join(dir, 't4'), [doctored, full]), 'UNSAFE_ARCHIVE', what);
      assert.deepEqual((await readdir(dir)).sort(), ['source'], String(what));
    }

    await restoreChain(join(dir, 't3'), [inc, full]);
    assert.deepEqual((await readdir(join(dir, 't3'))).sort(), ['added', 'kept'], 'the deleted file of the full never reaches the target');
    assert.equal((await lstat(join(dir, 't3', 'kept'))).size, 'from the full'.length);
  });
});

describe('files source, incremental, through the backup engine', () => {
  it('restores by hand with tar, find and coreutils, running the README script as it stands', async (t) => {
    const dir = await tempDir(t, 'files-inc-hand');
    const root = join(dir, 'uploads');
    await mkdir(join(root, 'photos', 'old'), { recursive: true });
    await mkdir(join(root, 'empty'));
    await writeFile(join(root, 'photos', 'a.jpg'), Buffer.alloc(300_000, 1));
    await writeFile(join(root, 'photos', 'old', 'b.jpg'), 'b');
    await writeFile(join(root, '-dash and space\nnewline'), 'an awkward name');
    await writeFile(join(root, 'becomes-folder'), 'a file first');
    await mkdir(join(root, 'becomes-file'));
    await writeFile(join(root, 'becomes-file', 'inside'), 'inside');
    await writeFile(join(root, 'mode-only'), 'same bytes');
    await symlink('photos/a.jpg', join(root, 'latest'));
    await writeFile(join(root, 'group-writable'), 'kept as 664, whatever the umask of who restores');
    await chmod(join(root, 'group-writable'), 0o664);
    await mkdir(join(root, 'locked'));
    for (const name of ['keep', 'drop', 'edit']) await writeFile(join(root, 'locked', name), name);
    await chmod(join(root, 'locked'), 0o555); // the script removes and adds files in it all the same
    const to = directory({ path: join(dir, 'backups') });
    const db = new Database({ sources: [files({ name: 'uploads', dir: root })] });
    const archives: string[] = [];
    const trees: Array<Record<string, TreeItem>> = [];
    const backup = async (type: 'full' | 'incremental') => {
      const result = await db.startBackup({ to, type }).done;
      assert.equal(result.type, type);
      archives.push(join(dir, 'backups', result.name));
      trees.push(await describeTree(root));
    };

    await backup('full');
    await rename(join(root, 'photos', 'a.jpg'), join(root, 'photos', 'renamed.jpg'));
    await rm(join(root, 'latest'));
    await symlink('photos/renamed.jpg', join(root, 'latest'));
    await rm(join(root, 'photos', 'old'), { recursive: true });
    await rm(join(root, 'becomes-folder'));
    await mkdir(join(root, 'becomes-folder'));
    await rm(join(root, 'becomes-file'), { recursive: true });
    await writeFile(join(root, 'becomes-file'), 'now a file');
    await chmod(join(root, 'mode-only'), 0o600);
    await utimes(join(root, 'empty'), at(5), at(5));
    await rm(join(root, 'locked', 'drop'));
    await writeFile(join(root, 'locked', 'edit'), 'edited');
    await backup('incremental');
    await writeFile(join(root, 'photos', 'new.jpg'), 'new');
    await writeFile(join(root, 'mode-only'), 'other bytes');
    await backup('incremental');
    const [, inc1, inc2] = archives as [string, string, string];
    assert.ok((await tarList(inc1)).includes('meta/uploads/tree.nul'));
    assert.deepEqual(
      (await tarList(inc2)).filter((path) => path.startsWith('sources/')).sort(),
      ['sources/uploads/', 'sources/uploads/locked/', 'sources/uploads/mode-only', 'sources/uploads/photos/', 'sources/uploads/photos/new.jpg'],
      'the second incremental holds its two changed files, the folders holding them, and the read-only folder; not the unchanged link nor the other folders',
    );

    for (const count of [1, 2, 3]) {
      const work = join(dir, `by-hand-${count}`);
      await mkdir(work);
      const restored = await restoreFilesChainByHand(archives.slice(0, count), work);
      assert.deepEqual(await describeTree(restored), trees[count - 1], `by hand, as of backup ${count}`);
    }
  });

  it('restores a chain made when every incremental carried every folder and link (listing version 1)', async (t) => {
    const dir = await tempDir(t, 'files-inc-v1');
    const fixture = fileURLToPath(new URL('../../test/fixtures/files-listing-1/', import.meta.url));
    await cp(fixture, join(dir, 'backups'), { recursive: true });
    const target = join(dir, 'restored');
    const result = await Database.restore({ from: directory({ path: join(dir, 'backups') }), targets: { uploads: { dir: target } } }).done;
    assert.deepEqual(result.chain, ['20261203-105454.tar.gz', '20261203-105452.tar.gz']);
    assert.deepEqual(await describeTree(target), JSON.parse(await readFile(join(fixture, 'source.json'), 'utf8')));
  });

  it('an incremental notices a file rewritten with its size in the second of the full', async (t) => {
    const dir = await tempDir(t, 'files-inc-engine');
    const root = join(dir, 'uploads');
    await mkdir(join(root, 'a'), { recursive: true });
    await writeFile(join(root, 'a', 'file'), 'contents');
    const to = directory({ path: join(dir, 'backups') });
    const db = new Database({ sources: [files({ name: 'uploads', dir: root })] });
    await db.startBackup({ to }).done;
    await writeFile(join(root, 'a', 'file'), 'CONTENTS'); // same size, within the same second
    const changed = await db.startBackup({ to, type: 'incremental' }).done;
    assert.deepEqual([changed.unchanged, changed.type], [undefined, 'incremental']);
  });
});

const run = promisify(execFile);

async function tarList(archive: string): Promise<string[]> {
  return (await run('tar', ['-tzf', archive])).stdout.trim().split('\n');
}
