import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Database, files, listBackups, memory, type Destination } from '../../src/index.js';
import { rejectsWithCode } from './errors.js';
import { tempDir } from './fs.js';

/**
 * Backs up 32 MiB to a memory destination and to `destination`, stops `destination`'s server once
 * 8 MiB have gone, and checks that the backup fails with DESTINATION_FAILED naming `named` and
 * leaves nothing on the other destination.
 */
export async function backUpWhileServerGoes(t: TestContext, destination: Destination, stopServer: () => Promise<unknown>, named: RegExp): Promise<void> {
  const dir = await tempDir(t, 'server-gone');
  await mkdir(join(dir, 'uploads'));
  await writeFile(join(dir, 'uploads', 'big.bin'), randomBytes(32 * 1024 * 1024));
  const other = memory();
  const op = new Database({ sources: [files({ name: 'uploads', dir: join(dir, 'uploads') })] }).startBackup({ to: [other, destination] });
  let stopped = false;
  op.on('progress', (p) => {
    if (!stopped && p.bytesDone > 8 * 1024 * 1024) {
      stopped = true;
      void stopServer();
    }
  });
  await rejectsWithCode(op.done, 'DESTINATION_FAILED', named);
  assert.deepEqual(await listBackups(other), []);
}
