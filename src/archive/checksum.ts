import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** Passes bytes through while computing their SHA-256 and count: the archive's own checksum. */
export class ChecksumCounter extends Transform {
  readonly #hash = createHash('sha256');
  #size = 0;

  constructor(private readonly onBytes: (bytes: number) => void = () => {}) {
    super();
  }

  get size(): number {
    return this.#size;
  }

  /** Valid once the stream has ended. */
  digest(): string {
    return this.#hash.copy().digest('hex');
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
    this.onBytes(chunk.length);
    callback(null, chunk);
  }
}
