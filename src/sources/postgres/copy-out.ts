import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type pg from 'pg';
import { copySource, pieceSource, type DataFigures, type TocTable } from './toc.js';

/** Protocol message types seen while the server sends COPY data. */
const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
/** A table's first chunk starts this small and grows: most tables are small, and each chunk may be sent to another thread whole. */
const FIRST_CHUNK_BYTES = 64 * 1024;
/** Sent before the data, or at any time (a notice, a setting that changed, a NOTIFY): skipped. */
const SKIPPED = new Set([0x48 /* 'H' CopyOutResponse */, 0x4e /* 'N' NoticeResponse */, 0x53 /* 'S' ParameterStatus */, 0x41 /* 'A' NotificationResponse */]);

/**
 * Streams one table's rows (or one piece's, 0-based, of a split table) as COPY text and cuts them
 * into chunks of about `chunkBytes`, each ending at a row boundary (the server sends one CopyData
 * message per row). `emit` may wait: that is the backpressure from the archive. It runs on a COPY
 * worker thread, which is stopped by terminating it. A full-size chunk is filled in a buffer of
 * `spare` when it has one of `chunkBytes`: one the main thread was done with.
 */
export async function copyTableOut(
  client: pg.Client,
  table: TocTable,
  chunkBytes: number,
  emit: (chunk: Buffer, index: number) => Promise<void>,
  piece?: number,
  spare?: () => ArrayBuffer | undefined,
): Promise<DataFigures> {
  let bytes = 0;
  let chunks = 0;
  const hash = createHash('sha256');
  const copy = new CopyOut(`COPY ${piece === undefined ? copySource(table) : pieceSource(table, piece)} TO STDOUT`, chunkBytes, async (data) => {
    hash.update(data);
    bytes += data.length;
    chunks += 1;
    await emit(data, chunks);
  }, spare);
  client.query(copy);
  const rows = await copy.done;
  return { rows, bytes, chunks, sha256: hash.digest('hex') };
}

/** The archive path of a table's n-th chunk (1-based). */
export function chunkPath(table: Pick<TocTable, 'dataPath'>, index: number): string {
  return `${table.dataPath}/${String(index).padStart(6, '0')}.copy`;
}

interface PgConnection {
  readonly stream: Duplex;
  query(text: string): void;
}

/**
 * A COPY TO read straight from the connection's socket, as pg-copy-streams does, but with no
 * allocation per row: each CopyData message's bytes are copied into the chunk being filled.
 * From CopyDone on (or an ErrorResponse, or anything else unexpected), the bytes go back to `pg`,
 * which reads the row count (CommandComplete) or the error and hands them to this query.
 */
class CopyOut implements pg.Submittable {
  /** Resolves with the row count of COPY's command tag once the server is ready again. */
  readonly done: Promise<number>;
  private resolve!: (rows: number) => void;
  private reject!: (error: unknown) => void;
  private connection!: PgConnection;
  private pgListener!: (data: Buffer) => void;
  private rows: number | undefined;
  private chunk: Buffer | undefined;
  private filled = 0;
  private flushed = false;
  /** Of the message being read: its type, bytes of its body still to come, and its header bytes read so far. */
  private type = -1;
  private left = 0;
  private header = Buffer.alloc(5);
  private headerRead = 0;
  private pumping = false;
  private detached = false;
  private readonly onReadable = (): void => void this.pump();

  constructor(
    private readonly text: string,
    private readonly chunkBytes: number,
    private readonly flush: (data: Buffer) => Promise<void>,
    private readonly spare: (() => ArrayBuffer | undefined) | undefined,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.done.catch(() => {}); // awaited by copyTableOut
  }

  submit(connection: pg.Connection): void {
    this.connection = connection as unknown as PgConnection;
    const stream = this.connection.stream;
    const listeners = stream.listeners('data');
    if (listeners.length !== 1) throw new Error(`A pg connection has ${listeners.length} data listeners, expected 1`);
    this.pgListener = listeners[0] as (data: Buffer) => void;
    stream.removeListener('data', this.pgListener);
    stream.pause();
    stream.on('readable', this.onReadable);
    this.connection.query(this.text);
  }

  /** Reads the socket while not waiting on `flush`; stops for good once the bytes went back to pg. */
  private async pump(): Promise<void> {
    if (this.pumping || this.detached) return;
    this.pumping = true;
    try {
      for (let data = this.connection.stream.read() as Buffer | null; data !== null && !this.detached; data = this.detached ? null : (this.connection.stream.read() as Buffer | null)) {
        await this.parse(data);
      }
    } catch (error) {
      this.detach(Buffer.alloc(0));
      this.reject(error);
    } finally {
      this.pumping = false;
    }
  }

  private async parse(data: Buffer): Promise<void> {
    for (let at = 0; at < data.length && !this.detached; ) {
      if (this.left === 0 && this.type === -1) {
        // A message header: its type and length, possibly split between reads.
        const type = data[at]!;
        if (this.headerRead === 0 && type !== COPY_DATA && !SKIPPED.has(type)) {
          if (type === COPY_DONE) {
            // CopyDone itself is 5 bytes; pg reads it and what follows (CommandComplete, ReadyForQuery).
            if (this.filled > 0) await this.flushChunk();
          }
          return this.detach(data.subarray(at));
        }
        if (this.headerRead === 0 && at + 5 <= data.length) {
          this.type = data[at]!;
          this.left = data.readUInt32BE(at + 1) - 4;
          at += 5;
        } else {
          const take = Math.min(5 - this.headerRead, data.length - at);
          data.copy(this.header, this.headerRead, at, at + take);
          this.headerRead += take;
          at += take;
          if (this.headerRead < 5) return;
          this.headerRead = 0;
          this.type = this.header[0]!;
          this.left = this.header.readUInt32BE(1) - 4;
        }
        // Awaited only when the chunk must grow or be handed on: an await per row cost more than the row.
        if (this.type === COPY_DATA && this.filled + this.left > (this.chunk?.length ?? 0)) await this.makeRoom(this.left);
      }
      const take = Math.min(this.left, data.length - at);
      if (this.type === COPY_DATA && take > 0) this.filled += data.copy(this.chunk!, this.filled, at, at + take);
      at += take;
      this.left -= take;
      if (this.left > 0) return;
      this.type = -1;
      if (this.filled >= this.chunkBytes) await this.flushChunk();
    }
  }

  /** Room for a row of `length` bytes in the chunk being filled: the chunk grows, or is handed on first when full. */
  private async makeRoom(length: number): Promise<void> {
    const capacity = this.chunk?.length ?? 0;
    if (this.filled + length <= capacity) return;
    if (this.filled + length > this.chunkBytes && this.filled > 0) await this.flushChunk();
    const wanted = Math.max(this.filled + length, this.flushed ? this.chunkBytes : Math.min(this.chunkBytes, Math.max(FIRST_CHUNK_BYTES, 2 * capacity)));
    if (wanted <= (this.chunk?.length ?? 0)) return;
    const spare = wanted === this.chunkBytes ? this.spare?.() : undefined;
    const grown = spare ? Buffer.from(spare) : Buffer.allocUnsafeSlow(wanted);
    if (this.filled > 0) this.chunk!.copy(grown, 0, 0, this.filled);
    this.chunk = grown;
  }

  /** Hands the filled part on; the next row starts a new chunk, as the one handed on may be transferred to another thread. */
  private async flushChunk(): Promise<void> {
    const full = this.chunk!.subarray(0, this.filled);
    this.chunk = undefined;
    this.filled = 0;
    this.flushed = true;
    await this.flush(full);
  }

  /** Gives the socket, and the bytes not read here, back to pg. */
  private detach(rest: Buffer): void {
    if (this.detached) return;
    this.detached = true;
    const stream = this.connection.stream;
    stream.removeListener('readable', this.onReadable);
    stream.on('data', this.pgListener);
    if (rest.length > 0) this.pgListener(rest);
    process.nextTick(() => stream.resume());
  }

  handleCommandComplete(message: { text?: string }): void {
    const match = /^COPY (\d+)/.exec(message.text ?? '');
    if (match) this.rows = Number(match[1]);
  }

  handleReadyForQuery(): void {
    if (this.rows === undefined) this.reject(new Error('COPY ended without its row count'));
    else this.resolve(this.rows);
  }

  /** An ErrorResponse of the server, or the connection lost. */
  handleError(error: Error): void {
    this.detach(Buffer.alloc(0));
    this.reject(error);
  }
}
