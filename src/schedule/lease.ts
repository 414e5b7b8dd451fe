import { hostname } from 'node:os';
import { BackupError } from '../errors.js';
import type { Destination } from '../types.js';

/**
 * The lease a fleet's schedules take around each scheduled backup, beside the backup's own
 * (`backupkit.lease`): it covers the check that the slot's backup is not made yet as well as the
 * backup, so that two processes cannot both find it missing.
 */
export const SCHEDULE_LEASE = 'backupkit.schedule';

/** A held schedule lease: renewed in the background until released. */
export interface ScheduleLease {
  /** Stops renewing and gives the lease up; never fails, as an unreleased lease expires by itself. */
  release(): Promise<void>;
}

/**
 * Takes the schedule lease of `destination` (LEASE_HELD when another process holds it) and renews
 * it every third of `ttlMs`. It goes by the system clock, never a schedule's injected one: its
 * expiry is judged by other processes. A renewal that fails is not fatal here: the backup inside
 * holds its own lease and checks it before committing, which is what keeps a late holder from
 * committing.
 */
export async function holdScheduleLease(destination: Destination, ttlMs: number): Promise<ScheduleLease> {
  if (typeof destination.lease !== 'function') {
    throw new BackupError('INVALID_OPTIONS', `${destination.description} cannot hold a lease, so a schedule with \`lease\` cannot have it first in \`to\``);
  }
  const lease = await destination.lease(SCHEDULE_LEASE, { ttlMs, holder: `host ${hostname()}, pid ${process.pid}` });
  let renewing: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    renewing = renewing.then(() => lease.renew()).catch(() => {});
  }, ttlMs / 3);
  timer.unref(); // the backup keeps the process alive, not its lease
  return {
    async release() {
      clearInterval(timer);
      await renewing;
      await lease.release().catch(() => {});
    },
  };
}
