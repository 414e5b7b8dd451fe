/**
 * Walks a tree and reads its files on a worker thread, with plain synchronous calls, as tar
 * does. On the main thread each file cost half a dozen round trips to the libuv pool, and that
 * latency, not the disk, set the pace for trees of many small blobs (measured: 3x slower than
 * `tar`). Results go back in batches through the worker channel, whose credits keep at most a few
 * batches, and so a bounded amount of memory, in flight. Small files come read whole with their
 * batch; a larger one follows its batch in pieces, hashed here too, then its hash.
 */
import { closeSync, fstatSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { BackupError } from '../../errors.js';
import { READ_NEVER_WAITING } from '../../util/fs.js';
import { serveWorkerJob, type Channel } from '../../util/worker-channel.js';
import { ArchivedHash } from './listing.js';

export interface WalkerJob {
  root: string;
  /**
   * 'estimate' sums sizes only; 'entries' also reads every file up to `smallFile` bytes; 'stat' describes every item and reads nothing, for an incremental's comparison.
   */
  op: 'estimate' | 'entries' | 'stat';
  smallFile: number;
}

export interface TreeSize {
  bytes: number;
  items: number;
}

/**
 * What an incremental compares an item by, besides its size and mode: nanosecond times and the
 * inode, as decimal strings (they exceed 2^53).
 */
export interface Stamp {
  mtimeMs: number;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
}

export type WalkItem =
  | ({ kind: 'directory'; path: string; mode: number } & Stamp)
  | ({ kind: 'symlink'; path: string; mode: number; target: string } & Stamp)
  | ({ kind: 'file'; path: string; mode: number; size: number; data?: Uint8Array; sha256?: string; change?: string; streamed?: true } & Stamp)
  | { kind: 'skipped'; path: string; message: string };

/**
 * After a batch, the bodies of its `streamed` files, in order: each in pieces (up to its size and
 * a byte more, to notice that it grew), then its SHA-256 as the archive stores it (cut or padded to
 * the size walked) and what changed while it was read.
 */
export type BodyMessage = { piece: Uint8Array } | { sha256: string; change?: string };

export type WalkMessage = WalkItem[] | BodyMessage;

const BATCH_ITEMS = 512;
const BATCH_BYTES = 8 * 1024 * 1024;
/** A streamed file's pieces: each one hashed here and moved to the main thread, not copied. */
const PIECE_BYTES = 1024 * 1024;

/** An item found in the tree, or a name skipped before it could be looked at. */
type Found = { path: string; absolute: string; stats: BigIntStats } | { skipped: WalkItem };

serveWorkerJob<WalkerJob, WalkMessage, never, TreeSize | undefined>(async (job, channel) => {
  try {
    const found = visit(job.root, '', lstatSync(job.root, { bigint: true }));
    if (job.op === 'estimate') {
      const size: TreeSize = { bytes: 0, items: 0 };
      for (const item of found) {
        if ('skipped' in item) continue;
        size.items += 1;
        if (item.stats.isFile()) size.bytes += Number(item.stats.size);
      }
      return size;
    }
    const smallFile = job.op === 'stat' ? -1 : job.smallFile;
    let group: Found[] = [];
    let groupBytes = 0;
    for (const next of found) {
      group.push(next);
      if (!('skipped' in next) && next.stats.isFile() && next.stats.size <= smallFile) groupBytes += Number(next.stats.size) + 1;
      if (group.length < BATCH_ITEMS && groupBytes < BATCH_BYTES) continue;
      await sendBatch(channel, group, groupBytes, smallFile);
      [group, groupBytes] = [[], 0];
    }
    if (group.length > 0) await sendBatch(channel, group, groupBytes, smallFile);
    return undefined;
  } catch (error) {
    const { message, path } = error as NodeJS.ErrnoException;
    throw new BackupError('SOURCE_FAILED', `Reading ${path ?? job.root} failed: ${message}`, { cause: error });
  }
});

/**
 * Describes a batch of items and reads its small files into one buffer, sent with the batch: one
 * allocation and one transfer per batch rather than per file (50,000 small buffers churned both
 * threads' garbage collectors). The buffer is not zeroed (a memset of every byte the walk reads):
 * only the bytes read are ever seen, through each file's view.
 */
async function sendBatch(channel: Channel<WalkMessage, never>, group: Found[], bytes: number, smallFile: number): Promise<void> {
  const slab = Buffer.allocUnsafeSlow(bytes);
  let offset = 0;
  const streamed: Array<{ path: string; absolute: string; stats: BigIntStats }> = [];
  const batch = group.map((next) => {
    if ('skipped' in next) return next.skipped;
    const item = describe(next.path, next.absolute, next.stats, smallFile, slab.subarray(offset));
    if (item.kind === 'file' && item.data) offset += item.size + 1;
    if (item.kind === 'file' && item.streamed) streamed.push(next);
    return item;
  });
  await channel.send(batch, bytes > 0 ? [slab.buffer] : []);
  for (const file of streamed) await streamFile(channel, file.path, file.absolute, file.stats);
}

/** The item at `path` and, for a folder, everything beneath it, names sorted. */
function* visit(root: string, path: string, stats: BigIntStats): Generator<Found> {
  const absolute = path === '' ? root : join(root, path);
  yield { path, absolute, stats };
  if (!stats.isDirectory()) return;
  const names: string[] = [];
  for (const raw of readOrMissing(() => readdirSync(absolute, { encoding: 'buffer' })) ?? []) {
    const name = raw.toString('utf8');
    if (Buffer.from(name, 'utf8').equals(raw)) names.push(name);
    else yield { skipped: notUtf8(path, raw) };
  }
  names.sort();
  for (const name of names) {
    const child = readOrMissing(() => lstatSync(join(absolute, name), { bigint: true }));
    if (child) yield* visit(root, path === '' ? name : `${path}/${name}`, child);
  }
}

/** Reads a file of up to `smallFile` bytes into `room` (which has a byte more); none when `smallFile` is negative. */
function describe(path: string, absolute: string, stats: BigIntStats, smallFile: number, room: Uint8Array): WalkItem {
  const common = {
    path,
    mode: Number(stats.mode & 0o7777n),
    mtimeMs: Number(stats.mtimeMs),
    mtimeNs: stats.mtimeNs.toString(),
    ctimeNs: stats.ctimeNs.toString(),
    ino: stats.ino.toString(),
  };
  if (stats.isDirectory()) return { kind: 'directory', ...common };
  if (stats.isSymbolicLink()) return { kind: 'symlink', ...common, target: readlinkSync(absolute) };
  if (!stats.isFile()) return { kind: 'skipped', path, message: `${path} is not a regular file, folder or link; skipped` };
  const size = Number(stats.size);
  // Streamed after the batch, unless only described (`smallFile` negative).
  if (size > smallFile) return { kind: 'file', ...common, size, ...(smallFile >= 0 ? { streamed: true as const } : {}) };
  return { kind: 'file', ...common, size, ...readSmall(path, absolute, stats, room.subarray(0, size + 1)) };
}

/**
 * Archive paths are strings and tar headers UTF-8, so a name that is not valid UTF-8 cannot be
 * stored byte-exact: it is reported, with its bytes escaped, and left out with all it holds.
 */
function notUtf8(parent: string, raw: Buffer): WalkItem {
  const escaped = [...raw].map((byte) => (byte >= 0x20 && byte < 0x7f && byte !== 0x5c ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`)).join('');
  const path = parent === '' ? escaped : `${parent}/${escaped}`;
  return { kind: 'skipped', path, message: `${path}: the name is not valid UTF-8, which the archive cannot hold; skipped with all it contains` };
}

/**
 * Reads a whole small file into `buffer`, one byte longer than the file was, to notice that it
 * grew; notes whether it changed while read. Hashes it here, as the archive stores it (cut or
 * padded to the size announced), so that the host's main thread does not.
 */
function readSmall(path: string, absolute: string, before: BigIntStats, buffer: Uint8Array): { data: Uint8Array; sha256: string; change?: string } {
  const size = buffer.length - 1;
  const fd = openFile(path, absolute);
  if (typeof fd === 'string') return { data: buffer.subarray(0, 0), sha256: storedSha256(buffer.subarray(0, 0), size), change: fd };
  try {
    let length = 0;
    // Once the size walked is read, the fstat below tells whether the file grew: no read of its end.
    while (length < size) {
      const read = readSync(fd, buffer, length, buffer.length - length, length);
      if (read === 0) break;
      length += read;
    }
    const after = fstatSync(fd, { bigint: true });
    const data = buffer.subarray(0, length);
    const changed = BigInt(length) !== before.size || after.size !== before.size || after.mtimeNs !== before.mtimeNs;
    const sha256 = storedSha256(data, size);
    return changed ? { data, sha256, change: `${path} changed while it was read` } : { data, sha256 };
  } finally {
    closeSync(fd);
  }
}

/**
 * Sends a larger file in pieces, hashed as they are read, then its hash as stored and whether it
 * changed while it was read: the main thread neither reads nor hashes it.
 */
async function streamFile(channel: Channel<WalkMessage, never>, path: string, absolute: string, before: BigIntStats): Promise<void> {
  const size = Number(before.size);
  const hash = new ArchivedHash(size);
  const fd = openFile(path, absolute);
  if (typeof fd === 'string') {
    await channel.send({ sha256: hash.digest(), change: fd });
    return;
  }
  try {
    let length = 0;
    while (length <= size) {
      const piece = Buffer.allocUnsafeSlow(Math.min(PIECE_BYTES, size + 1 - length)); // only the bytes read are seen
      const read = readSync(fd, piece, 0, piece.length, length);
      if (read === 0) break;
      const bytes = piece.subarray(0, read);
      hash.update(bytes);
      length += read;
      await channel.send({ piece: bytes }, [piece.buffer]);
    }
    const after = fstatSync(fd, { bigint: true });
    const changed = BigInt(length) !== before.size || after.size !== before.size || after.mtimeNs !== before.mtimeNs;
    await channel.send({ sha256: hash.digest(), ...(changed ? { change: `${path} changed while it was read` } : {}) });
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens a walked file to read it: its descriptor, or what became of it since it was walked. Opened
 * without waiting and checked: a FIFO put in its place would block an open or a read for ever.
 */
function openFile(path: string, absolute: string): number | string {
  let fd: number;
  try {
    fd = openSync(absolute, READ_NEVER_WAITING);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return `${path} was deleted before it could be read`;
  }
  let regular = false;
  try {
    regular = fstatSync(fd).isFile();
  } finally {
    if (!regular) closeSync(fd);
  }
  return regular ? fd : `${path} was replaced by something other than a file before it could be read`;
}

/** The SHA-256 of `data` as the archive stores it in an entry of `size` bytes: cut, or padded with zeros. */
function storedSha256(data: Uint8Array, size: number): string {
  const hash = new ArchivedHash(size);
  hash.update(data);
  return hash.digest();
}

function readOrMissing<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // deleted while we walked
    throw error;
  }
}

