import { text } from 'node:stream/consumers';
import { SIDECAR_EXTENSION, dateFromArchiveName, isArchiveName } from './archive/names.js';
import type { BackupSidecar } from './archive/sidecar.js';
import { BackupError, asBackupError } from './errors.js';
import type { Destination } from './types.js';

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
  /** The sources it holds, when its sidecar is present. */
  readonly sources: ReadonlyArray<{ name: string; kind: string; bytes: number; items: number }>;
}

/**
 * The backups on a destination, newest first. Reads the small sidecar files, never the archives.
 * @public
 */
export async function listBackups(destination: Destination): Promise<BackupInfo[]> {
  const archives: Array<{ name: string; size: number }> = [];
  const sidecars = new Set<string>();
  try {
    for await (const object of destination.list()) {
      if (isArchiveName(object.name)) archives.push(object);
      else if (object.name.endsWith(SIDECAR_EXTENSION)) sidecars.add(object.name);
    }
  } catch (cause) {
    throw asBackupError(cause, 'DESTINATION_FAILED', `Listing ${destination.description} failed`);
  }
  archives.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
  return Promise.all(
    archives.map(async ({ name, size }) => {
      const sidecarName = `${name}${SIDECAR_EXTENSION}`;
      const sidecar = sidecars.has(sidecarName) ? await readSidecar(destination, sidecarName) : undefined;
      return {
        name,
        createdAt: sidecar ? new Date(sidecar.createdAt) : (dateFromArchiveName(name) as Date),
        size,
        sha256: sidecar?.sha256,
        encrypted: sidecar?.encrypted ?? false,
        sources: sidecar?.sourceStats ?? [],
      };
    }),
  );
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
