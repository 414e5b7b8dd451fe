import type { BackupType } from '../archive/format.js';
import { listBackups, type BackupInfo } from '../listing.js';
import type { BackupWarning, Destination, Source } from '../types.js';

/** Where a new backup stands: a full, or an incremental and the backups it builds on. */
export type ChainLink = { readonly type: 'full'; readonly base?: undefined; readonly previous?: undefined } | { readonly type: 'incremental'; readonly base: string; readonly previous: string };

/**
 * Decides what an incremental builds on: the newest backup on `destination` that its sidecar
 * vouches for and that holds exactly these sources. Without one (a first run, a Database whose
 * sources changed, a chain encrypted differently) the backup is a full, and a warning says why.
 */
export async function linkToChain(
  requested: BackupType,
  destination: Destination,
  sources: readonly Source[],
  encrypted: boolean,
  warn: (warning: BackupWarning) => void,
): Promise<ChainLink> {
  if (requested === 'full') return { type: 'full' };
  const wanted = sourceKey(sources);
  const previous = (await listBackups(destination)).find((b) => b.trust === 'trusted' && sourceKey(b.sources) === wanted);
  if (!previous) {
    warn({ code: 'INCREMENTAL_BASE_MISSING', message: `${destination.description} holds no earlier backup of these sources (${wanted}); this backup is a full one` });
    return { type: 'full' };
  }
  if (previous.encrypted !== encrypted) {
    const how = (e: boolean) => (e ? 'encrypted' : 'not encrypted');
    warn({ code: 'INCREMENTAL_BASE_REJECTED', message: `${previous.name} is ${how(previous.encrypted)} and this backup is ${how(encrypted)}; this backup is a full one` });
    return { type: 'full' };
  }
  return { type: 'incremental', base: chainBase(previous), previous: previous.name };
}

/** The full a backup's chain starts with: itself for a full. */
function chainBase(backup: BackupInfo): string {
  return backup.type === 'incremental' && backup.base !== undefined ? backup.base : backup.name;
}

/** Sources compared by name and kind, whatever their order. */
function sourceKey(sources: ReadonlyArray<{ name: string; kind: string }>): string {
  return sources
    .map(({ name, kind }) => `${name}:${kind}`)
    .sort()
    .join(', ');
}
