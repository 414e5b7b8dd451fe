import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
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

/**
 * Kills `child` and waits until it has exited: a child left running keeps the test file's process
 * alive, and `node --test` waits for that forever. Call it in a `finally`, before the folders the
 * child writes to are removed. A child that may have stopped itself needs SIGKILL: it takes no
 * SIGTERM until it is continued.
 */
export async function stopped(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
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

/** A server process that a test starts, kills as a crash would, and starts again over the same data. */
export interface ServerProcess {
  /** Sends a signal to the server itself (SIGSTOP freezes it, SIGCONT thaws it). */
  signal(signal: NodeJS.Signals): void;
  /** Sends a signal to the server and to every session process it started. */
  signalAll(signal: NodeJS.Signals): Promise<void>;
  /** SIGKILLs the server and every process it started (sessions of their own); its data stays. */
  kill(): Promise<void>;
  /** Kills the server and launches it again. */
  restart(): Promise<void>;
  /** Kills the server and removes its data. */
  stop(): Promise<void>;
}

/**
 * Runs `launch` (which starts the server, resolves once it serves, and kills what it started if
 * it does not) and keeps the server it started; `cleanup`, which removes its data, runs on `stop`
 * or when the first launch fails.
 */
export async function serverProcess(launch: () => Promise<ChildProcess>, cleanup: () => Promise<void>): Promise<ServerProcess> {
  let child = await launch().catch(async (error: unknown) => {
    await cleanup();
    throw error;
  });
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    for (const pid of await descendants(child.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // ended meanwhile, with its session
      }
    }
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  };
  return {
    signal: (signal) => void child.kill(signal),
    async signalAll(signal) {
      if (child.pid === undefined) return;
      for (const pid of [child.pid, ...(await descendants(child.pid))]) process.kill(pid, signal);
    },
    kill,
    async restart() {
      await kill();
      child = await launch();
    },
    async stop() {
      await kill();
      await cleanup();
    },
  };
}
