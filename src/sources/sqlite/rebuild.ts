/**
 * Rebuilds a SQLite database from a chain of archives read newest first: each page is written once,
 * from the newest archive holding it, at its offset in the staging file; older copies of a page are
 * read and dropped. A bitmap of the pages written (one bit a page: 32 KiB per GiB of 4 KiB pages)
 * is all the memory it keeps.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { BackupError } from '../../errors.js';
import type { RestoreEntry, RestoreLayer } from '../../types.js';
import { readLimited } from '../../util/streams.js';
import { MAX_RUNS, pageSizeOf, parseJournal, runStart, type PageJournal } from './pages.js';

/** Largest `pages.json` read: at most 24 bytes a run (`[4294967294,4294967294],`) and a header. */
const JOURNAL_LIMIT = MAX_RUNS * 32 + 4096;

/** The staging file of one SQLite source being rebuilt from its chain's pages. */
export class PageRebuild {
  readonly #file: FileHandle;
  /** The database the newest archive describes: its page size and count, its SHA-256. */
  readonly target: PageJournal;
  readonly #written: Uint8Array;
  #writtenCount = 0;
  /** Pages written soon, consecutive from page `#pendingFirst`: 1 MiB, a whole number of pages of any size. */
  readonly #pending = Buffer.allocUnsafe(1024 * 1024);
  #pendingFirst = 0;
  #pendingBytes = 0;
  /** The layer being read: its `pages.json` once read, and how many of its runs arrived. */
  #layer: { depth: number; mode: RestoreLayer['mode']; journal?: PageJournal; runsSeen: number; full: boolean };

  private constructor(file: FileHandle, target: PageJournal) {
    this.#file = file;
    this.target = target;
    this.#written = new Uint8Array(Math.ceil(target.pageCount / 8));
    this.#layer = { depth: 0, mode: 'changes', journal: target, runsSeen: 0, full: false };
  }

  /** Starts the rebuild from the newest archive's `pages.json`, in a new staging file. */
  static async create(staging: string, journalBody: AsyncIterable<Uint8Array>): Promise<PageRebuild> {
    const target = parseJournal(await readJournal(journalBody));
    return new PageRebuild(await open(staging, 'wx', 0o600), target);
  }

  /** The next (older) archive's entries follow. */
  layer(layer: RestoreLayer): void {
    this.#endLayer();
    if (layer.depth !== this.#layer.depth + 1) {
      throw new BackupError('RESTORE_FAILED', `The SQLite restore was handed layer ${layer.depth} of ${layer.archive} after layer ${this.#layer.depth}`);
    }
    this.#layer = { depth: layer.depth, mode: layer.mode, runsSeen: 0, full: false };
  }

  /** One entry of the current layer: its `pages.json`, a run of pages, or (the oldest layer) the whole file. */
  async write(entry: RestoreEntry, fullName: string): Promise<void> {
    const layer = this.#layer;
    const unexpected = () => new BackupError('CORRUPT_ARCHIVE', `Unexpected entry ${JSON.stringify(entry.path)} in a SQLite source (layer ${layer.depth})`);
    if (entry.type !== 'file') throw unexpected();
    if (entry.path === fullName) {
      if (layer.mode !== 'full' || layer.full) throw unexpected();
      layer.full = true;
      if (entry.size % this.target.pageSize !== 0) throw this.#misfit(`its database file is ${entry.size} bytes`);
      await this.#writePages(entry.body, 1, entry.size / this.target.pageSize);
      return;
    }
    if (runStart(entry.path) === undefined) {
      if (layer.journal || layer.mode !== 'changes') throw unexpected();
      const journal = parseJournal(await readJournal(entry.body));
      if (journal.pageSize !== this.target.pageSize) throw this.#misfit(`its page size is ${journal.pageSize}`);
      layer.journal = journal;
      return;
    }
    const run = layer.journal?.runs[layer.runsSeen];
    if (!run || runStart(entry.path) !== run[0] || entry.size !== run[1] * this.target.pageSize) throw unexpected();
    layer.runsSeen += 1;
    await this.#writePages(entry.body, run[0], run[1]);
  }

  /** Every archive was read: every page must be written. Sizes the file, syncs and closes it. */
  async finish(): Promise<void> {
    this.#endLayer();
    const missing = this.target.pageCount - this.#writtenCount;
    if (missing > 0) {
      throw new BackupError('CORRUPT_ARCHIVE', `The SQLite chain down to layer ${this.#layer.depth} leaves ${missing} of ${this.target.pageCount} pages unwritten`, {
        hint: 'A restore of an incremental needs every backup of its chain back to its full.',
      });
    }
    await this.#file.truncate(this.target.bytes);
    await this.#file.sync();
    await this.#file.close();
  }

  /** Closes the staging file, which the caller then removes. */
  async close(): Promise<void> {
    await this.#file.close().catch(() => undefined); // already closed by finish()
  }

  #endLayer(): void {
    const { journal, runsSeen, mode, full, depth } = this.#layer;
    const complete = mode === 'full' ? full : journal !== undefined && runsSeen === journal.runs.length;
    if (!complete) throw new BackupError('CORRUPT_ARCHIVE', `Layer ${depth} of the SQLite chain ended before all its pages were read`);
  }

  #misfit(why: string): BackupError {
    return new BackupError('CORRUPT_ARCHIVE', `Layer ${this.#layer.depth} of the SQLite chain does not fit the newest one (page size ${this.target.pageSize}): ${why}`);
  }

  /** Writes pages `first` to `first + count - 1` from `body`, except those written already or past the end. */
  async #writePages(body: AsyncIterable<Uint8Array>, first: number, count: number): Promise<void> {
    const { pageSize } = this.target;
    let page = first;
    let carry: Buffer | undefined;
    for await (const chunk of body) {
      let bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (carry) {
        const take = bytes.subarray(0, pageSize - carry.length);
        carry = Buffer.concat([carry, take]);
        bytes = bytes.subarray(take.length);
        if (carry.length < pageSize) continue;
        await this.#writeSpan(page, carry);
        page += 1;
        carry = undefined;
      }
      const whole = Math.floor(bytes.length / pageSize);
      if (whole > 0) await this.#writeSpan(page, bytes.subarray(0, whole * pageSize));
      page += whole;
      // Copied: the reader may reuse its chunk once we ask for the next.
      if (bytes.length > whole * pageSize) carry = Buffer.from(bytes.subarray(whole * pageSize));
    }
    if (carry || page !== first + count) throw new BackupError('CORRUPT_ARCHIVE', `A run of SQLite pages from page ${first} is not ${count} pages long`);
    await this.#flush();
  }

  /** Writes whole pages from `first`, each stretch of not-yet-written pages in one call. */
  async #writeSpan(first: number, bytes: Buffer): Promise<void> {
    const { pageSize, pageCount } = this.target;
    if (first === 1 && pageSizeOf(bytes.subarray(0, 100)) !== pageSize) throw this.#misfit('its first page states another page size');
    const pages = Math.min(bytes.length / pageSize, pageCount - first + 1); // pages past the end were cut since
    for (let i = 0; i < pages; ) {
      if (this.#isWritten(first + i)) {
        i += 1;
        continue;
      }
      let end = i;
      while (end < pages && !this.#isWritten(first + end)) this.#markWritten(first + end++);
      await this.#queue(first + i, bytes.subarray(i * pageSize, end * pageSize));
      i = end;
    }
  }

  /**
   * Gathers consecutive pages into one buffer and writes it when full or when the next pages are
   * not the following ones: one write call per chunk read would cost a thread-pool round trip each
   * (measured: a chain restored 1.55x slower than a full before, with 16 KiB chunks).
   */
  async #queue(first: number, bytes: Buffer): Promise<void> {
    const { pageSize } = this.target;
    if (this.#pendingBytes > 0 && this.#pendingFirst + this.#pendingBytes / pageSize !== first) await this.#flush();
    for (let offset = 0; offset < bytes.length; ) {
      if (this.#pendingBytes === 0) this.#pendingFirst = first + offset / pageSize;
      const copied = bytes.copy(this.#pending, this.#pendingBytes, offset);
      this.#pendingBytes += copied;
      offset += copied;
      if (this.#pendingBytes === this.#pending.length) await this.#flush();
    }
  }

  async #flush(): Promise<void> {
    if (this.#pendingBytes === 0) return;
    await this.#writeAll(this.#pending.subarray(0, this.#pendingBytes), (this.#pendingFirst - 1) * this.target.pageSize);
    this.#pendingBytes = 0;
  }

  async #writeAll(bytes: Buffer, position: number): Promise<void> {
    for (let done = 0; done < bytes.length; ) {
      const { bytesWritten } = await this.#file.write(bytes, done, bytes.length - done, position + done);
      done += bytesWritten;
    }
  }

  // Division, not shifts: page numbers reach 2^32 - 2, past what 32-bit shifts keep.
  #isWritten(page: number): boolean {
    return (this.#written[Math.floor((page - 1) / 8)]! & (1 << ((page - 1) % 8))) !== 0;
  }

  #markWritten(page: number): void {
    const at = Math.floor((page - 1) / 8);
    this.#written[at] = this.#written[at]! | (1 << ((page - 1) % 8));
    this.#writtenCount += 1;
  }
}

function readJournal(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  return readLimited(body, JOURNAL_LIMIT, () => new BackupError('CORRUPT_ARCHIVE', 'The SQLite pages.json is too large'));
}
