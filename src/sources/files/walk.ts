import { Worker } from 'node:worker_threads';
import { BackupError, abortError } from '../../errors.js';
import type { WalkItem, WalkerJob, WalkerMessage } from './walker.js';

/** Files up to this size are read whole by the walker; larger ones are streamed. */
export const SMALL_FILE = 1024 * 1024;
/** Batches the walker may have in flight: with up to 8 MiB each, memory stays under ~32 MiB. */
const CREDITS = 4;

/** Counts the bytes and items of a tree. */
export async function estimateTree(root: string, signal: AbortSignal): Promise<{ bytes: number; items: number }> {
  for await (const message of runWalker(root, 'estimate', signal)) {
    if (message.type === 'estimate') return { bytes: message.bytes, items: message.items };
  }
  throw new BackupError('SOURCE_FAILED', `Walking ${root} ended without a result`);
}

/** Every item of a tree, the root first, each folder before its contents, names sorted. */
export async function* walkTree(root: string, signal: AbortSignal): AsyncGenerator<WalkItem> {
  for await (const message of runWalker(root, 'entries', signal)) {
    if (message.type === 'batch') yield* message.items;
  }
}

/**
 * Runs the walker and yields its messages; a batch's credit goes back to the walker only when the
 * consumer asks for the next message, that is once the batch is archived.
 */
async function* runWalker(root: string, op: WalkerJob['op'], signal: AbortSignal): AsyncGenerator<WalkerMessage> {
  const control = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
  const counters = new Int32Array(control);
  counters[0] = CREDITS;
  const job: WalkerJob = { root, op, smallFile: SMALL_FILE, control };
  const worker = new Worker(new URL('./walker.js', import.meta.url), { workerData: job });
  const queue: WalkerMessage[] = [];
  let failure: unknown;
  let exited = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  worker.on('message', (message: WalkerMessage) => {
    queue.push(message);
    notify();
  });
  worker.once('error', (error) => {
    failure ??= error;
    notify();
  });
  worker.once('exit', () => {
    exited = true;
    notify();
  });
  const onAbort = () => notify();
  signal.addEventListener('abort', onAbort);
  try {
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      const message = queue.shift();
      if (message) {
        if (message.type === 'error') {
          throw new BackupError('SOURCE_FAILED', `Reading ${message.path} failed: ${message.message}`, { cause: message });
        }
        yield message;
        if (message.type === 'batch') {
          Atomics.add(counters, 0, 1);
          Atomics.notify(counters, 0);
        }
        if (message.type === 'done' || message.type === 'estimate') return;
        continue;
      }
      if (failure !== undefined) throw new BackupError('SOURCE_FAILED', `Walking ${root} failed`, { cause: failure });
      if (exited) throw new BackupError('SOURCE_FAILED', `Walking ${root} stopped unexpectedly`);
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    Atomics.store(counters, 1, 1);
    Atomics.notify(counters, 0);
    await worker.terminate();
  }
}
