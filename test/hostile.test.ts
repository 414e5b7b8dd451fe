import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readlink, rm, statfs, symlink, writeFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { BackupError, Database, directory, files, memory, sqlite, verifyBackup, type BackupErrorCode, type Destination } from '../src/index.js';
import { CRAFTED_NAME, craftArchive, headerEntry, manifestFor, raw, rawTar, store, type CraftedEntry, type RawEntry } from './helpers/craft.js';
import { rejectsWithCode } from './helpers/errors.js';
import { describeTree, mountSmallDisk, tempDir } from './helpers/fs.js';
import { createBank } from './helpers/sqlite.js';

const execFileAsync = promisify(execFile);

const FILES = [{ name: 'f', kind: 'files' }];
const file = (name: string, text = 'x'): CraftedEntry => ({ header: { name, type: 'file' }, body: Buffer.from(text) });
const folder = (name: string): CraftedEntry => ({ header: { name, type: 'directory' } });
const link = (name: string, target: string): CraftedEntry => ({ header: { name, type: 'symlink', linkname: target } });

/**
 * Restores `bytes` into `<sandbox>/area/target` and checks the outcome: the expected code, no
 * target, nothing new anywhere in the sandbox (staging removed, no escapee written).
 */
async function expectRefused(t: Parameters<typeof tempDir>[0], bytes: Buffer, code: BackupErrorCode, message?: RegExp): Promise<void> {
  const sandbox = await tempDir(t, 'hostile');
  const area = join(sandbox, 'a', 'b', 'area');
  await mkdir(area, { recursive: true });
  const destination = memory();
  await store(destination, bytes);
  await rejectsWithCode(Database.restore({ from: destination, targets: { f: { dir: join(area, 'target') } } }), code, message);
  assert.deepEqual(await readdir(area), [], 'no staging or target left in the target folder');
  assert.deepEqual(await readdir(join(sandbox, 'a', 'b')), ['area']);
  assert.deepEqual(await readdir(join(sandbox, 'a')), ['b']);
  assert.deepEqual(await readdir(sandbox), ['a'], 'nothing escaped');
}

/** A well-formed archive around the given source entries, manifest included. */
async function archiveWith(entries: CraftedEntry[], sources = FILES): Promise<Buffer> {
  const all = [headerEntry(sources), folder('sources/f/'), ...entries];
  return craftArchive([...all, manifestFor(all)]);
}

describe('hostile archives are refused with nothing written outside the staging location', () => {
  const unsafe: Array<[string, CraftedEntry[]]> = [
    ['a ".." path', [file('sources/f/../../../escape.txt')]],
    ['an absolute path', [file('/tmp/backupkit-escape.txt')]],
    ['a Windows drive path', [file('C:/escape.txt')]],
    ['a backslash path', [file('sources\\f\\..\\..\\escape.txt')]],
    ['a UNC path', [file('\\\\server\\share\\escape.txt')]],
    ['an entry outside sources/', [file('elsewhere/escape.txt')]],
    ['an entry of a source the header does not list', [file('sources/ghost/x')]],
    ['a file written where a link will be', [link('sources/f/l', 'sub'), folder('sources/f/sub/'), file('sources/f/l/file')]],
    ['a file written through an absolute link', [link('sources/f/a', '/etc'), file('sources/f/a/passwd')]],
    ['a file written through a link out of the tree', [link('sources/f/up', '../../..'), file('sources/f/up/escape.txt')]],
    ['a folder made through a link out of the tree', [link('sources/f/up', '../../..'), folder('sources/f/up/made/')]],
    ['a link made through a link out of the tree', [link('sources/f/up', '../../..'), link('sources/f/up/planted', 'anything')]],
    ['a file under a link that comes after it', [file('sources/f/l/x'), link('sources/f/l', '../../..')]],
    ['a link whose target is empty', [link('sources/f/empty', '')]],
    ['a hard link', [file('sources/f/x'), { header: { name: 'sources/f/hard', type: 'link', linkname: 'sources/f/x' } }]],
    ['a character device', [{ header: { name: 'sources/f/null', type: 'character-device', devmajor: 1, devminor: 3 } }]],
    ['a block device', [{ header: { name: 'sources/f/sda', type: 'block-device', devmajor: 8, devminor: 0 } }]],
    ['a FIFO', [{ header: { name: 'sources/f/pipe', type: 'fifo' } }]],
    ['two entries at one path', [file('sources/f/twice', 'one'), file('sources/f/twice', 'two')]],
  ];
  for (const [label, entries] of unsafe) {
    it(`refuses ${label}`, async (t) => {
      await expectRefused(t, await archiveWith(entries), 'UNSAFE_ARCHIVE');
    });
  }

  it('recreates links pointing anywhere as they are, never following them', async (t) => {
    const sandbox = await tempDir(t);
    const links: Record<string, string> = {
      up: '../../../..',
      passwd: '/etc/passwd',
      here: '.',
      out: 'here/..',
      'd/self': '..',
      'd/out': 'self/../..',
      'd/loop': 'loop',
      'to-x': 'd/up/d/x',
    };
    const destination = memory();
    await store(destination, await archiveWith([folder('sources/f/d/'), file('sources/f/d/x'), ...Object.entries(links).map(([path, target]) => link(`sources/f/${path}`, target))]));
    await Database.restore({ from: destination, targets: { f: { dir: join(sandbox, 'target') } } });
    for (const [path, target] of Object.entries(links)) assert.equal(await readlink(join(sandbox, 'target', path)), target);
    assert.deepEqual(await readdir(sandbox), ['target'], 'nothing written outside');
    assert.deepEqual((await verifyBackup({ from: destination, level: 'restore', scratch: { dir: sandbox } })).problems, []);
  });
});

describe('damaged archives are refused with CORRUPT_ARCHIVE and the targets untouched', () => {
  async function realArchive(t: Parameters<typeof tempDir>[0]): Promise<Buffer> {
    const dir = await tempDir(t, 'real');
    await mkdir(join(dir, 'tree'));
    createBank(join(dir, 'tree', 'inner.db'), 2000);
    const destination = memory();
    const { name } = await new Database({ sources: [files({ name: 'f', dir: join(dir, 'tree') })] }).startBackup({ to: destination, compression: { level: 1 } }).done;
    return buffer(await destination.open(name));
  }

  it('refuses a truncated archive', async (t) => {
    const bytes = await realArchive(t);
    for (const keep of [0.3, 0.9, 0.999]) await expectRefused(t, bytes.subarray(0, Math.floor(bytes.length * keep)), 'CORRUPT_ARCHIVE');
  });

  it('refuses an archive with one flipped bit', async (t) => {
    const bytes = await realArchive(t);
    for (const at of [0.25, 0.5, 0.75]) {
      const damaged = Buffer.from(bytes);
      const offset = Math.floor(damaged.length * at);
      damaged[offset] = (damaged[offset] as number) ^ 0x10;
      await expectRefused(t, damaged, 'CORRUPT_ARCHIVE');
    }
  });

  it('refuses a file that is not gzip at all', async (t) => {
    await expectRefused(t, Buffer.from('PK\x03\x04 this is a zip file, not ours'), 'CORRUPT_ARCHIVE');
  });

  it('refuses an archive whose content does not match its manifest', async (t) => {
    const all = [headerEntry(FILES), folder('sources/f/'), file('sources/f/x', 'original')];
    const manifest = manifestFor(all);
    all[2] = file('sources/f/x', 'tampered');
    await expectRefused(t, await craftArchive([...all, manifest]), 'CORRUPT_ARCHIVE', /sources\/f\/x/);
  });

  // From format 2 the manifest covers the metadata a restore applies: each tampering below keeps the
  // manifest the untampered archive had, and must be refused as a whole.
  const tampered: Array<[string, (entries: CraftedEntry[]) => void, RegExp]> = [
    ['a re-pointed link', (entries) => void ((entries[3] as CraftedEntry).header.linkname = '/etc/shadow'), /"sources\/f\/l" does not match its linkTarget/],
    ['a file made setuid', (entries) => void ((entries[2] as CraftedEntry).header.mode = 0o4777), /"sources\/f\/x" does not match its mode/],
    ['a changed mtime', (entries) => void ((entries[2] as CraftedEntry).header.mtime = new Date('2030-01-01T00:00:00Z')), /"sources\/f\/x" does not match its mtime/],
    ['a folder with another mode', (entries) => void ((entries[1] as CraftedEntry).header.mode = 0o777), /"sources\/f" does not match its mode/],
  ];
  for (const [label, tamper, message] of tampered) {
    it(`refuses ${label} when the manifest holds metadata`, async (t) => {
      const all = [headerEntry(FILES, 2), folder('sources/f/'), file('sources/f/x', 'data'), link('sources/f/l', 'x')];
      const manifest = manifestFor(all);
      const changed = all.map(({ header, body }) => ({ header: { ...header }, ...(body ? { body } : {}) }));
      tamper(changed);
      await expectRefused(t, await craftArchive([...changed, manifest]), 'CORRUPT_ARCHIVE', message);
    });
  }

  it('refuses an archive without its manifest', async (t) => {
    await expectRefused(t, await craftArchive([headerEntry(FILES), folder('sources/f/'), file('sources/f/x')]), 'CORRUPT_ARCHIVE', /truncated/);
  });

  it('refuses an archive with an entry the manifest does not list', async (t) => {
    const listed = [headerEntry(FILES), folder('sources/f/')];
    await expectRefused(t, await craftArchive([...listed, file('sources/f/extra'), manifestFor(listed)]), 'CORRUPT_ARCHIVE');
  });

  it('refuses a tar that is not a backupkit archive', async (t) => {
    await expectRefused(t, await craftArchive([file('etc/hosts')]), 'CORRUPT_ARCHIVE', /header\.json/);
  });

  it('refuses an archive from a newer format version', async (t) => {
    const all = [headerEntry(FILES, 99), folder('sources/f/')];
    await expectRefused(t, await craftArchive([...all, manifestFor(all)]), 'UNSUPPORTED_FORMAT');
  });

  it('refuses a SQLite entry that fails integrity_check, leaving no database file', async (t) => {
    const sandbox = await tempDir(t);
    const garbage = Buffer.alloc(8192, 0x41);
    Buffer.from('SQLite format 3\0').copy(garbage);
    const all = [headerEntry([{ name: 'db', kind: 'sqlite' }]), { header: { name: 'sources/db/database.sqlite', type: 'file' }, body: garbage } as CraftedEntry];
    const destination: Destination = memory();
    await store(destination, await craftArchive([...all, manifestFor(all)]));
    await rejectsWithCode(Database.restore({ from: destination, backup: CRAFTED_NAME, targets: { db: { path: join(sandbox, 'app.db') } } }), 'CORRUPT_ARCHIVE');
    assert.deepEqual(await readdir(sandbox), []);
  });
});

describe('sources restored together commit together', () => {
  it('a failure in one source leaves the other source uncommitted', async (t) => {
    const sandbox = await tempDir(t);
    const garbage = Buffer.alloc(8192, 0x41);
    const all = [
      headerEntry([{ name: 'f', kind: 'files' }, { name: 'db', kind: 'sqlite' }]),
      folder('sources/f/'),
      file('sources/f/fine.txt'),
      { header: { name: 'sources/db/database.sqlite', type: 'file' }, body: garbage } as CraftedEntry,
    ];
    const destination = memory();
    await store(destination, await craftArchive([...all, manifestFor(all)]));
    await rejectsWithCode(
      Database.restore({ from: destination, targets: { f: { dir: join(sandbox, 'files') }, db: { path: join(sandbox, 'app.db') } } }),
      'CORRUPT_ARCHIVE',
    );
    assert.deepEqual(await readdir(sandbox), []);
    assert.ok(sqlite({ name: 'unused', path: 'x' }));
  });
});

describe('malformed tar entries are CORRUPT_ARCHIVE, never a hang', () => {
  /** A restore that hangs fails the test after this long instead of stalling the suite. */
  const HANG = { timeout: 60_000 };
  const start = [raw(headerEntry(FILES)), raw(folder('sources/f/'))];
  const malformed: Array<[string, RawEntry[]]> = [
    ['a folder whose header declares a body', [{ name: 'sources/f/d/', typeflag: '5', body: Buffer.alloc(700, 0x61) }]],
    ['a folder declaring a body that is not there', [{ name: 'sources/f/d/', typeflag: '5', size: 4096 }]],
    ['a link with a body', [{ name: 'sources/f/l', typeflag: '2', linkname: 'x', body: Buffer.from('payload') }]],
    ['an unknown entry type', [{ name: 'sources/f/odd', typeflag: 'Z', body: Buffer.from('x') }]],
    ['a file declaring more bytes than the archive holds', [{ name: 'sources/f/big', typeflag: '0', size: 1_000_000, body: Buffer.from('short') }]],
  ];
  for (const [label, entries] of malformed) {
    it(`refuses ${label}`, HANG, async (t) => {
      const tarBytes = rawTar([...start, ...entries]);
      // A truncated body leaves no end-of-archive blocks: the tar ends inside the entry.
      const bytes = entries.some((e) => (e.size ?? 0) > (e.body?.length ?? 0)) ? tarBytes.subarray(0, tarBytes.length - 1024) : tarBytes;
      await expectRefused(t, gzipSync(bytes), 'CORRUPT_ARCHIVE');
      await expectRefused(t, bytes, 'CORRUPT_ARCHIVE');
    });
  }

  it('refuses every mutant of a real archive with a typed code, or restores it exactly; nothing written outside', { timeout: 600_000 }, async (t) => {
    const dir = await tempDir(t, 'mutants');
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'sub'), { recursive: true });
    await writeFile(join(tree, 'a.txt'), 'alpha\n'.repeat(50));
    await writeFile(join(tree, 'sub', 'b.bin'), Buffer.alloc(3000, 7));
    await symlink('a.txt', join(tree, 'to-a'));
    const expected = await describeTree(tree);
    const origin = memory();
    const { name } = await new Database({ sources: [files({ name: 'f', dir: tree })] }).startBackup({ to: origin, compression: { algorithm: 'none' } }).done;
    const original = await buffer(await origin.open(name));

    // Deterministic: the same mutants on every run (a linear congruential generator, fixed seed).
    let seed = 0x5eed;
    const next = (limit: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % limit);
    const mutants: Array<[string, Buffer]> = [];
    for (let i = 0; i < 240; i += 1) {
      const mutant = Buffer.from(original);
      const at = next(mutant.length);
      mutant[at] = (mutant[at] as number) ^ (1 << next(8));
      mutants.push([`bit flip at ${at}`, mutant]);
    }
    for (let i = 0; i < 40; i += 1) {
      const at = next(original.length);
      mutants.push([`truncated to ${at}`, original.subarray(0, at)]);
    }
    for (let i = 0; i < 20; i += 1) {
      const mutant = Buffer.from(original);
      const at = next(mutant.length - 12);
      mutant.write('77777777777', at, 'latin1'); // an octal field made huge, wherever it lands
      mutants.push([`octal garbage at ${at}`, mutant]);
    }

    const outcomes: Record<string, number> = {};
    for (const [label, bytes] of mutants) {
      const sandbox = join(dir, 'sandbox');
      await mkdir(sandbox);
      const destination = memory();
      await store(destination, bytes);
      const target = join(sandbox, 'target');
      let timer: NodeJS.Timeout | undefined;
      const hang = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${label}: the restore did not settle`)), 30_000);
      });
      const outcome = await Promise.race([Database.restore({ from: destination, targets: { f: { dir: target } } }).then(() => 'restored', (error: unknown) => error), hang]).finally(() => clearTimeout(timer));
      if (outcome === 'restored') {
        assert.deepEqual(await describeTree(target), expected, `${label}: restored, so exactly the source`);
        assert.deepEqual(await readdir(sandbox), ['target'], label);
      } else {
        assert.ok(outcome instanceof BackupError, `${label}: ${String(outcome)}`);
        assert.deepEqual(await readdir(sandbox), [], `${label}: ${outcome.code} left something behind`);
      }
      const key = outcome instanceof BackupError ? outcome.code : 'restored';
      outcomes[key] = (outcomes[key] ?? 0) + 1;
      await rm(sandbox, { recursive: true, force: true });
    }
    t.diagnostic(`${mutants.length} mutants: ${JSON.stringify(outcomes)}`);
    assert.ok((outcomes['CORRUPT_ARCHIVE'] ?? 0) > mutants.length / 2, 'most mutants are refused as corrupt');
  });
});

describe('archives that would cost unbounded memory or disk', () => {
  const LINE_BYTES = 64 * 1024 * 1024;

  it(`refuses a manifest line of ${LINE_BYTES / 1024 / 1024} MiB with CORRUPT_ARCHIVE, reading it with bounded memory`, { timeout: 600_000 }, async (t) => {
    const sandbox = await tempDir(t, 'long-line');
    const listed = [headerEntry(FILES), folder('sources/f/'), file('sources/f/x')];
    const { body } = manifestFor(listed);
    const [, ...entryLines] = body!.toString().split('\n');
    const summary = JSON.stringify({ type: 'summary', entries: listed.length, sources: [], warnings: 0, pad: 'a'.repeat(LINE_BYTES) });
    const manifest = Buffer.from([summary, ...entryLines].join('\n'));
    const backups = join(sandbox, 'backups');
    await store(directory({ path: backups }), await craftArchive([...listed, { header: { name: 'manifest.ndjson', type: 'file' }, body: manifest }]));

    // In a process of its own, so that the peak memory measured is the restore's alone.
    const child = join(import.meta.dirname, 'helpers', 'restore-child.js');
    const { stdout } = await execFileAsync(process.execPath, [child, backups, JSON.stringify({ f: { dir: join(sandbox, 'target') } })]);
    const { code, peakGrowth } = JSON.parse(stdout) as { code: string; peakGrowth: number };
    t.diagnostic(`peak RSS growth: ${(peakGrowth / 1024 / 1024).toFixed(1)} MiB`);
    assert.equal(code, 'CORRUPT_ARCHIVE');
    assert.ok(peakGrowth < LINE_BYTES / 2, `the peak resident memory grew by ${peakGrowth} bytes`);
    assert.deepEqual(await readdir(sandbox), ['backups'], 'no target or staging copy left');
  });

  /** An archive of a files source whose header announces `estimatedBytes` for it. */
  async function announcing(estimatedBytes: number, entries: CraftedEntry[]): Promise<Buffer> {
    const header = headerEntry(FILES);
    const fields = JSON.parse(header.body!.toString()) as { sources: Array<{ estimatedBytes: number }> };
    fields.sources[0]!.estimatedBytes = estimatedBytes;
    const body = Buffer.from(JSON.stringify(fields));
    const all = [{ header: { ...header.header, size: body.length }, body }, folder('sources/f/'), ...entries];
    return craftArchive([...all, manifestFor(all)]);
  }

  it('refuses an archive whose header announces more than the free space, before writing anything', async (t) => {
    const sandbox = await tempDir(t, 'announced');
    const { bavail, bsize } = await statfs(sandbox);
    const destination = memory();
    await store(destination, await announcing(2 * bavail * bsize + 2 ** 30, [file('sources/f/x')]));
    const error = await rejectsWithCode(Database.restore({ from: destination, targets: { f: { dir: join(sandbox, 'new', 'target') } } }), 'RESTORE_FAILED', /announces that source "f" needs .* free/);
    assert.match(error.hint, /^Free at least .* on the file system of /);
    assert.deepEqual(await readdir(sandbox), [], 'no target, staging copy or parent folder made');
  });

  it('stops a gzip bomb, one huge file or many small ones, at the entry that does not fit, on a small file system', { timeout: 300_000 }, async (t) => {
    const sandbox = await tempDir(t, 'bomb');
    const small = join(sandbox, 'small');
    if (!(await mountSmallDisk(t, small))) return;
    try {
      // Headers that announce nothing: only the entries' own sizes can stop them.
      const bombs: Array<[string, CraftedEntry[], RegExp]> = [
        ['one 64 MiB file', [file('sources/f/zeros', '\0'.repeat(64 * 1024 * 1024))], /"zeros" needs 64\.0 MiB/],
        ['64 files of 300 KiB', Array.from({ length: 64 }, (_, i) => file(`sources/f/zeros-${i}`, '\0'.repeat(300 * 1024))), /"zeros-\d+" needs 300\.0 KiB/],
      ];
      for (const [what, entries, message] of bombs) {
        const archive = await announcing(0, entries);
        assert.ok(archive.length < 1024 * 1024, `${what}: a bomb, ${archive.length} bytes compressed`);
        const destination = memory();
        await store(destination, archive);
        const error = await rejectsWithCode(Database.restore({ from: destination, targets: { f: { dir: join(small, 'target') } } }), 'RESTORE_FAILED', message);
        assert.match(error.hint, /^Free at least /, what);
        assert.deepEqual(await readdir(small), [], `${what}: nothing left on the small file system`);
      }
    } finally {
      await execFileAsync('umount', [small]); // before the test's folder is removed
    }
  });
});
