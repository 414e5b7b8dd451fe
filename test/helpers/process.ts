import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** Waits until the process has stopped itself (state T in /proc). */
export async function stoppedItself(child: ChildProcess): Promise<void> {
  for (;;) {
    const state = (await readFile(`/proc/${child.pid}/stat`, 'utf8').catch(() => '')).replace(/^.*\) /s, '')[0];
    if (state === 'T') return;
    if (child.exitCode !== null || state === undefined) assert.fail('the child ended before it reached its stop');
    await sleep(20);
  }
}
