import { Operation, type OperationEvents, type SourceStats } from '../operation.js';
import type { BackupWarning } from '../types.js';

/**
 * What a finished backup produced.
 * @public
 */
export interface BackupResult {
  /** The archive's name, the same on every destination, e.g. `20261121-124500.tar.gz`. */
  readonly name: string;
  /** Compressed size in bytes. */
  readonly size: number;
  /** SHA-256 of the archive file, hex; `sha256sum` prints the same. */
  readonly sha256: string;
  readonly createdAt: Date;
  readonly durationMs: number;
  readonly sources: readonly SourceStats[];
  /** Where the archive was written. */
  readonly destinations: readonly string[];
  readonly warnings: readonly BackupWarning[];
}

/**
 * The events of a {@link BackupOperation}.
 * @public
 */
export interface BackupEvents extends OperationEvents<BackupResult> {
  start: [info: { name: string; createdAt: Date; sources: ReadonlyArray<{ name: string; kind: string }> }];
  warning: [warning: BackupWarning];
}

/**
 * A running backup, returned by `Database.startBackup()`. Listen to its events, await `done`, or
 * `cancel()` it: a cancelled or failed backup leaves no archive behind.
 * @public
 */
export class BackupOperation extends Operation<BackupResult, BackupEvents> {}
