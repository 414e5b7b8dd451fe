/**
 * The registry of source and destination kinds: the one place that lists the built-in ones. The
 * facade, the restore engine, `verifyBackup`, `backupkit/testing` and the command line look kinds
 * up here and name none; a kind defined in an application joins them through `registerSource` or
 * `registerDestination`.
 */
import { azureKind } from './destinations/azure/kind.js';
import { ftpKind } from './destinations/ftp/kind.js';
import { directoryKind } from './destinations/directory/kind.js';
import { memoryKind } from './destinations/memory/kind.js';
import { gcsKind, s3Kind } from './destinations/s3/kind.js';
import { sftpKind } from './destinations/sftp/kind.js';
import { BackupError } from './errors.js';
import { filesKind } from './sources/files/kind.js';
import type { FilesTarget } from './sources/files/index.js';
import { postgresKind } from './sources/postgres/kind.js';
import type { PostgresConnection, PostgresTarget } from './sources/postgres/index.js';
import { sqliteKind } from './sources/sqlite/kind.js';
import type { SqliteTarget } from './sources/sqlite/index.js';
import type { DestinationKind, Restorer, SourceKind } from './types.js';

/**
 * The restore target of each source kind, by kind. A kind defined in an application adds its own
 * by declaration merging, and `Database.restore` then type-checks it:
 * `declare module 'backupkit' { interface RestoreTargets { kv: { path: string } } }`.
 * @public
 */
export interface RestoreTargets {
  /** `{ path }`: see {@link SqliteTarget}. */
  sqlite: SqliteTarget;
  /** `{ dir }`: see {@link FilesTarget}. */
  files: FilesTarget;
  /** `{ connection, database }`: see {@link PostgresTarget}. */
  postgres: PostgresTarget;
}

/**
 * Where a source is restored: `{ path }` for SQLite, `{ dir }` for files, `{ connection, database }`
 * for PostgreSQL, or the target of a registered kind (see {@link RestoreTargets}).
 * @public
 */
export type RestoreTarget = RestoreTargets[keyof RestoreTargets];

/**
 * Servers for throwaway targets, by source kind, as `verifyBackup` and restore drills hand them to
 * `Restorer.scratch` (`ScratchSpace.servers`). A registered kind that needs one adds it by
 * declaration merging, as {@link RestoreTargets}.
 * @public
 */
export interface ScratchServers {
  /**
   * Server for throwaway PostgreSQL databases (created and dropped); default: libpq's environment
   * (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`).
   */
  postgres?: PostgresConnection;
}

/** Lower-case letters, digits and `-`: a kind is also a CLI flag (`--<kind>`) and a JSON config's `"kind"`. */
const KIND_NAME = /^[a-z][a-z0-9-]{0,63}$/;
const URL_SCHEME = /^[a-z][a-z0-9+.-]*:$/;

const sources = new Map<string, SourceKind>();
const destinations = new Map<string, DestinationKind>();

/**
 * Adds a source kind defined in the application, so that its archives are restored by
 * `Database.restore`, checked by `verifyBackup`, drilled by `backupkit/testing`, and its sources
 * and targets written in a JavaScript CLI config file that registers it (with the `backupkit` the
 * command runs). Registering the same
 * descriptor again does nothing; another descriptor of a kind already known is refused
 * (`INVALID_OPTIONS`).
 *
 * It is a registration, not an option of each call, because a kind must be known wherever one of
 * its archives may be read (restore, verify, drills, the command line): an option forgotten in one
 * of them would make that one fail with `UNSUPPORTED_FORMAT`.
 *
 * @example
 * ```ts
 * registerSource({ kind: 'kv', restorer: kvRestorer, source: kv, pathFields: ['path'], describeTarget: ({ path }) => path });
 * ```
 * @public
 */
export function registerSource<Target, Options>(kind: SourceKind<Target, Options>): void {
  const name = checkedName(kind, sources);
  if (name === undefined) return;
  if (kind.restorer?.kind !== name) throw new BackupError('INVALID_OPTIONS', `Source kind "${name}" needs a restorer of kind "${name}"`);
  for (const method of ['source', 'describeTarget'] as const) {
    if (typeof kind[method] !== 'function') throw new BackupError('INVALID_OPTIONS', `Source kind "${name}" needs a \`${method}\` function`);
  }
  sources.set(name, kind as unknown as SourceKind);
}

/**
 * Adds a destination kind defined in the application, so that config files and the command line
 * name its destinations by its URL schemes (`--to sftp://host/backups`) or as `{ "kind": ... }`.
 * Registering the same descriptor again does nothing; another descriptor of a kind already known,
 * or a scheme another kind has, is refused (`INVALID_OPTIONS`).
 * @public
 */
export function registerDestination<Options>(kind: DestinationKind<Options>): void {
  const name = checkedName(kind, destinations);
  if (name === undefined) return;
  if (typeof kind.create !== 'function') throw new BackupError('INVALID_OPTIONS', `Destination kind "${name}" needs a \`create\` function`);
  if (!Array.isArray(kind.schemes)) throw new BackupError('INVALID_OPTIONS', `Destination kind "${name}" needs \`schemes\` (an empty array for none)`);
  const taken = [...destinations.values()];
  for (const scheme of kind.schemes) {
    if (!URL_SCHEME.test(scheme)) throw new BackupError('INVALID_OPTIONS', `Destination kind "${name}": ${JSON.stringify(scheme)} is not a URL scheme such as "s3:"`);
    const owner = taken.find((other) => other.schemes.includes(scheme));
    if (owner) throw new BackupError('INVALID_OPTIONS', `Destination kind "${name}": the scheme ${scheme} is the one of kind "${owner.kind}"`);
  }
  if ((kind.schemes.length > 0 || kind.paths) && typeof kind.fromSpec !== 'function') {
    throw new BackupError('INVALID_OPTIONS', `Destination kind "${name}" needs \`fromSpec\` to read its URLs`);
  }
  if (kind.paths && taken.some((other) => other.paths)) throw new BackupError('INVALID_OPTIONS', `Destination kind "${name}": plain paths already name folders`);
  destinations.set(name, kind as unknown as DestinationKind);
}

/** The kind's name if it is new, `undefined` if this very descriptor is registered already. */
function checkedName(kind: { readonly kind: string }, registered: ReadonlyMap<string, object>): string | undefined {
  const name = kind?.kind;
  if (typeof name !== 'string' || !KIND_NAME.test(name)) {
    throw new BackupError('INVALID_OPTIONS', `A kind is named with lower-case letters, digits and "-", not ${JSON.stringify(name)}`);
  }
  const known = registered.get(name);
  if (known === kind) return undefined;
  if (known) throw new BackupError('INVALID_OPTIONS', `A kind named "${name}" is registered already`);
  return name;
}

/** Every source kind known, built-in ones first, in the order registered. */
export function sourceKinds(): readonly SourceKind[] {
  return [...sources.values()];
}

/** The source kind of that name, if it is known. */
export function sourceKind(kind: string): SourceKind | undefined {
  return sources.get(kind);
}

/** Every destination kind known, built-in ones first. */
export function destinationKinds(): readonly DestinationKind[] {
  return [...destinations.values()];
}

/** The restorers of every registered source kind, and those given, by kind; a given one wins. */
export function restorersWith(extra: readonly Restorer[] = []): ReadonlyMap<string, Restorer> {
  return new Map([...sourceKinds().map((kind) => kind.restorer), ...extra].map((restorer) => [restorer.kind, restorer]));
}

// The built-in kinds, one line each.
registerSource(sqliteKind);
registerSource(filesKind);
registerSource(postgresKind);
registerDestination(directoryKind);
registerDestination(s3Kind);
registerDestination(memoryKind);
registerDestination(azureKind);
registerDestination(sftpKind);
registerDestination(ftpKind);
registerDestination(gcsKind);
