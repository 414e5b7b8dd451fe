/**
 * A COPY connection on its own thread. COPY TO sends one protocol message per row, and parsing
 * millions of them is the heaviest work of a backup: on the main thread it stalled the host
 * application's event loop and left the other cores idle. The main thread receives only chunks.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { asBackupError } from '../../errors.js';
import { serveWorkerJob } from '../../util/worker-channel.js';
import { connect } from './connection.js';
import { copyTablesOut, type CopyUnit } from './copy-out.js';
import type { DataFigures } from './toc.js';

export interface CopyWorkerData {
  readonly config: pg.ClientConfig;
  readonly snapshotId: string;
  readonly settings: readonly string[];
  readonly chunkBytes: number;
}

/**
 * Units copied one after the other, in one query: one large table or piece, or many small tables,
 * whose chunks come back together (a message per table cost more than copying most small tables). With
 * `send: false` their COPY text is only hashed, and no chunk crosses to the main thread.
 */
export interface CopyRequest {
  readonly units: readonly CopyUnit[];
  readonly send: boolean;
}

/**
 * A unit's chunk (1-based `index`), by the unit's position in the request, with the SHA-256 (hex)
 * of its bytes: hashed here, so that the archive does not hash it again on the main thread.
 */
export interface CopiedChunk {
  readonly unit: number;
  readonly index: number;
  readonly data: Uint8Array;
  readonly sha256: string;
}

/**
 * For each request: messages of about a chunk's size at most, each with the chunks and the
 * summaries of the units done since the previous one, in order; `last` on the request's last.
 */
export interface FromCopyWorker {
  readonly chunks: CopiedChunk[];
  readonly done: Array<{ unit: number; summary: DataFigures }>;
  readonly last: boolean;
}

serveWorkerJob<CopyWorkerData, FromCopyWorker, CopyRequest, void>(async (job, channel) => {
  const client = await connect(job.config, 'SOURCE_FAILED');
  try {
    await client.query(['BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', `SET TRANSACTION SNAPSHOT '${job.snapshotId.replaceAll("'", "''")}'`, ...job.settings].join(';\n'));
    // Full chunks the main thread gave back once archived, or, when only hashing, this thread's own.
    const kept: ArrayBuffer[] = [];
    const spare = (): ArrayBuffer | undefined => channel.takeReturned(job.chunkBytes) ?? kept.pop();
    for await (const { units, send } of channel) {
      let pending: FromCopyWorker = { chunks: [], done: [], last: false };
      let pendingBytes = 0;
      /** Units done: the one that fails is the next. */
      let copied = 0;
      const flush = async (last: boolean): Promise<void> => {
        const message = { ...pending, last };
        pending = { chunks: [], done: [], last: false };
        pendingBytes = 0;
        await channel.send(message, message.chunks.flatMap((chunk) => (chunk.data.byteOffset === 0 ? [chunk.data.buffer as ArrayBuffer] : [])));
      };
      await copyTablesOut(
        client,
        units,
        job.chunkBytes,
        async (unit, chunk, index) => {
          if (!send) {
            if (chunk.byteOffset === 0 && chunk.buffer.byteLength === job.chunkBytes) kept.push(chunk.buffer as ArrayBuffer);
            return;
          }
          // Full chunks start their own allocation (Buffer.concat of >= 4 KiB is never pooled) and are
          // transferred, not copied; a small one may sit in Node's shared pool and is copied.
          const data = chunk.byteOffset === 0 && chunk.byteLength >= 64 * 1024 ? new Uint8Array(chunk.buffer, 0, chunk.byteLength) : new Uint8Array(chunk);
          pending.chunks.push({ unit, index, data, sha256: createHash('sha256').update(chunk).digest('hex') });
          pendingBytes += data.byteLength;
          if (pendingBytes >= job.chunkBytes) await flush(false);
        },
        async (unit, summary) => {
          pending.done.push({ unit, summary });
          copied += 1;
        },
        spare,
      ).catch((error: unknown) => {
        throw asBackupError(error, 'SOURCE_FAILED', `Copying the rows of ${units[copied]?.table.qualifiedName ?? 'a table'} failed`);
      });
      await flush(true);
    }
  } finally {
    await client.end().catch(() => {});
  }
});
