import assert from 'node:assert/strict';
import { chmod, mkdir, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Database, directory, files, listBackups, verifyBackup } from '../src/index.js';
import { restoreFilesChainByHand } from './helpers/by-hand.js';
import { describeTree, tempDir, type TreeItem } from './helpers/fs.js';

/** One change between two backups of the chain, each of another kind. */
const STEPS: ReadonlyArray<(root: string) => Promise<void>> = [
  async (root) => writeFile(join(root, 'docs', 'added.txt'), 'added'),
  async (root) => writeFile(join(root, 'docs', 'a.txt'), 'ALPHA'), // same size, new contents
  async (root) => rm(join(root, 'docs', 'b.txt')),
  async (root) => rename(join(root, 'docs', 'added.txt'), join(root, 'moved.txt')),
  async (root) => chmod(join(root, 'script.sh'), 0o700),
  async (root) => utimes(join(root, 'moved.txt'), new Date('2015-05-05T05:05:05Z'), new Date('2015-05-05T05:05:05Z')),
  async (root) => {
    await rm(join(root, 'big.bin'));
    await mkdir(join(root, 'big.bin', 'now', 'a', 'folder'), { recursive: true });
  },
  async (root) => {
    await rm(join(root, 'latest'));
    await symlink('moved.txt', join(root, 'latest'));
  },
  async (root) => writeFile(join(root, 'big.bin', 'now', 'large'), Buffer.alloc(3 * 1024 * 1024, 9)),
];

describe('files source: incremental chains through the engines', () => {
  it('restores each point of a chain of ten as of its time, as the README\'s script does by hand', async (t) => {
    const dir = await tempDir(t, 'files-chain');
    const root = join(dir, 'uploads');
    await mkdir(join(root, 'docs'), { recursive: true });
    await mkdir(join(root, 'empty'));
    await writeFile(join(root, 'docs', 'a.txt'), 'alpha');
    await writeFile(join(root, 'docs', 'b.txt'), 'bravo');
    await writeFile(join(root, 'script.sh'), 'echo hi');
    await writeFile(join(root, 'big.bin'), Buffer.alloc(2 * 1024 * 1024, 1));
    await symlink('docs/a.txt', join(root, 'latest'));
    const from = directory({ path: join(dir, 'backups') });
    const db = new Database({ sources: [files({ name: 'uploads', dir: root })] });
    const names: string[] = [];
    const times: Date[] = [];
    const trees: Array<Record<string, TreeItem>> = [];
    for (const step of [undefined, ...STEPS]) {
      if (step) {
        await sleep(1000 - (Date.now() % 1000)); // each backup in a second of its own, for asOf
        await step(root);
      }
      const backup = await db.startBackup({ to: from, type: 'incremental' }).done;
      assert.equal(backup.type, names.length === 0 ? 'full' : 'incremental');
      names.push(backup.name);
      times.push(backup.createdAt);
      trees.push(await describeTree(root));
    }
    assert.equal((await listBackups(from)).length, 10);

    for (const [i, expected] of trees.entries()) {
      const target = join(dir, `restored-${i}`);
      const asOf = new Date(Math.floor((times[i] as Date).getTime() / 1000) * 1000 + 999);
      const result = await Database.restore({ from, asOf, targets: { uploads: { dir: target } } }).done;
      assert.equal(result.name, names[i]);
      assert.deepEqual(await describeTree(target), expected, `the folder as it was at backup ${i}`);
    }
    for (const i of [0, 6, 9]) {
      const work = join(dir, `by-hand-${i}`);
      await mkdir(work);
      const byHand = await restoreFilesChainByHand(names.slice(0, i + 1).map((name) => join(dir, 'backups', name)), work);
      assert.deepEqual(await describeTree(byHand), await describeTree(join(dir, `restored-${i}`)), `the README's script restores backup ${i} as backupkit does`);
    }
    const verified = await verifyBackup({ from, level: 'restore' }).done;
    const checks = verified.sources.flatMap((s) => s.checks);
    assert.deepEqual(checks.flatMap((c) => c.problems), []);
    const last = Object.values(trees.at(-1) ?? {});
    assert.deepEqual(
      checks.map((c) => c.figures),
      [{ files: last.filter((i) => i.type === 'file').length, folders: last.filter((i) => i.type === 'directory').length, links: 1, bytes: 3 * 1024 * 1024 + 5 + 5 + 7 }],
      'the whole tree of the newest listing was read back',
    );
  });
});
