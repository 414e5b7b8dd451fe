import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, opendir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ArchivedEntry, VerifyCheck } from '../../types.js';
import { isNotFound } from '../../util/fs.js';

/** Problems named one by one; past this many only their number grows. */
const NAMED_PROBLEMS = 50;
const READ_CHUNK = 256 * 1024;

/**
 * Compares a restored tree with the archive, entry by entry: each file is read back from disk and
 * hashed, each folder and link must be there with the mode, time and link target archived (modes
 * masked to `modeBits`, as restored), and nothing else may be.
 */
export async function verifyTree(dir: string, archived: AsyncIterable<ArchivedEntry>, modeBits: number, signal: AbortSignal): Promise<VerifyCheck> {
  const problems: string[] = [];
  let unnamed = 0;
  const problem = (message: string) => (problems.length < NAMED_PROBLEMS ? problems.push(message) : (unnamed += 1));
  const figures = { files: 0, folders: 0, links: 0, bytes: 0 };
  let expected = 0;
  for await (const entry of archived) {
    signal.throwIfAborted();
    expected += 1;
    const absolute = entry.path === '' ? dir : join(dir, entry.path);
    const shown = JSON.stringify(entry.path || '.');
    const info = await lstat(absolute).catch((error: unknown) => {
      if (isNotFound(error)) return undefined;
      throw error;
    });
    if (!info) {
      problem(`${shown} is missing`);
      continue;
    }
    if (entry.type === 'directory') {
      if (info.isDirectory()) figures.folders += 1;
      else problem(`${shown} is not a folder`);
    } else if (entry.type === 'symlink') {
      if (!info.isSymbolicLink()) problem(`${shown} is not a symbolic link`);
      else if (entry.linkTarget !== undefined && (await readlink(absolute)) !== entry.linkTarget) problem(`${shown} points elsewhere than archived`);
      else figures.links += 1;
    } else if (!info.isFile()) {
      problem(`${shown} is not a file`);
    } else {
      const sha256 = await hashFile(absolute, signal);
      figures.files += 1;
      figures.bytes += info.size;
      if (info.size !== entry.size || sha256 !== entry.sha256) problem(`${shown} differs from the backup (size or SHA-256)`);
    }
    if (entry.type !== 'symlink' && entry.mode !== undefined && (info.mode & 0o7777) !== (entry.mode & modeBits)) {
      problem(`${shown} has mode ${(info.mode & 0o7777).toString(8)}, archived ${(entry.mode & modeBits).toString(8)}`);
    }
    if (entry.mtime !== undefined && Math.trunc(info.mtimeMs / 1000) !== Math.trunc(entry.mtime.getTime() / 1000)) {
      problem(`${shown} has another modification time than archived`);
    }
  }
  const present = await countEntries(dir);
  if (present > expected) problem(`${present - expected} entries that the backup does not hold`);
  if (unnamed > 0) problems.push(`and ${unnamed} more`);
  return { name: 'files, folders and links read back', figures, problems };
}

async function hashFile(path: string, signal: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: READ_CHUNK, signal })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Everything under `dir`, `dir` included, without following links. */
async function countEntries(dir: string): Promise<number> {
  let count = 1;
  for await (const child of await opendir(dir)) {
    count += child.isDirectory() ? await countEntries(join(dir, child.name)) : 1;
  }
  return count;
}
