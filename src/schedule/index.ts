import { EventEmitter } from 'eventemitter3';
import type { BackupOperation, BackupEvents, BackupResult } from '../backup/operation.js';
import type { BackupOptions, CompressionOptions } from '../database.js';
import type { EncryptOptions } from '../archive/encryption.js';
import type { SignOptions } from '../archive/signature.js';
import { BackupError, type BackupErrorCode } from '../errors.js';
import { listBackups } from '../listing.js';
import { checkRetentionPolicy, type RetentionPolicy } from '../retention.js';
import { verifyBackup, type VerifyOptions, type VerifyResult } from '../restore/verify.js';
import type { Destination, Source } from '../types.js';
import { ScheduleMetrics, type MetricsRegistry } from './metrics.js';
import { leaseTtl } from '../backup/lease.js';
import { isOverdue, madeSince } from './catch-up.js';
import { holdScheduleLease } from './lease.js';
import { checkTimeZone, parseTiming, type Timing } from './timing.js';

/**
 * What a schedule runs: a full backup, an incremental one, or a verification of the newest backup.
 * @public
 */
export type ScheduleRunType = 'full' | 'incremental' | 'verify';

/**
 * Why a run did not happen or made nothing:
 * - `running`: it fell due while a run of the same lane was still going (backups share one lane,
 *   verifications have their own); it is not queued, the next slot runs as usual;
 * - `unchanged`: an incremental found nothing changed since the backup before it;
 * - `lease`: another process of the fleet holds the destination's lease, or has already made
 *   this slot's backup (see {@link ScheduleOptions.lease}).
 * @public
 */
export type ScheduleSkipReason = 'running' | 'unchanged' | 'lease';

/**
 * What started a run: its slot, the start-up check for an overdue backup, or `runNow()`.
 * @public
 */
export type ScheduleTrigger = 'schedule' | 'catch-up' | 'manual';

/**
 * A timer of a {@link ScheduleClock}.
 * @public
 */
export interface ScheduleTimer {
  /** Cancels the timer; its callback is not called. */
  clear(): void;
}

/**
 * The time a schedule goes by. The default is the system's; tests pass a fake one to move time
 * on at will.
 * @public
 */
export interface ScheduleClock {
  /** Milliseconds since the Unix epoch, like `Date.now()`. */
  now(): number;
  /** Calls `callback` once, `delayMs` from now, like `setTimeout`. */
  setTimeout(callback: () => void, delayMs: number): ScheduleTimer;
}

/**
 * Options of {@link Database.schedule}. `full`, `incremental` and `verify` each take a cron
 * expression (five fields, or six with seconds first) read in `timeZone`, or an interval such as
 * `'30s'`, `'15m'`, `'1h'` or `'1d'` counted from the Unix epoch (so `'1h'` runs on the hour, UTC).
 * @public
 */
export interface ScheduleOptions {
  /** Where the backups go, as in `startBackup`; the first destination is the one listed for catch-up and verified. */
  to: Destination | readonly Destination[];
  /** When full backups run. */
  full?: string;
  /** When incremental backups run; with no `full`, the first one is a full (there is nothing to build on). */
  incremental?: string;
  /** When the newest backup on the first destination is verified (`verifyBackup`). */
  verify?: string;
  /** The IANA time zone cron expressions are read in, such as `'Europe/Paris'`; default: the process's. */
  timeZone?: string;
  /** Applied after each backup, as in `startBackup`. */
  retention?: RetentionPolicy;
  /** As in `startBackup`. */
  compression?: CompressionOptions;
  /** As in `startBackup`. A passphrase also decrypts for the scheduled verifications. */
  encrypt?: EncryptOptions;
  /** As in `startBackup`. */
  sign?: SignOptions;
  /** How scheduled verifications verify: level, keys, scratch space (`from`, `backup` and `signal` are the schedule's). */
  verification?: Omit<VerifyOptions, 'from' | 'backup' | 'asOf' | 'signal'>;
  /**
   * One runner across a fleet: processes with the same schedule and the same first destination make
   * each scheduled backup once. Every backup takes the destination's lease (as `startBackup({ lease })`),
   * and each scheduled or catch-up backup is made under a second lease, by the first process to
   * take it, and only when the first destination does not list that slot's backup yet; the others
   * report it `skipped` with reason `lease`. Slots are the same in every process (intervals count
   * from the epoch), so the fleet's clocks must agree to well within one interval.
   */
  lease?: BackupOptions['lease'];
  /** Names the schedule in metrics and status; default `'default'`. */
  name?: string;
  /** Prometheus metrics, registered in this prom-client `Registry` (prom-client is an optional peer dependency). */
  metrics?: { registry: MetricsRegistry };
  /** The time to go by; default: the system clock. */
  clock?: ScheduleClock;
}

/**
 * One run of a schedule, as {@link Schedule.status} and {@link Schedule.runNow} report it.
 * @public
 */
export interface ScheduleRun {
  /** What was asked for. An incremental with nothing to build on is made as a full: `backupType` says so. */
  readonly type: ScheduleRunType;
  /** What started it. */
  readonly trigger: ScheduleTrigger;
  /** What came of it. */
  readonly outcome: 'succeeded' | 'failed' | 'skipped';
  /** When it started (or was skipped). */
  readonly startedAt: Date;
  /** When it settled. */
  readonly finishedAt: Date;
  /** The backup made, or the backup verified. */
  readonly name: string | undefined;
  /** The type of the backup made: `full` for an incremental that had nothing to build on. */
  readonly backupType: 'full' | 'incremental' | undefined;
  /** The archive's size, for a backup made. */
  readonly size: number | undefined;
  /** With outcome `skipped`: why. */
  readonly reason: ScheduleSkipReason | undefined;
  /** With outcome `failed`: the error's code. */
  readonly errorCode: BackupErrorCode | undefined;
  /** With outcome `failed`: the error's message. */
  readonly error: string | undefined;
}

/**
 * What a schedule is doing and has done; see {@link Schedule.status}.
 * @public
 */
export interface ScheduleStatus {
  /** The schedule's name. */
  readonly name: string;
  /** Whether `stop()` was called. */
  readonly stopped: boolean;
  /** The runs going on now: at most one backup and one verification. */
  readonly running: ReadonlyArray<{ type: ScheduleRunType; trigger: ScheduleTrigger; startedAt: Date }>;
  /** The last run of each type, succeeded, failed or skipped. */
  readonly last: Readonly<Partial<Record<ScheduleRunType, ScheduleRun>>>;
  /** When each configured type runs next; absent once stopped, or when its cron never fires again. */
  readonly next: Readonly<Partial<Record<ScheduleRunType, Date>>>;
  /** Backups (full or incremental) that failed in a row since the last one that succeeded; one cancelled by `stop()` does not count. */
  readonly consecutiveFailures: number;
}

/**
 * The events of a {@link Schedule}: every event of every backup it runs (`start`, `progress`,
 * `warning`, `end`, `error`, ...), and its own.
 * @public
 */
export interface ScheduleEvents extends BackupEvents {
  /** The next run of a type is set for `at`. */
  scheduled: [info: { type: ScheduleRunType; at: Date }];
  /** A run starts. */
  run: [info: { type: ScheduleRunType; trigger: ScheduleTrigger }];
  /** A run settled, whatever its outcome: after `skipped`, `failed` or the backup's `end`. */
  settled: [run: ScheduleRun];
  /** A run was skipped, or made nothing; see {@link ScheduleSkipReason}. */
  skipped: [run: ScheduleRun];
  /** A run failed; `error` says why. The schedule goes on. */
  failed: [run: ScheduleRun, error: BackupError];
  /** A scheduled verification found the backup sound. */
  verified: [result: VerifyResult];
}

/**
 * The part of a `Database` a schedule uses: its sources, and starting a backup of them.
 * @public
 */
export interface ScheduleHost {
  /** The sources backed up, as `Database.sources`. */
  readonly sources: readonly Source[];
  /** As `Database.startBackup`. */
  startBackup(options: BackupOptions): BackupOperation;
}

/** The longest a timer waits before the schedule looks at the clock again: a wall clock that was set meanwhile is noticed. */
const MAX_WAIT_MS = 3_600_000;

const SYSTEM_CLOCK: ScheduleClock = {
  now: () => Date.now(),
  setTimeout(callback, delayMs) {
    const timer = setTimeout(callback, delayMs);
    return { clear: () => clearTimeout(timer) };
  },
};

const BACKUP_EVENTS = ['start', 'source-start', 'progress', 'source-end', 'warning', 'end', 'error'] as const;

type Lane = 'backup' | 'verify';
interface Running {
  readonly type: ScheduleRunType;
  readonly trigger: ScheduleTrigger;
  readonly startedAt: Date;
  readonly cancel: AbortController;
  readonly settled: Promise<ScheduleRun>;
}

/** How a run ended, before it is recorded. */
type Outcome = { result: BackupResult | VerifyResult; error?: undefined; skip?: undefined } | { error: BackupError; result?: undefined; skip?: undefined } | { skip: ScheduleSkipReason; result?: undefined; error?: undefined };

/**
 * Backups that run themselves, returned by `Database.schedule()`: full and incremental backups and
 * verifications, each on its own cron expression or interval, started at once.
 *
 * - Backups never overlap: one that falls due while another runs is skipped (`skipped`, reason
 *   `running`), never queued.
 * - When a full and an incremental fall due together, only the full runs.
 * - At start, a full backup is overdue when the first destination holds no full backup of these
 *   sources made since the full schedule's last slot (with only `incremental`, no backup of them
 *   since its last slot): then one catch-up run is made at once, not one per slot missed.
 * - A run missed because the process was asleep runs once when it wakes, not once per slot.
 *
 * @example
 * ```ts
 * const schedule = db.schedule({ to: directory({ path: '/backups' }), full: '0 3 * * *', incremental: '*\/15 * * * *', retention: { keepDaily: 7 } });
 * schedule.on('failed', (run, error) => console.error(run.type, error.code, error.message));
 * process.on('SIGTERM', () => void schedule.stop());
 * ```
 * @public
 */
export class Schedule extends EventEmitter<ScheduleEvents> {
  /**
   * Settles once the start-up check for an overdue backup is done, and its catch-up run, if one
   * is needed, has started. Never rejects: a destination that cannot be listed makes the backup
   * overdue, and the catch-up run reports the failure.
   */
  readonly started: Promise<void>;
  readonly #host: ScheduleHost;
  readonly #options: ScheduleOptions;
  readonly #destinations: readonly Destination[];
  readonly #timings: Partial<Record<ScheduleRunType, Timing>> = {};
  readonly #next: Partial<Record<ScheduleRunType, number>> = {};
  readonly #last: Partial<Record<ScheduleRunType, ScheduleRun>> = {};
  readonly #running: Partial<Record<Lane, Running>> = {};
  readonly #clock: ScheduleClock;
  readonly #metrics: ScheduleMetrics | undefined;
  readonly #name: string;
  readonly #leaseTtl: number | undefined;
  #timer: ScheduleTimer | undefined;
  #stopped = false;
  #failures = 0;

  /** Use `Database.schedule()`. */
  constructor(host: ScheduleHost, options: ScheduleOptions) {
    super();
    this.#host = host;
    this.#options = options;
    this.#destinations = toArray(options?.to);
    if (this.#destinations.length === 0 || this.#destinations.some((d) => typeof d?.create !== 'function')) {
      throw new BackupError('INVALID_OPTIONS', '`to` must be a destination or a non-empty array of them');
    }
    checkTimeZone(options.timeZone);
    for (const type of ['full', 'incremental', 'verify'] as const) {
      if (options[type] !== undefined) this.#timings[type] = parseTiming(type, options[type], options.timeZone);
    }
    if (!this.#timings.full && !this.#timings.incremental) throw new BackupError('INVALID_OPTIONS', 'A schedule needs `full`, `incremental` or both');
    if (options.retention) checkRetentionPolicy(options.retention);
    this.#name = options.name ?? 'default';
    if (typeof this.#name !== 'string' || this.#name === '') throw new BackupError('INVALID_OPTIONS', '`name` must be a non-empty string');
    this.#leaseTtl = leaseTtl(options.lease);
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#metrics = options.metrics ? new ScheduleMetrics(options.metrics.registry, this.#name) : undefined;
    const now = this.#clock.now();
    for (const type of Object.keys(this.#timings) as ScheduleRunType[]) this.#plan(type, now);
    this.#arm();
    this.started = this.#catchUp(now);
  }

  /** What is running, the last and next run of each type, and the failures in a row. */
  status(): ScheduleStatus {
    const dates = Object.entries(this.#next).map(([type, at]) => [type, new Date(at)]);
    return {
      name: this.#name,
      stopped: this.#stopped,
      running: Object.values(this.#running).map(({ type, trigger, startedAt }) => ({ type, trigger, startedAt })),
      last: { ...this.#last },
      next: Object.fromEntries(dates) as ScheduleStatus['next'],
      consecutiveFailures: this.#failures,
    };
  }

  /**
   * Runs a backup (default `full`) or a verification now, outside the slots, and resolves with
   * how it went: `skipped` with reason `running` when a run of its lane is going on. Never rejects,
   * except with ABORTED once the schedule is stopped.
   */
  runNow(options: { type?: ScheduleRunType } = {}): Promise<ScheduleRun> {
    const type = options.type ?? 'full';
    if (type !== 'full' && type !== 'incremental' && type !== 'verify') {
      return Promise.reject(new BackupError('INVALID_OPTIONS', `\`type\` must be 'full', 'incremental' or 'verify', not ${JSON.stringify(type)}`));
    }
    if (this.#stopped) return Promise.reject(new BackupError('ABORTED', 'The schedule is stopped'));
    return this.#start(type, 'manual');
  }

  /**
   * Stops the schedule: no run starts any more, and the promise resolves once the running ones
   * have settled. A running backup or verification finishes, unless `signal` aborts (already, or
   * while waiting): then it is cancelled, and leaves nothing behind.
   */
  async stop(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.#stopped = true;
    this.#timer?.clear();
    this.#timer = undefined;
    for (const type of Object.keys(this.#next) as ScheduleRunType[]) delete this.#next[type];
    const { signal } = options;
    const cancel = () => {
      for (const running of Object.values(this.#running)) running.cancel.abort(new BackupError('ABORTED', 'The schedule was stopped'));
    };
    if (signal?.aborted) cancel();
    else signal?.addEventListener('abort', cancel, { once: true });
    try {
      await this.started;
      await Promise.all(Object.values(this.#running).map((running) => running.settled));
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }

  /** Sets the next slot of `type` after `after`, and says so. */
  #plan(type: ScheduleRunType, after: number): void {
    const at = this.#timings[type]?.next(after);
    if (at === undefined) {
      delete this.#next[type];
      return;
    }
    this.#next[type] = at;
    this.emit('scheduled', { type, at: new Date(at) });
  }

  /** One timer, for the earliest slot (or MAX_WAIT_MS, whichever is sooner). */
  #arm(): void {
    this.#timer?.clear();
    this.#timer = undefined;
    const slots = Object.values(this.#next);
    if (this.#stopped || slots.length === 0) return;
    const delay = Math.min(Math.max(Math.min(...slots) - this.#clock.now(), 0), MAX_WAIT_MS);
    this.#timer = this.#clock.setTimeout(() => this.#tick(), delay);
  }

  #tick(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    const now = this.#clock.now();
    const due = new Map((Object.entries(this.#next) as Array<[ScheduleRunType, number]>).filter(([, at]) => at <= now));
    // However many slots went by (a process asleep, a clock set forward), each type runs once, for its latest slot.
    for (const type of due.keys()) {
      due.set(type, this.#timings[type]?.previous(now) ?? (due.get(type) as number));
      this.#plan(type, now);
    }
    // A full includes everything an incremental of the same moment would have.
    for (const [type, slot] of due) if (!(type === 'incremental' && due.has('full'))) void this.#start(type, 'schedule', slot);
    this.#arm();
  }

  /** Runs one catch-up backup when the primary type (full, else incremental) is overdue; see {@link isOverdue}. */
  async #catchUp(now: number): Promise<void> {
    const type = this.#timings.full ? 'full' : 'incremental';
    const timing = this.#timings[type] as Timing;
    // A destination that cannot be listed makes the backup overdue: its run reports the failure.
    const backups = await listBackups(this.#destinations[0] as Destination).catch(() => []);
    if (!this.#stopped && isOverdue(type, timing, backups, this.#host.sources, now)) void this.#start(type, 'catch-up', timing.previous(now));
  }

  /**
   * Starts a run in its lane, or reports it skipped when the lane is busy. `slot` is the time a
   * scheduled or catch-up run is for: with `lease`, a fleet makes one backup per slot.
   */
  #start(type: ScheduleRunType, trigger: ScheduleTrigger, slot?: number): Promise<ScheduleRun> {
    const lane: Lane = type === 'verify' ? 'verify' : 'backup';
    const base = { type, trigger, startedAt: new Date(this.#clock.now()) };
    if (this.#running[lane]) {
      const run = this.#skip(base, 'running', undefined);
      this.emit('settled', run);
      return Promise.resolve(run);
    }
    const cancel = new AbortController();
    const attempt = type === 'verify' ? this.#verify(cancel.signal) : this.#backup(type, slot, cancel.signal);
    const outcome: Promise<Outcome> = attempt.catch((error: unknown) => ({ error: error as BackupError }));
    // The lane is free before anything is reported: a listener may start the next run at once.
    const settled = outcome.then((ended) => {
      delete this.#running[lane];
      let run: ScheduleRun;
      if (ended.skip) run = this.#skip(base, ended.skip, undefined);
      else if (ended.error) run = this.#failed(base, ended.error);
      else run = type === 'verify' ? this.#verified(base, ended.result as VerifyResult) : this.#backedUp(base, ended.result as BackupResult);
      this.emit('settled', run);
      return run;
    });
    this.#running[lane] = { ...base, cancel, settled };
    this.emit('run', { type, trigger });
    return settled;
  }

  /**
   * Makes one backup. With `lease` and a slot, the schedule's lease of the first destination is
   * held around it: the process that gets it first makes the slot's backup, and one that gets it
   * after finds that backup listed and makes none, so a fleet makes each scheduled backup once.
   */
  async #backup(type: 'full' | 'incremental', slot: number | undefined, signal: AbortSignal): Promise<Outcome> {
    const ttlMs = this.#leaseTtl;
    const slotLease = ttlMs !== undefined && slot !== undefined ? await holdScheduleLease(this.#destinations[0] as Destination, ttlMs) : undefined;
    try {
      if (slotLease && slot !== undefined && madeSince(type, await listBackups(this.#destinations[0] as Destination), this.#host.sources, slot)) return { skip: 'lease' };
      const { retention, compression, encrypt, sign, lease } = this.#options;
      const operation = this.#host.startBackup({ to: this.#destinations, type, signal, ...defined({ retention, compression, encrypt, sign, lease }) });
      const emitter = this as EventEmitter;
      for (const event of BACKUP_EVENTS) operation.on(event, (...args: unknown[]) => void emitter.emit(event, ...args));
      return { result: await operation.done };
    } finally {
      await slotLease?.release();
    }
  }

  async #verify(signal: AbortSignal): Promise<Outcome> {
    const passphrase = this.#options.encrypt?.passphrase;
    const operation = verifyBackup({ ...(passphrase === undefined ? {} : { decrypt: { passphrase } }), ...this.#options.verification, from: this.#destinations[0] as Destination, signal });
    return { result: await operation.done };
  }

  #failed(base: RunBase, error: BackupError): ScheduleRun {
    if (base.type !== 'verify') {
      if (error.code === 'LEASE_HELD') return this.#skip(base, 'lease', undefined);
      // A backup the application started itself holds the Database: this run is skipped like any other overlap.
      if (error.code === 'BACKUP_IN_PROGRESS') return this.#skip(base, 'running', undefined);
    }
    // A run cancelled by stop({ signal }) is a shutdown (a deploy, a restart), not a failure to alert on.
    const shutdown = this.#stopped && error.code === 'ABORTED';
    if (!shutdown && base.type !== 'verify') this.#failures += 1;
    const run = this.#record({ ...base, outcome: 'failed', errorCode: error.code, error: error.message });
    if (!shutdown) this.#metrics?.failed(base.type);
    this.emit('failed', run, error);
    return run;
  }

  #backedUp(base: RunBase, result: BackupResult): ScheduleRun {
    this.#failures = 0;
    const made = { name: result.name, backupType: result.type, size: result.size };
    if (result.unchanged === true) {
      const run = this.#skip(base, 'unchanged', made);
      // The backups are as current as a new one would have made them: a success to monitoring, no new size.
      this.#metrics?.succeeded(base.type, run.finishedAt, result.durationMs, undefined);
      return run;
    }
    const run = this.#record({ ...base, outcome: 'succeeded', ...made });
    this.#metrics?.succeeded(base.type, run.finishedAt, result.durationMs, result.size);
    return run;
  }

  #verified(base: RunBase, result: VerifyResult): ScheduleRun {
    const run = this.#record({ ...base, outcome: 'succeeded', name: result.name });
    this.#metrics?.succeeded('verify', run.finishedAt, result.durationMs, undefined);
    this.emit('verified', result);
    return run;
  }

  #skip(base: RunBase, reason: ScheduleSkipReason, made: Partial<ScheduleRun> | undefined): ScheduleRun {
    const run = this.#record({ ...base, ...made, outcome: 'skipped', reason });
    this.#metrics?.skipped(base.type, reason);
    this.emit('skipped', run);
    return run;
  }

  #record(run: RunBase & Partial<ScheduleRun> & Pick<ScheduleRun, 'outcome'>): ScheduleRun {
    const complete: ScheduleRun = {
      name: undefined,
      backupType: undefined,
      size: undefined,
      reason: undefined,
      errorCode: undefined,
      error: undefined,
      ...run,
      finishedAt: new Date(this.#clock.now()),
    };
    this.#last[run.type] = complete;
    return complete;
  }
}

type RunBase = Pick<ScheduleRun, 'type' | 'trigger' | 'startedAt'>;

function toArray(to: ScheduleOptions['to'] | undefined): readonly Destination[] {
  if (to === undefined) return [];
  return Array.isArray(to) ? (to as readonly Destination[]) : [to as Destination];
}

/** `options` without its undefined fields, for options that must be absent rather than undefined. */
function defined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}
