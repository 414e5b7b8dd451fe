import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import tar, { type Header } from 'tar-stream';
import type { EntryType } from '../types.js';
import { LineSpool } from '../util/line-spool.js';
import { untilStopped, waitFor, type WaitOptions } from '../util/streams.js';
import { cooperative } from '../util/yield.js';
import { MANIFEST_PATH, tarSeconds, type ManifestEntry, type ManifestSummary } from './format.js';
import { SIGNATURE_PATH, type Signer } from './signature.js';

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
  readonly tar = tar.pack();
  #spool: LineSpool | undefined;
  #entries = 0;
  readonly #yieldNow = cooperative();
  /** Every wait on the tar stream ends when the pack is torn down or the backup is cancelled. */
  readonly #alive: WaitOptions;

  private constructor(signal: AbortSignal | undefined) {
    this.#alive = { linked: [this.tar], signal };
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
    const sink = this.#open({ ...input, mtime: new Date(mtime * 1000) }, size);
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
          const next = await untilStopped(chunks.next(), this.#alive);
          reading = false;
          if (next.done) break;
          let piece = next.value;
          if (written + piece.length > size) {
            piece = piece.subarray(0, size - written);
            sizeMismatch = true;
          }
          for (let offset = 0; offset < piece.length; offset += SLICE) {
            const slice = piece.subarray(offset, offset + SLICE);
            hash?.update(slice);
            written += slice.length;
            await sink.write(slice);
            onBytes(slice.length);
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
      await sink.write(piece);
    }
    await sink.end();
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
    const sink = this.#open({ path: MANIFEST_PATH, type: 'file', mode: 0o644, mtime: new Date() }, first.length + spool.size);
    await sink.write(first);
    for await (const chunk of lines) await sink.write(chunk as Buffer);
    await sink.end();
    if (signer) {
      // The spool is read again rather than kept: the manifest may be far larger than memory.
      const signature = await signer.sign(Readable.from(concat([[first], await spool.read()])));
      const signatureSink = this.#open({ path: SIGNATURE_PATH, type: 'file', mode: 0o644, mtime: new Date() }, signature.length);
      await signatureSink.write(signature);
      await signatureSink.end();
    }
    this.tar.finalize();
  }

  /** Stops the tar stream with an error and removes the manifest spool. */
  async dispose(error?: Error): Promise<void> {
    if (error && !this.tar.destroyed) this.tar.destroy(error);
    await this.#spool?.dispose();
  }

  async #record(line: ManifestEntry): Promise<void> {
    this.#entries += 1;
    await (this.#spool as LineSpool).append(JSON.stringify(line));
  }

  #open(input: Omit<ArchiveEntryInput, 'size' | 'body'>, size: number) {
    this.#alive.signal?.throwIfAborted();
    const header: Partial<Header> & { name: string } = {
      name: input.type === 'directory' ? `${input.path}/` : input.path,
      type: input.type,
      size,
      mode: input.mode & 0o7777,
      mtime: input.mtime,
      uid: 0,
      gid: 0,
      ...(input.linkTarget === undefined ? {} : { linkname: input.linkTarget }),
    };
    let settle!: (error?: Error | null) => void;
    const written = new Promise<void>((resolve, reject) => (settle = (error) => (error ? reject(error) : resolve())));
    written.catch(() => {}); // surfaced by end(), or by the tar stream's own error
    // Throws once the pack is finalized or destroyed; the callback reports the entry's end, also
    // when the pack is torn down (the entry is destroyed with it).
    const entry = this.tar.entry(header, (error) => settle(error));
    // When the tar stream is torn down the entry is destroyed with the same error, which reaches us
    // through the callback and the pipeline; unheard here, it would crash the process.
    entry.on('error', () => {});
    return {
      write: async (chunk: Uint8Array): Promise<void> => {
        if (!entry.write(chunk)) await waitFor(entry, 'drain', this.#alive);
      },
      end: async (): Promise<void> => {
        entry.end(undefined);
        await untilStopped(written, this.#alive);
      },
    };
  }
}
