/**
 * Compression framing: the archive is a series of independent gzip members or zstd frames (so
 * blocks compress in parallel), which together read back as one stream; `none` coalesces chunks.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import * as zlib from 'node:zlib';
import { compressionExtension, compressor, decompressorFor, Rechunk, resolveCompression, type CompressionAlgorithm } from '../../src/archive/compression.js';
import { ParallelCompress } from '../../src/archive/parallel-compress.js';
import { lend, transferable } from '../../src/util/worker-channel.js';

const MiB = 1024 * 1024;
/** zstd in the Node.js releases that have it (22.15 and later); the unit tier runs on 20 too. */
const zstd = zlib as unknown as { zstdDecompressSync?: (data: Buffer) => Buffer };
const noZstd = zstd.zstdDecompressSync ? false : 'this Node.js has no zstd';

/** Each chunk the stage pushes: one member or frame per block. */
async function chunksOf(stage: Transform, input: Buffer, writeSize = 256 * 1024): Promise<Buffer[]> {
  const pieces = [];
  for (let offset = 0; offset < input.length; offset += writeSize) pieces.push(input.subarray(offset, offset + writeSize));
  // 'data' events, not async iteration: read() would join what is buffered and hide the boundaries.
  const out: Buffer[] = [];
  stage.on('data', (chunk: Buffer) => out.push(chunk));
  await pipeline(Readable.from(pieces), stage);
  return out;
}

async function decompressWhole(compressed: Buffer): Promise<Buffer> {
  const stage = decompressorFor(compressed);
  assert.ok(stage, 'recognised by its first bytes');
  return Buffer.concat(await chunksOf(stage, compressed));
}

const decompressOne: Record<'gzip' | 'zstd', (member: Buffer) => Buffer> = {
  gzip: (member) => zlib.gunzipSync(member),
  zstd: (member) => (zstd.zstdDecompressSync as (data: Buffer) => Buffer)(member),
};

describe('compression framing', () => {
  for (const algorithm of ['gzip', 'zstd'] as const) {
    it(`${algorithm}: 4 MiB blocks, each a member that decompresses alone, in order; all of them read as one stream`, { skip: algorithm === 'zstd' && noZstd }, async () => {
      // Repeated, then random (incompressible): the blocks differ in compressed size, their order holds anyway.
      const input = Buffer.concat([Buffer.alloc(3 * MiB, 7), randomBytes(2 * MiB + 123)]);
      const members = await chunksOf(compressor(resolveCompression({ algorithm })), input);
      assert.equal(members.length, 2);
      const blocks = members.map((member) => decompressOne[algorithm](member));
      assert.deepEqual(blocks.map((b) => b.length), [4 * MiB, MiB + 123]);
      assert.ok(Buffer.concat(blocks).equals(input));
      assert.ok((await decompressWhole(Buffer.concat(members))).equals(input));
    });

    it(`${algorithm}: an empty input is still one valid member`, { skip: algorithm === 'zstd' && noZstd }, async () => {
      const members = await chunksOf(compressor(resolveCompression({ algorithm })), Buffer.alloc(0));
      assert.equal(members.length, 1);
      assert.equal(decompressOne[algorithm](members[0] as Buffer).length, 0);
    });
  }

  it('fills a few blocks again and again rather than allocating one per block, and never one still being compressed', async () => {
    const input = randomBytes(40 * MiB + 5);
    const blocks = new Set<ArrayBufferLike>();
    // Reads its block only after a while, as zlib on the thread pool may: a block handed out again
    // too early would be compressed with the next block's bytes.
    const slowCopy = async (block: Buffer) => {
      blocks.add(block.buffer);
      await new Promise((resolve) => setTimeout(resolve, 5));
      return Buffer.from(block);
    };
    const out = await chunksOf(new ParallelCompress(slowCopy), input, 100_000);
    assert.ok(Buffer.concat(out).equals(input));
    assert.deepEqual(out.map((block) => block.length).slice(0, -1), Array(10).fill(4 * MiB));
    assert.ok(blocks.size <= 5, `${blocks.size} blocks for 11`);
  });

  it('gives a lent buffer back once every byte of it was copied into its blocks, and one not copied whole never', async () => {
    const whole = randomBytes(6 * MiB);
    const part = randomBytes(6 * MiB);
    let givenBack = 0;
    lend(whole, () => (givenBack += 1));
    lend(part, () => (givenBack += 10));
    // Written in slices, as the archive writer does: the buffer goes back after its last slice only.
    const slices = [...[0, 1, 2].map((i) => whole.subarray(i * 2 * MiB, (i + 1) * 2 * MiB)), part.subarray(0, MiB)];
    const stage = new ParallelCompress(async (block) => Buffer.from(block));
    const out: Buffer[] = [];
    stage.on('data', (chunk: Buffer) => out.push(chunk));
    const afterEach: number[] = [];
    for (const slice of slices) {
      await new Promise((resolve) => stage.write(slice, resolve));
      afterEach.push(givenBack);
    }
    await new Promise((resolve) => stage.end(resolve));
    assert.deepEqual(afterEach, [0, 0, 1, 1]);
    assert.ok(Buffer.concat(out).equals(Buffer.concat([whole, part.subarray(0, MiB)])));
  });

  it('once destroyed, closes only after the blocks still compressing have settled, and starts no other', async () => {
    const held: Array<() => void> = [];
    let started = 0;
    const compressing = async (block: Buffer) => {
      started += 1;
      await new Promise<void>((resolve) => held.push(resolve));
      return Buffer.from(block);
    };
    const stage = new ParallelCompress(compressing);
    let closed = false;
    stage.once('close', () => (closed = true));
    stage.on('error', () => {});
    // More blocks than it compresses at once: the write waits for the first of them.
    stage.write(Buffer.alloc(6 * 4 * MiB));
    await new Promise<void>((resolve) => setImmediate(resolve));
    const startedBefore = started;
    assert.ok(startedBefore > 0);
    stage.destroy();
    for (let turn = 0; turn < 5; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(closed, false, 'not closed while blocks compress');
    for (const release of held) release();
    await once(stage, 'close');
    assert.equal(started, startedBefore, 'no block started after the destroy');
  });

  it('hands its compressed blocks on as buffers a thread may take uncopied; any other buffer is copied first', async () => {
    // Random bytes: each member is larger than one of zlib's 1 MiB output pieces.
    const members = await chunksOf(compressor(resolveCompression({ algorithm: 'gzip' })), randomBytes(6 * MiB));
    assert.equal(members.length, 2);
    for (const member of members) assert.equal(transferable(member), member, 'the very buffer');
    const other = randomBytes(1000);
    const copy = transferable(other);
    assert.notEqual(copy.buffer, other.buffer);
    assert.ok(Buffer.from(copy).equals(other));
  });

  it('none: small writes are coalesced into chunks of at least 1 MiB, the last one excepted, bytes unchanged', async () => {
    const input = randomBytes(3 * MiB + 5);
    const chunks = await chunksOf(compressor(resolveCompression({ algorithm: 'none' })), input, 64 * 1024);
    assert.ok(chunks.slice(0, -1).every((chunk) => chunk.length >= MiB));
    assert.ok(Buffer.concat(chunks).equals(input));
    assert.equal(decompressorFor(input.subarray(0, 4)), undefined, 'a plain tar has no decompressor');
  });

  it('none: a chunk of 1 MiB or more goes on as it is, never copied; smaller ones around it are coalesced', async () => {
    const big = randomBytes(2 * MiB);
    const small = randomBytes(1000);
    const out: Buffer[] = [];
    const stage = new Rechunk();
    stage.on('data', (chunk: Buffer) => out.push(chunk));
    await pipeline(Readable.from([big, small, big, big]), stage);
    assert.equal(out[0], big, 'the very buffer written, not a copy');
    assert.equal(out.length, 3, 'the small chunk joined the next, which then had to be copied');
    assert.ok(out[1]!.equals(Buffer.concat([small, big])));
    assert.equal(out[2], big);
  });

  it('names its extension and refuses unknown algorithms and levels out of range', () => {
    assert.deepEqual((['gzip', 'zstd', 'none'] as CompressionAlgorithm[]).map(compressionExtension), ['.gz', '.zst', '']);
    assert.deepEqual(resolveCompression(undefined), { algorithm: 'gzip', level: 1 });
    assert.deepEqual(resolveCompression({ algorithm: 'gzip', level: 9 }), { algorithm: 'gzip', level: 9 });
    for (const options of [{ algorithm: 'brotli' as CompressionAlgorithm }, { level: 0 }, { level: 10 }, { level: 2.5 }, { algorithm: 'none' as const, level: 1 }]) {
      assert.throws(() => resolveCompression(options), { code: 'INVALID_OPTIONS' }, JSON.stringify(options));
    }
  });
});
