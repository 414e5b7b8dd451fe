import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import type pg from 'pg';
import { BackupError, asBackupError } from '../../errors.js';
import type { Entry, Snapshot, SnapshotContext } from '../../types.js';
import { BoundedQueue } from '../../util/bounded-queue.js';
import { cooperative } from '../../util/yield.js';
import { FIRST_NORMAL_OID } from './catalog/builder.js';
import { readCatalog } from './catalog/index.js';
import { connect, quoteLiteral } from './connection.js';
import { chunkPath, copyTablesOut, type CopyUnit } from './copy-out.js';
import { CopyThread } from './copy-thread.js';
import { STATE_VERSION, readState, renderRef, schemaFingerprint, type LargeObjectState, type PostgresState, type TableState } from './incremental.js';
import { renderRestoreSql } from './restore-script.js';
import { OUTPUT_SETTINGS, clientEncoding, piecePath, piecesSha256, renderSchemaSql, renderTocJson, type DataFigures, type TableDataSummary, type Toc, type TocTable } from './toc.js';

/** Table data is cut into entries of about this size: a tar entry needs its size up front. */
const CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * Tables smaller than this on disk are copied many to a request to a COPY thread, their chunks sent
 * back together: per table, only a COPY's round trip to the server remains.
 */
const BATCH_BYTES = CHUNK_BYTES;
/** …and at most this many: the jobs share the small tables too. */
const BATCH_TABLES = 256;
/**
 * Below this much table data on disk (by default), tables are copied on the snapshot's own
 * connection, on this thread: COPY threads, each loading its modules and connecting, cost more to
 * start than their parallel copying saves.
 */
export const COPY_THREADS_FROM_BYTES = 32 * 1024 * 1024;
/** TID range scans, which copy a table in pieces, came with PostgreSQL 14. */
const TID_RANGE_SCANS = 140000;
/** Large objects are read in pieces of this size. */
const LARGE_OBJECT_PIECE = 1024 * 1024;
/** Zeros for the hash of a large object that came short, as the archive pads it. */
const PADDING = Buffer.alloc(64 * 1024);

const BEGIN_SNAPSHOT = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';
/**
 * Scoped to the snapshot's transaction, on the application's connection settings. The catalog
 * queries' cost estimates pass jit_above_cost: compiling them took longer than running them (0.5 s
 * of the 1 s the relations of 2,000 tables took).
 */
const SNAPSHOT_SETTINGS = [...OUTPUT_SETTINGS.map((setting) => setting.replace(/^SET /, 'SET LOCAL ')), 'SET LOCAL jit = off'];
/**
 * A synchronized scan may start mid-table, and then the same rows come out in another order: an
 * unchanged table would hash differently from one backup to the next (pg_dump turns it off too).
 */
const COPY_SETTINGS = [...SNAPSHOT_SETTINGS, 'SET LOCAL synchronize_seqscans = off'];

/** What openSnapshot needs of a source's options, checked and completed by postgres(). */
export interface SnapshotOptions {
  /** The source's name: restore.sql of an incremental names the folders of the archives it refers to. */
  readonly name: string;
  readonly config: pg.ClientConfig;
  readonly jobs: number;
  readonly schemas: readonly string[] | undefined;
  readonly lockTimeoutMs: number;
  /**
   * A table larger than this on disk is copied in pieces of about this size, side by side by the
   * jobs (and restored so), instead of by one job while the others wait; undefined: never.
   */
  readonly pieceBytes: number | undefined;
  /** Tables are copied by COPY threads when their data on disk is at least this size, else on the snapshot's own connection. */
  readonly copyThreadsFromBytes: number;
}

/** Copies requests of units: a COPY thread, or the snapshot's own connection. */
type Copier = Pick<CopyThread, 'copy' | 'hash' | 'stop'>;

/** A whole table, or one piece (0-based) of a split one. */
interface Unit extends CopyUnit {
  readonly estimatedBytes: number;
}

/**
 * Opens the snapshot of a backup: one REPEATABLE READ transaction whose catalogs are read, exported
 * to `jobs` COPY threads that copy tables in parallel, largest first; or, when the tables' data is
 * small, copied on the snapshot's own connection.
 */
export async function openSnapshot({ name, config, jobs, schemas, lockTimeoutMs, pieceBytes, copyThreadsFromBytes }: SnapshotOptions, context: SnapshotContext): Promise<Snapshot> {
  const main = await connect(config, 'SOURCE_FAILED');
  let toc: Toc;
  let snapshotId: string;
  const threads: CopyThread[] = [];
  const idle: Copier[] = [];
  /** The tables are copied on the snapshot's connection, not by threads. */
  let inline = false;
  try {
    // The snapshot's connection may copy tables too (COPY_SETTINGS).
    await main.query([BEGIN_SNAPSHOT, ...COPY_SETTINGS].join(';\n'));
    // Exported before the catalogs are read (the transaction's first query fixes its snapshot either
    // way): the COPY threads start, load their modules and connect meanwhile, not after, when the
    // tables (and TOAST tables) of any schema are large by the planner's statistics (pg_relation_size
    // of thousands of tables took 0.3 s: each opens its relation).
    const [exported] = (await main.query<{ id: string; encoding: string; bytes: number }>(`
      SELECT pg_export_snapshot() AS id, pg_encoding_to_char(encoding) AS encoding,
             (SELECT coalesce(sum(c.relpages), 0)::float8 * current_setting('block_size')::int FROM pg_class c
               WHERE c.relkind IN ('r', 't') AND c.oid >= ${FIRST_NORMAL_OID}) AS bytes
        FROM pg_database WHERE datname = current_database()`)).rows;
    snapshotId = exported!.id;
    const startThreads = (): void => {
      for (let i = 0; i < jobs; i++) idle.push(openThread(snapshotId, clientEncoding({ database: { encoding: exported!.encoding } })));
    };
    if (exported!.bytes >= copyThreadsFromBytes) startThreads();
    // The catalogs are read on `jobs` connections in the snapshot: this one and jobs - 1 helpers, which
    // close once it is read, before the COPY threads are busy.
    const helpers = { count: jobs - 1, open: () => connect(config, 'SOURCE_FAILED'), setup: [BEGIN_SNAPSHOT, `SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshotId)}`, ...SNAPSHOT_SETTINGS] };
    toc = await readCatalog(main, { schemas, lockTimeoutMs, warn: (warning) => context.warn(warning), helpers });
    if (pieceBytes !== undefined && toc.server.versionNum >= TID_RANGE_SCANS) {
      const { rows: [block] } = await main.query<{ size: number }>("SELECT current_setting('block_size')::int AS size");
      toc = splitTables(toc, pieceBytes, block!.size);
    }
    if (threads.length === 0) {
      // The statistics may be stale: the tables' sizes on disk, read with the catalogs, decide.
      inline = toc.tables.reduce((sum, table) => sum + table.estimatedBytes, 0) < copyThreadsFromBytes;
      if (inline) {
        idle.push(inlineCopier(main));
        // The snapshot's connection holds every table's lock already, but not always an extension's configuration table's.
        await main.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`);
      } else {
        startThreads();
      }
    }
  } catch (cause) {
    await Promise.all([main.end().catch(() => {}), ...threads.map((thread) => thread.stop().catch(() => {}))]);
    throw asBackupError(cause, 'SOURCE_FAILED', `Reading the schema of PostgreSQL database ${JSON.stringify(config.database ?? '')} failed`);
  }
  /** Requests copied at a time: one on the snapshot's connection, or one by each thread. */
  const lanes = inline ? 1 : jobs;
  const startedAt = new Date();
  /** In `changes` mode, the tables whose rows the previous backup's chain already holds, by name. */
  let held: Map<string, TableState> | undefined;
  /** In `changes` mode, the large objects whose bytes the chain already holds, by OID. */
  let heldBlobs: Map<number, LargeObjectState> | undefined;
  /** Each table's and large object's data as the chain holds it after this backup: what state() saves. */
  let saved: { tables: TableState[]; largeObjects: LargeObjectState[] } | undefined;
  return {
    async estimate() {
      const sent = toc.tables.filter((table) => !held?.has(table.qualifiedName));
      const blobs = toc.largeObjects.filter((lo) => !heldBlobs?.has(lo.oid));
      const bytes = sent.reduce((sum, t) => sum + t.estimatedBytes, 0) + blobs.reduce((sum, lo) => sum + lo.size, 0);
      return { bytes, items: 6 + 2 * toc.tables.length + toc.largeObjects.length };
    },
    async changes() {
      if (!context.previous) return { mode: 'full', unchanged: false };
      const previous = await readState(context.previous, toc.database.encoding);
      if (typeof previous === 'string') {
        context.warn({ code: 'INCREMENTAL_BASE_REJECTED', message: `The previous backup cannot be built on (${previous}): this PostgreSQL source is backed up in full` });
        return { mode: 'full', unchanged: false };
      }
      held = await unchangedTables(previous);
      heldBlobs = await unchangedLargeObjects(previous);
      const unchanged = previous.schema === (await schemaFingerprint(toc)) && held.size === toc.tables.length && heldBlobs.size === toc.largeObjects.length;
      return { mode: 'changes', unchanged };
    },
    async *entries(): AsyncGenerator<Entry> {
      const file = (path: string, text: string): Entry => {
        const data = Buffer.from(text);
        return { path, type: 'file', mode: 0o644, mtime: startedAt, size: data.length, body: async function* () { yield data; } };
      };
      yield file('toc.json', await renderTocJson(toc));
      yield file('schema.sql', await renderSchemaSql(toc));

      yield folder('data', startedAt);
      // An unchanged table's rows stay where the chain holds them: a small .ref instead of its chunks.
      const refs = new Map<number, TableState>();
      for (const table of toc.tables) {
        const state = held?.get(table.qualifiedName);
        if (state === undefined) continue;
        refs.set(table.entry, state);
        if (state.chunks > 0) yield file(`${table.dataPath}.ref`, renderRef(state));
      }
      const sent = yield* copyTables(toc.tables.filter((table) => !refs.has(table.entry)), snapshotId, context.signal, startedAt);
      if (toc.largeObjects.length > 0) yield folder('blobs', startedAt);
      const blobs: LargeObjectState[] = [];
      for (const lo of toc.largeObjects) {
        const state = heldBlobs?.get(lo.oid);
        if (state) {
          blobs.push(state);
          yield file(`blobs/${lo.oid}.ref`, renderRef(state));
          continue;
        }
        const path = `blobs/${lo.oid}`;
        yield largeObjectEntry(main, path, lo.oid, lo.size, startedAt, (sha256) => blobs.push({ oid: lo.oid, sha256, bytes: lo.size, archive: context.archive, path }));
      }

      const heldSummaries = [...refs].map(([entry, state]): TableDataSummary => ({ entry, rows: state.rows, bytes: state.bytes, chunks: state.chunks, sha256: state.sha256, ...(state.pieces ? { pieces: state.pieces } : {}) }));
      const summaries = [...sent, ...heldSummaries].sort((a, b) => a.entry - b.entry);
      const byEntry = new Map(toc.tables.map((table) => [table.entry, table]));
      const tables = summaries.map((summary) => {
        const table = byEntry.get(summary.entry)!;
        return refs.get(summary.entry) ?? { table: table.qualifiedName, sha256: summary.sha256, bytes: summary.bytes, rows: summary.rows, chunks: summary.chunks, ...(summary.pieces ? { pieces: summary.pieces } : {}), archive: context.archive, path: table.dataPath };
      });
      saved = { tables, largeObjects: blobs };
      yield file('data.json', `${JSON.stringify({ tables: summaries }, null, 1)}\n`);
      yield file('restore.sql', await renderRestoreSql(toc, summaries, { source: name, refs, largeObjects: heldBlobs ?? new Map() }));
    },
    async *state() {
      if (saved === undefined) throw new BackupError('SOURCE_FAILED', 'The state of a PostgreSQL source was asked for before its entries were read');
      const state: PostgresState = { version: STATE_VERSION, encoding: toc.database.encoding, schema: await schemaFingerprint(toc), ...saved };
      yield Buffer.from(`${JSON.stringify(state)}\n`);
    },
    async close() {
      await Promise.all([main.end().catch(() => {}), ...threads.map((thread) => thread.stop())]);
    },
  };

  /**
   * The tables of the previous state whose COPY text in this snapshot hashes the same, found by
   * reading each once on the COPY threads (changed ones are read again when sent: cheaper than
   * spooling every table to local disk to send a few).
   */
  async function unchangedTables(previous: PostgresState): Promise<Map<string, TableState>> {
    const before = new Map(previous.tables.map((state) => [state.table, state]));
    const same = new Map<string, TableState>();
    const limit = pLimit(lanes);
    const stop = new AbortController();
    const pieces = new Map<number, DataFigures[]>();
    await Promise.all(
      workLargestFirst(toc.tables.filter((table) => before.has(table.qualifiedName))).map((units) =>
        limit(async () => {
          // After a failure, the tables still waiting are not read.
          if (stop.signal.aborted) return;
          context.signal.throwIfAborted();
          const thread = idle.pop() ?? openThread(snapshotId, clientEncoding(toc));
          await thread
            .hash(units, async (unit, figures) => {
              const { table, piece } = units[unit]!;
              const summary = collect(table, piece, figures, pieces);
              if (summary === undefined) return;
              const state = before.get(table.qualifiedName)!;
              if (summary.sha256 === state.sha256 && summary.bytes === state.bytes && summary.rows === state.rows) same.set(table.qualifiedName, state);
            })
            .catch((error: unknown) => {
              stop.abort(error);
              throw asBackupError(error, 'SOURCE_FAILED', `Reading the rows of ${describeUnits(units)} failed`);
            });
          idle.push(thread);
        }),
      ),
    );
    return same;
  }

  /**
   * The large objects of the previous state whose bytes in this snapshot hash the same, read in the
   * snapshot transaction (one that changed size is not read).
   */
  async function unchangedLargeObjects(previous: PostgresState): Promise<Map<number, LargeObjectState>> {
    const before = new Map(previous.largeObjects.map((state) => [state.oid, state]));
    const same = new Map<number, LargeObjectState>();
    for (const lo of toc.largeObjects) {
      const state = before.get(lo.oid);
      if (state?.bytes !== lo.size) continue;
      const hash = createHash('sha256');
      try {
        for await (const piece of readLargeObject(main, lo.oid, lo.size)) {
          context.signal.throwIfAborted();
          hash.update(piece);
        }
      } catch (error) {
        throw asBackupError(error, 'SOURCE_FAILED', `Reading large object ${lo.oid} failed`);
      }
      if (hash.digest('hex') === state.sha256) same.set(lo.oid, state);
    }
    return same;
  }

  async function* copyTables(tables: readonly TocTable[], snapshot: string, signal: AbortSignal, mtime: Date): AsyncGenerator<Entry, TableDataSummary[]> {
    const queue = new BoundedQueue<Entry>(lanes);
    const summaries: TableDataSummary[] = [];
    const stop = new AbortController();
    const workerSignal = AbortSignal.any([signal, stop.signal]);
    const limit = pLimit(lanes);
    const pieces = new Map<number, DataFigures[]>();
    const folders = new Set<string>();
    const tasks = workLargestFirst(tables).map((units) =>
      limit(async () => {
        if (workerSignal.aborted) return;
        const thread = idle.pop() ?? openThread(snapshot, clientEncoding(toc));
        await thread.copy(
          units,
          async (unit, chunk, index, sha256) => {
            const { table, piece } = units[unit]!;
            const path = piecePath(table, piece);
            if (index === 1) {
              // A split table's folder comes before the first of its pieces' folders.
              for (const dir of [table.dataPath, path]) {
                if (folders.has(dir)) continue;
                folders.add(dir);
                await queue.push(folder(dir, mtime));
              }
            }
            // The body is the chunk whole, exactly its size: the thread's hash is the stored form's.
            await queue.push({ path: chunkPath({ dataPath: path }, index), type: 'file', mode: 0o644, mtime, size: chunk.length, body: async function* () { yield chunk; }, bodySha256: () => sha256 });
          },
          async (unit, figures) => {
            const summary = collect(units[unit]!.table, units[unit]!.piece, figures, pieces);
            if (summary) summaries.push(summary);
          },
        );
        idle.push(thread);
      }).catch((error: unknown) => {
        queue.fail(asBackupError(error, 'SOURCE_FAILED', `Copying the rows of ${describeUnits(units)} failed`));
        stop.abort(error);
      }),
    );
    const work = Promise.all(tasks).then(() => queue.end());
    try {
      yield* queue.drain();
    } finally {
      stop.abort(new BackupError('ABORTED', 'The backup stopped'));
      await work;
    }
    return summaries;
  }

  /**
   * Copies on the snapshot's connection, on this thread. Chunks are hashed here (a thread hashes
   * its own). The rows of many small tables may be in the socket's buffer at once, and go through
   * the archive in promise chains: the event loop is given a turn every 10 ms of that work.
   */
  function inlineCopier(client: pg.Client): Copier {
    const run = async (units: readonly CopyUnit[], onChunk: (unit: number, chunk: Buffer, index: number) => Promise<void>, onDone: (unit: number, figures: DataFigures) => Promise<void>) => {
      const yieldNow = cooperative();
      let copied = 0;
      const chunk = async (unit: number, data: Buffer, index: number): Promise<void> => {
        await onChunk(unit, data, index);
        await yieldNow();
      };
      await copyTablesOut(client, units, CHUNK_BYTES, chunk, async (unit, figures) => {
        copied += 1;
        await onDone(unit, figures);
        await yieldNow();
      }).catch((error: unknown) => {
        throw asBackupError(error, 'SOURCE_FAILED', `Copying the rows of ${units[copied]?.table.qualifiedName ?? 'a table'} failed`);
      });
    };
    return {
      copy: (units, onChunk, onDone) => run(units, (unit, chunk, index) => onChunk(unit, chunk, index, createHash('sha256').update(chunk).digest('hex')), onDone),
      hash: (units, onDone) => run(units, async () => {}, onDone),
      // Ended with the snapshot's connection.
      stop: async () => {},
    };
  }

  /**
   * A COPY thread whose connection sees exactly the exported snapshot, nothing committed after it.
   * Its COPY waits for a table lock only when an ACCESS EXCLUSIVE request (ALTER TABLE, VACUUM
   * FULL) queued behind this snapshot's own lock: that request waits for the backup, and without a
   * lock timeout the backup would wait for it for ever (pg_dump's workers use NOWAIT for this).
   */
  function openThread(snapshotId: string, encoding: string[]): CopyThread {
    const settings = [...COPY_SETTINGS, `SET LOCAL lock_timeout = ${Math.max(1, Math.floor(lockTimeoutMs))}`, ...encoding];
    const thread = CopyThread.start({ config, snapshotId, settings, chunkBytes: CHUNK_BYTES, credits: 2 });
    threads.push(thread);
    // A cancel ends a COPY at once, not when its next chunk comes (or a lock it waits for is granted).
    context.signal.addEventListener('abort', () => void thread.stop(), { once: true });
    return thread;
  }
}

/**
 * The tables above `pieceBytes` on disk, given pieces of about that many bytes of heap pages (format
 * version 2); the others, and extension configuration tables (copied with their condition), unchanged.
 */
function splitTables(toc: Toc, pieceBytes: number, blockSize: number): Toc {
  let split = false;
  const tables = toc.tables.map((table) => {
    if (table.estimatedBytes <= pieceBytes || table.condition !== undefined || table.columns.length === 0) return table;
    const pages = Math.floor(table.estimatedBytes / blockSize);
    const count = Math.min(pages, Math.ceil(table.estimatedBytes / pieceBytes));
    if (count < 2) return table;
    split = true;
    return { ...table, pieces: Array.from({ length: count }, (_, i) => Math.floor((pages * i) / count)) };
  });
  return split ? { ...toc, formatVersion: 2, tables } : toc;
}

/**
 * The jobs' requests, largest first: each table or piece of a split table at least BATCH_BYTES on
 * disk alone (a split table's pieces go to the jobs like tables of their size), smaller ones
 * together, up to BATCH_BYTES or BATCH_TABLES a request.
 */
function workLargestFirst(tables: readonly TocTable[]): Unit[][] {
  const units = tables.flatMap((table): Unit[] =>
    table.pieces === undefined
      ? [{ table, piece: undefined, estimatedBytes: table.estimatedBytes }]
      : table.pieces.map((_, piece) => ({ table, piece, estimatedBytes: table.estimatedBytes / table.pieces!.length })),
  );
  const work: Unit[][] = [];
  let batch: Unit[] = [];
  let batchBytes = 0;
  for (const unit of units.sort((a, b) => b.estimatedBytes - a.estimatedBytes)) {
    if (unit.estimatedBytes >= BATCH_BYTES) {
      work.push([unit]);
      continue;
    }
    if (batch.length === BATCH_TABLES || (batch.length > 0 && batchBytes + unit.estimatedBytes > BATCH_BYTES)) {
      work.push(batch);
      batch = [];
      batchBytes = 0;
    }
    batch.push(unit);
    batchBytes += unit.estimatedBytes;
  }
  if (batch.length > 0) work.push(batch);
  return work;
}

/** For messages: the table of a request, or its first and how many more. */
function describeUnits(units: readonly Unit[]): string {
  const first = units[0]?.table.qualifiedName ?? '';
  return units.length === 1 ? first : `${first} and ${units.length - 1} more tables`;
}

/**
 * A unit's figures, gathered per table: the table's summary once its last piece (or the whole
 * table) is done, undefined while pieces are missing.
 */
function collect(table: TocTable, piece: number | undefined, figures: DataFigures, pieces: Map<number, DataFigures[]>): TableDataSummary | undefined {
  if (piece === undefined) return { entry: table.entry, ...figures };
  const done = pieces.get(table.entry) ?? [];
  pieces.set(table.entry, done);
  done[piece] = figures;
  if (Object.keys(done).length < table.pieces!.length) return undefined;
  const sum = (field: 'rows' | 'bytes' | 'chunks'): number => done.reduce((total, p) => total + p[field], 0);
  return { entry: table.entry, rows: sum('rows'), bytes: sum('bytes'), chunks: sum('chunks'), sha256: piecesSha256(done), pieces: done };
}

function folder(path: string, mtime: Date): Entry {
  return { path, type: 'directory', mode: 0o755, mtime, size: 0 };
}

/**
 * A large object, read in pieces inside the snapshot transaction; `hashed` gets the SHA-256 of its
 * bytes once they are read, and the archive takes it (padded as the archive pads) as the body's.
 */
function largeObjectEntry(client: pg.Client, path: string, oid: number, size: number, mtime: Date, hashed: (sha256: string) => void): Entry {
  let stored: string | undefined;
  return {
    path,
    type: 'file',
    mode: 0o644,
    mtime,
    size,
    body: async function* () {
      const hash = createHash('sha256');
      let read = 0;
      for await (const piece of readLargeObject(client, oid, size)) {
        hash.update(piece);
        read += piece.length;
        yield piece;
      }
      // Never more than `size` bytes are asked for; fewer (the snapshot's size says not) the archive pads with zeros.
      const padded = hash.copy();
      for (let left = size - read; left > 0; left -= PADDING.length) padded.update(PADDING.subarray(0, Math.min(left, PADDING.length)));
      stored = padded.digest('hex');
      hashed(hash.digest('hex'));
    },
    bodySha256: () => {
      if (stored === undefined) throw new BackupError('SOURCE_FAILED', `The hash of large object ${oid} was asked for before its bytes were read`);
      return stored;
    },
  };
}

async function* readLargeObject(client: pg.Client, oid: number, size: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < size; offset += LARGE_OBJECT_PIECE) {
    const { rows } = await client.query<{ data: Buffer }>('SELECT lo_get($1, $2, $3) AS data', [oid, offset, Math.min(LARGE_OBJECT_PIECE, size - offset)]);
    yield rows[0]!.data;
  }
}
