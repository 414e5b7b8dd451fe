import { createHash } from 'node:crypto';
import type pg from 'pg';
import { loadCopyStreams } from './connection.js';
import { copySource, pieceSource, type DataFigures, type TocTable } from './toc.js';

const NEWLINE = 0x0a;

/**
 * Streams one table's rows (or one piece's, 0-based, of a split table) as COPY text and cuts them into chunks of about `chunkBytes`, each
 * ending at a row boundary (text COPY escapes newlines inside values, so every raw newline ends a
 * row). `emit` may wait: that is the backpressure from the archive. It runs on a COPY worker
 * thread, which is stopped by terminating it.
 */
export async function copyTableOut(
  client: pg.Client,
  table: TocTable,
  chunkBytes: number,
  emit: (chunk: Buffer, index: number) => Promise<void>,
  piece?: number,
): Promise<DataFigures> {
  const { to: copyTo } = await loadCopyStreams();
  const stream = client.query(copyTo(`COPY ${piece === undefined ? copySource(table) : pieceSource(table, piece)} TO STDOUT`));
  // The row count is the server's, from COPY's command tag (counting newlines here cost about a second of CPU
  // per 10 million rows). The tag arrives after the stream ended, before the server is ready for the next
  // query, which the client tells the query: waiting for that costs no round trip of its own, as the no-op
  // query sent for it did, once per table.
  const ready = new Promise<void>((resolve, reject) => {
    (stream as unknown as { handleReadyForQuery: () => void }).handleReadyForQuery = resolve;
    // A connection lost between the end of the rows and that message.
    stream.once('error', reject);
  });
  ready.catch(() => {}); // an error while the rows stream is thrown by the loop below
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let bytes = 0;
  let chunks = 0;
  const hash = createHash('sha256');
  const flush = async (data: Buffer): Promise<void> => {
    hash.update(data);
    bytes += data.length;
    chunks += 1;
    await emit(data, chunks);
  };
  for await (const piece of stream as AsyncIterable<Buffer>) {
    pending.push(piece);
    pendingBytes += piece.length;
    if (pendingBytes < chunkBytes) continue;
    const joined = Buffer.concat(pending, pendingBytes);
    const cut = joined.lastIndexOf(NEWLINE) + 1;
    // The partial row after the cut is copied out, so the chunk owns its memory and can be transferred.
    pending = cut < joined.length ? [Buffer.from(joined.subarray(cut))] : [];
    pendingBytes = joined.length - cut;
    if (cut > 0) await flush(joined.subarray(0, cut));
  }
  if (pendingBytes > 0) await flush(Buffer.concat(pending, pendingBytes));
  await ready;
  return { rows: stream.rowCount, bytes, chunks, sha256: hash.digest('hex') };
}

/** The archive path of a table's n-th chunk (1-based). */
export function chunkPath(table: Pick<TocTable, 'dataPath'>, index: number): string {
  return `${table.dataPath}/${String(index).padStart(6, '0')}.copy`;
}
