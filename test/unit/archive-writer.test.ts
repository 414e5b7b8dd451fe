/**
 * The tar writer's per-entry SHA-256: its own, or the one a source computed where it read the body
 * (Entry.bodySha256), so that the bytes are not hashed a second time on the host's main thread.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ArchiveWriter } from '../../src/archive/writer.js';
import { copiedOut, lend } from '../../src/util/worker-channel.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

describe('archive writer', () => {
  it('records the SHA-256 a source vouches for instead of hashing the body, and hashes bodies that come without one', async () => {
    const writer = await ArchiveWriter.create();
    const tar: Buffer[] = [];
    writer.tar.on('data', (chunk) => void tar.push(chunk as Buffer));
    try {
      const body = Buffer.from('the body');
      const entry = { type: 'file' as const, mode: 0o644, mtime: new Date(0), size: body.length };
      // Not the body's real hash: proof that the writer took it rather than computing its own.
      const vouched = 'ab'.repeat(32);
      const taken = await writer.add({ ...entry, path: 'vouched', body: once(body), bodySha256: async () => vouched });
      assert.deepEqual(taken, { sha256: vouched, sizeMismatch: false });
      const hashed = await writer.add({ ...entry, path: 'hashed', body: once(body) });
      assert.deepEqual(hashed, { sha256: sha256(body), sizeMismatch: false });
      const ended = new Promise((resolve) => writer.tar.on('end', resolve));
      await writer.finish({ sources: [], warnings: 0 });
      await ended;
      assert.ok(Buffer.concat(tar).includes(body), 'the body is archived either way');
    } finally {
      await writer.dispose();
    }
  });

  it('counts every byte of a body whose buffer goes back to its source as soon as a later stage copied it', async () => {
    const writer = await ArchiveWriter.create();
    const tar: Buffer[] = [];
    // Copies what the tar stream hands on, at once, as the compressor does, and says so.
    writer.tar.on('data', (chunk: Buffer) => {
      tar.push(Buffer.from(chunk));
      copiedOut(chunk.buffer, chunk.length);
    });
    try {
      const body = Buffer.alloc(3 * 1024 * 1024 + 100, 'row\n');
      const expected = Buffer.from(body);
      // Given back as a COPY thread's chunk is: transferred, which empties every view of it here.
      lend(body, () => void structuredClone(body.buffer, { transfer: [body.buffer as ArrayBuffer] }));
      let counted = 0;
      const added = await writer.add({ path: 'chunk', type: 'file', mode: 0o644, mtime: new Date(0), size: body.length, body: once(body) }, (n) => (counted += n));
      assert.equal(body.length, 0, 'the buffer went back once its bytes were copied');
      assert.equal(counted, expected.length);
      assert.deepEqual(added, { sha256: sha256(expected), sizeMismatch: false });
      const ended = new Promise((resolve) => writer.tar.on('end', resolve));
      await writer.finish({ sources: [], warnings: 0 });
      await ended;
      assert.ok(Buffer.concat(tar).includes(expected), 'the body is archived whole');
    } finally {
      await writer.dispose();
    }
  });
});
