import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';

/** Compresses one block into one self-contained member or frame, off the main thread. */
export type BlockCompressor = (block: Buffer) => Promise<Buffer>;

/** Big enough that a member's or frame's overhead (a header, a fresh dictionary) is noise. */
const BLOCK_SIZE = 4 * 1024 * 1024;

/**
 * Compresses its input as a series of independent gzip members or zstd frames, several at once on
 * the libuv thread pool, and writes them out in order. Both formats define a concatenation of
 * members (frames) as one stream: `gunzip`, `zstd -d`, `tar -xz` and `tar --zstd -x` read it whole.
 */
export class ParallelCompress extends Transform {
  readonly #compress: BlockCompressor;
  readonly #concurrency: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #inFlight: Array<Promise<Buffer>> = [];
  #wroteBlock = false;

  constructor(compress: BlockCompressor) {
    super();
    this.#compress = compress;
    this.#concurrency = Math.min(availableParallelism() + 2, 4);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    this.#drainFullBlocks().then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still gets one member, so the output is always a valid compressed file.
    if (this.#pendingBytes > 0 || !this.#wroteBlock) this.#submit(this.#takeBlock(this.#pendingBytes));
    this.#emitUntil(0).then(() => callback(), callback);
  }

  async #drainFullBlocks(): Promise<void> {
    while (this.#pendingBytes >= BLOCK_SIZE) {
      this.#submit(this.#takeBlock(BLOCK_SIZE));
      await this.#emitUntil(this.#concurrency - 1);
    }
  }

  #submit(block: Buffer): void {
    const compressed = this.#compress(block);
    compressed.catch(() => {}); // awaited in order by #emitUntil; avoid an unhandled rejection meanwhile
    this.#inFlight.push(compressed);
    this.#wroteBlock = true;
  }

  /** Emits finished blocks, oldest first, until at most `limit` are still compressing. */
  async #emitUntil(limit: number): Promise<void> {
    while (this.#inFlight.length > limit) {
      const next = this.#inFlight.shift() as Promise<Buffer>;
      this.push(await next);
    }
  }

  #takeBlock(size: number): Buffer {
    const all = this.#pending.length === 1 ? (this.#pending[0] as Buffer) : Buffer.concat(this.#pending);
    this.#pending = size < all.length ? [all.subarray(size)] : [];
    this.#pendingBytes = all.length - size;
    return all.subarray(0, size);
  }
}
