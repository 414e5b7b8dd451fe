import type { ThreadGroup } from '../../util/worker-channel.js';
import type { TreeSize, WalkItem, WalkerJob } from './walk.worker.js';

/** Files up to this size are read whole by the walker; larger ones are streamed. */
export const SMALL_FILE = 1024 * 1024;
/** Batches the walker may have in flight: with up to 8 MiB each, memory stays under ~32 MiB. */
const CREDITS = 4;

/** Counts the bytes and items of a tree, on a thread of `threads`. */
export async function estimateTree(root: string, signal: AbortSignal, threads: ThreadGroup): Promise<TreeSize> {
  const job = startWalker(root, 'estimate', signal, threads);
  return (await job.result) as TreeSize;
}

/**
 * Every item of a tree, the root first, each folder before its contents, names sorted. A batch's
 * credit goes back to the walker only when the next batch is asked for, that is once the batch
 * is archived. `stat` reads no file: only what an incremental compares. The walker is a thread of
 * `threads`: closing the group ends a walk whose generator was left waiting.
 */
export async function* walkTree(root: string, signal: AbortSignal, threads: ThreadGroup, op: 'entries' | 'stat' = 'entries'): AsyncGenerator<WalkItem> {
  const job = startWalker(root, op, signal, threads);
  try {
    for await (const items of job) yield* items;
    await job.result;
  } finally {
    await job.stop();
  }
}

function startWalker(root: string, op: WalkerJob['op'], signal: AbortSignal, threads: ThreadGroup) {
  return threads.start<never, WalkItem[], TreeSize | undefined, WalkerJob>(new URL('./walk.worker.js', import.meta.url), {
    data: { root, op, smallFile: SMALL_FILE },
    name: `The worker walking ${root}`,
    failCode: 'SOURCE_FAILED',
    signal,
    window: CREDITS,
  });
}
