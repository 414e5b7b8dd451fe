import pLimit from 'p-limit';
import { CLAIM_EXTENSION, SIDECAR_EXTENSION, STATE_EXTENSION, dateFromArchiveName, isArchiveName, stemOf } from './archive/names.js';
import type { ArchiveHeader } from './archive/format.js';
import { readArchiveHeader } from './archive/peek.js';
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
 * What an unknown backup builds on is read from its archive's header (the first few bytes, never
 * the whole archive), and its chain kept like a kept incremental's; when the header cannot be read
 * (an encrypted or damaged archive), every backup before it back to the newest full is kept
 * (reason `unknown-chain`, with a {@link PruneWarning}).
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
 * Why {@link prune} kept more than its policy asks for.
 * @public
 */
export interface PruneWarning {
  /**
   * `UNKNOWN_CHAIN`: an `unknown` backup's header cannot be read (it is encrypted, and the header
   * is inside the encryption; or it is damaged, or reading it failed), so what it builds on is
   * unknown, and every backup before it back to the newest full was kept (reason `unknown-chain`).
   */
  readonly code: 'UNKNOWN_CHAIN';
  /** The unknown backup's name. */
  readonly backup: string;
  /** The backups kept for it, newest first. */
  readonly kept: readonly string[];
  /** A sentence for people: why the header could not be read, and what was kept. */
  readonly message: string;
}

/**
 * What {@link prune} kept and deleted, and why each was kept.
 * @public
 */
export interface PruneResult {
  /** Whether this was a dry run, which deleted nothing. */
  readonly dryRun: boolean;
  /**
   * The backups kept, newest first, each with its reasons:
   *
   * - the rules that kept it: `newest`, `last`, `daily`, `weekly`, `monthly`, `maxAge`;
   * - `unknown`: its sidecar does not vouch for it (see {@link BackupInfo.problem});
   * - `chain`: a kept incremental builds on it, as that incremental's trusted sidecar says, or for
   *   an `unknown` one its archive's header;
   * - `unknown-chain`: it is older than an `unknown` backup whose header cannot be read, and not
   *   older than the newest full before that one: it may be what that backup builds on (see
   *   {@link PruneResult.warnings}).
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
  /** Why more was kept than the policy asks for, one warning per `unknown` backup whose header cannot be read. */
  readonly warnings: readonly PruneWarning[];
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
 * not vouch for it (kept with the reason `unknown`), nor one that a kept backup needs: what an
 * `unknown` one builds on is read from its archive's header (a ranged read of its first bytes).
 * @public
 */
export async function prune(destination: Destination, policy: RetentionPolicy, options: PruneOptions = {}): Promise<PruneResult> {
  checkRetentionPolicy(policy);
  const dryRun = options.dryRun ?? false;
  const leftovers = await pruneLeftovers(destination, dryRun, options.now ?? new Date());
  const backups = await listBackups(destination);
  const trusted = backups.filter((b) => b.trust === 'trusted');
  const reasons = selectRetained(trusted, policy, options.now ?? new Date());
  for (const backup of backups) if (backup.trust !== 'trusted') reasons.set(backup.name, ['unknown']);
  const warnings = keepChains(backups, reasons, await lineagesOfUnknown(destination, backups));
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
  return { dryRun, kept, removed, leftovers, warnings };
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

/** What a backup builds on, or for an `unknown` one whose header cannot be read, why not. */
type Lineage = { readonly type: 'full' } | { readonly type: 'incremental'; readonly previous: string } | { readonly type?: undefined; readonly unreadable: string };

/** Headers read at once: each is one small ranged read. */
const HEADER_READS = 4;

/** The lineage of every `unknown` backup, by name, from its archive's header. */
async function lineagesOfUnknown(destination: Destination, backups: readonly BackupInfo[]): Promise<Map<string, Lineage>> {
  const limit = pLimit(HEADER_READS);
  const unknown = backups.filter((b) => b.trust !== 'trusted');
  const lineages = await Promise.all(unknown.map((backup) => limit(() => lineageFromHeader(destination, backup))));
  return new Map(unknown.map((backup, i) => [backup.name, lineages[i] as Lineage]));
}

/**
 * Reads what an `unknown` backup builds on from its header. Its header is checked as strictly as a
 * sidecar: it must describe this archive, and an incremental must build on earlier backups.
 */
async function lineageFromHeader(destination: Destination, backup: BackupInfo): Promise<Lineage> {
  if (backup.encrypted) return { unreadable: 'it is encrypted, and its header is inside the encryption' };
  let header: ArchiveHeader;
  try {
    header = await readArchiveHeader(destination, backup.name, backup.size);
  } catch (error) {
    // Whatever the reason, the answer is the same: keep what it may need.
    return { unreadable: `its header cannot be read: ${error instanceof Error ? error.message : String(error)}` };
  }
  const { name, type = 'full', base, previous } = header;
  if (name !== backup.name) return { unreadable: `its header describes ${JSON.stringify(name)}` };
  if (type === 'full' && base === undefined && previous === undefined) return { type: 'full' };
  if (
    type === 'incremental' &&
    typeof base === 'string' &&
    typeof previous === 'string' &&
    isArchiveName(base) &&
    isArchiveName(previous) &&
    stemOf(base) <= stemOf(previous) &&
    stemOf(previous) < stemOf(backup.name)
  ) {
    return { type: 'incremental', previous };
  }
  return { unreadable: 'its header names no earlier backups it builds on' };
}

/**
 * Adds, to the kept backups, every backup a kept one builds on, back to its full: by its trusted
 * sidecar, or an `unknown` one's header. For an `unknown` backup whose header cannot be read, keeps
 * every backup before it back to the newest full, and says so. `backups` is newest first.
 */
function keepChains(backups: readonly BackupInfo[], kept: Map<string, string[]>, unknown: ReadonlyMap<string, Lineage>): PruneWarning[] {
  const listed = new Set(backups.map((b) => b.name));
  const lineageOf = (backup: BackupInfo): Lineage | undefined =>
    backup.trust === 'trusted' ? (backup.type === 'incremental' && backup.previous !== undefined ? { type: 'incremental', previous: backup.previous } : { type: 'full' }) : unknown.get(backup.name);
  const keep = (name: string, reason: string) => {
    const reasons = kept.get(name) ?? [];
    if (!reasons.includes(reason)) kept.set(name, [...reasons, reason]);
  };
  const warnings: PruneWarning[] = [];
  // Newest first, and a chain runs back in time: a backup marked here is itself walked when its turn comes.
  for (const [index, backup] of backups.entries()) {
    if (!kept.has(backup.name)) continue;
    const lineage = lineageOf(backup);
    if (lineage?.type === 'incremental') {
      // A predecessor that is gone leaves a broken chain that keeping nothing here can mend.
      if (listed.has(lineage.previous)) keep(lineage.previous, 'chain');
    } else if (lineage !== undefined && 'unreadable' in lineage) {
      const older = backups.slice(index + 1);
      const full = older.findIndex((b) => lineageOf(b)?.type === 'full');
      const held = (full === -1 ? older : older.slice(0, full + 1)).map((b) => b.name);
      for (const name of held) keep(name, 'unknown-chain');
      const back = full === -1 ? `all ${held.length} backups before it (no full before it is known)` : held.length === 1 ? `the full before it, ${held[0]}` : `the ${held.length} backups before it, back to the full ${held.at(-1)}`;
      warnings.push({ code: 'UNKNOWN_CHAIN', backup: backup.name, kept: held, message: `${backup.name} is unknown and ${lineage.unreadable}, so what it builds on is unknown: kept ${back}` });
    }
  }
  return warnings;
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
