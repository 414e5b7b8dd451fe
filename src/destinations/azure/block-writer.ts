import { Writable } from 'node:stream';

/**
 * A writable that cuts what it receives into blocks of `blockSize` bytes and hands each to `stage`,
 * at most `concurrency` at once. A write is acknowledged only once its bytes are queued for a free
 * slot, so memory stays near `blockSize x (concurrency + 1)` and a slow server slows the writer.
 * The first failed block destroys the stream at once, so the writer stops instead of writing on.
 */
export class BlockWriter extends Writable {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: Error | undefined;
  private count = 0;

  constructor(
    private readonly stage: (index: number, block: Buffer) => Promise<void>,
    private readonly blockSize: number,
    private readonly concurrency: number,
  ) {
    super({ highWaterMark: blockSize });
  }

  /** How many blocks were handed to `stage`, numbered from 0. */
  get blocks(): number {
    return this.count;
  }

  /** Resolves once no block is being staged any more, whether they succeeded or not. */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.flush(false).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.flush(true)
      .then(() => this.settled())
      .then(() => callback(this.failure), callback);
  }

  /** Stages every full block, and with `all` the remainder too, waiting for a free slot before each. */
  private async flush(all: boolean): Promise<void> {
    while (this.pendingBytes >= this.blockSize || (all && this.pendingBytes > 0)) {
      while (this.inFlight.size >= this.concurrency && !this.failure) await Promise.race(this.inFlight);
      if (this.failure) throw this.failure;
      const joined = Buffer.concat(this.pending, this.pendingBytes);
      const block = joined.subarray(0, this.blockSize);
      const rest = joined.subarray(block.length);
      this.pending = rest.length > 0 ? [rest] : [];
      this.pendingBytes = rest.length;
      const staging = this.stage(this.count++, block).then(
        () => {
          this.inFlight.delete(staging);
        },
        (error: unknown) => {
          this.inFlight.delete(staging);
          this.failure ??= error as Error;
          if (!this.destroyed) this.destroy(this.failure);
        },
      );
      this.inFlight.add(staging);
    }
    if (this.failure) throw this.failure;
  }
}
