import { BackupError } from '../errors.js';
import { sourceMode, type ArchiveHeader } from '../archive/format.js';
import { isArchiveName, stemOf } from '../archive/names.js';
import type { Destination, SourceMode, StoredObject } from '../types.js';
import type { OpenedArchive } from './archive-pass.js';

/** One archive a restore reads: the backup restored, or one its chain builds on. */
export interface ChainPiece {
  readonly name: string;
  /** Its stored size, for progress. */
  readonly size: number;
  /** 0 for the backup restored, 1 for the one before it, and so on. */
  readonly depth: number;
  readonly header: ArchiveHeader;
  /** SHA-256 of its `header.json` as planned: the archive read in full later must be this one. */
  readonly headerDigest: string;
  /** The sources read from it, each with how it holds them; its other sources are only verified. */
  readonly layers: ReadonlyMap<string, SourceMode>;
}

/**
 * The archives a restore of `restored` reads, newest first: the backup itself, then, while the
 * archives planned so far hold some source as `changes`, the one before (its header's `previous`),
 * down to archives holding every source in full. Reads only headers, so that a missing piece
 * (`NOT_FOUND`) or one that is not what its successor builds on (`CORRUPT_ARCHIVE`: another name,
 * chain, set of sources or encryption) is refused before anything is written.
 */
export async function planChain(from: Destination, restored: { archive: OpenedArchive; size: number }, openHeader: (name: string) => Promise<OpenedArchive>): Promise<ChainPiece[]> {
  const top = restored.archive;
  const pieces: ChainPiece[] = [];
  let newer = top;
  let size = restored.size;
  let needed = top.header.sources.map((s) => s.name);
  for (let depth = 0; ; depth += 1) {
    const layers = new Map(needed.map((name) => [name, sourceMode(newer.header, name)]));
    pieces.push({ name: newer.name, size, depth, header: newer.header, headerDigest: newer.headerDigest, layers });
    needed = needed.filter((name) => layers.get(name) === 'changes');
    if (needed.length === 0) return pieces;
    // parseHeader accepts a `changes` source only in an incremental that names its previous backup.
    const previous = newer.header.previous as string;
    // Names sort in time: a chain only runs back, so it cannot loop.
    if (!isArchiveName(previous) || stemOf(previous) >= stemOf(newer.name)) {
      throw new BackupError('CORRUPT_ARCHIVE', `${newer.name} says it builds on ${JSON.stringify(previous)}, which is not an earlier backup's name`);
    }
    const stored = await findArchive(from, previous);
    if (!stored) {
      throw new BackupError('NOT_FOUND', `${from.description} has no ${previous}, which ${newer.name} builds on: ${top.name} cannot be restored without it; nothing was written`, {
        hint: `Copy ${previous} back to the destination, or restore a full backup or an incremental whose chain is whole (listBackups shows each backup's base and previous).`,
      });
    }
    const older = await openHeader(previous);
    await older.close();
    checkLink(top.header, newer, older);
    newer = older;
    size = stored.size;
  }
}

/** Refuses an archive that is not the one `newer` builds on, naming it. */
function checkLink(restored: ArchiveHeader, newer: OpenedArchive, older: OpenedArchive): void {
  const refuse = (why: string) => new BackupError('CORRUPT_ARCHIVE', `${older.name}, which ${newer.name} builds on, ${why}; nothing was written`);
  if (older.header.name !== older.name) throw refuse(`calls itself ${JSON.stringify(older.header.name)} in its header`);
  const olderBase = older.header.type === 'incremental' ? older.header.base : older.name;
  if (olderBase !== newer.header.base) throw refuse(`belongs to the chain of ${String(olderBase)}, not to that of ${String(newer.header.base)}`);
  if (sourceKey(older.header) !== sourceKey(restored)) throw refuse(`holds the sources ${sourceKey(older.header)}, not ${sourceKey(restored)}`);
  if (encryptionKey(older.header) !== encryptionKey(restored)) throw refuse(`is encrypted otherwise (${encryptionKey(older.header)}, not ${encryptionKey(restored)})`);
}

async function findArchive(from: Destination, name: string): Promise<StoredObject | undefined> {
  for await (const object of from.list(name)) if (object.name === name) return object;
  return undefined;
}

/** Sources compared by name and kind, whatever their order. */
function sourceKey(header: ArchiveHeader): string {
  return header.sources
    .map(({ name, kind }) => `${name}:${kind}`)
    .sort()
    .join(', ');
}

/** Who can decrypt an archive: a chain keeps one key, whatever the recipients' order. */
function encryptionKey({ encryption }: ArchiveHeader): string {
  if (!encryption) return 'not encrypted';
  const recipients = [...encryption.recipients].sort().join(', ');
  return `${encryption.method}${encryption.passphrase ? ' with a passphrase' : ''}${recipients ? ` to ${recipients}` : ''}`;
}
