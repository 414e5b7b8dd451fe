import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listBackups, type Destination } from '../../src/index.js';

/**
 * Two processes back up two different folders to one destination, both starting in the same
 * second (their clocks are set to one instant), and must both succeed with distinct archives
 * whose SHA-256 matches what each reported and what its sidecar says.
 */
export async function raceTwoBackups(dir: string, destination: Destination, spec: object): Promise<void> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'race-child.js');
  const startAt = Math.floor(Date.now() / 1000) * 1000 - 60_000; // a whole second, so both fall in it
  const children = await Promise.all(
    [0, 1].map(async (i) => {
      const tree = join(dir, `tree-${i}`);
      await mkdir(tree, { recursive: true });
      await writeFile(join(tree, 'data.bin'), randomBytes(8 * 1024 * 1024)); // long enough to overlap
      const child = spawn(process.execPath, [script, tree, String(startAt), JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'inherit'] });
      let output = '';
      const ready = new Promise<void>((resolve) =>
        child.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.startsWith('ready\n')) resolve();
        }),
      );
      const exited = once(child, 'exit');
      await ready;
      return { child, output: () => output, exited };
    }),
  );
  for (const { child } of children) child.stdin.end('go\n');
  const results = await Promise.all(
    children.map(async ({ output, exited }) => {
      const [code] = await exited;
      assert.equal(code, 0, 'both backups succeed');
      const line = output().trim().split('\n').pop() ?? '';
      return JSON.parse(line) as { name: string; sha256: string };
    }),
  );
  assert.notEqual(results[0]?.name, results[1]?.name, 'two archives, two names');
  const listed = await listBackups(destination);
  assert.equal(listed.length, 2);
  for (const { name, sha256 } of results) {
    const stored = createHash('sha256');
    for await (const chunk of await destination.open(name)) stored.update(chunk as Buffer);
    assert.equal(stored.digest('hex'), sha256, `${name} holds what its backup reported`);
    assert.equal(listed.find((b) => b.name === name)?.sha256, sha256, `${name}'s sidecar agrees`);
  }
}
