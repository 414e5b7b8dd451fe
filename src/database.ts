import { BackupOperation } from './backup/operation.js';
import { resolveCompression, type CompressionAlgorithm } from './archive/compression.js';
import { prepareEncryption, type DecryptOptions, type EncryptOptions } from './archive/encryption.js';
import { prepareSigner, type SignOptions, type VerifySignatureOptions } from './archive/signature.js';
import type { BackupType } from './archive/format.js';
import { BackupError } from './errors.js';
import { holdLease, leaseTtl, type HeldLease } from './backup/lease.js';
import { checkRetentionPolicy, type RetentionPolicy } from './retention.js';
import { RestoreOperation } from './restore/operation.js';
import { restorersWith, type RestoreTarget } from './kinds.js';
import { Schedule, type ScheduleOptions } from './schedule/index.js';
import type { Destination, Restorer, Source } from './types.js';

/** Letters, digits, `_`, `-` and `.`: a name that is also a safe archive folder. */
const SOURCE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * Options of {@link Database}.
 * @public
 */
export interface DatabaseOptions {
  /** What to back up, e.g. `[sqlite({ name: 'app', path }), files({ name: 'uploads', dir })]`. */
  sources: readonly Source[];
}

/**
 * Compression of an archive.
 * @public
 */
export interface CompressionOptions {
  /** `'gzip'` (the default, `.tar.gz`), `'zstd'` (`.tar.zst`, Node.js 22.15 or later) or `'none'` (`.tar`). */
  algorithm?: CompressionAlgorithm;
  /** gzip: 1 (fastest, the default) to 9; zstd: 1 to 19, default 3. */
  level?: number;
}

/**
 * Options of {@link Database.startBackup}.
 * @public
 */
export interface BackupOptions {
  /** Where the archive goes; with several, each gets the same archive and all must succeed. */
  to: Destination | readonly Destination[];
  /**
   * `'full'` (the default) or `'incremental'`: a backup that builds on the newest backup of these
   * sources on the first destination in `to` (its `base` and `previous`); with no such backup it is
   * a full, and says so. An incremental holds only what changed since the backup before it: new
   * and changed files with a listing of the whole tree, changed SQLite pages, changed PostgreSQL
   * tables (the schema in full). When nothing changed, nothing is written and the result says
   * `unchanged: true`. A restore applies the chain's full and every incremental up to the one
   * restored. A source kind without {@link Snapshot.changes} is held in full inside an incremental.
   */
  type?: BackupType;
  /** Default: gzip, level 1. */
  compression?: CompressionOptions;
  /** OpenPGP encryption that `gpg --decrypt` opens; the archive name ends in `.gpg`. */
  encrypt?: EncryptOptions;
  /** Signs the archive (a detached OpenPGP signature of its manifest), with or without `encrypt`. */
  sign?: SignOptions;
  /** Applied to each destination after a successful backup; see {@link prune}. */
  retention?: RetentionPolicy;
  /** Aborts the backup, like `op.cancel()`. */
  signal?: AbortSignal;
  /**
   * One backup at a time across processes and machines: before anything is written, take a lease
   * in the first destination of `to`, valid for `ttlMs` (default 30 000) and renewed every third
   * of it while the backup runs. When another process holds an unexpired lease, the backup fails
   * with `LEASE_HELD` and writes nothing. Right before the archive is committed, the lease is
   * checked to be still this backup's; a backup whose lease expired (the process was paused, or
   * cut off from the destination) fails with `LEASE_LOST` and commits nothing. The lease is
   * released at the end. The first destination must keep leases (`s3`, `azure`, `directory` and
   * `memory` do); see docs/guides/fleet.md for what is guaranteed.
   */
  lease?: boolean | { ttlMs?: number };
}

/**
 * Options of {@link Database.restore}.
 * @public
 */
export interface RestoreOptions {
  /** The destination holding the backup. */
  from: Destination;
  /** The archive's name; default: the newest on `from`. */
  backup?: string;
  /** Instead of `backup`: the newest backup made at or before this time (to the second its name keeps). */
  asOf?: Date;
  /** Each source to restore, by name, and where. Sources left out are verified but not written. */
  targets: Readonly<Record<string, RestoreTarget>>;
  /** Aborts the restore, like `cancel()`; the targets are left as they were. */
  signal?: AbortSignal;
  /** Restorers for source kinds backupkit does not know; `registerSource` makes a kind known everywhere at once. */
  restorers?: readonly Restorer[];
  /** The passphrase or private key of an encrypted backup. */
  decrypt?: DecryptOptions;
  /** Refuses, before anything is committed, an archive not signed by one of these keys (`SIGNATURE_INVALID`). */
  verifySignature?: VerifySignatureOptions;
}

/**
 * The application's data, as a set of sources backed up together into one archive.
 *
 * @example
 * ```ts
 * const db = new Database({ sources: [sqlite({ name: 'app', path: 'app.db' }), files({ name: 'uploads', dir: 'uploads' })] });
 * const op = db.startBackup({ to: directory({ path: '/backups' }) });
 * op.on('progress', (p) => console.log(p.percent));
 * const result = await op.done;
 * ```
 * @public
 */
export class Database {
  /** The sources, in the order given. */
  readonly sources: readonly Source[];
  #running = false;

  constructor(options: DatabaseOptions) {
    const sources = options?.sources;
    if (!Array.isArray(sources) || sources.length === 0) {
      throw new BackupError('INVALID_OPTIONS', 'A Database needs at least one source');
    }
    const seen = new Set<string>();
    for (const source of sources as readonly Source[]) {
      if (typeof source?.open !== 'function' || typeof source.kind !== 'string') {
        throw new BackupError('INVALID_OPTIONS', 'Every source must be made by a source factory such as sqlite() or files()');
      }
      if (typeof source.name !== 'string' || !SOURCE_NAME.test(source.name)) {
        throw new BackupError('INVALID_OPTIONS', `Source name ${JSON.stringify(source.name)} is not valid`, {
          hint: 'Use letters, digits, "_", "-" and "." (up to 128 characters), not starting with "." or "-".',
        });
      }
      if (seen.has(source.name)) throw new BackupError('INVALID_OPTIONS', `Two sources are named "${source.name}"`);
      seen.add(source.name);
    }
    this.sources = [...sources];
  }

  /**
   * Starts a hot backup of every source into one archive. Databases are copied first, each
   * consistent as of that moment, then file trees. Only one backup runs at a time per Database.
   */
  startBackup(options: BackupOptions): BackupOperation {
    const destinations = toArray(options?.to);
    return new BackupOperation(async (context) => {
      if (destinations.length === 0 || destinations.some((d) => typeof d?.create !== 'function')) {
        throw new BackupError('INVALID_OPTIONS', '`to` must be a destination or a non-empty array of them');
      }
      if (new Set(destinations.map((d) => d.description)).size !== destinations.length) {
        throw new BackupError('INVALID_OPTIONS', 'The same destination is named twice in `to`');
      }
      const type = options.type ?? 'full';
      if (type !== 'full' && type !== 'incremental') throw new BackupError('INVALID_OPTIONS', `\`type\` must be 'full' or 'incremental', not ${JSON.stringify(type)}`);
      const compression = resolveCompression(options.compression);
      if (options.retention) checkRetentionPolicy(options.retention);
      const ttlMs = leaseTtl(options.lease);
      // Keys are checked before a byte is written: a bad key fails here, never as plaintext later.
      const encryption = options.encrypt ? await prepareEncryption(options.encrypt) : undefined;
      const signer = options.sign ? await prepareSigner(options.sign) : undefined;
      if (this.#running) throw new BackupError('BACKUP_IN_PROGRESS', 'A backup of this Database is already running');
      this.#running = true;
      let lease: HeldLease | undefined;
      try {
        // The engines are imported when first used: importing backupkit stays cheap.
        const { runBackup } = await import('./backup/engine.js');
        if (ttlMs !== undefined) lease = await holdLease(destinations[0] as Destination, ttlMs);
        // A lease found taken by another while the backup runs stops it as a cancel would.
        const run = lease ? { ...context, signal: AbortSignal.any([context.signal, lease.lost]) } : context;
        return await runBackup({ sources: this.sources, destinations, compression, encryption, signer, retention: options.retention, type, fence: lease?.fence }, run);
      } finally {
        await lease?.release();
        this.#running = false;
      }
    }, options?.signal);
  }

  /**
   * Makes backups run themselves: full and incremental backups, and verifications, each on a cron
   * expression or an interval, with retention applied after each backup. The schedule starts at
   * once; see {@link Schedule} for what it guarantees, and `stop()` it to end it.
   *
   * @example
   * ```ts
   * const schedule = db.schedule({ to: directory({ path: '/backups' }), full: '0 3 * * *', incremental: '15m', retention: { keepDaily: 14 } });
   * ```
   */
  schedule(options: ScheduleOptions): Schedule {
    return new Schedule(this, options);
  }

  /**
   * Restores a backup into empty or missing targets. Every target is checked before anything is
   * written, everything is verified before anything is moved into place, and on any failure the
   * targets are left as they were.
   */
  static restore(options: RestoreOptions): RestoreOperation {
    return new RestoreOperation((context) => {
      if (typeof options?.from?.open !== 'function') throw new BackupError('INVALID_OPTIONS', '`from` must be a destination');
      if (typeof options.targets !== 'object' || options.targets === null || Object.keys(options.targets).length === 0) {
        throw new BackupError('INVALID_OPTIONS', '`targets` must name at least one source to restore');
      }
      const plan = { from: options.from, backup: options.backup, asOf: options.asOf, targets: options.targets, restorers: restorersWith(options.restorers), decrypt: options.decrypt, verifySignature: options.verifySignature };
      return import('./restore/engine.js').then(({ runRestore }) => runRestore(plan, context)).then(({ result }) => result);
    }, options?.signal);
  }
}

function toArray(to: BackupOptions['to'] | undefined): readonly Destination[] {
  if (to === undefined) return [];
  return Array.isArray(to) ? (to as readonly Destination[]) : [to as Destination];
}
