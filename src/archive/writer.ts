import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import tar, { type Header, type Pack } from 'tar-stream';
import type { EntryType } from '../types.js';
import { LineSpool } from '../util/line-spool.js';
import { waitFor } from '../util/streams.js';
import { cooperative } from '../util/yield.js';
import { MANIFEST_PATH, tarSeconds, type ManifestEntry, type ManifestSummary } from './format.js';

const PADDING = Buffer.alloc(64 * 1024);

/** An entry to append: its body is cut or padded to `size`, as tar announces sizes up front. */
export interface ArchiveEntryInput {
  path: string;
  type: EntryType;
  mode: number;
  mtime: Date;
  size: number;
  linkTarget?: string;
  body?: AsyncIterable<Uint8Array>;
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

  static async create(): Promise<ArchiveWriter> {
    const writer = new ArchiveWriter();
    writer.#spool = await LineSpool.create('manifest');
    return writer;
  }

  /** Appends one entry and records it in the manifest; `onBytes` counts body bytes as they go. */
  async add(input: ArchiveEntryInput, onBytes: (bytes: number) => void = () => {}): Promise<WrittenEntry> {
    const size = input.type === 'file' ? input.size : 0;
    const mtime = tarSeconds(input.mtime);
    const sink = this.#open({ ...input, mtime: new Date(mtime * 1000) }, size);
    const hash = createHash('sha256');
    let written = 0;
    let sizeMismatch = false;
    if (input.body) {
      for await (const chunk of input.body) {
        let piece = chunk;
        if (written + piece.length > size) {
          piece = piece.subarray(0, size - written);
          sizeMismatch = true;
        }
        if (piece.length > 0) {
          hash.update(piece);
          written += piece.length;
          await sink.write(piece);
          onBytes(piece.length);
          await this.#yieldNow();
        }
        if (sizeMismatch) break; // the file grew: stop reading, keep what was announced
      }
    }
    while (written < size) {
      sizeMismatch = true;
      const piece = PADDING.subarray(0, Math.min(PADDING.length, size - written));
      hash.update(piece);
      written += piece.length;
      await sink.write(piece);
    }
    await sink.end();
    const sha256 = hash.digest('hex');
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

  /** Writes the manifest and ends the tar stream. */
  async finish(summary: Omit<ManifestSummary, 'type' | 'entries'>): Promise<void> {
    const spool = this.#spool as LineSpool;
    const first = Buffer.from(`${JSON.stringify({ type: 'summary', entries: this.#entries, ...summary } satisfies ManifestSummary)}\n`);
    const lines = await spool.read();
    const sink = this.#open({ path: MANIFEST_PATH, type: 'file', mode: 0o644, mtime: new Date() }, first.length + spool.size);
    await sink.write(first);
    for await (const chunk of lines) await sink.write(chunk as Buffer);
    await sink.end();
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
    let entryDone!: Promise<void>;
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
    const stream = new Promise<ReturnType<Pack['entry']>>((resolveStream) => {
      entryDone = new Promise((resolve, reject) => {
        const entry = this.tar.entry(header, (error) => (error ? reject(error) : resolve()));
        // When the tar stream is torn down, the entry is destroyed with the same error, which
        // reaches us through this entry's callback and the pipeline; unheard here, it would crash.
        entry.on('error', () => {});
        resolveStream(entry);
      });
    });
    entryDone.catch(() => {}); // surfaced by end(), or by the tar stream's own error
    return {
      write: async (chunk: Uint8Array): Promise<void> => {
        const entry = await stream;
        if (!entry.write(chunk)) await waitFor(entry, 'drain');
      },
      end: async (): Promise<void> => {
        const entry = await stream;
        entry.end(undefined);
        await entryDone;
      },
    };
  }
}
