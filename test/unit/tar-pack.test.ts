/**
 * The archive's own tar writer against tar-stream's, which wrote every archive before it: the same
 * bytes for every kind of header (ustar name and prefix, PAX for long or non-ASCII names and link
 * targets, mode 0, large sizes), so archives compare and restore as they did.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import tar from 'tar-stream';
import { TarPack, type TarHeader } from '../../src/archive/tar-pack.js';

interface Case extends TarHeader {
  body?: Buffer;
}

const cases: Case[] = [
  { name: 'sources/data', type: 'directory', size: 0, mode: 0o755, mtime: 1_700_000_000 },
  { name: 'sources/data/empty-mode/', type: 'directory', size: 0, mode: 0, mtime: 0 },
  { name: 'sources/data/small.txt', type: 'file', size: 5, mode: 0o644, mtime: 1_700_000_001, body: Buffer.from('hello') },
  { name: 'sources/data/block', type: 'file', size: 512, mode: 0o600, mtime: 1, body: Buffer.alloc(512, 1) },
  { name: 'sources/data/zero-mode', type: 'file', size: 3, mode: 0, mtime: 2, body: Buffer.from('abc') },
  { name: 'sources/data/big', type: 'file', size: 200_000, mode: 0o640, mtime: 3, body: Buffer.alloc(200_000, 9) },
  { name: `sources/data/${'d'.repeat(90)}/${'f'.repeat(99)}`, type: 'file', size: 1, mode: 0o644, mtime: 4, body: Buffer.from('x') },
  { name: `sources/data/${'n'.repeat(120)}`, type: 'file', size: 2, mode: 0o644, mtime: 5, body: Buffer.from('yz') },
  { name: `${'p/'.repeat(100)}tail`, type: 'file', size: 0, mode: 0o644, mtime: 6 },
  { name: 'sources/data/naïve café 日本語 🎉.txt', type: 'file', size: 4, mode: 0o644, mtime: 7, body: Buffer.from('café', 'latin1') },
  { name: 'sources/data/link', type: 'symlink', size: 0, mode: 0o777, mtime: 8, linkname: '../target' },
  { name: 'sources/data/empty-link', type: 'symlink', size: 0, mode: 0o777, mtime: 9, linkname: '' },
  { name: 'sources/data/long-link', type: 'symlink', size: 0, mode: 0o777, mtime: 10, linkname: 'l'.repeat(150) },
  { name: 'sources/data/utf8-link', type: 'symlink', size: 0, mode: 0o777, mtime: 11, linkname: 'ç/日本' },
  { name: 'sources/data/negative-time', type: 'file', size: 0, mode: 0o644, mtime: -86_400 },
  { name: `sources/data/${'ü'.repeat(40)}/${'x'.repeat(1000)}`, type: 'directory', size: 0, mode: 0o700, mtime: 12 },
];

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('tar pack', () => {
  it('writes the bytes tar-stream wrote, header for header', async () => {
    const reference = tar.pack();
    const expected = collect(reference);
    for (const { body, ...header } of cases) {
      const { mtime, linkname, ...rest } = header;
      await new Promise<void>((resolve, reject) => {
        const entry = reference.entry({ ...rest, mtime: new Date(mtime * 1000), ...(linkname === undefined ? {} : { linkname }) }, (error) => (error ? reject(error) : resolve()));
        if (body) entry.write(body);
        entry.end(undefined);
      });
    }
    reference.finalize();

    const pack = new TarPack();
    const actual = collect(pack);
    for (const { body, ...header } of cases) {
      pack.header(header);
      if (body) pack.write(body);
      pack.pad(header.type === 'file' ? header.size : 0);
      await pack.drained();
    }
    pack.finalize();
    assert.deepEqual(await actual, await expected);
  });
});
