import assert from 'node:assert/strict';

/** Worker threads alive: each holds a MessagePort to this thread until it has exited. */
export function workerThreads(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'MessagePort').length;
}

/** Asserts, right as an operation settles, that no more worker threads run than `before` it started. */
export function assertNoThreadLeft(before: number, label: string): void {
  assert.equal(workerThreads(), before, `${label}: no worker thread outlives the operation`);
}
