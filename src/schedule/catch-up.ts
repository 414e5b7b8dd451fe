import type { BackupInfo } from '../listing.js';
import type { Timing } from './timing.js';

/**
 * Whether a backup of `type` is overdue at `now`: no backup of these sources that its sidecar
 * vouches for was made since the last slot of `timing` (for a full, no full one). The newest
 * backup listed in the destination is what survives a restart, so this is what a schedule
 * catches up on, and what `backupkit status` reports.
 */
export function isOverdue(type: 'full' | 'incremental', timing: Timing, backups: readonly BackupInfo[], sources: ReadonlyArray<{ name: string; kind: string }>, now: number): boolean {
  const slot = timing.previous(now);
  return slot !== undefined && !madeSince(type, backups, sources, slot);
}

/**
 * Whether `backups` (newest first) hold a backup of these sources, vouched for by its sidecar,
 * started at or after `since`: for a full, a full one; for an incremental, either. Names keep
 * the second a backup started, so one started in the slot's second counts.
 */
export function madeSince(type: 'full' | 'incremental', backups: readonly BackupInfo[], sources: ReadonlyArray<{ name: string; kind: string }>, since: number): boolean {
  const wanted = sourceKey(sources);
  const newest = backups.find((b) => b.trust === 'trusted' && sourceKey(b.sources) === wanted && (type === 'incremental' || b.type === 'full'));
  return newest !== undefined && newest.createdAt.getTime() >= Math.floor(since / 1000) * 1000;
}

/** Sources compared by name and kind, whatever their order (as backup/chain.ts links chains). */
function sourceKey(sources: ReadonlyArray<{ name: string; kind: string }>): string {
  return sources
    .map(({ name, kind }) => `${name}:${kind}`)
    .sort()
    .join(', ');
}
