import { Operation, type OperationEvents, type SourceStats } from '../operation.js';

/**
 * What a finished restore did.
 * @public
 */
export interface RestoreResult {
  /** The archive restored. */
  readonly name: string;
  /**
   * The archives read to restore it, newest first: `[name]` for a full backup; for an incremental,
   * `name` and then the backups of its chain it builds on, down to the one holding every source in
   * full. Each was verified against its manifest before anything was committed.
   */
  readonly chain: readonly string[];
  /** Wall time from start to the last commit. */
  readonly durationMs: number;
  /** The sources restored, with where each went. */
  readonly sources: ReadonlyArray<SourceStats & { target: unknown }>;
  /** Sources in the archive that had no target and were only verified. */
  readonly skipped: readonly string[];
  /** Archive entries whose SHA-256 matched the manifest, in every archive of `chain`. */
  readonly verifiedEntries: number;
  /** The fingerprint of the key whose signature was verified (`verifySignature`); undefined when none was checked. */
  readonly signedBy: string | undefined;
}

/**
 * The events of a {@link RestoreOperation}.
 * @public
 */
export interface RestoreEvents extends OperationEvents<RestoreResult> {
  /** The archive's header has been read; no target has been touched yet. */
  start: [info: { name: string; createdAt: Date; sources: ReadonlyArray<{ name: string; kind: string }> }];
}

/**
 * A running restore, returned by `Database.restore()`. It is awaitable: `await Database.restore(...)`
 * gives the {@link RestoreResult}. It emits the same kind of events as a backup; attach listeners
 * before awaiting it.
 * @public
 */
export class RestoreOperation extends Operation<RestoreResult, RestoreEvents> {}
