#!/usr/bin/env node
/** The `backupkit` command: see `backupkit --help` and docs/CLI.md. */
import { BackupError } from '../errors.js';
import { runCli } from './run.js';

const interrupted = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  // The first signal cancels cleanly (nothing half-written is left); a second one kills at once.
  process.once(signal, () => {
    interrupted.abort(new BackupError('ABORTED', `Interrupted by ${signal}`));
    process.once(signal, () => process.exit(130));
  });
}
// A reader that goes away (`backupkit list | head`) ends the command as an interruption would.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  interrupted.abort(new BackupError('ABORTED', 'The output was closed'));
});
process.exitCode = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
  signal: interrupted.signal,
});
