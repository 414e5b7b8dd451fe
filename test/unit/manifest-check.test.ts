/**
 * The manifest check: what a restore read, compared in step with the manifest that comes last.
 * Every difference is CORRUPT_ARCHIVE, and says which entry and what differs.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { MAX_MANIFEST_LINE_BYTES, manifestLines } from '../../src/archive/format.js';
import { ManifestCheck } from '../../src/restore/manifest-check.js';

interface Read {
  path: string;
  entryType: 'file' | 'directory' | 'symlink';
  size: number;
  sha256: string;
  mode: number;
  mtime: number;
  linkTarget?: string;
}

const READ: Read[] = [
  { path: 'header.json', entryType: 'file', size: 10, sha256: 'a'.repeat(64), mode: 0o644, mtime: 1_700_000_000 },
  { path: 'sources/uploads', entryType: 'directory', size: 0, sha256: 'e'.repeat(64), mode: 0o755, mtime: 1_700_000_001 },
  { path: 'sources/uploads/a.txt', entryType: 'file', size: 3, sha256: 'b'.repeat(64), mode: 0o600, mtime: 1_700_000_002 },
  { path: 'sources/uploads/link', entryType: 'symlink', size: 0, sha256: 'e'.repeat(64), mode: 0o777, mtime: 1_700_000_003, linkTarget: 'a.txt' },
];
const SUMMARY = { type: 'summary', entries: READ.length, sources: [{ name: 'uploads', kind: 'files', bytes: 3, items: 3 }], warnings: 0 };

async function* manifest(summary: object | undefined, entries: ReadonlyArray<Partial<Read>>): AsyncGenerator<Uint8Array> {
  const lines = [...(summary ? [summary] : []), ...entries.map((entry) => ({ type: 'entry', ...entry }))];
  // Split mid-line, as a tar entry's body arrives.
  const text = Buffer.from(lines.map((line) => `${JSON.stringify(line)}\n`).join(''));
  yield text.subarray(0, 50);
  yield text.subarray(50);
}

/** Checks `read` against a manifest of `listed`; returns the check (disposed by `t.after`). */
async function check(t: { after(fn: () => Promise<void>): void }, read: readonly Read[], listed: ReadonlyArray<Partial<Read>>, options: { summary?: object; formatVersion?: number } = {}) {
  const checker = new ManifestCheck();
  t.after(() => checker.dispose());
  for (const entry of read) await checker.record(entry);
  return { checker, verifying: checker.verify(manifest('summary' in options ? options.summary : SUMMARY, listed), options.formatVersion ?? 2) };
}

const corrupt = (message: RegExp) => ({ code: 'CORRUPT_ARCHIVE', message });

describe('manifest check', () => {
  it('accepts what matches, and then lists a source\'s entries relative to it', async (t) => {
    const { checker, verifying } = await check(t, READ, READ);
    assert.deepEqual(await verifying, { entries: READ.length, summary: SUMMARY });
    const under = [];
    for await (const entry of checker.entriesUnder('sources/uploads')) under.push([entry.path, entry.type, entry.mtime?.toISOString(), entry.linkTarget]);
    assert.deepEqual(under, [
      ['', 'directory', '2023-11-14T22:13:21.000Z', undefined],
      ['a.txt', 'file', '2023-11-14T22:13:22.000Z', undefined],
      ['link', 'symlink', '2023-11-14T22:13:23.000Z', 'a.txt'],
    ]);
  });

  it('names every damaged entry, by hash, size or type', async (t) => {
    const listed = READ.map((entry, i) => (i === 2 ? { ...entry, sha256: 'c'.repeat(64) } : i === 0 ? { ...entry, size: 11 } : entry));
    const { verifying } = await check(t, READ, listed);
    await assert.rejects(verifying, corrupt(/2 of 4 entries are damaged\n {2}- "header\.json" does not match its SHA-256 or size.*\n {2}- "sources\/uploads\/a\.txt" does not match/s));
  });

  it('compares mode, mtime and link target from format 2 on, not before', async (t) => {
    const listed = READ.map((entry, i) => (i === 3 ? { ...entry, mode: 0o755, linkTarget: '/etc/passwd' } : entry));
    await assert.rejects((await check(t, READ, listed)).verifying, corrupt(/"sources\/uploads\/link" does not match its mode, linkTarget in the manifest/));
    const v1 = READ.map(({ mode: _mode, mtime: _mtime, linkTarget: _link, ...entry }) => entry);
    assert.equal((await (await check(t, READ, v1, { formatVersion: 1 })).verifying).entries, READ.length);
  });

  it('refuses an entry missing, added or out of place, and a count that does not add up', async (t) => {
    await assert.rejects((await check(t, READ, READ.slice(0, 3))).verifying, corrupt(/the manifest lists fewer entries than the archive holds/));
    await assert.rejects((await check(t, READ.slice(0, 3), READ)).verifying, corrupt(/the manifest lists more entries than the archive holds/));
    await assert.rejects((await check(t, READ, [READ[0], READ[2], READ[1], READ[3]] as Read[])).verifying, corrupt(/entry 2 is "sources\/uploads", the manifest expects "sources\/uploads\/a\.txt"/));
    await assert.rejects((await check(t, READ, READ, { summary: { ...SUMMARY, entries: 5 } })).verifying, corrupt(/the manifest counts 5 entries, the archive holds 4/));
  });

  it('refuses a manifest without its summary, one that is not NDJSON, and an archive with nothing before its manifest', async (t) => {
    await assert.rejects((await check(t, READ, READ, { summary: undefined })).verifying, corrupt(/the manifest has no summary line/));
    const garbled = new ManifestCheck();
    t.after(() => garbled.dispose());
    await garbled.record(READ[0] as Read);
    await assert.rejects(garbled.verify(Readable.from([Buffer.from('{"type":"summ\n')]), 2), corrupt(/not valid NDJSON/));
    await assert.rejects(new ManifestCheck().verify(manifest(SUMMARY, READ), 2), corrupt(/holds no entries before its manifest/));
  });

  it('lists entries only after a successful check', async (t) => {
    const { checker, verifying } = await check(t, READ, READ.slice(1));
    await assert.rejects(verifying);
    await assert.rejects(checker.entriesUnder('sources/uploads').next(), /before a successful verify/);
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
    await assert.rejects(linesOf([longest, 'x\n']), corrupt(/longer than/));
    await assert.rejects(linesOf([`${longest}x`]), corrupt(/longer than/));
  });
});
