import { Transform, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { BackupError } from '../errors.js';
import { markSoleView } from '../util/worker-channel.js';
import { BLOCK_SIZE, ParallelCompress } from './parallel-compress.js';

/**
 * How an archive is compressed.
 * @public
 */
export type CompressionAlgorithm = 'gzip' | 'zstd' | 'none';

export interface Compression {
  algorithm: CompressionAlgorithm;
  level: number;
}

const ZSTD_NODE = '22.15';
const DEFAULT_LEVEL: Record<CompressionAlgorithm, number> = { gzip: 1, zstd: 3, none: 0 };
const LEVELS: Record<CompressionAlgorithm, [number, number]> = { gzip: [1, 9], zstd: [1, 19], none: [0, 0] };

/** The file extension after `.tar`. */
export function compressionExtension(algorithm: CompressionAlgorithm): string {
  return { gzip: '.gz', zstd: '.zst', none: '' }[algorithm];
}

/** Validates the user's choice; zstd needs a Node.js with built-in zstd. */
export function resolveCompression(options: { algorithm?: CompressionAlgorithm; level?: number } | undefined): Compression {
  const algorithm = options?.algorithm ?? 'gzip';
  if (!(algorithm in DEFAULT_LEVEL)) {
    throw new BackupError('INVALID_OPTIONS', `Unknown compression algorithm ${JSON.stringify(algorithm)}; use 'gzip', 'zstd' or 'none'`);
  }
  if (algorithm === 'zstd' && typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress !== 'function') {
    throw new BackupError('INVALID_OPTIONS', `zstd compression needs Node.js ${ZSTD_NODE} or later; this is Node.js ${process.versions.node}`, {
      hint: `Upgrade Node.js to ${ZSTD_NODE} or later, or use compression: { algorithm: 'gzip' }.`,
    });
  }
  const level = options?.level ?? DEFAULT_LEVEL[algorithm];
  const [min, max] = LEVELS[algorithm];
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new BackupError('INVALID_OPTIONS', `The ${algorithm} compression level must be an integer from ${min} to ${max}, not ${typeof level === 'number' ? String(level) : `${typeof level} ${JSON.stringify(level)}`}`);
  }
  return { algorithm, level };
}

/** What {@link Rechunk} emits at least. */
const MIN_CHUNK = 1024 * 1024;

/**
 * Output chunks that hold a whole compressed block (zlib's default 16 KiB made each call loop
 * thousands of times; measured ~2x). gzip finishes each member in one call (`Z_FINISH`, the same bytes) into one output chunk that
 * holds even an incompressible block (stored, it grows by a few bytes per 16 KiB): zlib then hands
 * that chunk over as it is, where the pieces of two calls were joined with `Buffer.concat` on the
 * main thread (0.13 CPU s per 256 MB). The chunk's unwritten tail never becomes resident. zstd
 * writes a frame in two calls (`ZSTD_e_end` in one would change the frames: they would record
 * their size), into one such chunk too: see `zstdFrame`.
 */
const OUTPUT_CHUNK_SIZE = BLOCK_SIZE + 64 * 1024;

/** zstd in the Node.js releases that have it (22.15 and later). */
interface ZstdZlib {
  createZstdCompress(options: object): Transform;
  createZstdDecompress?: () => Transform;
  constants: Record<string, number>;
}

/** The compressing stage of the archive pipeline: independent blocks compressed on the thread pool. */
export function compressor({ algorithm, level }: Compression): Transform {
  if (algorithm === 'gzip') {
    const gzip = promisify(zlib.gzip);
    const options = { level, chunkSize: OUTPUT_CHUNK_SIZE, flush: zlib.constants.Z_FINISH };
    return new ParallelCompress(async (block) => {
      const member = await gzip(block, options);
      // The start of zlib's output chunk, which the engine, closed now, never touches again.
      if (member.byteOffset === 0) markSoleView(member);
      return member;
    });
  }
  if (algorithm === 'zstd') {
    const zstd = zlib as unknown as ZstdZlib;
    const options = { chunkSize: OUTPUT_CHUNK_SIZE, params: { [zstd.constants['ZSTD_c_compressionLevel'] as number]: level } };
    return new ParallelCompress((block) => zstdFrame(zstd, block, options));
  }
  return new Rechunk();
}

/**
 * One zstd frame of `block`, as `zlib.zstdCompress` writes it, without its `Buffer.concat`: the
 * frame's pieces (one per call, both calls writing into one output chunk) sit end to end in that
 * chunk, and the frame is a view of them (0.13 CPU s per 256 MB on the main thread, and as much
 * fresh memory, saved).
 */
function zstdFrame(zstd: ZstdZlib, block: Buffer, options: object): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const engine = zstd.createZstdCompress(options);
    const pieces: Buffer[] = [];
    let length = 0;
    engine.on('data', (piece: Buffer) => {
      pieces.push(piece);
      length += piece.length;
    });
    engine.once('error', reject);
    engine.once('end', () => {
      const frame = adjoining(pieces, length) ?? Buffer.concat(pieces, length);
      // The start of zlib's output chunk, which the engine, ended now, never touches again.
      if (frame.byteOffset === 0) markSoleView(frame);
      resolve(frame);
    });
    engine.end(block);
  });
}

/** One view of `pieces` when they lie end to end in one ArrayBuffer. */
function adjoining(pieces: readonly Buffer[], length: number): Buffer | undefined {
  const first = pieces[0];
  if (!first) return undefined;
  let end = first.byteOffset;
  for (const piece of pieces) {
    if (piece.buffer !== first.buffer || piece.byteOffset !== end) return undefined;
    end += piece.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, length);
}

/** Recognises the compression of an archive by its first bytes and returns a decompressor. */
export function decompressorFor(head: Buffer): Transform | undefined {
  if (head[0] === 0x1f && head[1] === 0x8b) return zlib.createGunzip({ chunkSize: 1024 * 1024 });
  if (head.readUInt32LE(0) === 0xfd2fb528) {
    const zstd = zlib as unknown as Partial<ZstdZlib>;
    if (!zstd.createZstdDecompress) {
      throw new BackupError('UNSUPPORTED_FORMAT', `The archive is zstd-compressed, which needs Node.js ${ZSTD_NODE} or later; this is Node.js ${process.versions.node}`, {
        hint: `Upgrade Node.js, or decompress it by hand with \`zstd -d\` first.`,
      });
    }
    return zstd.createZstdDecompress();
  }
  return undefined; // a plain tar
}

/** Coalesces small writes into chunks of at least 1 MiB: OpenPGP and destinations are slow on small chunks. */
export class Rechunk extends Transform {
  #chunks: Buffer[] = [];
  #bytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    // A chunk big enough on its own goes on as it is: a compressed block (2-4 MiB) copied again
    // costs the host's main thread its time and memory, byte for byte.
    if (this.#bytes === 0 && chunk.length >= MIN_CHUNK) {
      this.push(chunk);
      callback();
      return;
    }
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    if (this.#bytes >= MIN_CHUNK) this.#emit();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.#bytes > 0) this.#emit();
    callback();
  }

  #emit(): void {
    this.push(this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks));
    this.#chunks = [];
    this.#bytes = 0;
  }
}
