import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
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

/** The processes `pid` started, and theirs: sshd and vsftpd serve each connection from a child of their own. */
export async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.replace(/^.*\) /s, '').split(' ')[1]);
    if (ppid) parents.set(Number(entry), ppid);
  }
  const found: number[] = [];
  const visit = (parent: number) => {
    for (const [child, ppid] of parents) {
      if (ppid !== parent) continue;
      found.push(child);
      visit(child);
    }
  };
  visit(pid);
  return found;
}
