#!/usr/bin/env node
/** The `backupkit` command: see `backupkit --help` and docs/CLI.md. */
import { constants } from 'node:os';
import { BackupError } from '../errors.js';
import { EXIT, runCli } from './run.js';

/**
 * How long a second signal lets the clean-up run before the command exits anyway. A cancelled
 * operation settles by itself once it has removed what it wrote (a few file removals for a folder,
 * a few requests for S3); this only bounds a destination that stopped answering.
 */
const CLEANUP_GRACE_MS = 5_000;

const interrupted = new AbortController();
const cancelled = new AbortController();
const stopWaiting = new AbortController();
let received: 'SIGINT' | 'SIGTERM' | undefined;
let finished = false;
let deadline: NodeJS.Timeout | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  // The first signal cancels (`run` stops its schedule, letting a running backup finish, and the
  // second cancels that), and the command exits once nothing half-written is left. Exiting at a
  // second one would leave the hidden temporaries the cancel is removing: it bounds the wait instead.
  process.on(signal, () => {
    if (finished) return;
    if (received === undefined) {
      received = signal;
      interrupted.abort(new BackupError('ABORTED', `Interrupted by ${signal}`));
      return;
    }
    cancelled.abort(new BackupError('ABORTED', `Interrupted by ${received} and ${signal}`));
    deadline ??= setTimeout(() => {
      const message = `Interrupted by ${received}; the clean-up did not finish within ${CLEANUP_GRACE_MS / 1000} s of the second signal`;
      const hint =
        'Clean-up was cut short. A destination folder may hold a hidden .partial temporary and a .claim, a bucket an unfinished upload: the next backup removes the temporary and the upload, prune the .claim a day later. A restore may leave a hidden staging copy beside a target.';
      stopWaiting.abort(new BackupError('ABORTED', message, { hint }));
    }, CLEANUP_GRACE_MS);
  });
}
// A reader that goes away (`backupkit list | head`) ends the command as an interruption would.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  interrupted.abort(new BackupError('ABORTED', 'The output was closed'));
});
const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
  signal: interrupted.signal,
  cancel: cancelled.signal,
  stopWaiting: stopWaiting.signal,
});
finished = true;
clearTimeout(deadline);
// As a shell reports a process a signal killed: 128 + the signal's number (130 SIGINT, 143 SIGTERM).
process.exitCode = code === EXIT.interrupted && received !== undefined ? 128 + constants.signals[received] : code;
// The clean-up the command stopped waiting for would keep the process alive.
if (stopWaiting.signal.aborted) process.exit();
