import type { BackupType } from '../archive/format.js';
import type { Encryption } from '../archive/encryption.js';
import { SIDECAR_EXTENSION } from '../archive/names.js';
import { BackupError } from '../errors.js';
import { listBackups, readSidecar, type BackupInfo } from '../listing.js';
import type { BackupWarning, Destination, Source } from '../types.js';
import { readStates, stateName, type PreviousStates } from './state.js';

/** Where a new backup stands: a full, or an incremental and the backups it builds on. */
export type ChainLink = { readonly type: 'full'; readonly base?: undefined; readonly previous?: undefined } | { readonly type: 'incremental'; readonly base: string; readonly previous: string };

/** A new backup's place in its chain, and for an incremental what its sources saved last time. */
export interface ChainStart {
  readonly link: ChainLink;
  /** The backup an incremental builds on, as listed. */
  readonly previous?: BackupInfo;
  readonly states?: PreviousStates;
}

/**
 * Decides what an incremental builds on: the newest backup on `destination` that its sidecar
 * vouches for, that holds exactly these sources, is encrypted alike and whose stored state reads
 * back as its sidecar records. Without one (a first run, a Database whose sources changed, a
 * chain encrypted differently, a state that is missing or damaged) the backup is a full, and a
 * warning says why: an incremental never builds on what it cannot confirm.
 */
export async function startChain(
  requested: BackupType,
  destination: Destination,
  sources: readonly Source[],
  encryption: Encryption | undefined,
  warn: (warning: BackupWarning) => void,
  signal: AbortSignal,
): Promise<ChainStart> {
  const full: ChainStart = { link: { type: 'full' } };
  if (requested === 'full') return full;
  const wanted = sourceKey(sources);
  const previous = (await listBackups(destination)).find((b) => b.trust === 'trusted' && sourceKey(b.sources) === wanted);
  if (!previous) {
    warn({ code: 'INCREMENTAL_BASE_MISSING', message: `${destination.description} holds no earlier backup of these sources (${wanted}); this backup is a full one` });
    return full;
  }
  const rejected = (why: string): ChainStart => {
    warn({ code: 'INCREMENTAL_BASE_REJECTED', message: `${previous.name} ${why}; this backup is a full one` });
    return full;
  };
  const read = await readSidecar(destination, `${previous.name}${SIDECAR_EXTENSION}`, { name: previous.name, size: previous.size, modifiedAt: previous.createdAt });
  if (read.problem) return rejected(`cannot be confirmed: ${read.problem.message}`);
  const { sidecar } = read;
  if (previous.encrypted !== (encryption !== undefined)) {
    const how = (e: boolean) => (e ? 'encrypted' : 'not encrypted');
    return rejected(`is ${how(previous.encrypted)} and this backup is ${how(encryption !== undefined)}`);
  }
  if (encryption && recipientKey(sidecar.encryption?.recipients ?? []) !== recipientKey(encryption.fingerprints)) {
    return rejected('is encrypted to other recipients than this backup');
  }
  if (!sidecar.state) return rejected(`has no stored state (${stateName(previous.name)}) to tell what changed since`);
  if (encryption && encryption.passwords.length === 0) {
    return rejected(`has its state encrypted, and this backup has no passphrase to read it (public keys only encrypt)`);
  }
  const passphrase = encryption?.passwords[0];
  try {
    const states = await readStates(destination, previous.name, sidecar.state, passphrase === undefined ? undefined : { passphrase }, signal);
    return { link: { type: 'incremental', base: chainBase(previous), previous: previous.name }, previous, states };
  } catch (error) {
    if (signal.aborted) throw error;
    const reason = error instanceof BackupError && error.code === 'WRONG_KEY' ? 'is encrypted with another passphrase' : `has a state that cannot be used: ${(error as Error).message}`;
    return rejected(reason);
  }
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

function recipientKey(fingerprints: readonly string[]): string {
  return fingerprints
    .map((f) => f.toLowerCase())
    .sort()
    .join(',');
}
