import { redactText } from './util/redact.js';

/**
 * The stable error codes of backupkit. Match on `error.code`, never on the message.
 * @public
 */
export type BackupErrorCode =
  | 'INVALID_OPTIONS'
  | 'BACKUP_IN_PROGRESS'
  | 'TARGET_NOT_EMPTY'
  | 'UNSAFE_ARCHIVE'
  | 'CORRUPT_ARCHIVE'
  | 'WRONG_KEY'
  | 'SIGNATURE_INVALID'
  | 'UNSUPPORTED_FORMAT'
  | 'SOURCE_FAILED'
  | 'RESTORE_FAILED'
  | 'DESTINATION_FAILED'
  | 'ABORTED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'VERIFY_FAILED'
  | 'MISSING_DEPENDENCY'
  | 'LEASE_HELD'
  | 'LEASE_LOST';

const DEFAULT_HINTS: Record<BackupErrorCode, string> = {
  INVALID_OPTIONS: 'Check the options passed to backupkit against the documentation.',
  BACKUP_IN_PROGRESS: 'Wait for the running backup (op.done) before starting another one.',
  TARGET_NOT_EMPTY: 'Restore into a missing or empty location, or move the existing data away first.',
  UNSAFE_ARCHIVE: 'Do not restore this archive: it tries to write outside its target. Inspect it with `tar -tvzf`.',
  CORRUPT_ARCHIVE: 'The archive is damaged or incomplete. Restore from another copy or an older backup.',
  WRONG_KEY: 'Pass the passphrase or private key the backup was encrypted with (`decrypt`).',
  SIGNATURE_INVALID: 'Do not restore this archive: it is not signed by a key you trust. Restore a backup you signed, and find out who could write to the storage.',
  UNSUPPORTED_FORMAT: 'The archive was written by a newer backupkit: upgrade backupkit to restore it.',
  SOURCE_FAILED: 'Check that the source is readable by this process; the cause says what failed.',
  RESTORE_FAILED: 'The targets were left untouched; the cause says what failed.',
  DESTINATION_FAILED: 'Check that the destination is reachable and writable; the cause says what failed.',
  ABORTED: 'The operation was cancelled; nothing was committed.',
  NOT_FOUND: 'Check the destination and the backup name with listBackups().',
  ALREADY_EXISTS: 'Another writer committed an object of that name first; it was kept, and nothing was replaced.',
  VERIFY_FAILED: 'Do not rely on this backup: restore from another copy, and report the problems listed to backupkit.',
  MISSING_DEPENDENCY: 'Install the optional package the message names next to backupkit.',
  LEASE_HELD: 'Another process is backing up to this destination: let it finish, or wait until its lease expires.',
  LEASE_LOST: 'Nothing was committed: this process kept its lease too late (paused, or cut off from the destination) and another may have taken it. Run the backup again.',
};

/** The hint a code gets when its error names none: lets a front end (the CLI) reword it. */
export function defaultHint(code: BackupErrorCode): string {
  return DEFAULT_HINTS[code];
}

/**
 * Options of a {@link BackupError}.
 * @public
 */
export interface BackupErrorOptions {
  /** The underlying error. */
  cause?: unknown;
  /** What the user can do about it; a default per code is used when omitted. */
  hint?: string;
  /**
   * The same call may succeed if made again (a timeout, a dropped connection, a server busy or
   * briefly failing): retrying decorators retry only such errors. Default false.
   */
  transient?: boolean;
}

/**
 * Marks every BackupError, whichever copy of backupkit made it: an application and a global CLI
 * each loading their own copy still recognise each other's errors with `instanceof`.
 */
const BRAND = Symbol.for('backupkit.BackupError');

/**
 * The one error class backupkit throws and rejects with. `instanceof BackupError` is true for a
 * BackupError made by any copy of backupkit loaded in the process (it checks a
 * `Symbol.for('backupkit.BackupError')` brand, not the prototype chain).
 *
 * @example
 * ```ts
 * try { await Database.restore(opts) } catch (e) {
 *   if (e instanceof BackupError && e.code === 'TARGET_NOT_EMPTY') { ... }
 * }
 * ```
 * @public
 */
export class BackupError extends Error {
  /** A stable identifier of the kind of failure. */
  readonly code: BackupErrorCode;
  /** A sentence telling the user what to do. */
  readonly hint: string;
  /** Whether making the same call again may succeed; see {@link BackupErrorOptions.transient}. */
  readonly transient: boolean;

  constructor(code: BackupErrorCode, message: string, options: BackupErrorOptions = {}) {
    // A message quoting a connection string must not carry its password into a log.
    super(redactText(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BackupError';
    this.code = code;
    this.hint = redactText(options.hint ?? DEFAULT_HINTS[code]);
    this.transient = options.transient ?? false;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** Recognises the errors of other copies of backupkit by their brand; subclasses keep the usual check. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== BackupError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** Passes a BackupError through; wraps anything else in one with the given code. */
export function asBackupError(error: unknown, code: BackupErrorCode, message: string, hint?: string): BackupError {
  if (error instanceof BackupError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new BackupError(code, `${message}: ${detail}`, { cause: error, ...(hint === undefined ? {} : { hint }) });
}

/** The error an aborted signal stands for. */
export function abortError(signal: AbortSignal): BackupError {
  if (signal.reason instanceof BackupError) return signal.reason;
  return new BackupError('ABORTED', 'The operation was aborted', { cause: signal.reason });
}
