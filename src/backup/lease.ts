import { hostname } from 'node:os';
import { BackupError } from '../errors.js';
import type { Destination, Lease } from '../types.js';

/** The one lease of a destination that backups take: one backup at a time, whichever process. */
export const BACKUP_LEASE = 'backupkit.lease';
/** Long enough for several slow requests between two renewals, short enough to replace a dead holder soon. */
export const DEFAULT_LEASE_TTL_MS = 30_000;
/** Below this, a renewal every third of it leaves too little room for a slow request. */
export const MIN_LEASE_TTL_MS = 500;

/** Reads `startBackup`'s `lease` option: the ttl to take a lease for, or `undefined` for none. */
export function leaseTtl(option: unknown): number | undefined {
  if (option === undefined || option === false) return undefined;
  if (option === true) return DEFAULT_LEASE_TTL_MS;
  const ttlMs = typeof option === 'object' && option !== null ? ((option as { ttlMs?: unknown }).ttlMs ?? DEFAULT_LEASE_TTL_MS) : undefined;
  if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < MIN_LEASE_TTL_MS) {
    throw new BackupError('INVALID_OPTIONS', `\`lease\` must be true or { ttlMs }, with ttlMs a whole number of milliseconds from ${MIN_LEASE_TTL_MS}, not ${JSON.stringify(option)}`);
  }
  return ttlMs;
}

/** A lease held for one backup: renewed in the background until released. */
export interface HeldLease {
  /** Aborted, with a `LEASE_LOST` reason, when a renewal finds the lease taken by another. */
  readonly lost: AbortSignal;
  /** Throws `LEASE_LOST` unless the lease is still this backup's: called right before committing. */
  fence(): Promise<void>;
  /** Stops renewing and gives the lease up; never fails, as an unreleased lease expires by itself. */
  release(): Promise<void>;
}

/**
 * Takes the backup lease of `destination` and renews it every third of its ttl, so that a renewal
 * or two may fail (a slow request, a dropped connection) before it expires. The heartbeat stops
 * the backup early once the lease is lost; whether it may commit is decided by `fence()`, never
 * by the heartbeat alone.
 */
export async function holdLease(destination: Destination, ttlMs: number): Promise<HeldLease> {
  if (typeof destination.lease !== 'function') {
    throw new BackupError('INVALID_OPTIONS', `${destination.description} cannot hold a lease, so \`lease\` cannot be used with it first in \`to\``, {
      hint: 'Put a destination that keeps leases first in `to` (docs/guides/fleet.md lists them): the lease is kept in the first destination.',
    });
  }
  const lease = await destination.lease(BACKUP_LEASE, { ttlMs, holder: `host ${hostname()}, pid ${process.pid}` });
  const lost = new AbortController();
  // The lease's methods are never called concurrently: each waits for the one before.
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(call: (lease: Lease) => Promise<T>): Promise<T> => {
    const next = queue.then(() => call(lease));
    queue = next.catch(() => {});
    return next;
  };
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const beat = () => {
    if (stopped) return; // a renewal that was under way when the lease was released
    timer = setTimeout(() => {
      // A renewal that failed otherwise (the destination unreachable) stops the backup only once
      // the lease's ttl ran out, which the check tells before it asks the destination anything.
      const renewOrCheck = (l: Lease) => l.renew().catch((error: unknown) => (isLost(error) ? Promise.reject(error) : l.check()));
      serially(renewOrCheck).then(beat, (error: unknown) => {
        if (isLost(error)) lost.abort(error);
        else beat();
      });
    }, ttlMs / 3);
    timer.unref(); // the backup keeps the process alive, not its lease
  };
  beat();
  return {
    lost: lost.signal,
    fence: () => serially((l) => l.check()),
    async release() {
      stopped = true;
      clearTimeout(timer);
      await serially((l) => l.release()).catch(() => {});
    },
  };
}

function isLost(error: unknown): error is BackupError {
  return error instanceof BackupError && error.code === 'LEASE_LOST';
}
