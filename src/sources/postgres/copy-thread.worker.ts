/**
 * A COPY connection on its own thread. COPY TO sends one protocol message per row, and parsing
 * millions of them is the heaviest work of a backup: on the main thread it stalled the host
 * application's event loop and left the other cores idle. The main thread receives only chunks.
 */
import type pg from 'pg';
import { asBackupError } from '../../errors.js';
import { serveWorkerJob } from '../../util/worker-channel.js';
import { connect } from './connection.js';
import { copyTableOut } from './copy-out.js';
import type { DataFigures, TocTable } from './toc.js';

export interface CopyWorkerData {
  readonly config: pg.ClientConfig;
  readonly snapshotId: string;
  readonly settings: readonly string[];
  readonly chunkBytes: number;
}

/**
 * A table to copy, or one piece (0-based) of a split table; with `send: false` its COPY text is only
 * hashed, and no chunk crosses to the main thread.
 */
export interface CopyRequest {
  readonly table: TocTable;
  readonly piece: number | undefined;
  readonly send: boolean;
}

/** For each table received: its chunks, in order (none when not sent), then its summary. */
export type FromCopyWorker = { type: 'chunk'; index: number; data: Uint8Array } | { type: 'done'; summary: DataFigures };

serveWorkerJob<CopyWorkerData, FromCopyWorker, CopyRequest, void>(async (job, channel) => {
  const client = await connect(job.config, 'SOURCE_FAILED');
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT '${job.snapshotId.replaceAll("'", "''")}'`);
    for (const setting of job.settings) await client.query(setting);
    for await (const { table, piece, send } of channel) {
      const summary = await copyTableOut(client, table, job.chunkBytes, async (chunk, index) => {
        if (!send) return;
        // Full chunks start their own allocation (Buffer.concat of >= 4 KiB is never pooled) and are
        // transferred, not copied; a small last one may sit in Node's shared pool and is copied.
        const data = chunk.byteOffset === 0 && chunk.byteLength >= 64 * 1024 ? new Uint8Array(chunk.buffer, 0, chunk.byteLength) : new Uint8Array(chunk);
        await channel.send({ type: 'chunk', index, data }, [data.buffer as ArrayBuffer]);
      }, piece).catch((error: unknown) => {
        throw asBackupError(error, 'SOURCE_FAILED', `Copying the rows of ${table.qualifiedName} failed`);
      });
      await channel.send({ type: 'done', summary });
    }
  } finally {
    await client.end().catch(() => {});
  }
});
