import { createReadStream } from 'node:fs';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ownerTag, removeAbandoned } from './leftovers.js';

/** Lines are written in chunks of this size: one write per line was one syscall per entry. */
const FLUSH_BYTES = 256 * 1024;

/**
 * An append-only file of text lines in a private temporary folder: keeps per-entry records (the
 * manifest, the hashes read) out of memory, however many entries an archive has.
 */
export class LineSpool {
  #pending: string[] = [];
  #pendingBytes = 0;
  #size = 0;

  private constructor(
    private readonly folder: string,
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  /**
   * Makes the spool in `backupkit-<label>-<owner tag>` in the OS temp folder, after removing the
   * spools of that label that processes killed meanwhile left there.
   */
  static async create(label: string): Promise<LineSpool> {
    const prefix = `backupkit-${label}-`;
    await removeAbandoned(tmpdir(), prefix);
    const folder = join(tmpdir(), `${prefix}${ownerTag()}`);
    await mkdir(folder, { mode: 0o700 });
    const path = join(folder, `${label}.ndjson`);
    return new LineSpool(folder, path, await open(path, 'wx', 0o600));
  }

  /** Bytes written so far, flushed or not. */
  get size(): number {
    return this.#size;
  }

  /** Appends `line` and its terminator: a newline, or for records that may hold one, a NUL. */
  async append(line: string, end: '\n' | '\0' = '\n'): Promise<void> {
    const bytes = Buffer.byteLength(line) + 1;
    this.#pending.push(line, end);
    this.#pendingBytes += bytes;
    this.#size += bytes;
    if (this.#pendingBytes >= FLUSH_BYTES) await this.#flush();
  }

  /** Flushes and returns the whole spool as a stream. */
  async read(): Promise<Readable> {
    await this.#flush();
    return createReadStream(this.path, { highWaterMark: FLUSH_BYTES });
  }

  async dispose(): Promise<void> {
    await this.handle.close().catch(() => {}); // closed already after a failed flush
    await rm(this.folder, { recursive: true, force: true });
  }

  async #flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const text = this.#pending.join('');
    this.#pending = [];
    this.#pendingBytes = 0;
    await this.handle.write(text);
  }
}
