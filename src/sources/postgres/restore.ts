import type pg from 'pg';
import { BackupError } from '../../errors.js';
import type { RestoreSink, Restorer, ScratchTarget } from '../../types.js';
import { clientConfig, connect, quoteIdent, type PostgresConnection } from './connection.js';
import { Lease, newTag } from './lease.js';

/**
 * Restore target of a PostgreSQL source.
 * @public
 */
export interface PostgresTarget {
  /** The server, as for {@link postgres}; its database is used for CREATE/DROP/RENAME DATABASE. */
  connection: PostgresConnection;
  /** The database to restore into: it must not exist (it is created) or hold no user objects. */
  database: string;
  /** Restore owners and grants (default); `false` skips both, as `pg_restore --no-owner --no-acl`. */
  ownership?: boolean;
  /** Parallel connections for creating the schema, COPY, index builds and ANALYZE; default 2. */
  jobs?: number;
  /**
   * Create tables, indexes and materialized views in the tablespaces they were in, and the database
   * with its default tablespace (default `true`): the server must have tablespaces of those names, or
   * the restore fails before creating anything. `false` puts everything in the server's default
   * tablespace, as `pg_restore --no-tablespaces` does.
   */
  tablespaces?: boolean;
  /**
   * When `connection` is a superuser: `false` (default) runs the archive's SQL as a temporary role
   * without privileges beyond the staging database it owns; `true` runs it as the superuser, as
   * `pg_restore` does, for archives that need it (untrusted extensions, C functions). Only for
   * archives you made and can vouch for: sign them and restore with `verifySignature`.
   */
  trustArchiveSql?: boolean;
}

/** A target checked and completed by parseTarget. */
export interface ParsedTarget {
  readonly connection: PostgresConnection;
  readonly database: string;
  readonly admin: pg.ClientConfig;
  readonly ownership: boolean;
  readonly jobs: number;
  readonly tablespaces: boolean;
  readonly trustArchiveSql: boolean;
}

/** The restore's phases and checks, imported when a restore or check starts: importing backupkit does not pay for them. */
const loadSink = (): Promise<typeof import('./restore-sink.js')> => import('./restore-sink.js');

/**
 * Restores a PostgreSQL source as pg_restore does, into a staging database renamed into place at
 * commit (PostgresRestoreSink, in restore-sink.ts, runs the phases).
 */
export const postgresRestorer: Restorer<ParsedTarget> = {
  kind: 'postgres',

  parseTarget(target, sourceName) {
    const t = target as Partial<PostgresTarget> | undefined;
    if (typeof t?.database !== 'string' || t.database === '' || t.connection === undefined) {
      throw new BackupError('INVALID_OPTIONS', `The target of PostgreSQL source "${sourceName}" needs a \`connection\` and a \`database\``);
    }
    const jobs = t.jobs ?? 2;
    if (!Number.isInteger(jobs) || jobs < 1) throw new BackupError('INVALID_OPTIONS', `The target of "${sourceName}": \`jobs\` must be a positive integer`);
    const given = clientConfig(t.connection).database;
    // DROP and RENAME DATABASE cannot run while connected to that database.
    const admin = clientConfig(t.connection, given && given !== t.database ? given : 'postgres');
    return { connection: t.connection, database: t.database, admin, ownership: t.ownership ?? true, jobs, tablespaces: t.tablespaces ?? true, trustArchiveSql: t.trustArchiveSql === true };
  },

  async check(target) {
    await (await loadSink()).refuseNonEmpty(target);
  },

  async scratch(space, sourceName): Promise<ScratchTarget> {
    // The server named for throwaway databases, else libpq's environment (PGHOST, PGPORT, PGUSER...).
    const connection = (space.servers['postgres'] ?? {}) as PostgresConnection;
    const tag = newTag();
    const database = `backupkit_scratch_${tag}`;
    const { admin } = this.parseTarget({ connection, database }, sourceName);
    // An unreachable scratch server is a connection failure, like a source's, not a failed restore.
    const probe = await connect(admin, 'SOURCE_FAILED');
    await probe.end().catch(() => {});
    // Held until remove(): a restore that sweeps leftovers meanwhile leaves this database alone.
    const lease = await Lease.take(admin, tag);
    return {
      target: { connection, database },
      async remove() {
        try {
          await lease.client.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
        } finally {
          await lease.release();
        }
      },
    };
  },

  async begin(target, signal, intent): Promise<RestoreSink> {
    const { PostgresRestoreSink } = await loadSink();
    const sink = await PostgresRestoreSink.begin(target, signal, intent?.verified !== false);
    // A plain object, as every sink is: a wrapper may spread it (`{ ...sink, commit }`), which drops a class's methods.
    return {
      layer: (layer) => sink.layer(layer),
      write: (entry) => sink.write(entry),
      prepare: () => sink.prepare(),
      verify: () => sink.verify(),
      commit: () => sink.commit(),
      abort: () => sink.abort(),
    };
  },
};
