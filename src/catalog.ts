import { text } from 'node:stream/consumers';
import pLimit from 'p-limit';
import { ENCRYPTED_EXTENSION, SIDECAR_EXTENSION, dateFromArchiveName, isArchiveName } from './archive/names.js';
import type { BackupSidecar } from './archive/sidecar.js';
import { BackupError, asBackupError } from './errors.js';
import type { Destination, StoredObject } from './types.js';

/** Sidecars read at once: enough to hide an object store's latency, few enough to be polite. */
const SIDECAR_READS = 8;

/**
 * One backup stored on a destination.
 * @public
 */
export interface BackupInfo {
  /** The archive's name, e.g. `20261121-124500.tar.gz`. */
  readonly name: string;
  /** When the backup started. */
  readonly createdAt: Date;
  /** Archive size in bytes. */
  readonly size: number;
  /** SHA-256 of the archive, when its sidecar is present. */
  readonly sha256: string | undefined;
  /** Whether the archive is encrypted (its sidecar says so). */
  readonly encrypted: boolean;
  /**
   * The fingerprint of the key the backup says it is signed with (its sidecar says so); only a
   * restore or `verifyBackup` with `verifySignature` checks the signature itself.
   */
  readonly signedBy: string | undefined;
  /** The sources it holds, when its sidecar is present. */
  readonly sources: ReadonlyArray<{ name: string; kind: string; bytes: number; items: number }>;
}

/**
 * The backups on a destination, newest first. Reads the small sidecar files, never the archives.
 * @public
 */
export async function listBackups(destination: Destination): Promise<BackupInfo[]> {
  const { archives, sidecars } = await listArchives(destination);
  const limit = pLimit(SIDECAR_READS);
  return Promise.all(
    archives.map(({ name, size }) =>
      limit(async () => {
        const sidecarName = `${name}${SIDECAR_EXTENSION}`;
        const sidecar = sidecars.has(sidecarName) ? await readSidecar(destination, sidecarName) : undefined;
        return {
          name,
          createdAt: sidecar ? new Date(sidecar.createdAt) : (dateFromArchiveName(name) as Date),
          size,
          sha256: sidecar?.sha256,
          encrypted: sidecar?.encrypted ?? name.endsWith(ENCRYPTED_EXTENSION),
          signedBy: typeof sidecar?.signature?.fingerprint === 'string' ? sidecar.signature.fingerprint : undefined,
          sources: sidecar?.sourceStats ?? [],
        };
      }),
    ),
  );
}

/** The archives on a destination, newest first, and the names of the sidecars beside them. */
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

/** A damaged or foreign sidecar is ignored: the archive itself is the truth. */
async function readSidecar(destination: Destination, name: string): Promise<BackupSidecar | undefined> {
  try {
    const parsed = JSON.parse(await text(await destination.open(name))) as Partial<BackupSidecar>;
    return typeof parsed.createdAt === 'string' && typeof parsed.sha256 === 'string' ? (parsed as BackupSidecar) : undefined;
  } catch (error) {
    if (error instanceof SyntaxError || (error instanceof BackupError && error.code === 'NOT_FOUND')) return undefined;
    throw asBackupError(error, 'DESTINATION_FAILED', `Reading ${name} from ${destination.description} failed`);
  }
}
