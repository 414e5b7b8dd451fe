import { BackupError } from '../../errors.js';
import type { ThreadGroup, WorkerJob } from '../../util/worker-channel.js';
import type { BodyMessage, TreeSize, WalkItem, WalkMessage, WalkerJob } from './walk.worker.js';

/** Files up to this size are read whole by the walker; larger ones it streams after their batch. */
export const SMALL_FILE = 1024 * 1024;
/** Batches the walker may have in flight: with up to 8 MiB each, memory stays under ~32 MiB. */
const CREDITS = 4;

/** Counts the bytes and items of a tree, on a thread of `threads`. */
export async function estimateTree(root: string, signal: AbortSignal, threads: ThreadGroup): Promise<TreeSize> {
  const job = startWalker(root, 'estimate', signal, threads);
  return (await job.result) as TreeSize;
}

type Walker = WorkerJob<never, WalkMessage, TreeSize | undefined>;

/** A walked item; a file larger than {@link SMALL_FILE} comes with the body the walker streams. */
export type WalkedItem = Exclude<WalkItem, { kind: 'file' }> | (Extract<WalkItem, { kind: 'file' }> & { body?: StreamedBody });

/** The body of a file the walker streams: its pieces, then its hash and what changed while it was read. */
export class StreamedBody {
  #end: Exclude<BodyMessage, { piece: Uint8Array }> | undefined;

  constructor(private readonly walker: Walker) {}

  /** The bytes read: up to the size walked and one more, which tells that the file grew. */
  async *pieces(): AsyncGenerator<Uint8Array> {
    for (let piece = await this.#next(); piece; piece = await this.#next()) yield piece;
  }

  /** Skips the pieces not read, then gives the SHA-256 as stored (cut or padded to the size walked), and a change seen. */
  async end(): Promise<{ sha256: string; change?: string }> {
    while (await this.#next());
    return this.#end as { sha256: string; change?: string };
  }

  async #next(): Promise<Uint8Array | undefined> {
    if (this.#end) return undefined;
    const message = await this.walker.receive();
    if (message === undefined || Array.isArray(message)) throw new BackupError('SOURCE_FAILED', 'The walker ended a file before its hash');
    if ('piece' in message) return message.piece;
    this.#end = message;
    return undefined;
  }
}

/**
 * Every item of a tree, the root first, each folder before its contents, names sorted. A batch's
 * credit goes back to the walker only when the next message is asked for, that is once the batch
 * is archived, or the first piece of a file in it is. `stat` reads no file: only what an
 * incremental compares. The walker is a thread of `threads`: closing the group ends a walk whose
 * generator was left waiting.
 */
export async function* walkTree(root: string, signal: AbortSignal, threads: ThreadGroup, op: 'entries' | 'stat' = 'entries'): AsyncGenerator<WalkedItem> {
  const job = startWalker(root, op, signal, threads);
  try {
    for (let batch = await job.receive(); batch !== undefined; batch = await job.receive()) {
      if (!Array.isArray(batch)) throw new BackupError('SOURCE_FAILED', 'The walker sent a piece of a file where a batch was due');
      for (const item of batch) {
        if (item.kind !== 'file' || !item.streamed) {
          yield item;
          continue;
        }
        const body = new StreamedBody(job);
        yield { ...item, body };
        await body.end(); // what the consumer left unread
      }
    }
    await job.result;
  } finally {
    await job.stop();
  }
}

function startWalker(root: string, op: WalkerJob['op'], signal: AbortSignal, threads: ThreadGroup) {
  return threads.start<never, WalkMessage, TreeSize | undefined, WalkerJob>(new URL('./walk.worker.js', import.meta.url), {
    data: { root, op, smallFile: SMALL_FILE },
    name: `The worker walking ${root}`,
    failCode: 'SOURCE_FAILED',
    signal,
    window: CREDITS,
  });
}
