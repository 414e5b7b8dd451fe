import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { copiedOut, markSoleView } from '../util/worker-channel.js';

/**
 * Compresses one block into one self-contained member or frame, off the main thread, into a buffer
 * no one else writes or reads (zlib's output).
 */
export type BlockCompressor = (block: Buffer) => Promise<Buffer>;

/** Big enough that a member's or frame's overhead (a header, a fresh dictionary) is noise. */
export const BLOCK_SIZE = 4 * 1024 * 1024;

/**
 * Compresses its input as a series of independent gzip members or zstd frames, several at once on
 * the libuv thread pool, and writes them out in order. Both formats define a concatenation of
 * members (frames) as one stream: `gunzip`, `zstd -d`, `tar -xz` and `tar --zstd -x` read it whole.
 *
 * Input is copied once, into blocks that are reused once compressed: a fresh 4 MiB block per
 * block (as `Buffer.concat` made) was memory outside the heap that set off a full garbage
 * collection every few blocks, on the main thread and V8's helpers.
 */
export class ParallelCompress extends Transform {
  readonly #compress: BlockCompressor;
  readonly #concurrency: number;
  /** The block being filled, and how far. */
  #block: Buffer | undefined;
  #filled = 0;
  /** Blocks compressed already, to fill again. */
  readonly #spare: Buffer[] = [];
  #inFlight: Array<Promise<Buffer>> = [];
  /** Compressions not settled yet, emitted or not: `_destroy` waits for them. */
  readonly #running = new Set<Promise<void>>();
  #wroteBlock = false;

  constructor(compress: BlockCompressor) {
    super();
    this.#compress = compress;
    this.#concurrency = Math.min(availableParallelism() + 2, 4);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#take(chunk).then(() => callback(), callback);
  }

  /**
   * Closes once the blocks still compressing have settled: after a cancel they would otherwise go
   * on holding the libuv pool's threads and their memory past the backup's end.
   */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    void Promise.all(this.#running).then(() => callback(error));
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still gets one member, so the output is always a valid compressed file.
    if (this.#filled > 0 || !this.#wroteBlock) this.#submit(this.#current(), this.#filled);
    this.#block = undefined;
    this.#emitUntil(0).then(() => callback(), callback);
  }

  async #take(chunk: Buffer): Promise<void> {
    const length = chunk.length;
    let offset = 0;
    // A destroyed stream compresses no more of a chunk it was writing.
    while (offset < length && !this.destroyed) {
      const block = this.#current();
      const copied = chunk.copy(block, this.#filled, offset, offset + BLOCK_SIZE - this.#filled);
      offset += copied;
      this.#filled += copied;
      if (this.#filled < BLOCK_SIZE) continue;
      this.#block = undefined;
      this.#filled = 0;
      this.#submit(block, BLOCK_SIZE);
      await this.#emitUntil(this.#concurrency - 1);
    }
    // Copied into the blocks: a lent buffer, once copied whole, may go back to be filled again.
    copiedOut(chunk.buffer, offset);
  }

  #current(): Buffer {
    // allocUnsafeSlow: a block of its own, never a slice of the shared pool, as it is reused.
    return (this.#block ??= this.#spare.pop() ?? Buffer.allocUnsafeSlow(BLOCK_SIZE));
  }

  /** Compresses the first `length` bytes of `block`. */
  #submit(block: Buffer, length: number): void {
    const compressed = this.#compress(block.subarray(0, length));
    // Awaited in order by #emitUntil (no unhandled rejection meanwhile); zlib has read the block
    // once it settles, and then it can be filled again.
    const settled = compressed.then(
      () => void this.#spare.push(block),
      () => {},
    );
    this.#running.add(settled);
    void settled.then(() => this.#running.delete(settled));
    this.#inFlight.push(compressed);
    this.#wroteBlock = true;
  }

  /** Emits finished blocks, oldest first, until at most `limit` are still compressing. */
  async #emitUntil(limit: number): Promise<void> {
    while (this.#inFlight.length > limit) {
      const next = await (this.#inFlight.shift() as Promise<Buffer>);
      // zlib joins a member's output pieces into a buffer of its own (a single piece is a slice of
      // a larger one, left unmarked): a later stage may move it to a thread uncopied.
      if (next.byteOffset === 0 && next.byteLength === next.buffer.byteLength) markSoleView(next);
      this.push(next);
    }
  }
}
