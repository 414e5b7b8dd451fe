/**
 * Retention where it meets real parts: applied after a real backup, and leftovers of dead
 * processes on a real folder. The policies themselves are tested in test/unit/retention.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Database, directory, files, listBackups, prune } from '../src/index.js';
import { put } from './helpers/put.js';
import { BACKUPS, destinationWithBackups, letters } from './helpers/backups.js';
import { rejectsWithCode } from './helpers/errors.js';
import { describeTree, tempDir } from './helpers/fs.js';
import { sidecarFor } from './helpers/sidecar.js';

describe('retention after a backup', () => {
  it('is applied to every destination after a successful backup', async (t) => {
    const dir = await tempDir(t, 'retention');
    await mkdir(join(dir, 'f'));
    await writeFile(join(dir, 'f', 'x'), 'x');
    const [first, second] = [await destinationWithBackups(), await destinationWithBackups()];
    const db = new Database({ sources: [files({ name: 'f', dir: join(dir, 'f') })] });
    const result = await db.startBackup({ to: [first, second], retention: { keepLast: 2 } }).done;
    for (const destination of [first, second]) {
      assert.deepEqual((await listBackups(destination)).map((b) => b.name), [result.name, BACKUPS.A]);
    }
    assert.equal(result.pruned.length, 2);
    assert.equal(letters(result.pruned[0]?.removed ?? []), 'BCDEFGHIJK');
    await rejectsWithCode(db.startBackup({ to: first, retention: {} }).done, 'INVALID_OPTIONS');
  });
});

describe('prune removes what interrupted backups left behind', () => {
  /** `.<name>.<host>_<pid>_<random>.partial`, as the directory destination names its temporaries. */
  const temporary = (name: string, host: string, pid: number) => `.${name}.${host.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63)}_${pid}_0123456789ab.partial`;

  it('on a real folder: the temporary file of a dead process goes, a live one stays; a dry run only says so', async (t) => {
    const dir = await tempDir(t, 'leftovers');
    const destination = directory({ path: dir });
    const name = BACKUPS.A as string;
    await put(destination, name, Buffer.from(name));
    await put(destination, `${name}.json`, Buffer.from(JSON.stringify(sidecarFor(name, Buffer.from(name)))));
    const { pid: deadPid } = await promisify(execFile)(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).then(({ stdout }) => ({ pid: Number(stdout) }));
    const dead = temporary('20261120-230000.tar.gz', hostname(), deadPid);
    const live = temporary('20261121-110000.tar.gz', hostname(), process.pid);
    const elsewhereOld = temporary('20261119-120000.tar.gz', 'other-host', 4242);
    const elsewhereRecent = temporary('20261121-115900.tar.gz', 'other-host', 4243);
    for (const file of [dead, live, elsewhereOld, elsewhereRecent]) await writeFile(join(dir, file), 'partial archive');
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    for (const file of [dead, live, elsewhereOld]) await utimes(join(dir, file), twoDaysAgo, twoDaysAgo);

    const planned = await prune(destination, { keepLast: 1 }, { dryRun: true });
    assert.deepEqual([...planned.leftovers].sort(), [dead, elsewhereOld].sort());
    assert.equal((await readdir(dir)).length, 6, 'a dry run removes nothing');

    const pruned = await prune(destination, { keepLast: 1 });
    assert.deepEqual([...pruned.leftovers].sort(), [dead, elsewhereOld].sort());
    assert.deepEqual((await readdir(dir)).sort(), [elsewhereRecent, live, name, `${name}.json`].sort());
    assert.deepEqual((await prune(destination, { keepLast: 1 })).leftovers, []);
  });
});

describe('prune and a real chain whose incremental lost its sidecar', () => {
  it('keeps the full and incremental it builds on, read from its header: it still restores', async (t) => {
    const dir = await tempDir(t, 'prune-unknown');
    const root = join(dir, 'uploads');
    await mkdir(root);
    await writeFile(join(root, 'a.txt'), 'alpha');
    const from = directory({ path: join(dir, 'backups') });
    const db = new Database({ sources: [files({ name: 'uploads', dir: root })] });
    const full = await db.startBackup({ to: from, type: 'incremental' }).done;
    await writeFile(join(root, 'b.txt'), 'bravo');
    const first = await db.startBackup({ to: from, type: 'incremental' }).done;
    await writeFile(join(root, 'a.txt'), 'ALPHA');
    await rm(join(root, 'b.txt'));
    const second = await db.startBackup({ to: from, type: 'incremental' }).done;
    const tree = await describeTree(root);
    await writeFile(join(root, 'c.txt'), 'charlie');
    // A newer full: keepLast 1 alone would keep it and nothing of the older chain.
    const newest = await db.startBackup({ to: from, type: 'full' }).done;
    assert.deepEqual([full.type, first.type, second.type, newest.type], ['full', 'incremental', 'incremental', 'full']);
    assert.deepEqual([second.previous, second.base], [first.name, full.name]);
    await rm(join(dir, 'backups', `${second.name}.json`));

    const result = await prune(from, { keepLast: 1 });
    assert.deepEqual(
      result.kept.map((b) => [b.name, b.reasons]),
      [[newest.name, ['newest', 'last']], [second.name, ['unknown']], [first.name, ['chain']], [full.name, ['chain']]],
    );
    assert.deepEqual([result.removed, result.warnings], [[], []]);
    const target = join(dir, 'restored');
    const restored = await Database.restore({ from, backup: second.name, targets: { uploads: { dir: target } } }).done;
    assert.equal(restored.name, second.name);
    assert.deepEqual(await describeTree(target), tree, 'the folder as it was at the incremental whose sidecar is gone');
  });
});
