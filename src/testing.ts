/**
 * Restore drills for an application's own test suite: restore a backup into throwaway targets,
 * assert on the restored data with any test runner, and have everything removed afterwards.
 *
 * @example
 * ```ts
 * import { withRestoredBackup } from 'backupkit/testing';
 * await withRestoredBackup({ from: directory({ path: '/backups' }) }, async (restored) => {
 *   const db = new Sqlite(restored.sqlitePath('app'), { readonly: true });
 *   assert.ok(db.prepare('SELECT count(*) FROM users').pluck().get() > 0);
 *   db.close();
 * });
 * ```
 *
 * @packageDocumentation
 */
import type { DecryptOptions } from './archive/encryption.js';
import { BackupError } from './errors.js';
import { restorersWith, type RestoreTargets } from './kinds.js';
import type { OperationContext } from './operation.js';
import type { RestoreEvents } from './restore/operation.js';
import { restoreIntoScratch, type ScratchOptions } from './restore/verify.js';
import { clientConfig, type PostgresClientConfig } from './sources/postgres/connection.js';
import type { Destination, Restorer } from './types.js';

export type { ScratchOptions } from './restore/verify.js';

/**
 * Options of {@link withRestoredBackup}.
 * @public
 */
export interface RestoreDrillOptions {
  /** The destination holding the backup. */
  from: Destination;
  /** The archive's name; default: the newest on `from`. */
  backup?: string;
  /** Instead of `backup`: the newest backup made at or before this time (to the second its name keeps). */
  asOf?: Date;
  /** The passphrase or private key of an encrypted backup. */
  decrypt?: DecryptOptions;
  /** Where the throwaway targets go: a parent folder, and a PostgreSQL server for temporary databases. */
  scratch?: ScratchOptions;
  /** Restorers for source kinds backupkit does not know; `registerSource` makes a kind known everywhere at once. */
  restorers?: readonly Restorer[];
  /** Aborts the restore; throwaway targets are removed. */
  signal?: AbortSignal;
}

/**
 * A backup restored into throwaway targets, as handed to the callback of {@link withRestoredBackup}.
 * @public
 */
export interface RestoredBackup {
  /** The archive restored. */
  readonly name: string;
  /** The archives read, newest first: `[name]` for a full; an incremental's chain back to what holds every source in full. */
  readonly chain: readonly string[];
  /** When the backup was taken. */
  readonly createdAt: Date;
  /** Every source of the backup, with the target it was restored into. */
  readonly sources: ReadonlyArray<{ readonly name: string; readonly kind: string; readonly target: unknown }>;
  /**
   * The throwaway target a source was restored into, as its kind's `Restorer.scratch` made it,
   * typed by kind (see `RestoreTargets` in `backupkit`): `restored.target('store', 'kv').path`. Throws
   * `INVALID_OPTIONS` if the backup has no such source, or one of another kind.
   */
  target<Kind extends keyof RestoreTargets>(source: string, kind: Kind): RestoreTargets[Kind];
  /** The restored database file of a SQLite source: `target(source, 'sqlite').path`. */
  sqlitePath(source: string): string;
  /** The restored folder of a files source: `target(source, 'files').dir`. */
  filesDir(source: string): string;
  /** How to connect to the restored database of a PostgreSQL source: `new pg.Client(restored.postgres('pg'))`. */
  postgres(source: string): PostgresClientConfig;
}

/**
 * Restores every source of a backup into throwaway targets (temporary folders, temporary
 * PostgreSQL databases), hands them to `use`, and removes them all when `use` settles, whatever
 * happened. Returns what `use` returns. The restore is the real one, with every check of
 * `Database.restore`.
 * @public
 */
export async function withRestoredBackup<T>(options: RestoreDrillOptions, use: (restored: RestoredBackup) => T | Promise<T>): Promise<T> {
  if (typeof options?.from?.open !== 'function') throw new BackupError('INVALID_OPTIONS', '`from` must be a destination');
  if (typeof use !== 'function') throw new BackupError('INVALID_OPTIONS', 'withRestoredBackup needs a callback');
  let createdAt = new Date(Number.NaN);
  const context: OperationContext<RestoreEvents> = {
    signal: options.signal ?? new AbortController().signal,
    emit: (event, ...args) => {
      if (event === 'start') createdAt = (args as RestoreEvents['start'])[0].createdAt;
    },
  };
  const plan = { from: options.from, backup: options.backup, asOf: options.asOf, targets: {}, restorers: restorersWith(options.restorers), decrypt: options.decrypt };
  return restoreIntoScratch(plan, options.scratch, context, async (run) => {
    // The throwaway targets themselves: the result's copies have their passwords redacted.
    const sources = run.result.sources.map(({ name, kind }) => ({ name, kind, target: run.scratch.get(name)?.target }));
    const target = <Kind extends keyof RestoreTargets>(source: string, kind: Kind): RestoreTargets[Kind] => {
      const found = sources.find((s) => s.name === source);
      if (!found) throw new BackupError('INVALID_OPTIONS', `The backup has no source named "${source}"; it has: ${sources.map((s) => s.name).join(', ')}`);
      if (found.kind !== kind) throw new BackupError('INVALID_OPTIONS', `Source "${source}" is of kind "${found.kind}", not "${kind}"`);
      return found.target as RestoreTargets[Kind];
    };
    // The shorthands of the built-in kinds, kept for the drills written with them.
    return await use({
      name: run.result.name,
      chain: run.result.chain,
      createdAt,
      sources,
      target,
      sqlitePath: (source) => target(source, 'sqlite').path,
      filesDir: (source) => target(source, 'files').dir,
      postgres: (source) => {
        const { connection, database } = target(source, 'postgres');
        const config = clientConfig(connection, database);
        delete config.application_name; // backupkit's own label, not the test's
        return config;
      },
    });
  });
}
