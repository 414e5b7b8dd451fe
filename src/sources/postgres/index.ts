import pLimit from 'p-limit';
import type pg from 'pg';
import { BackupError, asBackupError } from '../../errors.js';
import type { Entry, Snapshot, SnapshotContext, Source } from '../../types.js';
import { BoundedQueue } from '../../util/bounded-queue.js';
import { readCatalog } from './catalog.js';
import { clientConfig, connect, type PostgresConnection } from './connection.js';
import { chunkPath } from './copy-out.js';
import { CopyThread } from './copy-thread.js';
import { renderRestoreSql } from './restore-script.js';
import { OUTPUT_SETTINGS, clientEncoding, renderSchemaSql, type TableDataSummary, type Toc } from './toc.js';

export { postgresRestorer } from './restore.js';
export type { PostgresTarget } from './restore.js';
export type { PostgresConnection } from './connection.js';

/** Table data is cut into entries of about this size: a tar entry needs its size up front. */
const CHUNK_BYTES = 4 * 1024 * 1024;
/** The server's error for bytes that are not valid in the client encoding. */
const CHARACTER_NOT_IN_REPERTOIRE = '22021';
/** Large objects are read in pieces of this size. */
const LARGE_OBJECT_PIECE = 1024 * 1024;

/**
 * Options of {@link postgres}.
 * @public
 */
export interface PostgresSourceOptions {
  /** Unique name of this source in its Database. */
  name: string;
  /** The server and database: a connection string, a `pg` client config, or the application's `pg.Pool`. */
  connection: PostgresConnection;
  /** Parallel COPY connections; default 2. Each is one more connection to the server. */
  jobs?: number;
  /** Back up only these schemas; default: every schema but the system ones. */
  schemas?: string[];
  /** How long to wait for each batch of table locks before failing; default 30 s. */
  lockTimeoutMs?: number;
}

/** What runs in the snapshot transaction before anything is read, as pg_dump's session setup. */
/** Scoped to the snapshot's transaction, on the application's connection settings. */
const SNAPSHOT_SETTINGS = OUTPUT_SETTINGS.map((setting) => setting.replace(/^SET /, 'SET LOCAL '));

/**
 * A PostgreSQL database, backed up hot over the wire protocol with `pg` (no pg_dump binary): one
 * REPEATABLE READ snapshot, exported to `jobs` connections that COPY tables in parallel, largest
 * first; the schema is read from the catalogs in the same snapshot.
 * @public
 */
export function postgres(options: PostgresSourceOptions): Source {
  const config = clientConfig(options?.connection);
  const jobs = options.jobs ?? 2;
  if (!Number.isInteger(jobs) || jobs < 1) throw new BackupError('INVALID_OPTIONS', `postgres(${JSON.stringify(options.name)}): \`jobs\` must be a positive integer`);
  const lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
  return {
    kind: 'postgres',
    name: options.name,
    role: 'database',
    async open(context: SnapshotContext): Promise<Snapshot> {
      const main = await connect(config, 'SOURCE_FAILED');
      let toc: Toc;
      let snapshotId: string;
      try {
        await main.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        for (const setting of SNAPSHOT_SETTINGS) await main.query(setting);
        toc = await readCatalog(main, { schemas: options.schemas, lockTimeoutMs, warn: (warning) => context.warn(warning) }).catch((cause: { code?: string }) => {
          // A SQL_ASCII database takes any bytes; the catalogs are read as UTF-8, which the server checks.
          if (cause.code !== CHARACTER_NOT_IN_REPERTOIRE) throw cause;
          throw asBackupError(cause, 'SOURCE_FAILED', `Database ${JSON.stringify(config.database ?? '')} has names, comments or definitions that are not UTF-8, which backupkit reads as UTF-8`,
            'Only rows may hold bytes that are not UTF-8 in a SQL_ASCII database: rewrite those catalog texts in UTF-8 (or ASCII), or back this database up with pg_dump.');
        });
        snapshotId = (await main.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0]!.id;
      } catch (cause) {
        await main.end().catch(() => {});
        throw asBackupError(cause, 'SOURCE_FAILED', `Reading the schema of PostgreSQL database ${JSON.stringify(config.database ?? '')} failed`);
      }
      const startedAt = new Date();
      const threads: CopyThread[] = [];
      return {
        async estimate() {
          const bytes = toc.tables.reduce((sum, t) => sum + t.estimatedBytes, 0) + toc.largeObjects.reduce((sum, lo) => sum + lo.size, 0);
          return { bytes, items: 6 + 2 * toc.tables.length + toc.largeObjects.length };
        },
        async *entries(): AsyncGenerator<Entry> {
          const file = (path: string, text: string): Entry => {
            const data = Buffer.from(text);
            return { path, type: 'file', mode: 0o644, mtime: startedAt, size: data.length, body: async function* () { yield data; } };
          };
          yield file('toc.json', `${JSON.stringify(toc, null, 1)}\n`);
          yield file('schema.sql', renderSchemaSql(toc));

          yield folder('data', startedAt);
          const summaries = yield* copyTables(toc, snapshotId, threads, context.signal, startedAt);
          if (toc.largeObjects.length > 0) yield folder('blobs', startedAt);
          for (const lo of toc.largeObjects) yield largeObjectEntry(main, lo.oid, lo.size, startedAt);

          yield file('data.json', `${JSON.stringify({ tables: summaries }, null, 1)}\n`);
          yield file('restore.sql', renderRestoreSql(toc, summaries));
        },
        async close() {
          await Promise.all([main.end().catch(() => {}), ...threads.map((thread) => thread.stop())]);
        },
      };

      async function* copyTables(toc: Toc, snapshot: string, threads: CopyThread[], signal: AbortSignal, mtime: Date): AsyncGenerator<Entry, TableDataSummary[]> {
        const queue = new BoundedQueue<Entry>(jobs);
        const idle: CopyThread[] = [];
        const summaries: TableDataSummary[] = [];
        const stop = new AbortController();
        const workerSignal = AbortSignal.any([signal, stop.signal]);
        const limit = pLimit(jobs);
        const largestFirst = [...toc.tables].sort((a, b) => b.estimatedBytes - a.estimatedBytes);
        const tasks = largestFirst.map((table) =>
          limit(async () => {
            if (workerSignal.aborted) return;
            const thread = idle.pop() ?? openThread(snapshot, threads, clientEncoding(toc));
            const summary = await thread.copy(table, async (chunk, index) => {
              if (index === 1) await queue.push(folder(table.dataPath, mtime));
              await queue.push({ path: chunkPath(table, index), type: 'file', mode: 0o644, mtime, size: chunk.length, body: async function* () { yield chunk; } });
            });
            summaries.push(summary);
            idle.push(thread);
          }).catch((error: unknown) => {
            queue.fail(asBackupError(error, 'SOURCE_FAILED', `Copying the rows of ${table.qualifiedName} failed`));
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
        return summaries.sort((a, b) => a.entry - b.entry);
      }
    },
  };

  /** A COPY thread whose connection sees exactly the exported snapshot, nothing committed after it. */
  function openThread(snapshotId: string, threads: CopyThread[], encoding: string[]): CopyThread {
    const thread = CopyThread.start({ config, snapshotId, settings: [...SNAPSHOT_SETTINGS, ...encoding], chunkBytes: CHUNK_BYTES, credits: 2 });
    threads.push(thread);
    return thread;
  }
}

function folder(path: string, mtime: Date): Entry {
  return { path, type: 'directory', mode: 0o755, mtime, size: 0 };
}

/** A large object, read in pieces inside the snapshot transaction. */
function largeObjectEntry(client: pg.Client, oid: number, size: number, mtime: Date): Entry {
  return {
    path: `blobs/${oid}`,
    type: 'file',
    mode: 0o644,
    mtime,
    size,
    body: async function* () {
      for (let offset = 0; offset < size; offset += LARGE_OBJECT_PIECE) {
        const { rows } = await client.query<{ data: Buffer }>('SELECT lo_get($1, $2, $3) AS data', [oid, offset, Math.min(LARGE_OBJECT_PIECE, size - offset)]);
        yield rows[0]!.data;
      }
    },
  };
}
