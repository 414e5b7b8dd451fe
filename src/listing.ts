import pLimit from 'p-limit';
import { ENCRYPTED_EXTENSION, SIDECAR_EXTENSION, dateFromArchiveName, isArchiveName } from './archive/names.js';
import type { BackupType } from './archive/format.js';
import { MAX_SIDECAR_BYTES, checkSidecar, type ListedSidecar } from './archive/sidecar.js';
import { BackupError, asBackupError } from './errors.js';
import type { Destination, StoredObject } from './types.js';
import { readLimited } from './util/streams.js';

/** Sidecars read at once: enough to hide an object store's latency, few enough to be polite. */
const SIDECAR_READS = 8;

/**
 * Whether listing can vouch for a backup: `trusted` when its sidecar is valid and describes this
 * very archive, `unknown` when it cannot tell (see {@link BackupInfo.problem}).
 * @public
 */
export type BackupTrust = 'trusted' | 'unknown';

/**
 * Why a backup's sidecar does not vouch for it:
 *
 * - `SIDECAR_MISSING`: there is no `<archive>.json` beside the archive (a backup killed between
 *   its two commits, or one still committing);
 * - `SIDECAR_UNPARSABLE`: the sidecar is not JSON, or too large to be one;
 * - `SIDECAR_INVALID`: a field listing uses has the wrong type or is out of range;
 * - `SIDECAR_MISMATCH`: the sidecar describes another archive: its name, its start time (to the
 *   second of the archive's name), its size or whether it is encrypted differ.
 * @public
 */
export type BackupProblemCode = 'SIDECAR_MISSING' | 'SIDECAR_UNPARSABLE' | 'SIDECAR_INVALID' | 'SIDECAR_MISMATCH';

/**
 * What is wrong with a backup's sidecar, for programs (`code`) and people (`message`).
 * @public
 */
export interface BackupProblem {
  /** A stable identifier of the problem. */
  readonly code: BackupProblemCode;
  /** A sentence saying what is wrong, e.g. `its sidecar's sourceStats is not a list`. */
  readonly message: string;
}

/**
 * One backup stored on a destination.
 *
 * Its name is the truth: `createdAt` always comes from it. The other fields come from the
 * backup's sidecar only when `trust` is `trusted`; for an `unknown` backup they are what the
 * name and the stored object say (`sha256`, `signedBy` and `type` undefined, `sources` empty), and
 * {@link prune} never deletes it.
 * @public
 */
export interface BackupInfo {
  /** The archive's name, e.g. `20261121-124500.tar.gz`. */
  readonly name: string;
  /** When the backup started, to the second: the UTC time its name encodes. */
  readonly createdAt: Date;
  /** Archive size in bytes, as the destination lists it. */
  readonly size: number;
  /** SHA-256 of the archive, from a trusted sidecar. */
  readonly sha256: string | undefined;
  /** Whether the archive is encrypted (its name ends with `.gpg`). */
  readonly encrypted: boolean;
  /**
   * The fingerprint of the key the backup says it is signed with (its trusted sidecar says so);
   * only a restore or `verifyBackup` with `verifySignature` checks the signature itself.
   */
  readonly signedBy: string | undefined;
  /** The sources it holds, from a trusted sidecar; empty otherwise. */
  readonly sources: ReadonlyArray<{ name: string; kind: string; bytes: number; items: number }>;
  /** `full`, or `incremental` when it builds on earlier backups; undefined for an `unknown` backup. */
  readonly type: BackupType | undefined;
  /** An incremental's full: the first backup of its chain. */
  readonly base: string | undefined;
  /** An incremental's predecessor: the backup right before it in its chain. */
  readonly previous: string | undefined;
  /** Whether its sidecar vouches for it; retention never deletes an `unknown` backup. */
  readonly trust: BackupTrust;
  /** Why it is `unknown`; `undefined` exactly when it is `trusted`. */
  readonly problem: BackupProblem | undefined;
}

/**
 * The backups on a destination, newest first. Reads the small sidecar files, never the archives.
 * A sidecar that is missing, damaged or describes another archive does not fail the listing: that
 * backup is listed as `unknown`, with its problem.
 * @public
 */
export async function listBackups(destination: Destination): Promise<BackupInfo[]> {
  const { archives, sidecars } = await listArchives(destination);
  const limit = pLimit(SIDECAR_READS);
  return Promise.all(
    archives.map((archive) =>
      limit(async () => {
        const sidecarName = `${archive.name}${SIDECAR_EXTENSION}`;
        const read = sidecars.has(sidecarName) ? await readSidecar(destination, sidecarName, archive) : missing(sidecarName);
        return describeBackup(archive, read);
      }),
    ),
  );
}

/**
 * The archives on a destination, newest first, and the names of the sidecars beside them. What else
 * belongs to an archive (its `.state`) or to a running backup (a `.claim`) is no archive: not listed.
 */
export async function listArchives(destination: Destination): Promise<{ archives: StoredObject[]; sidecars: Set<string> }> {
  const archives: StoredObject[] = [];
  const sidecars = new Set<string>();
  try {
    for await (const object of destination.list()) {
      if (isArchiveName(object.name)) archives.push(object);
      else if (object.name.endsWith(SIDECAR_EXTENSION)) sidecars.add(object.name);
    }
  } catch (cause) {
    throw asBackupError(cause, 'DESTINATION_FAILED', `Listing ${destination.description} failed`);
  }
  // Names sort chronologically (see archive/names.ts).
  archives.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
  return { archives, sidecars };
}

export type SidecarRead = { sidecar: ListedSidecar; problem?: undefined } | { problem: BackupProblem };

function describeBackup(archive: StoredObject, read: SidecarRead): BackupInfo {
  const { name, size } = archive;
  const createdAt = dateFromArchiveName(name) as Date; // listArchives keeps archive names only
  const encrypted = name.endsWith(ENCRYPTED_EXTENSION);
  if (read.problem) {
    return { name, createdAt, size, sha256: undefined, encrypted, signedBy: undefined, sources: [], type: undefined, base: undefined, previous: undefined, trust: 'unknown', problem: read.problem };
  }
  const { sidecar } = read;
  return {
    name,
    createdAt,
    size,
    sha256: sidecar.sha256,
    encrypted,
    signedBy: sidecar.signature?.fingerprint,
    sources: sidecar.sourceStats.map(({ name, kind, bytes, items }) => ({ name, kind, bytes, items })),
    type: sidecar.type,
    base: sidecar.base,
    previous: sidecar.previous,
    trust: 'trusted',
    problem: undefined,
  };
}

function missing(sidecarName: string): SidecarRead {
  return { problem: { code: 'SIDECAR_MISSING', message: `its sidecar ${sidecarName} is missing` } };
}

/**
 * Reads and checks a sidecar. Only a destination that cannot be read fails; whatever the sidecar
 * holds becomes the backup's problem.
 */
export async function readSidecar(destination: Destination, sidecarName: string, archive: StoredObject): Promise<SidecarRead> {
  let bytes: Buffer;
  try {
    bytes = await readLimited(await destination.open(sidecarName), MAX_SIDECAR_BYTES, () => new SidecarTooLarge());
  } catch (error) {
    if (error instanceof SidecarTooLarge) return { problem: { code: 'SIDECAR_UNPARSABLE', message: `its sidecar is larger than ${MAX_SIDECAR_BYTES} bytes` } };
    if (error instanceof BackupError && error.code === 'NOT_FOUND') return missing(sidecarName); // removed since the listing
    throw asBackupError(error, 'DESTINATION_FAILED', `Reading ${sidecarName} from ${destination.description} failed`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { problem: { code: 'SIDECAR_UNPARSABLE', message: 'its sidecar is not valid JSON' } };
  }
  return checkSidecar(parsed, archive);
}

class SidecarTooLarge extends Error {}
