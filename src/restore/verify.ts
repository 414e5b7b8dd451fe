import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DecryptOptions } from '../archive/encryption.js';
import type { VerifySignatureOptions } from '../archive/signature.js';
import { BackupError } from '../errors.js';
import { Operation, type OperationContext, type OperationEvents, type SourceStats } from '../operation.js';
import { restorersWith, type ScratchServers } from '../kinds.js';
import type { Destination, Restorer, VerifyCheck } from '../types.js';
import type { RestorePlan, RestoreRun } from './engine.js';
import type { RestoreEvents } from './operation.js';

/**
 * How deep {@link verifyBackup} goes.
 * - `checksums`: reads the whole archive and checks every entry's SHA-256 and the manifest.
 * - `restore`: also restores every source into a throwaway target and reads it back.
 * @public
 */
export type VerifyLevel = 'checksums' | 'restore';

/**
 * Where `verifyBackup` and restore drills (`backupkit/testing`) make their throwaway targets.
 * @public
 */
export interface ScratchOptions extends ScratchServers {
  /** Parent folder of the throwaway files and SQLite databases; default: the OS temp folder. */
  dir?: string;
}

/**
 * Options of {@link verifyBackup}.
 * @public
 */
export interface VerifyOptions {
  /** The destination holding the backup. */
  from: Destination;
  /** The archive's name; default: the newest on `from`. */
  backup?: string;
  /** Instead of `backup`: the newest backup made at or before this time (to the second its name keeps). */
  asOf?: Date;
  /** The passphrase or private key of an encrypted backup. */
  decrypt?: DecryptOptions;
  /** Fails with `SIGNATURE_INVALID` unless the archive is signed by one of these keys. */
  verifySignature?: VerifySignatureOptions;
  /** Default `checksums`. */
  level?: VerifyLevel;
  /** Where `restore` puts its throwaway targets. */
  scratch?: ScratchOptions;
  /** Restorers for source kinds backupkit does not know; `registerSource` makes a kind known everywhere at once. */
  restorers?: readonly Restorer[];
  /** Aborts the verification, like `cancel()`; throwaway targets are removed. */
  signal?: AbortSignal;
}

/**
 * What was verified of one source.
 * @public
 */
export interface VerifiedSource extends SourceStats {
  /** The checks run on its restored copy; empty at level `checksums`. */
  readonly checks: readonly VerifyCheck[];
}

/**
 * What a verification checked, with figures, and every problem it found.
 * @public
 */
export interface VerifyResult {
  /** The archive verified. */
  readonly name: string;
  /**
   * The archives verified, newest first: `[name]` for a full backup; for an incremental, `name` and
   * every backup of its chain it builds on (see `RestoreResult.chain`).
   */
  readonly chain: readonly string[];
  /** How deep it went. */
  readonly level: VerifyLevel;
  /** Wall time. */
  readonly durationMs: number;
  /** Archive entries whose SHA-256 matched the manifest, in every archive of `chain`. */
  readonly verifiedEntries: number;
  /** The fingerprint of the key whose signature was verified (`verifySignature`); undefined when none was checked. */
  readonly signedBy: string | undefined;
  /** Every source of the archive. */
  readonly sources: readonly VerifiedSource[];
  /** Every problem found, prefixed with its source and check; empty when the backup is sound. */
  readonly problems: readonly string[];
}

/**
 * The events of a {@link VerifyOperation}.
 * @public
 */
export interface VerifyEvents extends OperationEvents<VerifyResult> {
  /** The archive's header has been read. */
  start: RestoreEvents['start'];
}

/**
 * A running verification, returned by {@link verifyBackup}; awaitable like a restore.
 * @public
 */
export class VerifyOperation extends Operation<VerifyResult, VerifyEvents> {}

/**
 * The rejection of a verification whose restored data differs from the archive (code
 * `VERIFY_FAILED`): the archive read well, yet something restored from it did not read back the same.
 * @public
 */
export class VerificationError extends BackupError {
  /** Everything that was checked, with every problem found. */
  readonly result: VerifyResult;

  constructor(result: VerifyResult) {
    const listed = result.problems.map((problem) => `\n  - ${problem}`).join('');
    super('VERIFY_FAILED', `${result.name} restored, but ${result.problems.length} problem(s) were found:${listed}`);
    this.name = 'VerificationError';
    this.result = result;
  }
}

/**
 * Answers "is this backup restorable?". At level `checksums` it reads the whole archive and checks
 * every entry against the manifest (for an incremental, every archive of its chain it builds on,
 * each against its own manifest); at level `restore` it also restores every source into a
 * throwaway target (temporary folders, a temporary PostgreSQL database), reads each back (SQLite
 * `integrity_check`, every file's hash, every table's rows and contents) and removes them, also on
 * failure. A damaged archive rejects with `CORRUPT_ARCHIVE`; restored data that differs rejects with
 * a {@link VerificationError}.
 *
 * @example
 * ```ts
 * const result = await verifyBackup({ from: directory({ path: '/backups' }), level: 'restore' });
 * for (const source of result.sources) console.log(source.name, source.checks);
 * ```
 * @public
 */
export function verifyBackup(options: VerifyOptions): VerifyOperation {
  return new VerifyOperation(async (context) => {
    if (typeof options?.from?.open !== 'function') throw new BackupError('INVALID_OPTIONS', '`from` must be a destination');
    const level = options.level ?? 'checksums';
    if (level !== 'checksums' && level !== 'restore') throw new BackupError('INVALID_OPTIONS', '`level` must be "checksums" or "restore"');
    const startedAt = Date.now();
    const plan = { from: options.from, backup: options.backup, asOf: options.asOf, targets: {}, restorers: restorersWith(options.restorers), decrypt: options.decrypt, verifySignature: options.verifySignature, operation: 'verify' as const };
    const asRestore = context as unknown as OperationContext<RestoreEvents>; // the same events, less `end`
    if (level === 'checksums') return report(await (await restoreEngine()).runRestore(plan, asRestore), level, startedAt);
    return restoreIntoScratch({ ...plan, checkTargets: true }, options.scratch, asRestore, async (run) => {
      const result = report(run, level, startedAt);
      if (result.problems.length > 0) throw new VerificationError(result);
      return result;
    });
  }, options?.signal);
}

/** The restore engine, imported when first used (as the facade does): importing backupkit stays cheap. */
const restoreEngine = () => import('./engine.js');

/**
 * Restores every source of a backup into throwaway targets, hands the finished restore to `use`,
 * and removes every target and the scratch folder when `use` settles, or when the restore fails.
 */
export async function restoreIntoScratch<T>(
  plan: Omit<RestorePlan, 'scratch'>,
  options: ScratchOptions | undefined,
  context: OperationContext<RestoreEvents>,
  use: (run: RestoreRun) => Promise<T>,
): Promise<T> {
  // Every other option is the server of the kind it is named after.
  const { dir: parent, ...servers } = options ?? {};
  const dir = await mkdtemp(join(parent ?? tmpdir(), 'backupkit-scratch-'));
  try {
    const run = await (await restoreEngine()).runRestore({ ...plan, scratch: { dir, servers } }, context);
    try {
      return await use(run);
    } finally {
      await Promise.all([...run.scratch.values()].map((target) => target.remove()));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function report(run: RestoreRun, level: VerifyLevel, startedAt: number): VerifyResult {
  const sources = run.archived.map((source) => ({ ...source, checks: run.checks.get(source.name) ?? [] }));
  const problems = sources.flatMap(({ name, checks }) => checks.flatMap((check) => check.problems.map((problem) => `${name}: ${check.name}: ${problem}`)));
  return { name: run.result.name, chain: run.result.chain, level, durationMs: Date.now() - startedAt, verifiedEntries: run.result.verifiedEntries, signedBy: run.result.signedBy, sources, problems };
}
