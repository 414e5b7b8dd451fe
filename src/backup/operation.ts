import { Operation, type OperationEvents, type SourceStats } from '../operation.js';
import type { BackupType } from '../archive/format.js';
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
  /**
   * `full`, or `incremental`: built on `previous`, in the chain that starts with the full `base`.
   * An incremental asked for is a full when there is nothing to build on; a warning says why.
   */
  readonly type: BackupType;
  /** An incremental's full: the first backup of its chain. */
  readonly base: string | undefined;
  /** An incremental's predecessor: the backup right before it in its chain. */
  readonly previous: string | undefined;
  /**
   * Set when an incremental found nothing changed since the backup it would have built on: nothing
   * was written, and the other fields describe that backup, which still stands.
   */
  readonly unchanged?: true;
  /** When the backup started; the name encodes it too, to the second. */
  readonly createdAt: Date;
  /** Wall time from start to the last commit. */
  readonly durationMs: number;
  /** Figures per source, in archive order (databases first). */
  readonly sources: readonly SourceStats[];
  /** Where the archive was written: every destination succeeded, or the backup failed. */
  readonly destinations: readonly string[];
  /** With a retention policy: what it deleted on each destination. */
  readonly pruned: ReadonlyArray<{ destination: string; removed: readonly string[] }>;
  /** Everything reported as `warning` events, such as files that changed while read. */
  readonly warnings: readonly BackupWarning[];
  /** The fingerprint of the key that signed the archive (`sign`); undefined when not signed. */
  readonly signedBy: string | undefined;
}

/**
 * The events of a {@link BackupOperation}.
 * @public
 */
export interface BackupEvents extends OperationEvents<BackupResult> {
  /** The archive name is chosen; nothing is read yet. */
  start: [info: { name: string; createdAt: Date; sources: ReadonlyArray<{ name: string; kind: string }> }];
  /** Something worth knowing that did not stop the backup. */
  warning: [warning: BackupWarning];
}

/**
 * A running backup, returned by `Database.startBackup()`. Listen to its events, await `done`, or
 * `cancel()` it: a cancelled or failed backup leaves no archive behind.
 * @public
 */
export class BackupOperation extends Operation<BackupResult, BackupEvents> {}
