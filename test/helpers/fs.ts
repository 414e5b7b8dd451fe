import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';

/** A fresh temporary folder, removed when the test ends. */
export async function tempDir(t: TestContext | { after: (fn: () => Promise<void>) => void }, label = 'test'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `backupkit-${label}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface TreeItem {
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  mtimeSeconds: number;
  sha256?: string;
  target?: string;
}

/** Everything under `root` that a restore must reproduce, by relative path. */
export async function describeTree(root: string): Promise<Record<string, TreeItem>> {
  const out: Record<string, TreeItem> = {};
  async function visit(relative: string): Promise<void> {
    const absolute = relative === '' ? root : join(root, relative);
    const info = await lstat(absolute);
    const common = { mode: info.mode & 0o7777, mtimeSeconds: Math.floor(info.mtimeMs / 1000) };
    if (info.isSymbolicLink()) out[relative] = { type: 'symlink', ...common, mode: 0, target: await readlink(absolute) };
    else if (info.isDirectory()) {
      out[relative] = { type: 'directory', ...common };
      for (const name of (await readdir(absolute)).sort()) await visit(relative === '' ? name : `${relative}/${name}`);
    } else out[relative] = { type: 'file', ...common, sha256: createHash('sha256').update(await readFile(absolute)).digest('hex') };
  }
  await visit('');
  return out;
}

/** Names in a folder, or undefined if it does not exist. */
export async function listOrUndefined(dir: string): Promise<string[] | undefined> {
  try {
    return (await readdir(dir)).sort();
  } catch {
    return undefined;
  }
}

export async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Makes `folder` a 2 MiB tmpfs, a disk that fills up; skips the test where mounting is not
 * permitted and then returns false. The caller unmounts it, before its temporary folder is removed.
 */
export async function mountSmallDisk(t: TestContext, folder: string): Promise<boolean> {
  await mkdir(folder);
  try {
    await promisify(execFile)('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', folder]);
    return true;
  } catch (error) {
    t.skip(`mounting a 2 MiB tmpfs is not permitted here: ${(error as Error).message.split('\n')[0]}`);
    return false;
  }
}
