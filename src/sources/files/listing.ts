/**
 * The listing of a files source: one NDJSON line per item of the tree, in walk order. It is both
 * the state an incremental compares the tree with (`Snapshot.state`) and, in an incremental, the
 * `meta` entry a restore rebuilds the whole tree from. docs/FORMAT.md describes it.
 */
import { createHash, type Hash } from 'node:crypto';
import type { EntryType } from '../../types.js';
import { boundedLines } from '../../util/lines.js';

/** The meta entry holding the listing. */
export const LISTING_NAME = 'listing.ndjson';
/** The meta entry listing every path as `<f|d|l> <path>\0`, as `find -printf '%y %P\0'` does, for restores by hand. */
export const TREE_NAME = 'tree.nul';
const FORMAT = 'backupkit-files-listing';
/**
 * 2: the archive holds only the folders and links that changed, and a restore makes them from the
 * listing. Version 1 archives hold every one; a backupkit reading only version 1 refuses a version
 * 2 listing rather than restore a tree without the unchanged folders.
 */
const VERSION = 2;
const READABLE_VERSIONS: ReadonlySet<unknown> = new Set([1, VERSION]);
/** Lines are a path, a link target (4 KiB each at most) and a few numbers. */
export const MAX_LINE = 1024 * 1024;

/** The first line. */
export interface ListingHeader {
  readonly format: typeof FORMAT;
  readonly version: 1 | typeof VERSION;
  /** The archive the listing was made for. */
  readonly archive: string;
  /** When the walk started, nanoseconds since the epoch: files modified since may have changed unseen. */
  readonly startedNs: string;
}

/** One item of the tree. */
export interface ListingLine {
  readonly path: string;
  readonly type: EntryType;
  readonly mode: number;
  /** Whole seconds since the epoch, as the archive's tar header holds it. */
  readonly mtime: number;
  readonly size: number;
  readonly linkTarget?: string;
  /** Files: SHA-256 of the contents as archived. */
  readonly sha256?: string;
  /** Files: the archive that holds these contents. */
  readonly archive?: string;
  readonly mtimeNs: string;
  readonly ctimeNs: string;
  readonly ino: string;
  /** The file changed while it was read: the next incremental sends it again whatever its metadata says. */
  readonly dirty?: true;
}

/** A listing that cannot be read: the caller decides whether that rejects a base or fails a restore. */
export class ListingError extends Error {}

export function listingHeader(archive: string, startedNs: bigint): string {
  const header: ListingHeader = { format: FORMAT, version: VERSION, archive, startedNs: startedNs.toString() };
  return JSON.stringify(header);
}

/**
 * Reads a listing, checking every line and that paths come in strictly increasing walk order
 * (what lets a comparison or a restore merge it with a walk or an archive in bounded memory).
 */
export async function openListing(input: AsyncIterable<Uint8Array>): Promise<{ header: ListingHeader; lines: AsyncGenerator<ListingLine> }> {
  const text = boundedLines(input, MAX_LINE, () => new ListingError(`a line is longer than ${MAX_LINE} bytes`));
  const first = await text.next();
  if (first.done) throw new ListingError('it is empty');
  const header = parseHeader(first.value);
  async function* lines(): AsyncGenerator<ListingLine> {
    let previous: string | undefined;
    let number = 1;
    for await (const raw of text) {
      number += 1;
      const line = parseLine(raw, number);
      if (previous !== undefined && comparePaths(previous, line.path) >= 0) {
        throw new ListingError(`line ${number}: ${JSON.stringify(line.path)} is out of order`);
      }
      previous = line.path;
      yield line;
    }
  }
  return { header, lines: lines() };
}

function parseHeader(raw: string): ListingHeader {
  const header = parseJson(raw, 1) as Partial<ListingHeader>;
  if (header.format !== FORMAT) throw new ListingError(`it is not a files listing (format ${JSON.stringify(header.format)})`);
  if (!READABLE_VERSIONS.has(header.version)) throw new ListingError(`its version ${JSON.stringify(header.version)} is not 1 or ${VERSION}`);
  if (typeof header.archive !== 'string' || !isDecimal(header.startedNs)) throw new ListingError('line 1: the header lacks `archive` or `startedNs`');
  return header as ListingHeader;
}

const TYPES: ReadonlySet<unknown> = new Set(['file', 'directory', 'symlink']);

function parseLine(raw: string, number: number): ListingLine {
  const line = parseJson(raw, number) as Partial<ListingLine>;
  const bad = (what: string) => new ListingError(`line ${number}: ${what}`);
  if (typeof line.path !== 'string' || !TYPES.has(line.type)) throw bad('no `path` or `type`');
  for (const field of ['mode', 'mtime', 'size'] as const) {
    if (!Number.isSafeInteger(line[field]) || (line[field] as number) < 0) throw bad(`\`${field}\` is not a whole number`);
  }
  for (const field of ['mtimeNs', 'ctimeNs', 'ino'] as const) if (!isDecimal(line[field])) throw bad(`\`${field}\` is not a decimal string`);
  if (line.type === 'symlink' && typeof line.linkTarget !== 'string') throw bad('a link without `linkTarget`');
  if (line.type === 'file' && (typeof line.archive !== 'string' || typeof line.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(line.sha256))) {
    throw bad('a file without `archive` or `sha256`');
  }
  if (line.dirty !== undefined && line.dirty !== true) throw bad('`dirty` is not true');
  return line as ListingLine;
}

function parseJson(raw: string, number: number): unknown {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new ListingError(`line ${number} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ListingError(`line ${number} is not a JSON object`);
  return value;
}

function isDecimal(value: unknown): value is string {
  return typeof value === 'string' && /^\d{1,30}$/.test(value);
}

/**
 * Walk order: component by component, names in UTF-16 code unit order (as `Array#sort`), a folder
 * before what it holds. No name holds a NUL, so ranking `/` as one sorts a folder's children
 * first. Compared in place: a restore compares a path per entry of every layer.
 */
export function comparePaths(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index += 1) {
    const x = a.charCodeAt(index);
    const y = b.charCodeAt(index);
    if (x !== y) return (x === SLASH ? 0 : x) - (y === SLASH ? 0 : y);
  }
  return a.length - b.length;
}

const SLASH = 0x2f;

/** Whether the folder at `folder` holds `path`, at any depth (`''` is the root). */
export function holds(folder: string, path: string): boolean {
  return folder === '' ? path !== '' : path.length > folder.length && path.startsWith(folder) && path.charCodeAt(folder.length) === SLASH;
}

/**
 * Why a listed path could not be an archive entry's, or `undefined`: a restore makes folders and
 * links at the listing's paths, so each must be as normalised and as safe as an entry name.
 */
export function unsafeListedPath(path: string, type: EntryType): string | undefined {
  if (path === '') return type === 'directory' ? undefined : 'the root is not a folder';
  if (path.includes('\0') || path.includes('\\')) return 'it contains a NUL byte or a backslash';
  if (/^[A-Za-z]:/.test(path)) return 'it starts with a drive letter';
  for (const part of path.split('/')) if (part === '' || part === '.' || part === '..') return 'it is not a normalised relative path';
  return undefined;
}

/**
 * The SHA-256 of a body as the archive stores it: cut or zero-padded to the size its tar header
 * announced, so that the listing's hash is the one a restore reads back.
 */
export class ArchivedHash {
  readonly #hash: Hash = createHash('sha256');
  #remaining: number;

  constructor(size: number) {
    this.#remaining = size;
  }

  update(chunk: Uint8Array): void {
    if (this.#remaining === 0) return;
    const piece = chunk.length > this.#remaining ? chunk.subarray(0, this.#remaining) : chunk;
    this.#hash.update(piece);
    this.#remaining -= piece.length;
  }

  digest(): string {
    const zeros = new Uint8Array(Math.min(this.#remaining, 256 * 1024));
    for (; this.#remaining > 0; this.#remaining -= Math.min(this.#remaining, zeros.length)) {
      this.#hash.update(zeros.subarray(0, Math.min(this.#remaining, zeros.length)));
    }
    return this.#hash.digest('hex');
  }
}
