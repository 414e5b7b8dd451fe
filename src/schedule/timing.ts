import { Cron } from 'croner';
import { BackupError } from '../errors.js';

/** When a schedule's runs of one type fall due. */
export interface Timing {
  /** As the user wrote it: `'15m'` or `'0 3 * * *'`. */
  readonly spec: string;
  /** The first slot strictly after `after` (epoch milliseconds); undefined when there is none (a cron of a date gone by). */
  next(after: number): number | undefined;
  /** The last slot at or before `at`; undefined when there was none. */
  previous(at: number): number | undefined;
}

const INTERVAL = /^(\d+)\s*(s|m|h|d)$/;
const UNIT_MS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses `'15m'`, `'2s'`, `'1h'`, `'1d'` (an interval) or a cron expression of five fields, or six
 * with seconds, read in `timeZone` (an IANA name; default: the process's). Throws INVALID_OPTIONS.
 *
 * Intervals count from the Unix epoch, not from when the schedule started: every process with the
 * same schedule has the same slots (a fleet agrees on which backup is whose), and a restart does
 * not shift them.
 */
export function parseTiming(field: string, spec: unknown, timeZone: string | undefined): Timing {
  if (typeof spec !== 'string') throw new BackupError('INVALID_OPTIONS', `${field} must be a cron expression or an interval such as '15m', not ${typeof spec}`);
  const interval = INTERVAL.exec(spec.trim());
  if (interval) {
    const ms = Number(interval[1]) * (UNIT_MS[interval[2] as string] as number);
    if (ms <= 0) throw new BackupError('INVALID_OPTIONS', `${field}: an interval of ${JSON.stringify(spec)} never ends`);
    return { spec, next: (after) => (Math.floor(after / ms) + 1) * ms, previous: (at) => Math.floor(at / ms) * ms };
  }
  let cron: Cron;
  try {
    // Without a function to call, croner only evaluates the pattern: it arms no timer of its own.
    cron = new Cron(spec, { mode: '5-or-6-parts', ...(timeZone === undefined ? {} : { timezone: timeZone }) });
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `${field}: ${JSON.stringify(spec)} is neither an interval nor a cron expression: ${(cause as Error).message}`, {
      cause,
      hint: "Write an interval ('30s', '15m', '1h', '1d') or a cron expression of five fields, or six with seconds first ('0 3 * * *', '*/10 * * * * *').",
    });
  }
  return {
    spec,
    next: (after) => cron.nextRun(new Date(after))?.getTime(),
    // previousRuns looks strictly before its reference: one millisecond on includes `at` itself.
    previous: (at) => cron.previousRuns(1, new Date(at + 1))[0]?.getTime(),
  };
}

/** Throws INVALID_OPTIONS unless `timeZone` is an IANA time zone this Node.js knows. */
export function checkTimeZone(timeZone: unknown): asserts timeZone is string | undefined {
  if (timeZone === undefined) return;
  try {
    if (typeof timeZone !== 'string') throw new TypeError('not a string');
    new Intl.DateTimeFormat('en', { timeZone });
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `timeZone ${JSON.stringify(timeZone)} is not a time zone`, { cause, hint: "Use an IANA name such as 'Europe/Paris' or 'UTC'." });
  }
}
