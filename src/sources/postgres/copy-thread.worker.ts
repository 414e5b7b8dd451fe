/**
 * A COPY connection on its own thread. COPY TO sends one protocol message per row, and parsing
 * millions of them is the heaviest work of a backup: on the main thread it stalled the host
 * application's event loop and left the other cores idle. The main thread receives only chunks.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type pg from 'pg';
import { connect } from './connection.js';
import { copyTableOut } from './copy-out.js';
import type { TableDataSummary, TocTable } from './toc.js';

export interface CopyWorkerData {
  readonly config: pg.ClientConfig;
  readonly snapshotId: string;
  readonly settings: readonly string[];
  readonly chunkBytes: number;
  /** Chunks posted and not yet acknowledged by the main thread: the backpressure. */
  readonly credits: number;
}

export type ToCopyWorker = { type: 'copy'; table: TocTable } | { type: 'ack' };
export type FromCopyWorker =
  | { type: 'ready' }
  | { type: 'chunk'; index: number; data: Uint8Array }
  | { type: 'done'; summary: TableDataSummary }
  | { type: 'error'; message: string; code?: string };

const job = workerData as CopyWorkerData;
const port = parentPort!;
const post = (message: FromCopyWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);
let credits = job.credits;
let waiting: (() => void) | undefined;

async function start(): Promise<pg.Client> {
  const client = await connect(job.config, 'SOURCE_FAILED');
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await client.query(`SET TRANSACTION SNAPSHOT '${job.snapshotId.replaceAll("'", "''")}'`);
  for (const setting of job.settings) await client.query(setting);
  return client;
}

const failed = (error: unknown): void => post({ type: 'error', message: error instanceof Error ? error.message : String(error), ...codeOf(error) });
function codeOf(error: unknown): { code?: string } {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? { code } : {};
}

start().then(
  (client) => {
    post({ type: 'ready' });
    port.on('message', (message: ToCopyWorker) => {
      if (message.type === 'ack') {
        credits += 1;
        const wake = waiting;
        waiting = undefined;
        wake?.();
        return;
      }
      copyTableOut(client, message.table, job.chunkBytes, async (chunk, index) => {
        while (credits === 0) await new Promise<void>((resolve) => (waiting = resolve));
        credits -= 1;
        // Full chunks start their own allocation (Buffer.concat of >= 4 KiB is never pooled) and are
        // transferred, not copied; a small last one may sit in Node's shared pool and is copied.
        const data = chunk.byteOffset === 0 && chunk.byteLength >= 64 * 1024 ? new Uint8Array(chunk.buffer, 0, chunk.byteLength) : new Uint8Array(chunk);
        post({ type: 'chunk', index, data }, [data.buffer as ArrayBuffer]);
      }).then((summary) => post({ type: 'done', summary }), failed);
    });
  },
  (error: unknown) => {
    failed(error);
  },
);
