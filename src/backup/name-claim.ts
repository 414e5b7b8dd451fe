import { hostname } from 'node:os';
import { BackupError, asBackupError } from '../errors.js';
import { CLAIM_EXTENSION, archiveName, archiveStem, stemOf, timestampOf } from '../archive/names.js';
import type { Destination } from '../types.js';
import { waitFor } from '../util/streams.js';

/** An archive name this backup holds on every destination until it releases it. */
export interface NameClaim {
  readonly name: string;
  /** Removes the claim objects; what cannot be removed (a killed process's) prune removes a day later. */
  release(): Promise<void>;
}

/**
 * Picks the archive name (the UTC start time, then `_NN` for the second and later backups of that
 * second) and claims it on every destination before any byte is written, so that two backups
 * racing for one second end up with two names instead of one overwriting the other.
 *
 * A claim is a small `<stem>.claim` object committed with the destinations' no-overwrite commit:
 * of two writers, one gets `ALREADY_EXISTS` and moves to the next sequence number. Because a
 * claim is removed only after its archive is committed, a writer that claims a stem after an
 * earlier claim was released sees that archive when it lists again, and moves on too.
 */
export async function claimName(destinations: readonly Destination[], createdAt: Date, extension: string): Promise<NameClaim> {
  const owner = `${JSON.stringify({ host: hostname(), pid: process.pid, createdAt: createdAt.toISOString() })}\n`;
  const taken = await takenStems(destinations, createdAt);
  for (let sequence = 0; ; sequence += 1) {
    const stem = archiveStem(createdAt, sequence);
    if (taken.has(stem)) continue;
    const claim = await claimStem(destinations, `${stem}${CLAIM_EXTENSION}`, owner);
    if (claim && !(await takenStems(destinations, createdAt, stem)).has(stem)) {
      return { name: archiveName(createdAt, sequence, extension), release: claim };
    }
    await claim?.();
    taken.add(stem);
  }
}

/** The stems used on any destination: a .tar.gz and a .tar.zst of one second would sort as one. */
async function takenStems(destinations: readonly Destination[], createdAt: Date, claimed?: string): Promise<Set<string>> {
  const taken = new Set<string>();
  for (const destination of destinations) {
    try {
      for await (const { name } of destination.list(timestampOf(createdAt))) {
        if (name !== `${claimed}${CLAIM_EXTENSION}`) taken.add(stemOf(name));
      }
    } catch (cause) {
      if (cause instanceof BackupError && cause.code === 'NOT_FOUND') continue; // not made yet: the upload makes it
      throw asBackupError(cause, 'DESTINATION_FAILED', `Listing ${destination.description} failed`);
    }
  }
  return taken;
}

/** Commits `claimName` on every destination; `undefined` if another writer holds it on one. */
async function claimStem(destinations: readonly Destination[], claimName: string, owner: string): Promise<(() => Promise<void>) | undefined> {
  const claimed: Destination[] = [];
  const release = async () => {
    await Promise.allSettled(claimed.map((destination) => destination.remove(claimName)));
  };
  for (const destination of destinations) {
    const upload = await destination.create(claimName);
    try {
      const flushed = waitFor(upload.stream, 'finish');
      upload.stream.end(owner);
      await flushed;
      await upload.commit();
      claimed.push(destination);
    } catch (cause) {
      await upload.abort();
      await release();
      if (cause instanceof BackupError && cause.code === 'ALREADY_EXISTS') return undefined;
      throw asBackupError(cause, 'DESTINATION_FAILED', `Claiming ${claimName} on ${destination.description} failed`);
    }
  }
  return release;
}
