import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, readFile, readdir, readlink, rm, symlink, utimes, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Database, files, memory, verifyBackup, type BackupWarning, type Entry, type Source } from '../src/index.js';
import { filesRestorer } from '../src/sources/files/index.js';
import { SMALL_FILE, walkTree } from '../src/sources/files/walk.js';
import { filesKind } from '../src/sources/files/kind.js';
import { ThreadGroup } from '../src/util/worker-channel.js';
import { testSource } from './conformance/source.js';
import { rejectsWithCode } from './helpers/errors.js';
import { faultySource } from './helpers/faulty.js';
import { describeTree, tempDir } from './helpers/fs.js';
import { stopped } from './helpers/process.js';

const run = promisify(execFile);

/** A tree with the awkward parts: empty folders, links, odd modes, old mtimes, non-ASCII names. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'empty'), { recursive: true });
  await mkdir(join(root, 'deep', 'er', 'est'), { recursive: true });
  await writeFile(join(root, 'deep', 'er', 'est', 'file.bin'), Buffer.alloc(300_000, 7));
  await writeFile(join(root, 'zero-bytes'), '');
  await writeFile(join(root, 'naïve café 日本語 🎉.txt'), 'unicode names');
  await writeFile(join(root, `${'long-name-'.repeat(12)}.txt`), 'a name over 100 bytes');
  await writeFile(join(root, 'script.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'script.sh'), 0o750);
  await writeFile(join(root, 'private'), 'secret');
  await chmod(join(root, 'private'), 0o600);
  await symlink('deep/er/est/file.bin', join(root, 'link-to-file'));
  await symlink('../..', join(root, 'deep', 'er', 'link-up')); // inside the tree
  await symlink('does-not-exist', join(root, 'dangling'));
  await utimes(join(root, 'private'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
  await utimes(join(root, 'empty'), new Date('2010-01-01T00:00:00Z'), new Date('2010-01-01T00:00:00Z'));
}

testSource('files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'backupkit-files-'));
  const root = join(dir, 'source');
  await makeTree(root);
  let targets = 0;
  let changes = 0;
  return {
    source: files({ name: 'uploads', dir: root }),
    kind: filesKind,
    async freshTarget() {
      targets += 1;
      await mkdir(join(dir, `t${targets}`));
      return { dir: join(dir, `t${targets}`, 'restored') };
    },
    async createEmpty(target) {
      await mkdir(target.dir);
    },
    async fill(target) {
      await mkdir(target.dir, { recursive: true });
      await writeFile(join(target.dir, 'existing'), 'keep me');
    },
    async describe(target) {
      const tree = await describeTree(target?.dir ?? root);
      delete tree['']; // the root folder's own mode and time belong to whoever created the target
      return tree;
    },
    surroundings: async (target) => readdir(dirname(target.dir)),
    async change() {
      changes += 1;
      await writeFile(join(root, `added-${changes}.txt`), `added by change ${changes}`);
    },
    exactEstimate: true,
    async bulky() {
      // More batches of small files than the walker may have in flight, and files it leaves to be streamed.
      const bulky = join(dir, 'bulky');
      for (let folder = 0; folder < 6; folder++) {
        await mkdir(join(bulky, `f${folder}`), { recursive: true });
        await Promise.all(Array.from({ length: 500 }, (_, i) => writeFile(join(bulky, `f${folder}`, `${i}.bin`), randomBytes(2048))));
      }
      for (let i = 0; i < 2; i++) await writeFile(join(bulky, `large-${i}.bin`), randomBytes(3 * 1024 * 1024));
      return files({ name: 'uploads', dir: bulky });
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('files source', () => {
  it('stores links as links, never follows them, and restores every link it accepted exactly', async (t) => {
    const dir = await tempDir(t);
    const outside = join(dir, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret'), 'not part of the backup');
    const root = join(dir, 'root');
    await mkdir(join(root, 'sub'), { recursive: true });
    const links: Record<string, string> = {
      escape: outside, // absolute, outward, to a folder
      'loop-a': 'loop-b',
      'loop-b': 'loop-a',
      self: 'self',
      'sub/up-out': '../../outside/secret',
      dangling: 'nowhere/at/all',
    };
    for (const [path, target] of Object.entries(links)) await symlink(target, join(root, path));
    const destination = memory();
    const warnings: BackupWarning[] = [];
    const op = new Database({ sources: [files({ name: 'f', dir: root })] }).startBackup({ to: destination });
    op.on('warning', (warning) => warnings.push(warning));
    const result = await op.done;
    assert.deepEqual(warnings, []);
    assert.equal(result.sources[0]?.bytes, 0, 'no linked file or folder was read');

    const restored = join(dir, 'restored');
    await Database.restore({ from: destination, targets: { f: { dir: restored } } });
    for (const [path, target] of Object.entries(links)) assert.equal(await readlink(join(restored, path)), target, path);
    assert.deepEqual(await describeTree(restored), await describeTree(root));
    assert.equal(await readFile(join(outside, 'secret'), 'utf8'), 'not part of the backup', 'nothing was written through a link');
    const verified = await verifyBackup({ from: destination, level: 'restore', scratch: { dir } });
    assert.deepEqual(verified.problems, []);
    assert.equal(verified.sources[0]?.checks[0]?.figures['links'], Object.keys(links).length);
  });

  it('verifyBackup notices a restored link that points elsewhere', async (t) => {
    const dir = await tempDir(t);
    const root = join(dir, 'root');
    await mkdir(root);
    await symlink('original', join(root, 'l'));
    const destination = memory();
    await new Database({ sources: [files({ name: 'f', dir: root })] }).startBackup({ to: destination }).done;
    const restored = join(dir, 'restored');
    const empty: AsyncIterable<Uint8Array> = { async *[Symbol.asyncIterator]() {} };
    const sink = await filesRestorer.begin(filesRestorer.parseTarget({ dir: restored }, 'f'), new AbortController().signal);
    await sink.write({ path: '', type: 'directory', mode: 0o755, mtime: new Date(0), size: 0, body: empty });
    await sink.write({ path: 'l', type: 'symlink', mode: 0o777, mtime: new Date(0), size: 0, linkTarget: 'moved', body: empty });
    await sink.prepare();
    await sink.commit();
    const archived = [
      { path: '', type: 'directory' as const, size: 0, sha256: '', mode: 0o755, mtime: new Date(0) },
      { path: 'l', type: 'symlink' as const, size: 0, sha256: '', linkTarget: 'original', mtime: new Date(0) },
    ];
    const [check] = await sink.verify!((async function* () { yield* archived; })());
    assert.deepEqual(check?.problems, ['"l" points elsewhere than archived']);
  });

  it('reports every name that is not valid UTF-8 as SKIPPED, never silently', async (t) => {
    const dir = await tempDir(t);
    const root = join(dir, 'root');
    await mkdir(root);
    await writeFile(join(root, 'plain'), 'kept');
    const bad = Buffer.concat([Buffer.from(join(root, 'caf')), Buffer.from([0xe9]), Buffer.from('.txt')]); // Latin-1 "café.txt"
    await writeFile(bad, 'latin-1 name');
    const badFolder = Buffer.concat([Buffer.from(join(root, 'dir-')), Buffer.from([0xff, 0xfe])]);
    await mkdir(badFolder);
    await writeFile(Buffer.concat([badFolder, Buffer.from('/inside')]), 'x');
    const warnings: BackupWarning[] = [];
    const destination = memory();
    const op = new Database({ sources: [files({ name: 'f', dir: root })] }).startBackup({ to: destination });
    op.on('warning', (warning) => warnings.push(warning));
    await op.done;
    assert.deepEqual(
      warnings.map(({ code, path }) => ({ code, path })),
      [
        { code: 'SKIPPED', path: 'caf\\xe9.txt' },
        { code: 'SKIPPED', path: 'dir-\\xff\\xfe' },
      ],
    );
    const restored = join(dir, 'restored');
    await Database.restore({ from: destination, targets: { f: { dir: restored } } });
    assert.deepEqual(await readdir(restored), ['plain']);
  });

  it('restores setuid, setgid and sticky bits only when asked to', async (t) => {
    const dir = await tempDir(t);
    const root = join(dir, 'root');
    await mkdir(join(root, 'shared'), { recursive: true });
    await writeFile(join(root, 'tool'), '#!/bin/sh\n');
    await chmod(join(root, 'tool'), 0o4777);
    await chmod(join(root, 'shared'), 0o3775);
    const destination = memory();
    await new Database({ sources: [files({ name: 'f', dir: root })] }).startBackup({ to: destination }).done;

    const masked = join(dir, 'masked');
    await Database.restore({ from: destination, targets: { f: { dir: masked } } });
    const plain = await describeTree(masked);
    assert.equal(plain['tool']?.mode, 0o777);
    assert.equal(plain['shared']?.mode, 0o775);

    const exact = join(dir, 'exact');
    await Database.restore({ from: destination, targets: { f: { dir: exact, specialModeBits: true } } });
    const special = await describeTree(exact);
    assert.equal(special['tool']?.mode, 0o4777);
    assert.equal(special['shared']?.mode, 0o3775);
    assert.deepEqual((await verifyBackup({ from: destination, level: 'restore', scratch: { dir } })).problems, []);
  });

  it('warns about a file that changes while it is read and still completes', async (t) => {
    const dir = await tempDir(t);
    const root = join(dir, 'root');
    await mkdir(root);
    await writeFile(join(root, 'growing.log'), Buffer.alloc(32 * 1024 * 1024, 1));
    await writeFile(join(root, 'steady'), 'steady');
    // Another process appends for as long as the backup runs, and ends with this one (its stdin).
    // Whatever the backup does, it is stopped before the folder is removed: left running, it kept
    // this file's process alive forever (a failed backup hung the suite), and the file it recreated
    // failed the folder's removal, which skipped the cleanups registered after it.
    const script = `const fs=require('fs');setInterval(()=>fs.appendFileSync(${JSON.stringify(join(root, 'growing.log'))}, 'x'.repeat(4096)),1);process.stdin.on('end',()=>process.exit()).resume()`;
    const appender = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'ignore', 'ignore'] });
    const warnings: BackupWarning[] = [];
    let result;
    try {
      await appendFile(join(root, 'growing.log'), 'y');
      await new Promise((resolve) => setTimeout(resolve, 100));
      const op = new Database({ sources: [files({ name: 'f', dir: root })] }).startBackup({ to: memory() });
      op.on('warning', (w) => warnings.push(w));
      result = await op.done;
    } finally {
      await stopped(appender);
    }
    assert.ok(warnings.some((w) => w.path === 'growing.log' && (w.code === 'FILE_CHANGED' || w.code === 'SIZE_MISMATCH')), JSON.stringify(warnings));
    assert.ok(!warnings.some((w) => w.path === 'steady'));
    assert.deepEqual(result.warnings, warnings);
  });

  it('hashes every file on the walker thread, as the archive stores it: small ones read whole, larger ones as it streams them', async (t) => {
    const dir = await tempDir(t);
    const small = Buffer.alloc(SMALL_FILE, 3);
    const large = randomBytes(3 * SMALL_FILE + 5);
    await writeFile(join(dir, 'small'), small);
    await writeFile(join(dir, 'large'), large);
    await writeFile(join(dir, 'empty'), '');
    const hashes: Record<string, string | undefined> = {};
    const threads = new ThreadGroup();
    t.after(() => threads.close());
    for await (const item of walkTree(dir, new AbortController().signal, threads)) {
      if (item.kind !== 'file') continue;
      if (!item.body) hashes[item.path] = item.sha256;
      else {
        const pieces: Uint8Array[] = [];
        for await (const piece of item.body.pieces()) pieces.push(piece);
        assert.deepEqual(Buffer.concat(pieces), large);
        hashes[item.path] = (await item.body.end()).sha256;
      }
    }
    assert.deepEqual(hashes, {
      empty: createHash('sha256').digest('hex'),
      large: createHash('sha256').update(large).digest('hex'),
      small: createHash('sha256').update(small).digest('hex'),
    });
  });

  it('a large file written to while the walker streams it is a FILE_CHANGED warning, stored as read with the hash of what was stored', async (t) => {
    const dir = await tempDir(t);
    const root = join(dir, 'root');
    await mkdir(root);
    const path = join(root, 'large');
    await writeFile(path, Buffer.alloc(8 * 1024 * 1024, 1));
    // The walker streams a piece at a time, at most a few ahead: the file's end is not read yet when its entry comes.
    const source = withEntryHook(files({ name: 'f', dir: root }), async (entry) => {
      if (entry.path !== 'large') return;
      const handle = await open(path, 'r+');
      await handle.write(Buffer.alloc(1024, 3), 0, 1024, 8 * 1024 * 1024 - 1024);
      await handle.close();
    });
    const destination = memory();
    const warnings: BackupWarning[] = [];
    const op = new Database({ sources: [source] }).startBackup({ to: destination });
    op.on('warning', (w) => warnings.push(w));
    await op.done;
    assert.deepEqual(warnings.map((w) => [w.code, w.path]), [['FILE_CHANGED', 'large']], JSON.stringify(warnings));
    const restored = join(dir, 'restored');
    await Database.restore({ from: destination, targets: { f: { dir: restored } } });
    const stored = await readFile(join(restored, 'large'));
    assert.equal(stored.length, 8 * 1024 * 1024);
    assert.deepEqual(stored.subarray(-1024), Buffer.alloc(1024, 3), 'the end as it was when read');
    assert.deepEqual((await verifyBackup({ from: destination, level: 'restore', scratch: { dir } })).problems, []);
  });

  it('a large file replaced by a FIFO or a folder between the walk and its read is a FILE_CHANGED warning, never a backup waiting forever for a writer', { timeout: 60_000 }, async (t) => {
    const dir = await tempDir(t);
    const root = join(dir, 'root');
    await mkdir(root);
    // Past the walker's small files: each streamed after its batch. The walker holds at most a few
    // pieces ahead, so it is still streaming 'before' when its entry comes, and opens the others later.
    await writeFile(join(root, 'before'), Buffer.alloc(8 * 1024 * 1024, 3));
    const large = Buffer.alloc(2 * 1024 * 1024, 3);
    for (const name of ['fifo', 'folder', 'steady']) await writeFile(join(root, name), large);
    const replacing = withEntryHook(files({ name: 'f', dir: root }), async (entry) => {
      if (entry.path !== 'before') return;
      await rm(join(root, 'fifo'));
      await run('mkfifo', [join(root, 'fifo')]);
      await rm(join(root, 'folder'));
      await mkdir(join(root, 'folder'));
    });
    const warnings: BackupWarning[] = [];
    const op = new Database({ sources: [replacing] }).startBackup({ to: memory() });
    op.on('warning', (w) => warnings.push(w));
    await op.done;
    assert.deepEqual(warnings.filter((w) => w.code === 'FILE_CHANGED').map((w) => w.path).sort(), ['fifo', 'folder'], JSON.stringify(warnings));
  });

  it('leaves no spool in the temp folder when a backup is cancelled as its entries start, or its entries are read after close(), full or incremental', async (t) => {
    const dir = await tempDir(t, 'files-spools');
    const root = join(dir, 'source');
    await makeTree(root);
    // The spools go to the OS temp folder: a private one shows what a backup leaves there.
    const tmp = join(dir, 'tmp');
    await mkdir(tmp);
    const previous = process.env['TMPDIR'];
    process.env['TMPDIR'] = tmp;
    t.after(() => {
      if (previous === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = previous;
    });
    const to = memory();
    await new Database({ sources: [files({ name: 'uploads', dir: root })] }).startBackup({ to }).done;
    for (const type of ['full', 'incremental'] as const) {
      for (const when of ['as the entries start', 'entries read after close()'] as const) {
        const label = `${type}, ${when}`;
        await writeFile(join(root, `${type}-${when}`), 'a change, so that the incremental reads entries');
        let closed: () => void = () => {};
        const closing = new Promise<void>((resolve) => (closed = resolve));
        let read: Promise<unknown> = Promise.resolve();
        const { source } = faultySource(files({ name: 'uploads', dir: root }), {
          async *entries(entries) {
            op.cancel();
            if (when === 'entries read after close()') await closing;
            const iterator = entries[Symbol.asyncIterator]();
            const first = iterator.next();
            read = first.catch(() => {}); // the backup has stopped waiting for it
            yield (await first).value as Entry;
          },
          closed,
        });
        const op = new Database({ sources: [source] }).startBackup({ to, type });
        await rejectsWithCode(op.done, 'ABORTED');
        await closing;
        await read;
        assert.deepEqual(await readdir(tmp), [], `${label}: no spool is left`);
      }
    }
  });

  it('fails with SOURCE_FAILED when the folder does not exist', async (t) => {
    const dir = await tempDir(t);
    await rejectsWithCode(new Database({ sources: [files({ name: 'f', dir: join(dir, 'nope') })] }).startBackup({ to: memory() }).done, 'SOURCE_FAILED');
  });

  it('restores a read-only folder with its contents', async (t) => {
    const dir = await tempDir(t);
    const root = join(dir, 'root');
    await mkdir(join(root, 'sealed'), { recursive: true });
    await writeFile(join(root, 'sealed', 'inside'), 'x');
    await chmod(join(root, 'sealed'), 0o555);
    const destination = memory();
    await new Database({ sources: [files({ name: 'f', dir: root })] }).startBackup({ to: destination }).done;
    const target = join(dir, 'restored');
    await Database.restore({ from: destination, targets: { f: { dir: target } } });
    const tree = await describeTree(target);
    await Promise.all([chmod(join(root, 'sealed'), 0o755), chmod(join(target, 'sealed'), 0o755)]); // so cleanup can remove them
    assert.equal(tree['sealed']?.mode, 0o555);
    assert.equal(tree['sealed/inside']?.type, 'file');
  });
});

/** `source`, with `hook` awaited for each entry before the backup takes it. */
function withEntryHook(source: Source, hook: (entry: Entry) => Promise<void>): Source {
  return faultySource(source, {
    async *entries(entries) {
      for await (const entry of entries) {
        await hook(entry);
        yield entry;
      }
    },
  }).source;
}
