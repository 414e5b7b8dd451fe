import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

const gzipAsync = promisify(gzip);

/** Big enough that the gzip member overhead (about 20 bytes, a fresh dictionary) is noise. */
const BLOCK_SIZE = 4 * 1024 * 1024;
/** zlib's default 16 KiB output chunks make each call loop thousands of times; measured ~2x. */
const ZLIB_CHUNK_SIZE = 1024 * 1024;

/**
 * Compresses its input as a series of independent gzip members, several at once on the libuv
 * thread pool, and writes them out in order. `gunzip` and `tar -xz` read such a file as one stream.
 */
export class ParallelGzip extends Transform {
  readonly #level: number;
  readonly #concurrency: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #inFlight: Array<Promise<Buffer>> = [];
  #wroteMember = false;

  constructor(level: number) {
    super();
    this.#level = level;
    this.#concurrency = Math.min(availableParallelism() + 2, 4);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    this.#drainFullBlocks().then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    // An empty input still gets one member, so the output is always a valid gzip file.
    if (this.#pendingBytes > 0 || !this.#wroteMember) this.#submit(this.#takeBlock(this.#pendingBytes));
    this.#emitUntil(0).then(() => callback(), callback);
  }

  async #drainFullBlocks(): Promise<void> {
    while (this.#pendingBytes >= BLOCK_SIZE) {
      this.#submit(this.#takeBlock(BLOCK_SIZE));
      await this.#emitUntil(this.#concurrency - 1);
    }
  }

  #submit(block: Buffer): void {
    const compressed = gzipAsync(block, { level: this.#level, chunkSize: ZLIB_CHUNK_SIZE });
    compressed.catch(() => {}); // awaited in order by #emitUntil; avoid an unhandled rejection meanwhile
    this.#inFlight.push(compressed);
    this.#wroteMember = true;
  }

  /** Emits finished members, oldest first, until at most `limit` are still compressing. */
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
