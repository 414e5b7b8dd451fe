import { Transform, type TransformCallback } from 'node:stream';
import { Sha256Thread } from '../util/sha256.js';

/**
 * Passes bytes through while computing their SHA-256 (on a worker thread) and count: the
 * archive's own checksum.
 */
export class ChecksumCounter extends Transform {
  readonly #hash = new Sha256Thread('DESTINATION_FAILED');
  #size = 0;
  #digest: string | undefined;

  constructor(private readonly onBytes: (bytes: number) => void = () => {}) {
    super();
  }

  get size(): number {
    return this.#size;
  }

  /** Valid once the stream has ended. */
  digest(): string {
    if (this.#digest === undefined) throw new Error('The archive checksum is read before the archive ended');
    return this.#digest;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#size += chunk.length;
    this.onBytes(chunk.length);
    this.#hash.update(chunk).then(() => callback(null, chunk), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.#hash.digest().then((hex) => {
      this.#digest = hex;
      callback();
    }, callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#hash.stop().then(() => callback(error), callback);
  }
}
