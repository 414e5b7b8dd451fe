/**
 * The page view of a SQLite database that its incrementals are built on: the state a backup saves
 * (a hash per page), how two states compare (runs of changed pages), and the small JSON an
 * incremental archive opens with. Shared by the source, its worker and its restorer.
 */
import { BackupError } from '../../errors.js';

/**
 * Bytes kept of each page's SHA-256. 128 bits: two versions of a page pass for equal only if their
 * hashes collide, about 2^-128 for a changed page, and even an application storing data chosen to
 * collide needs some 2^64 SHA-256 evaluations (a birthday search). And a miss is still caught: the
 * restore checks the rebuilt file against the SHA-256 of the whole copy, so it fails, never lies.
 */
export const PAGE_HASH_BYTES = 16;

/** The state's first bytes: its format, so that another one is recognised and rejected. */
const STATE_MAGIC = Buffer.from('backupkit sqlite pages v1\n', 'latin1');
/** The state: magic, then page size, page count and hash bytes (u32 big-endian), then one hash per page. */
const STATE_HEADER_BYTES = STATE_MAGIC.length + 12;

/** The entry an incremental of a SQLite source opens with: what rebuilds the file from its pages. */
export const PAGES_JSON = 'pages.json';
/** Where each run of changed pages is: `pages/<first page, 10 digits>.bin` (SQLite counts pages from 1, up to 2^32-2). */
const RUN_NAME = /^pages\/(\d{10})\.bin$/;

/**
 * Most runs an incremental holds; past it the archive holds the database in full, which is then
 * hardly larger (a million scattered pages and their tar headers) and keeps `pages.json` small.
 */
export const MAX_RUNS = 1_000_000;

/** A run of consecutive pages: the first one's number (from 1) and how many. */
export type PageRun = readonly [first: number, count: number];

/**
 * `pages.json`: the database the whole chain up to this archive rebuilds, and the pages this archive
 * holds. `bytes` is `pageCount * pageSize`, spelled out for the by-hand recipe's `truncate`.
 */
export interface PageJournal {
  readonly format: 1;
  readonly pageSize: number;
  readonly pageCount: number;
  readonly bytes: number;
  /** SHA-256 (hex) of the rebuilt file. */
  readonly sha256: string;
  readonly runs: readonly PageRun[];
}

/** The archive path of the run starting at page `first`. */
export function runName(first: number): string {
  return `pages/${String(first).padStart(10, '0')}.bin`;
}

/** The first page of a run entry's path, or undefined for any other path. */
export function runStart(path: string): number | undefined {
  const match = RUN_NAME.exec(path);
  return match ? Number(match[1]) : undefined;
}

/** The page size a database header states (bytes 16-17, where 1 means 65536), if it is a valid one. */
export function pageSizeOf(header: Uint8Array): number | undefined {
  if (header.length < 100 || Buffer.from(header.buffer, header.byteOffset, 16).toString('latin1') !== 'SQLite format 3\0') return undefined;
  const stated = (header[16]! << 8) | header[17]!;
  const size = stated === 1 ? 65536 : stated;
  return isPageSize(size) ? size : undefined;
}

/** SQLite's page sizes: powers of two from 512 to 65536. */
function isPageSize(size: number): boolean {
  return Number.isSafeInteger(size) && size >= 512 && size <= 65536 && (size & (size - 1)) === 0;
}

/** The state's header, to which the page hashes are appended. */
export function stateHeader(pageSize: number, pageCount: number): Buffer {
  const header = Buffer.alloc(STATE_HEADER_BYTES);
  STATE_MAGIC.copy(header);
  header.writeUInt32BE(pageSize, STATE_MAGIC.length);
  header.writeUInt32BE(pageCount, STATE_MAGIC.length + 4);
  header.writeUInt32BE(PAGE_HASH_BYTES, STATE_MAGIC.length + 8);
  return header;
}

/**
 * What comparing a previous state with the current page hashes found: the runs of changed pages,
 * `scattered` when there are more than {@link MAX_RUNS}, or why the state was `rejected`.
 */
export type Comparison = { readonly rejected: string } | { readonly scattered: true } | { readonly runs: PageRun[] };

/**
 * Compares the previous backup's state with the current page hashes, streaming both (a few MB per
 * GB of database). A page is changed when its hash differs or it did not exist before; pages past
 * the current count are simply gone (the restore truncates). `rejected` says why the previous state
 * cannot be built on.
 */
export async function comparePages(previous: AsyncIterable<Uint8Array>, current: AsyncIterable<Uint8Array>, pageSize: number, pageCount: number): Promise<Comparison> {
  const before = new ExactReader(previous, (cause) => {
    if ((cause as BackupError | undefined)?.code === 'ABORTED') throw cause;
    throw new Unreadable('The previous state cannot be read', { cause });
  });
  const now = new ExactReader(current);
  try {
    const header = await before.read(STATE_HEADER_BYTES);
    if (header.length < STATE_HEADER_BYTES || !header.subarray(0, STATE_MAGIC.length).equals(STATE_MAGIC)) {
      return { rejected: 'its saved page hashes are not in a format this version of backupkit reads' };
    }
    const [oldSize, oldCount, hashBytes] = [0, 4, 8].map((at) => header.readUInt32BE(STATE_MAGIC.length + at)) as [number, number, number];
    if (hashBytes !== PAGE_HASH_BYTES) return { rejected: `its saved page hashes are ${hashBytes} bytes long, not ${PAGE_HASH_BYTES}` };
    if (oldSize !== pageSize) return { rejected: `its page size was ${oldSize} bytes and is now ${pageSize} (a VACUUM after PRAGMA page_size changes every page)` };
    const runs: PageRun[] = [];
    let runFirst = 0;
    const close = (page: number) => {
      if (runFirst !== 0) runs.push([runFirst, page - runFirst]);
      runFirst = 0;
    };
    const scattered = () => runs.length > MAX_RUNS;
    const batch = 4096; // pages compared per read
    for (let first = 1; first <= pageCount; first += batch) {
      const pages = Math.min(batch, pageCount - first + 1);
      const ours = await now.read(pages * PAGE_HASH_BYTES);
      if (ours.length !== pages * PAGE_HASH_BYTES) throw new BackupError('SOURCE_FAILED', 'The page hashes of the SQLite copy are incomplete');
      const known = Math.max(0, Math.min(pages, oldCount - first + 1));
      const theirs = await before.read(known * PAGE_HASH_BYTES);
      if (theirs.length !== known * PAGE_HASH_BYTES) return { rejected: `its saved page hashes end before page ${oldCount}` };
      for (let i = 0; i < pages; i++) {
        const same = i < known && ours.compare(theirs, i * PAGE_HASH_BYTES, (i + 1) * PAGE_HASH_BYTES, i * PAGE_HASH_BYTES, (i + 1) * PAGE_HASH_BYTES) === 0;
        if (same) close(first + i);
        else if (runFirst === 0) runFirst = first + i;
      }
      if (scattered()) return { scattered: true };
    }
    close(pageCount + 1);
    if (scattered()) return { scattered: true };
    // The rest of the previous hashes (pages since removed) must still be there: a cut state is a damaged one.
    const rest = Math.max(0, oldCount - pageCount) * PAGE_HASH_BYTES;
    for (let left = rest; left > 0; ) {
      const skipped = await before.read(Math.min(left, 1024 * 1024));
      if (skipped.length === 0) return { rejected: `its saved page hashes end before page ${oldCount}` };
      left -= skipped.length;
    }
    if ((await before.read(1)).length !== 0) return { rejected: `its saved page hashes run past page ${oldCount}` };
    return { runs };
  } catch (error) {
    if (error instanceof Unreadable) return { rejected: `its saved page hashes cannot be read (${(error.cause as Error | undefined)?.message ?? String(error.cause)})` };
    throw error;
  } finally {
    await Promise.all([before.close(), now.close()]);
  }
}

/** Parses and checks `pages.json`; anything malformed is a damaged archive. */
export function parseJournal(bytes: Buffer): PageJournal {
  const bad = (why: string) => new BackupError('CORRUPT_ARCHIVE', `The SQLite ${PAGES_JSON} is invalid: ${why}`);
  let value: Partial<PageJournal>;
  try {
    value = JSON.parse(bytes.toString('utf8')) as Partial<PageJournal>;
  } catch (cause) {
    throw bad((cause as Error).message);
  }
  const { format, pageSize, pageCount, bytes: size, sha256, runs } = value ?? {};
  if (format !== 1) throw new BackupError('UNSUPPORTED_FORMAT', `The SQLite ${PAGES_JSON} has format ${String(format)}; this backupkit reads format 1`);
  const whole = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  if (!whole(pageSize) || !isPageSize(pageSize)) throw bad(`page size ${String(pageSize)}`);
  if (!whole(pageCount) || pageCount < 1 || pageCount > 0xfffffffe || size !== pageCount * pageSize) throw bad('page count and bytes disagree');
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) throw bad('no SHA-256');
  if (!Array.isArray(runs)) throw bad('no runs');
  let next = 1;
  for (const run of runs as unknown[]) {
    const [first, count] = Array.isArray(run) ? (run as unknown[]) : [];
    if (!whole(first) || !whole(count) || first < next || count < 1 || first + count - 1 > pageCount) throw bad(`run ${JSON.stringify(run)}`);
    next = first + count;
  }
  return { format, pageSize, pageCount, bytes: size, sha256, runs: runs as PageRun[] };
}

/** The previous state failed to read: a reason to start a new full, not to fail the backup. */
class Unreadable extends Error {}

/** Reads exact byte counts from a stream of chunks of any size. */
class ExactReader {
  readonly #source: AsyncIterator<Uint8Array>;
  readonly #failed: (cause: unknown) => never;
  #pending: Buffer = Buffer.alloc(0);
  #done = false;

  /** `failed` turns an error of the stream into the one `read` throws. */
  constructor(iterable: AsyncIterable<Uint8Array>, failed: (cause: unknown) => never = (cause) => { throw cause; }) {
    this.#source = iterable[Symbol.asyncIterator]();
    this.#failed = failed;
  }

  /** `n` bytes, or fewer at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    const pieces: Buffer[] = [];
    let have = 0;
    while (have < n) {
      if (this.#pending.length === 0) {
        if (this.#done) break;
        const next = await this.#source.next().catch(this.#failed);
        if (next.done) {
          this.#done = true;
          break;
        }
        this.#pending = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      }
      const take = this.#pending.subarray(0, n - have);
      this.#pending = this.#pending.subarray(take.length);
      pieces.push(take);
      have += take.length;
    }
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, have);
  }

  /** Stops the stream early (closes a file being read). */
  async close(): Promise<void> {
    if (!this.#done) await this.#source.return?.().catch(() => undefined); // a failed stream has nothing left to release
  }
}
