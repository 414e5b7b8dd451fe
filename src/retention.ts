import { CLAIM_EXTENSION, SIDECAR_EXTENSION, STATE_EXTENSION, dateFromArchiveName } from './archive/names.js';
import { listBackups, type BackupInfo } from './listing.js';
import { BackupError, asBackupError } from './errors.js';
import type { Destination } from './types.js';

/**
 * Which backups to keep; every other one is deleted. Rules add up: a backup is kept if any rule
 * keeps it, and the newest backup is always kept. Days, weeks and months are UTC.
 *
 * The rules count restore points: a full and an incremental count alike. A kept incremental keeps
 * every backup it builds on, back to its chain's full (reason `chain`), so a chain loses only its
 * tail or goes whole.
 *
 * The rules see only backups whose sidecar vouches for them (`trust: 'trusted'`, see
 * {@link BackupInfo}): an `unknown` backup is always kept, and neither counts as the newest nor
 * takes one of the places of `keepLast`, `keepDaily`, ..., so it never pushes out a good one.
 * @public
 */
export interface RetentionPolicy {
  /** The newest N backups. */
  keepLast?: number;
  /** The newest backup of each of the last N days that have backups. */
  keepDaily?: number;
  /** The newest backup of each of the last N ISO weeks that have backups. */
  keepWeekly?: number;
  /** The newest backup of each of the last N months that have backups. */
  keepMonthly?: number;
  /** Every backup younger than this: milliseconds, or a string such as `'36h'`, `'30d'`, `'8w'`. */
  maxAge?: number | string;
}

/**
 * Options of {@link prune}.
 * @public
 */
export interface PruneOptions {
  /** Say what would be deleted, delete nothing. */
  dryRun?: boolean;
  /** The present, for `maxAge`; default: now. */
  now?: Date;
}

/**
 * What {@link prune} kept and deleted, and why each was kept.
 * @public
 */
export interface PruneResult {
  /** Whether this was a dry run, which deleted nothing. */
  readonly dryRun: boolean;
  /**
   * The backups kept, newest first, each with the rules that kept it (`newest`, `last`, `daily`,
   * `weekly`, `monthly`, `maxAge`), `chain` for one a kept incremental builds on, or `unknown` for
   * one whose sidecar does not vouch for it.
   */
  readonly kept: ReadonlyArray<BackupInfo & { reasons: readonly string[] }>;
  /** Deleted, or with `dryRun` to be deleted. */
  readonly removed: readonly BackupInfo[];
  /**
   * What interrupted backups left behind and was removed, or with `dryRun` would be (temporary
   * files, abandoned multipart uploads: see {@link Destination.removeLeftovers}); empty for a
   * destination that leaves none.
   */
  readonly leftovers: readonly string[];
}

const UNIT_MS: Record<string, number> = { h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Throws INVALID_OPTIONS for a policy that is malformed or would delete everything. */
export function checkRetentionPolicy(policy: RetentionPolicy): void {
  const counts = ['keepLast', 'keepDaily', 'keepWeekly', 'keepMonthly'] as const;
  const rules: readonly string[] = [...counts, 'maxAge'];
  // A misspelt rule would otherwise be ignored, and the policy keep less than meant.
  for (const key of Object.keys(policy)) {
    if (rules.includes(key)) continue;
    const meant = rules.find((rule) => rule.toLowerCase() === key.toLowerCase().replaceAll(/[_-]/g, ''));
    throw new BackupError('INVALID_OPTIONS', `retention.${key} is not a retention rule${meant ? `; did you mean ${meant}?` : ''}`, {
      hint: `Use ${rules.join(', ')}.`,
    });
  }
  for (const rule of counts) {
    const value = policy[rule];
    if (value !== undefined && (!Number.isInteger(value) || value < 0)) {
      throw new BackupError('INVALID_OPTIONS', `retention.${rule} must be a whole number, not ${typeof value === 'number' ? String(value) : `${typeof value} ${JSON.stringify(value)}`}`);
    }
  }
  if (policy.maxAge !== undefined) maxAgeMs(policy.maxAge);
  if (counts.every((rule) => !policy[rule]) && policy.maxAge === undefined) {
    throw new BackupError('INVALID_OPTIONS', 'A retention policy needs at least one rule (keepLast, keepDaily, keepWeekly, keepMonthly or maxAge)');
  }
}

/**
 * Deletes the backups on a destination that the policy does not keep (the archive, then its sidecar
 * and the `.state` saved for the next incremental), and what interrupted backups left behind; says
 * what it kept and deleted. The newest backup is never deleted, nor is a backup whose sidecar does
 * not vouch for it (kept with the reason `unknown`).
 * @public
 */
export async function prune(destination: Destination, policy: RetentionPolicy, options: PruneOptions = {}): Promise<PruneResult> {
  checkRetentionPolicy(policy);
  const dryRun = options.dryRun ?? false;
  const leftovers = await pruneLeftovers(destination, dryRun, options.now ?? new Date());
  const backups = await listBackups(destination);
  const trusted = backups.filter((b) => b.trust === 'trusted');
  const reasons = selectRetained(trusted, policy, options.now ?? new Date());
  keepChains(trusted, reasons);
  for (const backup of backups) if (backup.trust !== 'trusted') reasons.set(backup.name, ['unknown']);
  const kept = backups.filter((b) => reasons.has(b.name)).map((b) => ({ ...b, reasons: reasons.get(b.name) ?? [] }));
  const removed = backups.filter((b) => !reasons.has(b.name));
  if (!dryRun) {
    // Newest first: a prune cut short leaves no incremental whose predecessor is gone.
    for (const { name } of removed) {
      try {
        await destination.remove(name);
        // The archive first: a prune cut short leaves at worst a sidecar or state without an archive, which
        // nothing lists, never an archive without its sidecar, which would list as unknown and stay forever.
        for (const companion of [SIDECAR_EXTENSION, STATE_EXTENSION]) {
          await destination.remove(`${name}${companion}`).catch((error: unknown) => {
            if (!(error instanceof BackupError && error.code === 'NOT_FOUND')) throw error;
          });
        }
      } catch (cause) {
        throw asBackupError(cause, 'DESTINATION_FAILED', `Deleting ${name} from ${destination.description} failed`);
      }
    }
  }
  return { dryRun, kept, removed, leftovers };
}

/**
 * A name claim matters only while backups of its second pick their names (backup/name-claim.ts);
 * a day later it can only be the claim of a killed backup.
 */
const STALE_CLAIM_MS = 86_400_000;

/**
 * Removes, or on a dry run only lists, what interrupted backups left on the destination: the
 * destination's own temporaries and the name claims of backups killed before they released them.
 */
async function pruneLeftovers(destination: Destination, dryRun: boolean, now: Date): Promise<string[]> {
  try {
    const claims: string[] = [];
    for await (const { name } of destination.list()) {
      if (!name.endsWith(CLAIM_EXTENSION)) continue;
      const claimedAt = dateFromArchiveName(`${name.slice(0, -CLAIM_EXTENSION.length)}.tar`);
      if (claimedAt && now.getTime() - claimedAt.getTime() > STALE_CLAIM_MS) claims.push(name);
    }
    if (dryRun) return [...((await destination.listLeftovers?.()) ?? []), ...claims];
    const removed = (await destination.removeLeftovers?.()) ?? [];
    for (const claim of claims) await destination.remove(claim);
    return [...removed, ...claims];
  } catch (cause) {
    throw asBackupError(cause, 'DESTINATION_FAILED', `${dryRun ? 'Listing' : 'Removing'} what interrupted backups left on ${destination.description} failed`);
  }
}

/** The backups a policy keeps, by name, with the rules that keep each. `backups` is newest first. */
function selectRetained(backups: readonly BackupInfo[], policy: RetentionPolicy, now: Date): Map<string, string[]> {
  const kept = new Map<string, string[]>();
  const keep = (name: string, reason: string) => kept.set(name, [...(kept.get(name) ?? []), reason]);
  const [newest] = backups;
  if (newest) keep(newest.name, 'newest');
  backups.slice(0, policy.keepLast ?? 0).forEach((b) => keep(b.name, 'last'));
  const buckets: Array<[number | undefined, string, (date: Date) => string]> = [
    [policy.keepDaily, 'daily', (d) => d.toISOString().slice(0, 10)],
    [policy.keepWeekly, 'weekly', isoWeek],
    [policy.keepMonthly, 'monthly', (d) => d.toISOString().slice(0, 7)],
  ];
  for (const [count = 0, reason, bucketOf] of buckets) {
    const seen = new Set<string>();
    for (const backup of backups) {
      if (seen.size >= count) break;
      const bucket = bucketOf(backup.createdAt);
      if (seen.has(bucket)) continue;
      seen.add(bucket);
      keep(backup.name, reason);
    }
  }
  if (policy.maxAge !== undefined) {
    const oldest = now.getTime() - maxAgeMs(policy.maxAge);
    for (const backup of backups) if (backup.createdAt.getTime() >= oldest) keep(backup.name, 'maxAge');
  }
  return kept;
}

/** Adds, to the kept backups, every backup a kept incremental builds on, back to its full. */
function keepChains(backups: readonly BackupInfo[], kept: Map<string, string[]>): void {
  const byName = new Map(backups.map((b) => [b.name, b]));
  // Newest first, so a predecessor marked here is itself walked when its turn comes.
  for (const backup of backups) {
    if (!kept.has(backup.name) || backup.previous === undefined) continue;
    const previous = byName.get(backup.previous);
    if (previous && !kept.get(previous.name)?.includes('chain')) kept.set(previous.name, [...(kept.get(previous.name) ?? []), 'chain']);
  }
}

function maxAgeMs(maxAge: number | string): number {
  if (typeof maxAge === 'number' && Number.isFinite(maxAge) && maxAge >= 0) return maxAge;
  const match = typeof maxAge === 'string' ? /^(\d+)\s*([hdw])$/.exec(maxAge) : null;
  if (!match) throw new BackupError('INVALID_OPTIONS', `retention.maxAge must be milliseconds or like '36h', '30d', '8w', not ${JSON.stringify(maxAge)}`);
  return Number(match[1]) * (UNIT_MS[match[2] as string] as number);
}

/** ISO 8601 week of a date (UTC), such as `2026-W47`. */
function isoWeek(date: Date): string {
  const day = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  day.setUTCDate(day.getUTCDate() + 4 - (day.getUTCDay() || 7)); // the Thursday of its week
  const yearStart = Date.UTC(day.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((day.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${day.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}
