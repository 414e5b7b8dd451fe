import { createHash, type Hash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type pg from 'pg';
import { copySource, pieceSource, type DataFigures, type TocTable } from './toc.js';

/** Protocol message types seen while the server sends the results of COPY TO statements. */
const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
const COPY_OUT_RESPONSE = 0x48; // 'H': a statement's rows start
const COMMAND_COMPLETE = 0x43; // 'C': a statement's row count
/** A table's first chunk starts this small and grows: most tables are small, and each chunk may be sent to another thread whole. */
const FIRST_CHUNK_BYTES = 64 * 1024;
/** Read here; anything else (ReadyForQuery, an ErrorResponse) goes to pg. NoticeResponse, ParameterStatus and NotificationResponse may come at any time, and are skipped. */
const READ_HERE = new Set([COPY_DATA, COPY_DONE, COPY_OUT_RESPONSE, COMMAND_COMPLETE, 0x4e /* 'N' */, 0x53 /* 'S' */, 0x41 /* 'A' */]);

/** A table to copy, or one piece (0-based) of a split table. */
export interface CopyUnit {
  readonly table: TocTable;
  readonly piece: number | undefined;
}

/**
 * Streams one table's rows (or one piece's, 0-based, of a split table) as COPY text and cuts them
 * into chunks of about `chunkBytes`, each ending at a row boundary (the server sends one CopyData
 * message per row). `emit` may wait: that is the backpressure from the archive.
 */
export async function copyTableOut(
  client: pg.Client,
  table: TocTable,
  chunkBytes: number,
  emit: (chunk: Buffer, index: number) => Promise<void>,
  piece?: number,
): Promise<DataFigures> {
  let figures: DataFigures | undefined;
  await copyTablesOut(client, [{ table, piece }], chunkBytes, async (_, chunk, index) => emit(chunk, index), async (_, done) => void (figures = done));
  return figures!;
}

/**
 * Copies units one after the other as copyTableOut does, in one query of one COPY statement each:
 * a round trip for all, not one per table, which is most of the time a small table takes.
 * `emit` gets each unit's chunks (by the unit's position), `done` its figures once its row count
 * came; both may wait. A failure rejects with the server's error: the unit that failed is the one
 * after the last given to `done`. If `emit` or `done` fails, the connection is ended: the server
 * would go on sending the rows. A full-size chunk is filled in a buffer of `spare` when it has one
 * of `chunkBytes`: one the main thread was done with.
 */
export async function copyTablesOut(
  client: pg.Client,
  units: readonly CopyUnit[],
  chunkBytes: number,
  emit: (unit: number, chunk: Buffer, index: number) => Promise<void>,
  done: (unit: number, figures: DataFigures) => Promise<void>,
  spare?: () => ArrayBuffer | undefined,
): Promise<void> {
  const text = units.map(({ table, piece }) => `COPY ${piece === undefined ? copySource(table) : pieceSource(table, piece)} TO STDOUT`).join(';\n');
  const copy = new CopyOut(text, units.length, chunkBytes, emit, done, spare);
  client.query(copy);
  await copy.done;
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
 * COPY TO statements read straight from the connection's socket, as pg-copy-streams does, but with
 * no allocation per row: each CopyData message's bytes are copied into the chunk being filled. Each
 * statement's CopyOutResponse, CopyData…, CopyDone and CommandComplete are read here; from
 * ReadyForQuery on (or an ErrorResponse, or anything else unexpected), the bytes go back to `pg`,
 * which ends this query or hands it the error.
 */
class CopyOut implements pg.Submittable {
  /** Resolves once every statement's row count came and the server is ready again. */
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (error: unknown) => void;
  private connection!: PgConnection;
  private pgListener!: (data: Buffer) => void;
  /** The statement whose results are being read (its CopyOutResponse came), and how many are complete. */
  private unit = -1;
  private completed = 0;
  private hash: Hash | undefined;
  private bytes = 0;
  private chunks = 0;
  private chunk: Buffer | undefined;
  private filled = 0;
  /** Of the message being read: its type, bytes of its body still to come, and its header bytes read so far. */
  private type = -1;
  private left = 0;
  private header = Buffer.alloc(5);
  private headerRead = 0;
  /** A CommandComplete's body ("COPY <rows>\0"), as it comes. */
  private tag = Buffer.alloc(0);
  private pumping = false;
  private detached = false;
  private readonly onReadable = (): void => void this.pump();

  constructor(
    private readonly text: string,
    private readonly statements: number,
    private readonly chunkBytes: number,
    private readonly emit: (unit: number, chunk: Buffer, index: number) => Promise<void>,
    private readonly complete: (unit: number, figures: DataFigures) => Promise<void>,
    private readonly spare: (() => ArrayBuffer | undefined) | undefined,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.done.catch(() => {}); // awaited by copyTablesOut
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

  /** Reads the socket while not waiting on `emit` or `complete`; stops for good once the bytes went back to pg. */
  private async pump(): Promise<void> {
    if (this.pumping || this.detached) return;
    this.pumping = true;
    try {
      for (let data = this.connection.stream.read() as Buffer | null; data !== null && !this.detached; data = this.detached ? null : (this.connection.stream.read() as Buffer | null)) {
        await this.parse(data);
      }
    } catch (error) {
      // `emit` or `complete` failed, or the server sent nonsense: the rows still coming cannot go to
      // pg, which has no handler for them (on this thread, that would be an uncaught exception).
      this.reject(error);
      this.connection.stream.destroy();
    } finally {
      this.pumping = false;
    }
  }

  private async parse(data: Buffer): Promise<void> {
    for (let at = 0; at < data.length && !this.detached; ) {
      if (this.left === 0 && this.type === -1) {
        // A message header: its type and length, possibly split between reads.
        if (this.headerRead === 0 && !READ_HERE.has(data[at]!)) return this.detach(data.subarray(at));
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
        else if (this.type === COPY_OUT_RESPONSE) this.startUnit();
        else if (this.type === COMMAND_COMPLETE) this.tag = Buffer.allocUnsafe(this.left);
      }
      const take = Math.min(this.left, data.length - at);
      if (this.type === COPY_DATA && take > 0) this.filled += data.copy(this.chunk!, this.filled, at, at + take);
      else if (this.type === COMMAND_COMPLETE && take > 0) data.copy(this.tag, this.tag.length - this.left, at, at + take);
      at += take;
      this.left -= take;
      if (this.left > 0) return;
      const type = this.type;
      this.type = -1;
      if (type === COPY_DATA ? this.filled >= this.chunkBytes : type === COPY_DONE && this.filled > 0) await this.flushChunk();
      else if (type === COMMAND_COMPLETE) await this.completeUnit();
    }
  }

  private startUnit(): void {
    if (this.unit !== this.completed - 1 || this.completed === this.statements) throw new Error('COPY started a statement out of turn');
    this.unit = this.completed;
    this.hash = createHash('sha256');
    this.bytes = 0;
    this.chunks = 0;
  }

  private async completeUnit(): Promise<void> {
    const match = /^COPY (\d+)\0$/.exec(this.tag.toString('latin1'));
    if (!match || this.unit !== this.completed) throw new Error('COPY ended without its row count');
    this.completed += 1;
    await this.complete(this.unit, { rows: Number(match[1]), bytes: this.bytes, chunks: this.chunks, sha256: this.hash!.digest('hex') });
  }

  /** Room for a row of `length` bytes in the chunk being filled: the chunk grows, or is handed on first when full. */
  private async makeRoom(length: number): Promise<void> {
    const capacity = this.chunk?.length ?? 0;
    if (this.filled + length <= capacity) return;
    if (this.filled + length > this.chunkBytes && this.filled > 0) await this.flushChunk();
    const wanted = Math.max(this.filled + length, this.chunks > 0 ? this.chunkBytes : Math.min(this.chunkBytes, Math.max(FIRST_CHUNK_BYTES, 2 * capacity)));
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
    this.hash!.update(full);
    this.bytes += full.length;
    this.chunks += 1;
    await this.emit(this.unit, full, this.chunks);
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

  handleReadyForQuery(): void {
    if (this.completed < this.statements) this.reject(new Error('COPY ended without its row count'));
    else this.resolve();
  }

  /** An ErrorResponse of the server, or the connection lost. */
  handleError(error: Error): void {
    this.detach(Buffer.alloc(0));
    this.reject(error);
  }
}
