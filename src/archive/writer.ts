import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { EntryType } from '../types.js';
import { LineSpool } from '../util/line-spool.js';
import { cooperative } from '../util/yield.js';
import { MANIFEST_PATH, tarSeconds, type ManifestEntry, type ManifestSummary } from './format.js';
import { SIGNATURE_PATH, type Signer } from './signature.js';
import { TarPack } from './tar-pack.js';

const PADDING = Buffer.alloc(64 * 1024);
/**
 * Bytes hashed and handed to tar between two chances to yield to the event loop: a 4 MiB
 * PostgreSQL chunk, hashed and packed in one go, held the host's event loop for 20-30 ms here.
 */
const SLICE = 512 * 1024;

async function* concat(streams: ReadonlyArray<AsyncIterable<Uint8Array> | Iterable<Uint8Array>>): AsyncGenerator<Uint8Array> {
  for (const stream of streams) yield* stream;
}

/** An entry to append: its body is cut or padded to `size`, as tar announces sizes up front. */
export interface ArchiveEntryInput {
  path: string;
  type: EntryType;
  mode: number;
  mtime: Date;
  size: number;
  linkTarget?: string;
  body?: AsyncIterable<Uint8Array>;
  /** The SHA-256 of the body as stored (cut or padded to `size`), when the source hashed it: the writer then does not. */
  bodySha256?: () => string | Promise<string>;
  /** Asked once the body is read: did the source see the file change meanwhile? */
  changed?: () => boolean;
}

export interface WrittenEntry {
  sha256: string;
  /** The body did not have the announced size and was cut or padded. */
  sizeMismatch: boolean;
}

/**
 * Writes the tar stream of one archive, entry by entry, and the manifest last. The manifest is
 * spooled to a temporary file so memory stays flat however many entries there are.
 */
export class ArchiveWriter {
  /** The uncompressed tar stream. */
  readonly tar = new TarPack();
  #spool: LineSpool | undefined;
  #entries = 0;
  readonly #yieldNow = cooperative();
  readonly #signal: AbortSignal | undefined;
  /** Why nothing more can be written: the tar stream was torn down, or the backup cancelled. */
  #stopped: { error: unknown } | undefined;
  /** Rejects the wait in progress (there is one at a time) when the archive stops. */
  #interrupt: ((error: unknown) => void) | undefined;
  readonly #onAbort = () => this.#stop(this.#signal?.reason);

  private constructor(signal: AbortSignal | undefined) {
    this.#signal = signal;
    // One watcher for every wait: listeners added and removed on the pack and the signal for each
    // wait cost 0.1-0.15 CPU s per 12,000 entries.
    this.tar.on('error', (error: Error) => this.#stop(error));
    this.tar.on('close', () => this.#stop(this.tar.errored ?? new Error('The tar stream closed before the archive was written')));
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  static async create(signal?: AbortSignal): Promise<ArchiveWriter> {
    const writer = new ArchiveWriter(signal);
    writer.#spool = await LineSpool.create('manifest');
    return writer;
  }

  /** Appends one entry and records it in the manifest; `onBytes` counts body bytes as they go. */
  async add(input: ArchiveEntryInput, onBytes: (bytes: number) => void = () => {}): Promise<WrittenEntry> {
    const size = input.type === 'file' ? input.size : 0;
    const mtime = tarSeconds(input.mtime);
    await this.#header(input.type === 'directory' ? `${input.path}/` : input.path, input.type, size, input.mode, mtime, input.linkTarget);
    // A source that hashed the body where it read it (on a worker) spares the main thread this.
    const vouched = input.bodySha256;
    const hash = vouched ? undefined : createHash('sha256');
    let written = 0;
    let sizeMismatch = false;
    if (input.body) {
      // Read by hand, not with for-await: a body waiting on its source (a lock, a stalled disk) must
      // not hold up a cancel or the stream's failure; it is told to stop, and not waited for.
      const chunks = input.body[Symbol.asyncIterator]();
      let reading = false;
      try {
        for (;;) {
          reading = true;
          const next = await this.#unlessStopped(chunks.next());
          reading = false;
          if (next.done) break;
          let piece = next.value;
          if (written + piece.length > size) {
            piece = piece.subarray(0, size - written);
            sizeMismatch = true;
          }
          // Measured before it is written: a lent buffer (see `lend`) is empty once the compressor copied it.
          for (let offset = 0, length = piece.length; offset < length; offset += SLICE) {
            const slice = piece.subarray(offset, offset + SLICE);
            const sliceLength = slice.length;
            hash?.update(slice);
            written += sliceLength;
            await this.#write(slice);
            onBytes(sliceLength);
            await this.#yieldNow();
          }
          if (sizeMismatch) break; // the file grew: stop reading, keep what was announced
        }
      } finally {
        const closing = Promise.resolve(chunks.return?.()).catch(() => {});
        if (!reading) await closing;
      }
    }
    while (written < size) {
      sizeMismatch = true;
      const piece = PADDING.subarray(0, Math.min(PADDING.length, size - written));
      hash?.update(piece);
      written += piece.length;
      await this.#write(piece);
    }
    await this.#pad(size);
    const sha256 = hash ? hash.digest('hex') : await (vouched as () => string | Promise<string>)();
    await this.#record({
      type: 'entry',
      path: input.path,
      entryType: input.type,
      size,
      sha256,
      mode: input.mode & 0o7777,
      mtime,
      ...(input.type === 'symlink' ? { linkTarget: input.linkTarget ?? '' } : {}),
      ...(sizeMismatch || input.changed?.() ? { changed: true } : {}),
    });
    return { sha256, sizeMismatch };
  }

  /** Appends a small file held in memory, such as the header. */
  async addBuffer(path: string, bytes: Buffer, mtime: Date): Promise<void> {
    await this.add({ path, type: 'file', mode: 0o644, mtime, size: bytes.length, body: Readable.from([bytes]) });
  }

  /** Writes the manifest, then its detached signature if `signer` is given, and ends the tar stream. */
  async finish(summary: Omit<ManifestSummary, 'type' | 'entries'>, signer?: Signer): Promise<void> {
    const spool = this.#spool as LineSpool;
    const first = Buffer.from(`${JSON.stringify({ type: 'summary', entries: this.#entries, ...summary } satisfies ManifestSummary)}\n`);
    const lines = await spool.read();
    const size = first.length + spool.size;
    await this.#header(MANIFEST_PATH, 'file', size, 0o644, Date.now() / 1000);
    let written = first.length;
    await this.#write(first);
    for await (const chunk of lines) {
      written += (chunk as Buffer).length;
      await this.#write(chunk as Buffer);
    }
    if (written !== size) throw new Error(`The manifest spool gave ${written} bytes where ${size} were announced`);
    await this.#pad(size);
    if (signer) {
      // The spool is read again rather than kept: the manifest may be far larger than memory.
      const signature = await signer.sign(Readable.from(concat([[first], await spool.read()])));
      await this.#header(SIGNATURE_PATH, 'file', signature.length, 0o644, Date.now() / 1000);
      await this.#write(signature);
      await this.#pad(signature.length);
    }
    this.#checkStopped();
    this.tar.finalize();
  }

  /** Stops the tar stream with an error and removes the manifest spool. */
  async dispose(error?: Error): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    if (error && !this.tar.destroyed) this.tar.destroy(error);
    await this.#spool?.dispose();
  }

  async #record(line: ManifestEntry): Promise<void> {
    this.#entries += 1;
    await (this.#spool as LineSpool).append(JSON.stringify(line));
  }

  async #header(name: string, type: EntryType, size: number, mode: number, mtime: number, linkname?: string): Promise<void> {
    this.#checkStopped();
    const header = { name, type, size, mode: mode & 0o7777, mtime, ...(linkname === undefined ? {} : { linkname }) };
    if (!this.tar.header(header)) await this.#unlessStopped(this.tar.drained());
  }

  async #write(bytes: Uint8Array): Promise<void> {
    this.#checkStopped();
    if (!this.tar.write(bytes)) await this.#unlessStopped(this.tar.drained());
  }

  async #pad(size: number): Promise<void> {
    this.#checkStopped();
    if (!this.tar.pad(size)) await this.#unlessStopped(this.tar.drained());
  }

  #checkStopped(): void {
    if (this.#stopped) throw this.#stopped.error;
    this.#signal?.throwIfAborted();
    if (this.tar.destroyed) throw this.tar.errored ?? new Error('The tar stream was destroyed');
  }

  /** Settles as `work` does, or rejects as soon as the archive stops. */
  #unlessStopped<T>(work: Promise<T>): Promise<T> {
    try {
      this.#checkStopped();
    } catch (error) {
      work.catch(() => {}); // abandoned: a body stopped with the archive rejects, and nobody waits for it
      return Promise.reject(error);
    }
    return new Promise<T>((resolve, reject) => {
      this.#interrupt = reject;
      work.then(resolve, reject);
    }).finally(() => (this.#interrupt = undefined));
  }

  #stop(error: unknown): void {
    this.#stopped ??= { error };
    this.#interrupt?.(error);
  }
}
