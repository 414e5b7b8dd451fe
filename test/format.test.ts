import assert from 'node:assert/strict';
import { copyFile, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MAX_MANIFEST_LINE_BYTES, manifestLines } from '../src/archive/format.js';
import { archiveName, dateFromArchiveName, isArchiveName } from '../src/archive/names.js';
import { Database, directory } from '../src/index.js';
import { BACKUPKIT_VERSION } from '../src/version.js';
import { rejectsWithCode } from './helpers/errors.js';
import { describeTree, tempDir } from './helpers/fs.js';
import { bankSummary } from './helpers/sqlite.js';

const repository = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

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
