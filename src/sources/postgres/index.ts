import { availableParallelism } from 'node:os';
import { BackupError } from '../../errors.js';
import type { Snapshot, SnapshotContext, Source } from '../../types.js';
import { clientConfig, loadPg, type PostgresConnection } from './connection.js';

export { postgresRestorer } from './restore.js';
export type { PostgresTarget } from './restore.js';
export type { PostgresConnection } from './connection.js';

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
  /** How long to wait for each batch of table locks, and a COPY for its table's lock, before failing; default 30 s. */
  lockTimeoutMs?: number;
  /**
   * Tables larger than this on disk are copied (and restored) in pieces of about this size, side by
   * side; default 64 MiB with several jobs on a host with more cores than `jobs`, else no pieces.
   * For tests, which split small tables.
   * @internal
   */
  pieceBytes?: number;
  /**
   * Tables are copied by `jobs` COPY threads when their data on disk is at least this size, else on
   * the snapshot's own connection; default 32 MiB. For tests, which need the threads on small tables.
   * @internal
   */
  copyThreadsFromBytes?: number;
}

/**
 * A PostgreSQL database, backed up hot over the wire protocol with `pg` (no pg_dump binary): one
 * REPEATABLE READ snapshot, exported to `jobs` connections that COPY tables in parallel, largest
 * first (under 32 MiB of table data, the snapshot's own connection copies them; tables above 64 MiB in pieces of page ranges, PostgreSQL 14+, when the host has more cores than jobs); the schema is read from the catalogs in the same snapshot. An incremental holds the schema
 * in full and the rows of the tables (and the large objects) whose SHA-256 in the snapshot differs
 * from the previous backup's; the others are `.ref` entries naming the archive that holds them.
 * @public
 */
export function postgres(options: PostgresSourceOptions): Source {
  const config = clientConfig(options?.connection);
  const jobs = options.jobs ?? 2;
  if (!Number.isInteger(jobs) || jobs < 1) throw new BackupError('INVALID_OPTIONS', `postgres(${JSON.stringify(options.name)}): \`jobs\` must be a positive integer`);
  const lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
  const pieceBytes = options.pieceBytes ?? defaultPieceBytes(jobs);
  if (pieceBytes !== undefined && (!Number.isSafeInteger(pieceBytes) || pieceBytes < 1)) throw new BackupError('INVALID_OPTIONS', `postgres(${JSON.stringify(options.name)}): \`pieceBytes\` must be a positive integer`);
  return {
    kind: 'postgres',
    name: options.name,
    role: 'database',
    async open(context: SnapshotContext): Promise<Snapshot> {
      // The catalog reader and the COPY threads are imported when a backup starts, not with backupkit;
      // pg first, in a turn of the host's event loop of its own: loaded with them, it held the loop 50 ms.
      await loadPg();
      const { openSnapshot, COPY_THREADS_FROM_BYTES } = await import('./snapshot.js');
      const copyThreadsFromBytes = options.copyThreadsFromBytes ?? COPY_THREADS_FROM_BYTES;
      return await openSnapshot({ name: options.name, config, jobs, schemas: options.schemas, lockTimeoutMs, pieceBytes, copyThreadsFromBytes }, context);
    },
  };
}

/**
 * Pieces are read by TID range scans, which bypass a plain COPY's bulk-read ring: every page goes
 * through shared_buffers, which each backend faults in and churns (the server's CPU for the bench's
 * 800 MB table rose by a half). That pays only where spare cores copy the pieces side by side; with
 * no more cores than jobs, parsing, hashing and compressing the jobs' rows fill them already.
 */
function defaultPieceBytes(jobs: number): number | undefined {
  return jobs > 1 && jobs < availableParallelism() ? 64 * 1024 * 1024 : undefined;
}
